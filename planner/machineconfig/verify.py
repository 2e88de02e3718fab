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
from dataclasses import dataclass, replace
from typing import Any

from omniport.planner.machineconfig.diff import diff
from omniport.planner.machineconfig.document import (
    Document,
    MachineConfig,
    as_documents,
    canonical,
    copy_tree,
)
from omniport.planner.machineconfig.merge import Patch, apply_patches
from omniport.planner.machineconfig.redact import redact_value
from omniport.planner.machineconfig.sanitize import (
    FORBIDDEN_DOCUMENTS,
    Removal,
    sanitize,
    strip_denylisted,
)
from omniport.planner.machineconfig.validate import Verdict, validate

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


def compare(
    expected: Documents, actual: Documents, *, managed_documents: bool = False
) -> list[Mismatch]:
    """Field-by-field differences between two configs, outside Omni's denylist.

    Documents Omni manages (``FORBIDDEN_DOCUMENTS``) are never compared field by field: their
    values are Omni's. With ``managed_documents`` (the unlock preview), a managed document on
    one side only is still a difference: a 1.12-born node pushed Omni's 1.14 documents
    (``KubeAggregatorCAConfig``, ``KubeClusterConfig``...) changes the config's form, and Talos
    may refuse the mix (omni#3424).
    """
    want = canonical(strip_denylisted(expected))
    got = canonical(strip_denylisted(actual))
    out: list[Mismatch] = _managed_presence(expected, actual) if managed_documents else []
    for name in sorted(want.keys() | got.keys()):
        _walk(name, "", want.get(name), got.get(name), out)
    return out


def _managed_presence(expected: Documents, actual: Documents) -> list[Mismatch]:
    def managed(config: Documents) -> set[str]:
        return {
            str(doc.key)
            for doc in as_documents(config)
            if not doc.key.is_legacy and doc.key.kind in FORBIDDEN_DOCUMENTS
        }

    want, got = managed(expected), managed(actual)
    return [
        Mismatch(name, "", "present" if name in want else None, "present" if name in got else None)
        for name in sorted(want ^ got)
    ]


def pushed_config_verdict(pushed: Documents, live: Documents, talos_version: str) -> Verdict:
    """Talos's verdict on the config Omni pushes after unlock (its base plus the patches).

    ``machine.install.disk`` is Omni's to set and never part of a patch; Omni fills it for the
    machine, so the live value stands in for it here, as it does for the endpoint in the base.

    Errors the live config has too under the same rules are left out: the node runs that config
    on this Talos version, so such a rule does not hold for it (most often because the node
    does not run in metal mode, where ``machine.install`` is required up to 1.13, and the plan
    cannot see the node's mode).
    """
    docs = [Document(copy_tree(doc.data)) for doc in as_documents(pushed)]
    live_legacy = next((d for d in as_documents(live) if d.key.is_legacy), None)
    disk = _install_disk(live_legacy.data) if live_legacy else None
    for doc in docs:
        machine = doc.data.get("machine") if doc.key.is_legacy else None
        install = machine.get("install") if isinstance(machine, dict) else None
        if disk and isinstance(install, dict) and not install.get("disk"):
            install["disk"] = disk
    verdict = validate(docs, talos_version)
    already = set(validate(live, talos_version).errors)
    return replace(verdict, errors=tuple(e for e in verdict.errors if e not in already))


def _install_disk(data: Mapping[str, Any]) -> str | None:
    machine = data.get("machine")
    install = machine.get("install") if isinstance(machine, dict) else None
    disk = install.get("disk") if isinstance(install, dict) else None
    return disk if isinstance(disk, str) and disk else None


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
    """What one node needs: the sanitized patches (at most two, in order), the diff pass each
    came from, what sanitizing removed, and whatever baseline plus those patches still fails
    to reproduce.

    ``passes`` name the patches: Omni's importer stores pass 1 as ConfigPatch ``10-<uuid>`` and
    pass 2 as ``20-<uuid>``, each only when non-empty, so a pass sanitized away leaves a gap
    rather than renumbering the other."""

    patches: tuple[tuple[Document, ...], ...]
    removed: tuple[Removal, ...]
    mismatches: tuple[Mismatch, ...]
    passes: tuple[int, ...]


def node_patches(baseline: Documents, live: Documents, *, check: bool = True) -> NodePatches:
    """Diff baseline to live, sanitize each patch, and verify the result reproduces live.

    ``check=False`` skips the verification (no mismatches), for callers that only need the
    patches again (apply's re-check of a plan whose verification already ran)."""
    patches: list[tuple[Document, ...]] = []
    passes: list[int] = []
    removed: list[Removal] = []
    for number, patch in enumerate(diff(baseline, live), start=1):
        cleaned = sanitize(patch)
        removed.extend(cleaned.removed)
        if not cleaned.empty:
            patches.append(cleaned.documents)
            passes.append(number)
    mismatches = verify(baseline, patches, live) if check else []
    return NodePatches(tuple(patches), tuple(removed), tuple(mismatches), tuple(passes))
