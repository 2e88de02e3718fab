"""Facts: what discovery read from Talos, Omni and the Image Factory, as plain frozen data.

``planner/discover.py`` fills these from provider calls; ``planner/checks.py`` and the plan
builder read them without any I/O, so every check is testable on hand-made facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReadError:
    """Why a fact could not be read: ``kind`` is the provider error class name."""

    kind: str  # "Unreachable", "PermissionDenied", "Timeout", "NotFound", ...
    message: str


@dataclass(frozen=True)
class Service:
    id: str
    state: str
    healthy: bool | None


@dataclass(frozen=True)
class EtcdMember:
    id: int
    hostname: str
    peer_urls: tuple[str, ...]
    is_learner: bool


@dataclass(frozen=True)
class NodeFacts:
    """Everything read from one node (``error`` set when the node could not be read at all)."""

    address: str
    error: ReadError | None = None
    role: str | None = None  # "controlplane" | "worker" ("init" is reported as controlplane)
    talos_version: str | None = None  # without "v"
    hostname: str | None = None
    machine_uuid: str | None = None
    config: bytes | None = field(default=None, repr=False)
    config_error: ReadError | None = None
    schematic_id: str | None = None
    schematic_yaml: str | None = field(default=None, repr=False)
    extensions: tuple[str, ...] = ()
    kubelet_image: str | None = None
    apiserver_image: str | None = None
    scheduler_image: str | None = None
    controller_manager_image: str | None = None
    services: tuple[Service, ...] = ()
    etcd_members: tuple[EtcdMember, ...] = ()
    cluster_name: str | None = None
    fact_mismatches: tuple[str, ...] = ()
    """Where the config states one value and Talos's resources report another."""


@dataclass(frozen=True)
class Member:
    """A Talos discovery ``Members`` entry as seen from the first control plane."""

    id: str
    hostname: str
    addresses: tuple[str, ...]
    machine_type: str


@dataclass(frozen=True)
class OmniFacts:
    url: str
    error: ReadError | None = None
    cluster_exists: bool = False
    cluster_import_in_progress: bool = False
    cluster_locked: bool = False
    talos_versions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Talos version (no "v") -> compatible Kubernetes versions, from TalosVersions."""
    machine_api_url: str | None = None
    events_port: int | None = None
    logs_port: int | None = None
    join_token: str | None = field(default=None, repr=False)
    factory_url: str | None = None
    machines: dict[str, bool] = field(default_factory=dict)
    """Machine UUID -> connected, for machines Omni already knows."""
    resource_versions: dict[str, str] = field(default_factory=dict)
    """``Type/id`` -> version of the Omni resources the plan depends on (for the fingerprint)."""


@dataclass(frozen=True)
class SchematicCheck:
    node: str
    schematic_id: str
    offline_id: str | None
    known_to_factory: bool | None
    error: ReadError | None = None
    known_at: str | None = None
    """The factory that holds the schematic (the import's, or Omni's secondary one)."""
    note: str = ""
    """Why the offline ID is not the last word (the factory confirmed the node's ID)."""
    schematic_yaml: str | None = field(default=None, repr=False, compare=False)
    """The node's schematic content, which apply registers (POST /schematics)."""


@dataclass(frozen=True)
class FactoryFacts:
    url: str | None
    """The factory the import uses (see ``planner.discover.choose_factory``); None: none."""
    error: ReadError | None = None
    checks: tuple[SchematicCheck, ...] = ()
    source: str = ""
    """Where ``url`` came from: ``spec``, ``talos-version``, ``omni``, or ``""`` (none)."""
    missing: str | None = None
    """Why there is no factory URL, in words (only when ``url`` is None)."""
    secondary_url: str | None = None
    """Omni's secondary factory, asked for schematics the primary does not know."""
    credentials: tuple[str, str] | None = field(default=None, repr=False, compare=False)
    """Omni's ImageFactoryAuth (username, password), sent to ``url``: never printed or saved."""
    ca_file: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.credentials is not None


@dataclass(frozen=True)
class HealthFacts:
    ran: bool
    ok: bool = True
    messages: tuple[str, ...] = ()
    error: str | None = None
    skipped: str | None = None
    """Why the check was not run although it was asked for (a node known unreachable: the
    check could only wait its whole timeout for it)."""


@dataclass(frozen=True)
class ClusterFacts:
    nodes: tuple[NodeFacts, ...]
    members: tuple[Member, ...] | None
    """None when discovery could not be read; () when Talos discovery is disabled."""
    omni: OmniFacts
    factory: FactoryFacts
    health: HealthFacts
    members_error: str | None = None
    """Why the members could not be read (then ``members`` is None)."""
    exposed_key_files: tuple[tuple[str, str, int], ...] = ()
    """(what, path, mode) of files holding private keys that others may read."""
    nodes_source: str = "spec"
    """``spec`` when the nodes are the spec's talos.nodes, ``discovery`` when they were taken
    from the discovery members because the spec lists none."""

    def node(self, address: str) -> NodeFacts:
        return next(n for n in self.nodes if n.address == address)

    @property
    def control_planes(self) -> tuple[NodeFacts, ...]:
        return tuple(n for n in self.nodes if n.role == "controlplane")
