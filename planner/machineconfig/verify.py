"""Prove that the per-node patches reproduce the live config, field by field.

Omni will build each node's config as its baseline plus the imported patches. Before anything
is applied, the plan checks ``apply_patches(baseline, patches)`` against the live config, both
without what Omni manages itself (:func:`~planner.machineconfig.sanitize.strip_denylisted`)
and compared the way Talos reads configs (:func:`~planner.machineconfig.document.canonical`).
Every difference left is a :class:`Mismatch`; none means the import keeps the node's config.
Mismatch values are redacted, so they can go into a plan as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from planner.machineconfig.diff import diff
from planner.machineconfig.document import Document, MachineConfig, canonical
from planner.machineconfig.merge import Patch, apply_patches
from planner.machineconfig.redact import redact_value
from planner.machineconfig.sanitize import Removal, sanitize, strip_denylisted

Documents = MachineConfig | Iterable[Document | Mapping[str, Any]]


@dataclass(frozen=True)
class Mismatch:
    """A field where the rebuilt config differs from the live one.

    ``expected`` is the live value and ``actual`` what baseline plus patches give; ``None``
    means absent. Both are redacted.
    """

    document: str
    path: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        where = f"{self.document}: {self.path}" if self.path else self.document
        return f"{where}: live {self.expected!r}, rebuilt {self.actual!r}"


def verify(
    baseline: Documents,
    patches: Iterable[Patch | Iterable[Document | Mapping[str, Any]]],
    live: Documents,
) -> list[Mismatch]:
    """Differences between the live config and baseline + patches, outside Omni's denylist."""
    rebuilt = apply_patches(baseline, patches)
    return compare(live, rebuilt)


def compare(expected: Documents, actual: Documents) -> list[Mismatch]:
    """Field-by-field differences between two configs, outside Omni's denylist."""
    want = canonical(strip_denylisted(expected))
    got = canonical(strip_denylisted(actual))
    out: list[Mismatch] = []
    for name in sorted(want.keys() | got.keys()):
        _walk(name, "", want.get(name), got.get(name), out)
    return out


def _walk(document: str, path: str, want: Any, got: Any, out: list[Mismatch]) -> None:
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(want.keys() | got.keys(), key=str):
            sub = f"{path}.{key}" if path else str(key)
            _walk(document, sub, want.get(key), got.get(key), out)
        return
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for index, (a, b) in enumerate(zip(want, got, strict=True)):
            _walk(document, f"{path}[{index}]", a, b, out)
        return
    if type(want) is type(got) and want == got:
        return
    field = path.rsplit(".", 1)[-1].split("[", 1)[0]
    out.append(Mismatch(document, path, redact_value(want, field), redact_value(got, field)))


@dataclass(frozen=True)
class NodePatches:
    """What one node needs: the sanitized patches (at most two, in order), what sanitizing
    removed, and whatever baseline plus those patches still fails to reproduce."""

    patches: tuple[tuple[Document, ...], ...]
    removed: tuple[Removal, ...]
    mismatches: tuple[Mismatch, ...]


def node_patches(baseline: Documents, live: Documents) -> NodePatches:
    """Diff baseline to live, sanitize each patch, and verify the result reproduces live."""
    patches: list[tuple[Document, ...]] = []
    removed: list[Removal] = []
    for patch in diff(baseline, live):
        cleaned = sanitize(patch)
        removed.extend(cleaned.removed)
        if not cleaned.empty:
            patches.append(cleaned.documents)
    mismatches = verify(baseline, patches, live)
    return NodePatches(tuple(patches), tuple(removed), tuple(mismatches))
