"""The command line over the spec: talosctl/omnictl's global flags, applied to a parsed spec.

``omniport --talosconfig F --context C --endpoints E --nodes N --omniconfig F COMMAND`` (or the
same flags after the command) replace the spec's ``talos.talosconfig``, ``talos.context``,
``talos.endpoints``, ``talos.nodes`` and ``omni.omniconfig``, as talosctl's and omnictl's flags
replace their config file's values. Every error message that says "pass --talosconfig" (and so
on) points at these flags.

Two uses, two functions:

- :func:`adjuster`: ``plan`` and ``validate`` build the spec the plan records, so the values
  given go into the spec's data before it is checked (and so into its sha256): ``apply`` of
  that plan reaches the cluster the way ``plan`` did, and imports the planned nodes.
- :func:`for_access`: ``apply``, ``rollback``, ``abort`` and ``unlock`` run on a spec recorded
  or named elsewhere; only how Talos and Omni are reached may change (a CI runner keeps its
  talosconfig elsewhere), never which nodes: ``--nodes`` is refused there.

Also here: :func:`in_automation`, Terraform's ``TF_IN_AUTOMATION`` for omniport.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omniport.planner.errors import UsageProblem

if TYPE_CHECKING:  # the module stays light: the root command imports it on every start
    from omniport.planner.spec import Spec

AUTOMATION_ENV = "OMNIPORT_IN_AUTOMATION"
"""Non-empty: omniport runs under automation (CI); interactive hints ("Next: ...", "Press
Ctrl-C ...") are left out, as Terraform does with ``TF_IN_AUTOMATION``."""


def in_automation(environ: Mapping[str, str]) -> bool:
    """Whether ``OMNIPORT_IN_AUTOMATION`` is set to a non-empty value."""
    return bool(environ.get(AUTOMATION_ENV, ""))


@dataclass(frozen=True)
class Overrides:
    """The global access flags given on the command line (empty: none given)."""

    talosconfig: Path | None = None
    context: str | None = None
    endpoints: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    omniconfig: Path | None = None

    def given(self) -> list[str]:
        """The flags given, spelled as on the command line."""
        names = ("talosconfig", "context", "endpoints", "nodes", "omniconfig")
        return [f"--{name}" for name in names if getattr(self, name)]

    def __bool__(self) -> bool:
        return bool(self.given())


def split_list(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """talosctl's list flags: repeated and/or comma-separated (``-n a,b -n c``), in order,
    without duplicates or empty items."""
    items = [item.strip() for value in values for item in value.split(",")]
    return tuple(dict.fromkeys(item for item in items if item))


def adjuster(ov: Overrides) -> Callable[[dict[str, Any]], None] | None:
    """For ``load_spec(path, adjust=...)``: puts the flags' values into the spec's data before
    it is checked, so a spec naming a talosconfig that only exists elsewhere still loads with
    ``--talosconfig``, and the plan records the values it was made with."""
    if not ov:
        return None

    def adjust(data: dict[str, Any]) -> None:
        talos = data.get("talos")
        if not isinstance(talos, dict):
            talos = data["talos"] = {}
        if ov.talosconfig is not None:
            talos["talosconfig"] = str(ov.talosconfig)
        if ov.context is not None:
            talos["context"] = ov.context
        if ov.endpoints:
            talos["endpoints"] = list(ov.endpoints)
        if ov.nodes:
            talos["nodes"] = list(ov.nodes)
        if ov.omniconfig is not None:
            omni = data.get("omni")
            if not isinstance(omni, dict):
                omni = data["omni"] = {}
            omni["omniconfig"] = str(ov.omniconfig)

    return adjust


_KEYS: tuple[tuple[str, str], ...] = (
    ("talos", "talosconfig"),
    ("talos", "context"),
    ("talos", "endpoints"),
    ("talos", "nodes"),
    ("omni", "omniconfig"),
)


def unrecorded(normalized: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """``normalized`` with the access keys as ``recorded`` has them: a spec recorded in a plan
    keeps hashing to the plan's spec_sha256 when the flags change how it reaches things."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in normalized.items()}
    for section, key in _KEYS:
        was = recorded.get(section) or {}
        target = out.setdefault(section, {})
        if key in was:
            target[key] = was[key]
        else:
            target.pop(key, None)
    return out


def _fields(spec: Spec, ov: Overrides) -> Spec:
    talos = replace(
        spec.talos,
        talosconfig=ov.talosconfig if ov.talosconfig is not None else spec.talos.talosconfig,
        context=ov.context if ov.context is not None else spec.talos.context,
        endpoints=ov.endpoints or spec.talos.endpoints,
        nodes=ov.nodes or spec.talos.nodes,
    )
    omni = replace(
        spec.omni,
        omniconfig=ov.omniconfig if ov.omniconfig is not None else spec.omni.omniconfig,
    )
    return replace(spec, talos=talos, omni=omni)


def for_access(spec: Spec, ov: Overrides, command: str) -> Spec:
    """``spec`` reaching Talos and Omni as the flags say; what it imports stays as recorded."""
    if not ov:
        return spec
    recorded = tuple((spec.normalized.get("talos") or {}).get("nodes") or ())
    if ov.nodes and tuple(ov.nodes) != recorded:
        raise UsageProblem(
            f"--nodes cannot change the nodes of `omniport {command}`: they are the planned ones",
            "leave out --nodes here (pass it to `omniport plan`, then apply the new plan)",
        )
    return _fields(spec, ov)
