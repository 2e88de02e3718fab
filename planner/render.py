"""Rendering: a plan (as the dict its file holds) to Terraform-style text or JSON Lines events.

Computes nothing: both views read the same dict that ``show --json`` prints, so ``plan`` and
``show`` cannot drift. Secrets never reach this layer; the plan holds redacted text only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from omniport.planner import __version__

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "no-op": " "}
VERBS = {
    "create": "will be created",
    "update": "will be updated in-place",
    "delete": "will be destroyed",
    "no-op": "is unchanged",
}
_COLORS = {"+": "32", "~": "33", "-": "31", "error": "31", "warning": "33", "info": "36"}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as ``\\xNN`` (newlines and tabs kept).

    Hostnames, server error messages and every string of a plan file reach the terminal: a
    node, a server or a crafted (validly sealed) plan must not be able to move the cursor,
    rewrite lines or change the terminal's title through them."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def printable_data(value: Any) -> Any:
    """:func:`printable` applied to every string (keys too) of a JSON-like value."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_data(v) for v in value]
    return value


class Style:
    """ANSI styling that collapses to plain text when color is off (NO_COLOR, non-TTY)."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def paint(self, text: str, key: str) -> str:
        code = _COLORS.get(key)
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def bold(self, text: str) -> str:
        return f"\x1b[1m{text}\x1b[0m" if self.color else text


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value if value == "(sensitive value)" else json.dumps(value)
    return json.dumps(value, sort_keys=True)


def _after_lines(after: dict[str, Any], symbol: str, indent: str) -> Iterator[str]:
    width = max((len(k) for k in after), default=0)
    for key in sorted(after):
        value = after[key]
        if isinstance(value, str) and "\n" in value:
            yield f"{indent}{symbol} {key.ljust(width)} = <<-EOT"
            for line in value.rstrip("\n").split("\n"):
                yield f"{indent}      {line}"
            yield f"{indent}    EOT"
        else:
            yield f"{indent}{symbol} {key.ljust(width)} = {_value(value)}"


def render_findings(findings: list[dict[str, Any]], style: Style) -> Iterator[str]:
    order = {"error": 0, "warning": 1, "info": 2}
    if not findings:
        return
    yield style.bold("Findings:")
    for f in sorted(findings, key=lambda f: (order[f["severity"]], f["code"], f["node"] or "")):
        label = f["severity"].capitalize()
        accepted = " (accepted)" if f["accepted"] else ""
        where = f" on {f['node']}" if f["node"] else ""
        head = style.paint(f"{label}{accepted}", f["severity"])
        yield f"  {head}: [{f['code']}]{where}: {f['message']}"
        for line in f["details"]:
            yield f"      {line}"
        if f["fix"]:
            yield f"      fix: {f['fix']}"
    yield ""


NODES_SOURCES = {
    "spec": "listed in talos.nodes",
    "discovery": "discovered from the Talos discovery members",
}
"""How a plan found its nodes (``Plan.nodes_source``), as the plan's header says it."""


