"""A plan as Markdown for a pull-request comment: ``omniport show PLAN --format markdown``.

Reads only the plan (the dict its file holds, as ``render.py`` does) and computes nothing. The
comment has a summary, the findings, the changes, each node's patches as collapsible
``<details>`` blocks (already redacted in the plan: no secret reaches this layer) and the
unlock preview. It fits a GitHub comment (65536 characters): when the whole plan does not,
the longest texts are cut first, each with a note saying how many lines are not shown, and
then whole entries from the end (patches first, findings last), again with a note; the
summary is never cut. ``omniport show PLAN`` always prints everything.

Everything a plan holds may come from a node or a server, so text outside code blocks is
HTML-escaped and names sit in code spans; code blocks use a fence longer than any backtick run
inside them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omniport.planner.render import SYMBOLS, VERBS, printable_data, summary_counts

GITHUB_COMMENT_LIMIT = 65536
"""GitHub refuses an issue or pull-request comment longer than this many characters."""

UNLOCK_PREVIEW_CODES = ("UNLOCK_CONFIG_INVALID", "UNLOCK_PREVIEW", "DENYLISTED_VALUES")
"""Findings that say what Omni changes on the nodes after unlock (``unlock --plan`` shows the
same; execute/unlock.py's PREVIEW_CODES, which the plan stage may not import)."""

_SEVERITY = {"error": "⛔ <b>Error</b>", "warning": "⚠️ <b>Warning</b>", "info": "ℹ️ Info"}
_ORDER = {"error": 0, "warning": 1, "info": 2}


def code(text: str) -> str:
    """``text`` as inline code, in HTML so that it renders inside ``<summary>`` too (GitHub
    does not read Markdown there) and nothing in it can close it."""
    return f"<code>{plain(text)}</code>"


_ACTIVE = {c: f"&#{ord(c)};" for c in "\\`*_[]|#~<>&!"}


def plain(text: str) -> str:
    """Text for a Markdown line or an HTML summary: on one line, with every character Markdown
    or HTML would act on written as an entity (the same in both places)."""
    return "".join(_ACTIVE.get(ch, ch) for ch in " ".join(text.split()))


def fenced(body: str, lang: str = "") -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", body)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{lang}\n{body.rstrip(chr(10))}\n{fence}"


@dataclass(frozen=True)
class Item:
    """One entry of a section: a line, and optionally a text shown in a code block."""

    line: str
    """Already escaped (``code``, ``plain``): valid as a list item and as an HTML summary."""
    body: str | None = None
    """Shown in a code block inside a ``<details>`` whose summary is the line."""
    lang: str = ""

    def render(self, body: str | None) -> str:
        if self.body is None:
            return f"- {self.line}"
        block = fenced(body or "", self.lang)
        return f"<details><summary>{self.line}</summary>\n\n{block}\n\n</details>"


@dataclass(frozen=True)
class Section:
    title: str
    items: tuple[Item, ...]
    intro: str = ""
    more: str = "entries"


def cut(body: str, budget: int, show_hint: str) -> str:
    """``body`` cut at a line boundary to about ``budget`` characters, with a note."""
    if len(body) <= budget:
        return body
    lines = body.rstrip("\n").split("\n")
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > budget:
            break
        kept.append(line)
        size += len(line) + 1
    hidden = len(lines) - len(kept)
    note = f"… {hidden} more line(s) not shown here (comment size limit): {show_hint}"
    return "\n".join([*kept, note])


def _budgets(sizes: Sequence[int], total: int) -> list[int]:
    """Water-filling: every body gets what it needs, the longest ones share what is left."""
    budgets = [0] * len(sizes)
    left = max(total, 0)
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    for rank, i in enumerate(order):
        share = left // (len(order) - rank)
        budgets[i] = min(sizes[i], share)
        left -= budgets[i]
    return budgets


def fit(
    sections: Sequence[Section],
    head: str,
    tail: str,
    limit: int,
    show_hint: str,
    drop_order: Sequence[int],
) -> str:
    """Join the sections under ``limit`` characters (see the module doc for what is cut).

    Long bodies are cut first (water-filling); when the entries' lines alone are too long,
    entries are dropped from the end of each section in ``drop_order`` (binary search)."""
    counts = [len(s.items) for s in sections]

    def assemble(bodies: Callable[[int, int, Item], str | None]) -> str:
        parts = [head]
        for si, section in enumerate(sections):
            shown = section.items[: counts[si]]
            if not section.items:
                continue
            parts.append(f"### {section.title}")
            if section.intro:
                parts.append(section.intro)
            parts.extend(item.render(bodies(si, ii, item)) for ii, item in enumerate(shown))
            hidden = len(section.items) - len(shown)
            if hidden:
                parts.append(
                    f"*… {hidden} more {section.more} not shown here (comment size limit): "
                    f"{plain(show_hint)}*"
                )
        parts.append(tail)
        return "\n\n".join(parts) + "\n"

    def attempt() -> str | None:
        """The text with every shown body cut to fit, or None when the lines alone are too
        long."""
        keys = [
            (si, ii)
            for si, s in enumerate(sections)
            for ii, item in enumerate(s.items[: counts[si]])
            if item.body is not None
        ]
        without = assemble(lambda si, ii, item: None if item.body is None else "")
        room = limit - len(without) - (120 + len(show_hint)) * len(keys)
        if room < 0:
            return None
        sizes = [len(sections[si].items[ii].body or "") for si, ii in keys]
        budget = dict(zip(keys, _budgets(sizes, room), strict=True))
        text = assemble(
            lambda si, ii, item: (
                None if item.body is None else cut(item.body, budget[(si, ii)], show_hint)
            )
        )
        return text if len(text) <= limit else None

    whole = assemble(lambda si, ii, item: item.body)
    if len(whole) <= limit:
        return whole
    text = attempt()
    for si in drop_order:
        if text is not None:
            return text
        low, high = 0, counts[si]  # the largest count that fits lies in [low, high)
        counts[si] = 0
        text = attempt()
        if text is None:
            continue
        while high - low > 1:
            mid = (low + high) // 2
            counts[si] = mid
            found = attempt()
            if found is None:
                high = mid
            else:
                low, text = mid, found
        counts[si] = low
        text = attempt()
    return text if text is not None else assemble(lambda si, ii, item: None)


def _finding_item(f: dict[str, Any]) -> Item:
    accepted = " (accepted)" if f["accepted"] else ""
    where = f" on {code(f['node'])}" if f["node"] else ""
    line = f"{_SEVERITY[f['severity']]}{accepted} {code(f['code'])}{where}: {plain(f['message'])}"
    body = "\n".join([*f["details"], *([f"fix: {f['fix']}"] if f["fix"] else [])])
    return Item(line, body or None, "text")


def _finding_counts(findings: list[dict[str, Any]]) -> str:
    severities = [f["severity"] for f in findings]
    accepted = sum(1 for f in findings if f["severity"] == "error" and f["accepted"])
    counts = [
        f"{severities.count('error')} error(s)" + (f" ({accepted} accepted)" if accepted else ""),
        f"{severities.count('warning')} warning(s)",
        f"{severities.count('info')} info",
    ]
    return ", ".join(counts)


def _change_text(ch: dict[str, Any]) -> str:
    symbol = SYMBOLS[ch["action"]]
    lines = [
        f"# {ch['address']} {VERBS[ch['action']]}",
        f'{symbol} {ch["resource_type"]} "{ch["resource_id"]}" {{',
    ]
    after = ch["after"]
    width = max((len(k) for k in after), default=0)
    for key in sorted(after):
        value = after[key]
        if isinstance(value, str) and "\n" in value:
            lines.append(f"{symbol}   {key.ljust(width)} = <<-EOT")
            lines += [f"{symbol}       {line}" for line in value.rstrip("\n").split("\n")]
            lines.append(f"{symbol}     EOT")
        else:
            shown = value if value == "(sensitive value)" else _json(value)
            lines.append(f"{symbol}   {key.ljust(width)} = {shown}")
    lines.append("  }")
    return "\n".join(lines)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _patch_items(n: dict[str, Any]) -> list[Item]:
    who = f"{code(n['address'])} {plain(n['hostname'])} ({plain(n['role'])})"
    if not n["patches"]:
        return [Item(f"{who}: no patch (the live config equals the baseline)")]
    items = []
    for p in n["patches"]:
        lines = len(p["redacted"].splitlines())
        line = f"{who}: patch {code(p['id'])}, {lines} line(s), sha256 {p['sha256'][:12]}…"
        items.append(Item(line, p["redacted"], "yaml"))
    if n["removed"]:
        stripped = ", ".join(code(r) for r in n["removed"])
        items.append(Item(f"{who}: stripped by Omni's denylist: {stripped}"))
    return items


def render_markdown(
    data: dict[str, Any], *, path: str | None = None, limit: int = GITHUB_COMMENT_LIMIT
) -> str:
    """The plan as a Markdown comment of at most ``limit`` characters."""
    data = printable_data(data)
    c = data["cluster"]
    nodes = data["nodes"]
    show_hint = f"`omniport show {path}` prints the whole plan" if path else "see `omniport show`"
    add, change, destroy = summary_counts(data["changes"])
    blocking = [f for f in data["findings"] if f["severity"] == "error" and not f["accepted"]]
    if (add, change, destroy) == (0, 0, 0):
        verdict = "**No changes.** The cluster is already imported as planned."
    else:
        verdict = f"**Plan: {add} to add, {change} to change, {destroy} to destroy.**"
    if blocking:
        codes = ", ".join(code(x) for x in sorted({f["code"] for f in blocking}))
        verdict += (
            f"\n\n⛔ **Apply is blocked** by {len(blocking)} error finding(s) ({codes}): fix "
            "them, or accept them by code under `findings.accept` in the spec after review."
        )
    roles = [n["role"] for n in nodes]
    location = data.get("spec_location")
    spec_where = code(location["path"]) if location else "(not recorded)"
    factory = code(c["factory_url"]) if c["factory_url"] else "(none)"
    rows = [
        ("Omni", code(c["omni_url"])),
        ("Image Factory", factory),
        (
            "Talos",
            f"{plain(c['talos_version'])} (baseline {plain(c['initial_talos_version'])})",
        ),
        (
            "Kubernetes",
            f"{plain(c['kubernetes_version'])} (baseline {plain(c['initial_kubernetes_version'])})",
        ),
        (
            "Nodes",
            f"{len(nodes)}: {roles.count('controlplane')} control plane(s), "
            f"{roles.count('worker')} worker(s)",
        ),
        ("Findings", _finding_counts(data["findings"])),
        ("Spec", f"{spec_where}, sha256 {data['spec_sha256'][:12]}…"),
        (
            "Plan file",
            f"checksum sha256 {data['checksum'][:12]}…, created {plain(data['created_at'])}",
        ),
    ]
    head = "\n\n".join(
        [
            f"## omniport plan: import cluster {code(c['name'])} into Omni",
            verdict,
            "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows),
        ]
    )
    findings = sorted(
        data["findings"], key=lambda f: (_ORDER[f["severity"]], f["code"], f["node"] or "")
    )
    changes = [ch for ch in data["changes"] if ch["action"] != "no-op"]
    preview = [f for f in findings if f["code"] in UNLOCK_PREVIEW_CODES]
    sections = [
        Section(
            "Findings",
            tuple(
                _finding_item(f)
                for f in findings
                if f["code"] not in UNLOCK_PREVIEW_CODES or f["severity"] == "error"
            ),
            intro="What changes on the nodes after unlock is under *Unlock preview*."
            if preview
            else "",
            more="finding(s)",
        ),
        Section(
            "Changes",
            (
                Item(
                    f"{len(changes)} change(s): {add} to add, {change} to change, "
                    f"{destroy} to destroy",
                    "\n\n".join(_change_text(ch) for ch in changes),
                    "diff",
                ),
            )
            if changes
            else (),
        ),
        Section(
            "Per-node patches",
            tuple(item for n in nodes for item in _patch_items(n)),
            intro="The ConfigPatches Omni will hold for each node, secrets shown as "
            "`(sensitive value)`.",
            more="patch entries",
        ),
        Section(
            "Unlock preview",
            tuple(_finding_item(f) for f in preview),
            intro="What changes on the nodes when Omni takes over after `omniport unlock`.",
            more="preview entries",
        ),
    ]
    apply_line = f"omniport apply {path}" if path else "omniport apply PLAN"
    tail = (
        f"To apply exactly this plan after review: {code(apply_line)} "
        "(it refuses the plan if the cluster or Omni changed since)."
    )
    # patches go first, then the changes' text, the unlock preview, the findings last
    return fit(sections, head, tail, limit, show_hint, drop_order=(2, 1, 3, 0))
