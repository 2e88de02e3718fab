"""The plan: plain, frozen data describing what apply will do, and what it was computed from.

Nothing here does I/O or computes: ``planner/planfile.py`` (de)serializes, ``planner/render.py``
draws it, ``planner/execute/apply.py`` consumes it. Fields marked *trusted* are what apply acts
on after it has re-derived and compared them; everything else is for people reading the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

FORMAT_VERSION = 1


class Action(Enum):
    """What happens to one addressed object; valued by the symbol the plan shows."""

    CREATE = "+"
    UPDATE = "~"
    DELETE = "-"
    NOOP = " "

    @property
    def word(self) -> str:
        return {"+": "create", "~": "update", "-": "delete", " ": "no-op"}[self.value]


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """A fact about the cluster that matters for the import; errors block apply unless accepted."""

    code: str
    severity: Severity
    message: str
    fix: str = ""
    node: str | None = None
    accepted: bool = False
    details: tuple[str, ...] = ()
    """Field-by-field detail lines (residue paths, unlock preview), already redacted."""

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.ERROR and not self.accepted


@dataclass(frozen=True)
class Patch:
    """One config patch Omni will hold for a node (ConfigPatches ``10-<uuid>``/``20-<uuid>``)."""

    id: str
    sha256: str
    """*trusted*: sha256 of the exact patch text apply will send; re-derived and compared."""
    redacted: str
    """The patch text with every secret shown as ``(sensitive value)``; display only."""


@dataclass(frozen=True)
class NodePlan:
    address: str
    hostname: str
    machine_uuid: str
    role: str  # "controlplane" | "worker"
    talos_version: str
    schematic_id: str | None
    config_sha256: str
    """*trusted*: sha256 of the live config bytes the patches were computed from."""
    patches: tuple[Patch, ...] = ()
    removed: tuple[str, ...] = ()
    """Paths Omni's denylist strips from this node's patches (they stay on the node)."""


@dataclass(frozen=True)
class Change:
    """One step of the import: an Omni resource to create, or a node change."""

    address: str
    """Terraform-style address, e.g. ``omni_cluster.prod`` or ``talos_join.10.0.0.2``."""
    action: Action
    resource_type: str
    resource_id: str
    after: dict[str, Any] = field(default_factory=dict)
    """The state after apply, redacted (no secret value ever appears here)."""
    node: str | None = None


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    talos_version: str
    kubernetes_version: str
    initial_talos_version: str
    initial_kubernetes_version: str
    omni_url: str
    factory_url: str | None


@dataclass(frozen=True)
class SpecLocation:
    """Where the spec file was when the plan was made (see ``planner/speclocation.py``)."""

    path: str
    """Relative to the git repository's root (``/``-separated) when ``in_repository``, else
    absolute."""
    in_repository: bool


@dataclass(frozen=True)
class Plan:
    """Everything apply needs to decide whether the world still matches what was reviewed."""

    tool_version: str
    created_at: str
    """RFC 3339 UTC; the only field that differs between two plans of an unchanged world."""
    spec: dict[str, Any]
    spec_sha256: str
    cluster: ClusterInfo
    nodes: tuple[NodePlan, ...]
    findings: tuple[Finding, ...]
    changes: tuple[Change, ...]
    secrets_sha256: str
    """*trusted*: sha256 of the secrets bundle apply will send to Omni (never the bundle)."""
    fingerprint: str
    """*trusted*: sha256 over everything discovered; apply refuses when it differs."""
    format_version: int = FORMAT_VERSION
    nodes_source: str = "spec"
    """Where ``nodes`` came from: ``spec`` (talos.nodes) or ``discovery`` (Talos discovery
    Members, when the spec lists no nodes); display only (the fingerprint covers the members)."""
    spec_location: SpecLocation | None = None
    """Where the spec was: apply resolves the recorded spec's relative paths from its directory,
    not from the plan file's (so a plan travels). None: the plan file's directory."""
    seal: str | None = None
    """HMAC-SHA256 of the whole plan keyed by a key derived from the cluster's secrets bundle
    (``planfile.sealed``): only someone holding those secrets can write a plan apply accepts, so
    apply tells a plan edited and re-checksummed by hand (forged) from a stale one."""

    @property
    def blocking_findings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.blocking)

    @property
    def counts(self) -> tuple[int, int, int]:
        """(add, change, destroy) as Terraform's summary line counts them."""
        add = sum(1 for c in self.changes if c.action is Action.CREATE)
        change = sum(1 for c in self.changes if c.action is Action.UPDATE)
        destroy = sum(1 for c in self.changes if c.action is Action.DELETE)
        return add, change, destroy

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NOOP for c in self.changes)