def render_plan(data: dict[str, Any], *, color: bool = False, path: str | None = None) -> str:
    """The human plan: header, findings by severity, changes, node patch summary, summary."""
    data = printable_data(data)
    style = Style(color)
    c = data["cluster"]
    imported = next((f for f in data["findings"] if f["code"] == "ALREADY_IMPORTED"), None)
    lines = [
        f"omniport will import cluster {c['name']!r} into {c['omni_url']}"
        if imported is None
        else f"omniport found cluster {c['name']!r} already imported into {c['omni_url']}",
        f"  Talos {c['talos_version']}, Kubernetes {c['kubernetes_version']}; baseline generated "
        f"for Talos {c['initial_talos_version']}, Kubernetes {c['initial_kubernetes_version']}",
        f"  {len(data['nodes'])} node(s) {NODES_SOURCES[data.get('nodes_source', 'spec')]}: "
        + ", ".join(f"{n['address']} ({n['role']})" for n in data["nodes"][:10])
        + (f", … {len(data['nodes']) - 10} more" if len(data["nodes"]) > 10 else ""),
        "",
    ]
    lines += render_findings(data["findings"], style)
    changes = data["changes"]
    if any(ch["action"] != "no-op" for ch in changes):
        lines.append("omniport will perform the following actions:")
        lines.append("")
        for ch in changes:
            symbol = SYMBOLS[ch["action"]]
            lines.append(f"  # {ch['address']} {VERBS[ch['action']]}")
            head = style.paint(symbol, symbol)
            lines.append(f'  {head} {ch["resource_type"]} "{ch["resource_id"]}" {{')
            lines += _after_lines(ch["after"], style.paint(symbol, symbol), "      ")
            lines.append("    }")
            lines.append("")
    if imported is not None:
        lines.append(style.bold("Nothing to import: the cluster is already imported (see above)."))
        return "\n".join(lines) + "\n"
    lines.append(style.bold("Per-node patches:"))
    for n in data["nodes"]:
        patches = ", ".join(
            f"{p['id'].split('-', 1)[0]}: {len(p['redacted'].splitlines())} lines"
            for p in n["patches"]
        )
        lines.append(
            f"  {n['address']} {n['hostname']} ({n['role']}, {n['machine_uuid']}): "
            f"{patches or 'no patch (the live config equals the baseline)'}"
        )
        if n["removed"]:
            lines.append(f"      stripped by Omni's denylist: {', '.join(n['removed'])}")
    lines.append("")
    add, change, destroy = summary_counts(changes)
    lines.append(
        style.bold(f"Plan: {add} to add, {change} to change, {destroy} to destroy.")
        if (add, change, destroy) != (0, 0, 0)
        else "No changes. The cluster is already imported as planned."
    )
    blocking = [f for f in data["findings"] if f["severity"] == "error" and not f["accepted"]]
    if blocking:
        codes = ", ".join(sorted({f["code"] for f in blocking}))
        lines.append(
            style.paint(
                f"Apply is blocked by {len(blocking)} error finding(s) ({codes}); fix them, or "
                "accept them by code under findings.accept in the spec after review.",
                "error",
            )
        )
    if path:
        lines += ["", f"Saved the plan to: {path}", "To perform exactly these actions, run:"]
        lines.append(f"    omniport apply {path}")
    return "\n".join(lines) + "\n"


def summary_counts(changes: Iterable[dict[str, Any]]) -> tuple[int, int, int]:
    actions = [ch["action"] for ch in changes]
    return actions.count("create"), actions.count("update"), actions.count("delete")


def event(kind: str, message: str, level: str = "info", **fields: Any) -> dict[str, Any]:
    """One JSON Lines event in Terraform's machine-readable UI shape."""
    return {
        "@level": level,
        "@message": message,
        "@module": "omniport.ui",
        "@timestamp": datetime.now(UTC).isoformat(timespec="microseconds"),
        "type": kind,
        **fields,
    }


def version_event() -> dict[str, Any]:
    return event("version", f"omniport {__version__}", omniport=__version__, ui="1.0")


def plan_events(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``plan --json`` stream: version, diagnostics, planned changes, change summary."""
    yield version_event()
    levels = {"error": "error", "warning": "warn", "info": "info"}
    for f in data["findings"]:
        yield event(
            "diagnostic",
            f"{f['severity'].capitalize()}: {f['message']}",
            level=levels[f["severity"]],
            diagnostic={
                "severity": f["severity"],
                "code": f["code"],
                "summary": f["message"],
                "detail": "\n".join(f["details"]),
                "fix": f["fix"],
                "node": f["node"],
                "accepted": f["accepted"],
            },
        )
    for ch in data["changes"]:
        yield event(
            "planned_change",
            f"{ch['address']}: Plan to {ch['action']}",
            change={
                "resource": {
                    "addr": ch["address"],
                    "resource_type": ch["resource_type"],
                    "resource_name": ch["resource_id"],
                },
                "action": ch["action"],
                "node": ch["node"],
            },
        )
    add, change, destroy = summary_counts(data["changes"])
    yield event(
        "change_summary",
        f"Plan: {add} to add, {change} to change, {destroy} to destroy.",
        changes={"add": add, "change": change, "remove": destroy, "operation": "plan"},
    )


def error_events(err: Exception) -> Iterator[dict[str, Any]]:
    """A failure as ``diagnostic`` events: one per spec problem (with its ``range``, as
    Terraform's diagnostics carry one), else one for the error and its fix."""
    problems = getattr(err, "problems", None) or ()
    for p in problems:
        yield event(
            "diagnostic",
            f"Error: {p}",
            level="error",
            diagnostic={
                "severity": "error",
                "summary": p.message,
                "detail": "",
                "range": {
                    "filename": p.file,
                    "start": {"line": p.line, "column": p.column},
                },
            },
        )
    if problems:
        return
    summary = getattr(err, "message", None) or str(err)
    fix = getattr(err, "fix", None) or ""
    yield event(
        "diagnostic",
        f"Error: {printable(str(err))}",
        level="error",
        diagnostic={"severity": "error", "summary": printable(summary), "fix": fix},
    )


def json_line(ev: dict[str, Any]) -> str:
    return json.dumps(ev, sort_keys=False, ensure_ascii=False)


def render_rollback(data: dict[str, Any], *, color: bool = False) -> str:
    """The human view of a rollback plan: what rollback restores and removes."""
    data = printable_data(data)
    style = Style(color)
    c = data["cluster"]
    lines = [
        f"Rollback of the import of cluster {c['name']!r} from {c['omni_url']}",
        f"  backup: {data['backup']['path']} (sha256 {data['backup']['sha256'][:12]}…)",
        f"  journal: {data['journal']}",
        "",
        "omniport rollback will:",
    ]
    for n in data["nodes"]:
        head = style.paint("~", "~")
        lines.append(
            f"  {head} restore {n['address']} ({n['hostname']}) to its backup "
            f"{n['backup_entry']} (sha256 {n['config_sha256'][:12]}…)"
        )
    for r in reversed(data["omni_resources"]):
        head = style.paint("-", "-")
        lines.append(f"  {head} destroy {r['type']} {r['id']!r} if it carries this import's mark")
    for uuid in data.get("links", []):
        head = style.paint("-", "-")
        lines.append(f"  {head} destroy Links.omni.sidero.dev {uuid!r} if its node joined Omni")
    lines.append("")
    lines.append(
        style.bold(
            f"Rollback: {len(data['nodes'])} node(s) to restore, up to "
            f"{len(data['omni_resources'])} Omni resource(s) to destroy."
        )
    )
    return "\n".join(lines) + "\n"


# ---- apply, rollback, abort, unlock ---------------------------------------------------------

STEP_VERBS = {
    "create": ("Creating...", "Creation complete"),
    "update": ("Modifying...", "Modifications complete"),
    "delete": ("Destroying...", "Destruction complete"),
    "read": ("Reading...", "Read complete"),
}


def hook_event(
    kind: str,
    message: str,
    step: dict[str, Any],
    *,
    level: str = "info",
    **fields: Any,
) -> dict[str, Any]:
    """``apply_start|progress|complete|errored`` in Terraform's hook shape."""
    hook = {
        "resource": {
            "addr": step["address"],
            "resource_type": step["resource_type"],
            "resource_name": step["resource_id"],
        },
        "action": step["action"],
        **({"node": step["node"]} if step.get("node") else {}),
        **fields,
    }
    return event(kind, message, level=level, hook=hook)


def step_line(
    step: dict[str, Any], phase: str, elapsed: float | None = None, note: str = ""
) -> str:
    """One human progress line: ``addr: Creating...`` / ``addr: Creation complete after 0.2s``."""
    starting, finished = STEP_VERBS.get(step["action"], STEP_VERBS["read"])
    suffix = f" ({note})" if note else ""
    if phase == "start":
        return f"{step['address']}: {starting}{suffix}"
    return f"{step['address']}: {finished} after {elapsed or 0.0:.1f}s{suffix}"


def render_abort(data: dict[str, Any], *, color: bool = False) -> str:
    """What ``omniport abort`` will do, plan-style."""
    data = printable_data(data)
    style = Style(color)
    minus, tilde = style.paint("-", "-"), style.paint("~", "~")
    lines = [
        f"omniport will abort the import of cluster {data['cluster']!r} in {data['omni_url']}",
        "",
        f'  {minus} Clusters.omni.sidero.dev "{data["cluster"]}"',
        "      (Omni tears down its machine sets, machine set nodes and config patches, and",
        "      skips resetting the machines: the cluster is locked and tainted by importing)",
    ]
    for uuid in data["machines"]:
        lines.append(f'  {minus} Links.omni.sidero.dev "{uuid}"')
    for uuid, address in data["nodes"].items():
        lines.append(
            f'  {tilde} MachineConfigs "{address}" ({uuid}): remove SideroLinkConfig, '
            "EventSinkConfig and KmsgLogConfig omni-kmsg"
        )
    for uuid in data["unmatched"]:
        lines.append(
            f"  ! machine {uuid} is not among the spec's nodes: its node keeps the join documents"
        )
    lines.append("")
    changes, destroys = len(data["nodes"]), 1 + len(data["machines"])
    lines.append(style.bold(f"Abort: 0 to add, {changes} to change, {destroys} to destroy."))
    return "\n".join(lines) + "\n"


def abort_events(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    def planned(addr: str, kind: str, name: str, action: str) -> dict[str, Any]:
        return event(
            "planned_change",
            f"{addr}: Plan to {action}",
            change={
                "resource": {"addr": addr, "resource_type": kind, "resource_name": name},
                "action": action,
            },
        )

    yield planned(
        f"omni_cluster.{data['cluster']}", "Clusters.omni.sidero.dev", data["cluster"], "delete"
    )
    for uuid in data["machines"]:
        yield planned(f"omni_link.{uuid}", "Links.omni.sidero.dev", uuid, "delete")
    for address in data["nodes"].values():
        yield planned(f"talos_join.{address}", "MachineConfigs", address, "update")
    yield event(
        "change_summary",
        f"Abort: 0 to add, {len(data['nodes'])} to change, {1 + len(data['machines'])} to destroy.",
        changes={
            "add": 0,
            "change": len(data["nodes"]),
            "remove": 1 + len(data["machines"]),
            "operation": "abort",
        },
    )


def render_unlock(data: dict[str, Any], *, color: bool = False) -> str:
    """The unlock preview (from the plan) and what unlock changes, plan-style."""
    data = printable_data(data)
    style = Style(color)
    lines = [f"omniport will unlock cluster {data['cluster']!r} in {data['omni_url']}", ""]
    preview = data.get("preview")
    if preview is None:
        lines.append(
            "  (no plan given: pass --plan PLAN to see what Omni will change on the nodes)"
        )
    elif not preview:
        lines.append(
            "  The plan shows no difference between the live configs and what Omni pushes."
        )
    else:
        lines.append(style.bold("Unlock preview (from the plan):"))
        for f in preview:
            where = f" on {f['node']}" if f["node"] else ""
            lines.append(f"  [{f['code']}]{where}: {f['message']}")
            lines += [f"      {d}" for d in f["details"]]
    lines.append("")
    if data["locked"]:
        head = style.paint("~", "~")
        lines.append(f'  {head} Clusters.omni.sidero.dev "{data["cluster"]}" {{')
        lines.append(f"      {head} annotations: - omni.sidero.dev/cluster-locked")
        if data["importing"]:
            lines.append(
                f"      {head} annotations: - omni.sidero.dev/cluster-import-is-in-progress"
            )
        lines.append("    }")
        lines.append("")
        lines.append(
            f"After unlock Omni pushes its rendered config to the {data['machines']} machine(s) "
            "and manages the cluster."
        )
        lines.append(style.bold("Unlock: 0 to add, 1 to change, 0 to destroy."))
    else:
        lines.append("No changes. The cluster is not locked.")
    return "\n".join(lines) + "\n"


def unlock_events(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for f in data.get("preview") or []:
        yield event(
            "diagnostic",
            f"{f['code']}: {f['message']}",
            diagnostic={
                "severity": "info",
                "code": f["code"],
                "summary": f["message"],
                "detail": "\n".join(f["details"]),
                "node": f["node"],
            },
        )
    change = 1 if data["locked"] else 0
    if change:
        addr = f"omni_cluster.{data['cluster']}"
        yield event(
            "planned_change",
            f"{addr}: Plan to update",
            change={
                "resource": {
                    "addr": addr,
                    "resource_type": "Clusters.omni.sidero.dev",
                    "resource_name": data["cluster"],
                },
                "action": "update",
            },
        )
    yield event(
        "change_summary",
        f"Unlock: 0 to add, {change} to change, 0 to destroy.",
        changes={"add": 0, "change": change, "remove": 0, "operation": "unlock"},
    )


def rollback_events(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The preview of ``rollback --json``: what may be restored and destroyed."""
    for n in data["nodes"]:
        addr = f"talos_join.{n['address']}"
        yield event(
            "planned_change",
            f"{addr}: Plan to update (restore the backup)",
            change={
                "resource": {
                    "addr": addr,
                    "resource_type": "MachineConfigs",
                    "resource_name": n["address"],
                },
                "action": "update",
            },
        )
    for r in reversed(data["omni_resources"]):
        yield event(
            "planned_change",
            f"{r['type']} {r['id']}: Plan to delete (if marked by this import)",
            change={
                "resource": {"addr": r["id"], "resource_type": r["type"], "resource_name": r["id"]},
                "action": "delete",
            },
        )
