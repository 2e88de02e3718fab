"""The lab's world: simulated Talos nodes, the cluster they form, and what changing a config does.

A :class:`SimNode` holds what a real node keeps: its identity (address, SMBIOS UUID, discovery
node ID), its role and versions, the *active* config and the *persistent* (on-disk) config as
exact bytes, its extensions (including the Image Factory ``schematic`` one), services and etcd
membership, and whether it is connected to Omni. :class:`Lab` holds the nodes, the shared
:class:`~lab.faults.Faults` and the Omni side, and implements the ``NodeGateway`` seam that
Omni pushes configs through.

The semantics of ``ApplyConfiguration`` live here (:meth:`Lab.apply_configuration`), not in the
gRPC layer, because three callers share them: apid, Omni's config push after unlock, and
``omniport lab patch``. Validation is a parameter (``lab.build.validate_config`` in the lab
process, which uses the config engine); this module only decides what happens to the node.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import difflib
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

import yaml

from omniport.lab.faults import Faults

CONTROLPLANE = "controlplane"
WORKER = "worker"

SIDEROLINK_KIND = "SideroLinkConfig"

DEFAULT_TRY_TIMEOUT = 60.0
"""Talos's ``ConfigTryTimeout``: a TRY apply rolls back after one minute unless told otherwise."""

REBOOT_SECONDS = 0.3
"""How long a simulated reboot keeps a node unreachable (a real one takes a minute or more)."""


class Mode(IntEnum):
    """``ApplyConfigurationRequest.Mode`` wire values."""

    REBOOT = 0
    AUTO = 1
    NO_REBOOT = 2
    STAGED = 3
    TRY = 4


class Code(IntEnum):
    """The gRPC status codes the simulated Talos answers with."""

    CANCELLED = 1
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    FAILED_PRECONDITION = 9
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14


class NodeError(Exception):
    """A call a node refuses: a gRPC ``code`` and the message the real Talos would send."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---- config reading ----


def load_documents(data: bytes) -> list[dict[str, Any]]:
    """The YAML documents of a machine config, in order (empty documents skipped).

    Raises ``ValueError`` with the parser's message when the bytes are not YAML mappings.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = [d for d in yaml.load_all(data, Loader=loader) if d is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"failed to parse YAML: {exc}") from None
    for doc in docs:
        if not isinstance(doc, dict):
            raise ValueError(f"a config document must be a mapping, not {type(doc).__name__}")
    return docs


def dump_yaml(obj: Any) -> str:
    """YAML text for resource specs and diffs: block style, keys in insertion order."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(obj, Dumper=dumper, sort_keys=False, default_flow_style=False, width=4096)


def _get(doc: Mapping[str, Any] | None, *path: str) -> Any:
    cur: Any = doc
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


@dataclass(frozen=True)
class ConfigView:
    """What the rest of the lab reads from a config; parsed once per config bytes."""

    documents: tuple[dict[str, Any], ...]

    @classmethod
    def parse(cls, data: bytes) -> ConfigView:
        return cls(tuple(load_documents(data)))

    @property
    def v1alpha1(self) -> dict[str, Any] | None:
        return next((d for d in self.documents if "kind" not in d), None)

    def kinds(self) -> list[str]:
        return [str(d.get("kind")) for d in self.documents if "kind" in d]

    def document(self, kind: str, name: str | None = None) -> dict[str, Any] | None:
        for doc in self.documents:
            if doc.get("kind") == kind and (name is None or doc.get("name") == name):
                return doc
        return None

    @property
    def has_siderolink(self) -> bool:
        return self.document(SIDEROLINK_KIND) is not None

    @property
    def machine_type(self) -> str:
        return str(_get(self.v1alpha1, "machine", "type") or WORKER)

    @property
    def hostname(self) -> str | None:
        """The hostname the config sets, or None (then the node's stable default applies)."""
        explicit = _get(self.v1alpha1, "machine", "network", "hostname")
        if explicit:
            return str(explicit)
        doc = self.document("HostnameConfig")
        if doc and doc.get("hostname"):
            return str(doc["hostname"])
        return None

    @property
    def cluster_name(self) -> str:
        name = _get(self.v1alpha1, "cluster", "clusterName")
        if not name:
            doc = self.document("KubeClusterConfig")
            name = doc.get("clusterName") if doc else None
        return str(name or "")

    @property
    def cluster_id(self) -> str:
        cid = _get(self.v1alpha1, "cluster", "id")
        if not cid:
            doc = self.document("DiscoveryIdentityConfig")
            cid = doc.get("clusterID") if doc else None
        return str(cid or "")

    def image(self, component: str, default: str) -> str:
        """The image of ``kubelet``/``apiServer``/``controllerManager``/``scheduler``/``proxy``."""
        if component == "kubelet":
            found = _get(self.v1alpha1, "machine", "kubelet", "image")
            doc = self.document("KubeletConfig")
        else:
            found = _get(self.v1alpha1, "cluster", component, "image")
            doc = self.document("Kube" + component[0].upper() + component[1:] + "Config")
        if not found and doc:
            found = doc.get("image")
        return str(found or default)

    def extra_args(self, component: str) -> dict[str, Any]:
        if component == "kubelet":
            args = _get(self.v1alpha1, "machine", "kubelet", "extraArgs")
        else:
            args = _get(self.v1alpha1, "cluster", component, "extraArgs")
        return dict(args) if isinstance(args, Mapping) else {}


def image_tag(image: str) -> str:
    """``registry.k8s.io/kube-apiserver:v1.34.1`` -> ``v1.34.1`` (empty when untagged)."""
    tail = image.rsplit("/", 1)[-1]
    return tail.split(":", 1)[1].split("@", 1)[0] if ":" in tail else ""


# ---- the node ----


@dataclass(frozen=True)
class Extension:
    """One ``ExtensionStatuses`` entry: a system extension the node booted with."""

    name: str
    version: str
    author: str
    description: str
    image: str = ""
    extra_info: str = ""


@dataclass
class Service:
    id: str
    state: str = "Running"
    healthy: bool = True


@dataclass
class SimNode:
    """One simulated Talos machine. Configs are exact bytes; everything else is derived."""

    address: str
    machine_uuid: str
    role: str
    talos_version: str
    """The running Talos tag, e.g. ``v1.11.5``."""
    default_hostname: str
    """The stable hostname Talos picks when the config sets none."""
    node_id: str
    """Discovery identity (``Identities.cluster.talos.dev/local``)."""
    config: bytes
    """The active config (``MachineConfigs/v1alpha1``)."""
    persistent: bytes = b""
    """The on-disk config (``MachineConfigs/persistent``); equals ``config`` unless staged/TRY."""
    extensions: list[Extension] = field(default_factory=list)
    schematic_id: str | None = None
    etcd_member_id: int = 0
    serial: str = ""
    joined_omni: bool = False
    joined_url: str = ""
    """The SideroLinkConfig apiUrl the node joined Omni with (a new one means a new dial)."""
    maintenance: bool = False
    """Wiped by a reset (Omni resets machines it removes from a cluster): no config, and only
    Talos' maintenance API, which a talosconfig's client certificate cannot reach."""
    boot_time: float = field(default_factory=time.time)
    reboot_until: float = 0.0
    generation: int = 0
    """Bumped on every change a watcher could see."""
    _view: ConfigView | None = field(default=None, repr=False)
    _view_of: bytes | None = field(default=None, repr=False)
    _previous_view: tuple[bytes, ConfigView] | None = field(default=None, repr=False)
    """The view of the config before this one: restoring it (rollback, a TRY that times out)
    needs no second parse."""
    _changed: asyncio.Event | None = field(default=None, repr=False)
    _try_task: asyncio.Task[None] | None = field(default=None, repr=False)
    _reboot_task: asyncio.Task[None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.persistent:
            self.persistent = self.config

    @property
    def view(self) -> ConfigView:
        if self._view is None or self._view_of is not self.config:
            current = self._view_of, self._view
            previous = self._previous_view
            if previous is not None and previous[0] == self.config:
                self._view = previous[1]
            elif current[1] is not None and current[0] == self.config:
                self._view = current[1]  # the same bytes in a new object
            else:
                self._view = ConfigView.parse(self.config)
            if current[0] is not None and current[1] is not None and current[0] != self.config:
                self._previous_view = current[0], current[1]
            self._view_of = self.config
        return self._view

    @property
    def is_controlplane(self) -> bool:
        return self.role == CONTROLPLANE

    @property
    def hostname(self) -> str:
        return self.view.hostname or self.default_hostname

    @property
    def kubernetes_version(self) -> str:
        """From the kubelet image tag, without the ``v`` (what Omni and the importer use)."""
        tag = image_tag(self.view.image("kubelet", ""))
        return tag.removeprefix("v")

    @property
    def config_sha256(self) -> str:
        return hashlib.sha256(self.config).hexdigest()

    @property
    def rebooting(self) -> bool:
        return self.reboot_until > time.monotonic()

    def services(self) -> list[Service]:
        ids = ["apid", "containerd", "cri", "dashboard", "kubelet", "machined", "syslogd", "udevd"]
        if self.is_controlplane:
            ids += ["etcd", "trustd"]
        return [Service(i) for i in sorted(ids)]

    # -- change notification (for COSI Watch) --

    def touch(self) -> None:
        self.generation += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_changed(self, generation: int) -> int:
        """Wait until ``generation`` is stale; return the current generation."""
        while self.generation == generation:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
        return self.generation


# ---- the Omni side, as the Talos side sees it ----


class OmniSide(Protocol):
    """The part of ``lab.omni.OmniSim`` the Talos side calls (see lab/README.md)."""

    async def on_node_joined(
        self,
        *,
        machine_uuid: str,
        address: str,
        hostname: str,
        talos_version: str,
        role: str,
        schematic_id: str | None,
        api_url: str,
    ) -> bool: ...

    async def on_node_left(self, machine_uuid: str) -> None: ...

    def connected(self, machine_uuid: str) -> bool: ...

    def resources(self) -> list[dict[str, Any]]: ...


class FactorySide(Protocol):
    """The part of ``lab.factory.LabFactory`` status reports: the requests it answered."""

    @property
    def requests(self) -> list[Any]: ...


@dataclass(frozen=True)
class ApplyResult:
    """The reply of one ApplyConfiguration, before it is put on the wire."""

    mode: Mode
    details: str
    warnings: tuple[str, ...] = ()


Validator = Callable[[bytes, str], tuple[ConfigView, list[str]]]
"""``(config bytes, talos version) -> (parsed config, warnings)``; raises NodeError."""


# Parts of the v1alpha1 document Talos 1.3-1.13 can change without a reboot
# (CanApplyImmediate); everything else in it needs one.
_LIVE_TOP = ("debug", "cluster")
_LIVE_MACHINE = (
    "ca",
    "acceptedCAs",
    "time",
    "certSANs",
    "install",
    "network",
    "sysfs",
    "sysctls",
    "logging",
    "controlPlane",
    "kubelet",
    "kernel",
    "registries",
    "pods",
    "seccompProfiles",
    "nodeLabels",
    "nodeAnnotations",
    "nodeTaints",
)
_LIVE_FEATURES = (
    "kubernetesTalosAPIAccess",
    "kubePrism",
    "hostDNS",
    "imageCache",
    "nodeAddressSortAlgorithm",
)


def _without_live_fields(doc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    out = copy.deepcopy(dict(doc))
    for key in _LIVE_TOP:
        out.pop(key, None)
    machine = out.get("machine")
    if isinstance(machine, dict):
        for key in _LIVE_MACHINE:
            machine.pop(key, None)
        features = machine.get("features")
        if isinstance(features, dict):
            for key in _LIVE_FEATURES:
                features.pop(key, None)
    return out


def text_diff(old: str, new: str) -> str:
    """A unified diff of two texts ('' when equal)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), "a", "b", n=3
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _equal_except(old: dict[str, Any], new: dict[str, Any], skip: tuple[str, ...]) -> bool:
    """``old == new`` once the keys in ``skip`` are dropped from both (nothing is copied)."""
    if old.keys() - skip != new.keys() - skip:
        return False
    return all(_same(value, new[key]) for key, value in old.items() if key not in skip)


def _same(a: Any, b: Any) -> bool:
    """Equality as a dict comparison applies it to values (identity first, as for NaN)."""
    return a is b or bool(a == b)


def _equal_without_live_fields(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """``_without_live_fields(old) == _without_live_fields(new)``, without the deep copies."""
    if old is None or new is None:
        return old is None and new is None
    if not _equal_except(old, new, (*_LIVE_TOP, "machine")):
        return False
    if ("machine" in old) != ("machine" in new):
        return False
    if "machine" not in old:
        return True
    machine, other = old["machine"], new["machine"]
    if not (isinstance(machine, dict) and isinstance(other, dict)):
        return _same(machine, other)  # at most one side is stripped: a dict never equals it
    if not _equal_except(machine, other, (*_LIVE_MACHINE, "features")):
        return False
    if ("features" in machine) != ("features" in other):
        return False
    if "features" not in machine:
        return True
    features, theirs = machine["features"], other["features"]
    if isinstance(features, dict) and isinstance(theirs, dict):
        return _equal_except(features, theirs, _LIVE_FEATURES)
    return _same(features, theirs)


def reboot_reason(current: ConfigView, new: ConfigView) -> str | None:
    """Why ``new`` cannot be applied live over ``current`` (None when it can)."""
    if _equal_without_live_fields(current.v1alpha1, new.v1alpha1):
        return None
    old_doc = _without_live_fields(current.v1alpha1)
    new_doc = _without_live_fields(new.v1alpha1)
    diff = text_diff(dump_yaml(old_doc) if old_doc else "", dump_yaml(new_doc) if new_doc else "")
    return f"this config change can't be applied in immediate mode\ndiff: {diff}"


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` for the durations Talos prints (``1m0s``, ``500ms``)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    return out + f"{secs:g}s"


def version_tuple(version: str) -> tuple[int, int, int]:
    core = version.strip().removeprefix("v").split("-", 1)[0].split("+", 1)[0]
    parts = [int(p) for p in core.split(".")[:3]]
    return (parts + [0, 0, 0])[0], (parts + [0, 0, 0])[1], (parts + [0, 0, 0])[2]


def minor_at_least(version: str, minor: int) -> bool:
    major, mnr, _ = version_tuple(version)
    return (major, mnr) >= (1, minor)


# ---- the lab ----


class Lab:
    """Every simulated node plus the shared faults and the Omni side.

    Implements ``NodeGateway`` (``push_config``, ``node_config``) for Omni.
    """

    def __init__(
        self,
        nodes: Iterable[SimNode],
        *,
        cluster_name: str,
        faults: Faults | None = None,
        validator: Validator | None = None,
        omni: OmniSide | None = None,
        factory_url: str | None = None,
        endpoint: str = "",
    ) -> None:
        self.nodes: list[SimNode] = list(nodes)
        self.cluster_name = cluster_name
        self.faults = faults if faults is not None else Faults()
        self.validator = validator
        self.omni = omni
        self.factory_url = factory_url
        self.factory: FactorySide | None = None
        """The lab's Image Factory, when it has one (status lists the requests it answered)."""
        self.endpoint = endpoint
        """The Kubernetes control-plane endpoint URL the configs carry."""
        self.by_address = {n.address: n for n in self.nodes}
        self.by_uuid = {n.machine_uuid: n for n in self.nodes}
        if len(self.by_address) != len(self.nodes) or len(self.by_uuid) != len(self.nodes):
            raise ValueError("node addresses and machine UUIDs must be unique")
        self.started = time.time()

    # -- lookup --

    @property
    def controlplanes(self) -> list[SimNode]:
        return [n for n in self.nodes if n.is_controlplane]

    @property
    def workers(self) -> list[SimNode]:
        return [n for n in self.nodes if not n.is_controlplane]

    def local_node(self) -> SimNode:
        """The node the apid endpoint itself runs on (the first control plane)."""
        return (self.controlplanes or self.nodes)[0]

    def find(self, key: str) -> SimNode | None:
        """A node by address, machine UUID or hostname."""
        node = self.by_address.get(key) or self.by_uuid.get(key)
        if node is None:
            node = next((n for n in self.nodes if n.hostname == key), None)
        return node

    # -- NodeGateway (Omni pushes) --

    def node_config(self, machine_uuid: str) -> bytes:
        node = self.by_uuid.get(machine_uuid)
        if node is None:
            raise KeyError(f"no machine {machine_uuid} in the lab")
        return node.config

    async def push_config(self, machine_uuid: str, config: bytes) -> None:
        """Omni's config push: an AUTO apply (errors propagate as NodeError)."""
        node = self.by_uuid.get(machine_uuid)
        if node is None:
            raise NodeError(Code.NOT_FOUND, f"no machine {machine_uuid} in the lab")
        if node.address in self.faults.unreachable or node.rebooting:
            raise NodeError(Code.UNAVAILABLE, f"machine {machine_uuid} is not reachable")
        await self.apply_configuration(node, config, Mode.AUTO)

    async def reset_machine(self, machine_uuid: str) -> None:
        """Talos Reset as Omni runs it: STATE and EPHEMERAL wiped, reboot into maintenance.

        An imported node's SideroLink lived in the wiped config, so it also drops off Omni.
        """
        node = self.by_uuid.get(machine_uuid)
        if node is None:
            raise NodeError(Code.NOT_FOUND, f"no machine {machine_uuid} in the lab")
        if node.address in self.faults.unreachable or node.rebooting:
            raise NodeError(Code.UNAVAILABLE, f"machine {machine_uuid} is not reachable")
        self._cancel_try(node)
        if node._reboot_task is not None and not node._reboot_task.done():
            node._reboot_task.cancel()
        node.config = node.persistent = b""
        node.maintenance = True
        node.boot_time = time.time()
        node.touch()
        await self.sync_omni(node)

    # -- applying configs --

    def validate(self, node: SimNode, data: bytes) -> tuple[ConfigView, list[str]]:
        if self.validator is not None:
            return self.validator(data, node.talos_version)
        try:
            return ConfigView.parse(data), []
        except ValueError as exc:
            raise NodeError(Code.INVALID_ARGUMENT, str(exc)) from None

    async def apply_configuration(
        self,
        node: SimNode,
        data: bytes,
        mode: Mode,
        *,
        dry_run: bool = False,
        try_timeout: float | None = None,
    ) -> ApplyResult:
        """ApplyConfiguration as Talos (1.3 and later) runs it on ``node``."""
        modern = minor_at_least(node.talos_version, 14)
        if mode is not Mode.TRY:
            self._cancel_try(node)
        view, warnings = self.validate(node, data)
        if minor_at_least(node.talos_version, 12) and view.v1alpha1 is None:
            raise NodeError(
                Code.INVALID_ARGUMENT,
                "the applied machine configuration doesn't contain v1alpha1 config, "
                "did you mean to patch the machine config instead?",
            )
        reason = None if modern else reboot_reason(node.view, view)
        suffix = ""
        label = mode
        if mode is Mode.REBOOT and modern:
            raise NodeError(
                Code.UNIMPLEMENTED, "apply configuration in reboot mode is no longer supported"
            )
        if mode in (Mode.NO_REBOOT, Mode.TRY):
            if reason:
                raise NodeError(Code.INVALID_ARGUMENT, reason)
            details = "Applied configuration without a reboot"
        elif mode is Mode.STAGED:
            details = "Staged configuration to be applied after the next reboot"
        elif mode is Mode.AUTO:
            if reason:
                label, details, suffix = Mode.REBOOT, "Applied configuration with a reboot", reason
            else:
                label, details = Mode.NO_REBOOT, "Applied configuration without a reboot"
        else:
            details = "Applied configuration with a reboot"
        if suffix:
            suffix = ": " + suffix
        if dry_run:
            diff = text_diff(node.config.decode(errors="replace"), data.decode(errors="replace"))
            return ApplyResult(
                label,
                f"Dry run summary:\n{details} (skipped in dry-run).\n"
                f"Config diff:\n\n{diff or 'No changes.'}",
                tuple(warnings),
            )
        if label is Mode.TRY:
            timeout = DEFAULT_TRY_TIMEOUT if try_timeout is None else try_timeout
            details += (
                "\nThe config is applied in 'try' mode and will be automatically reverted "
                f"back in {go_duration(timeout)}"
            )
            # Talos reverts to the config that ran before the try, not to the persistent one.
            previous = node.config
            await self._set_active(node, data)
            self._schedule_rollback(node, timeout, previous)
        elif label is Mode.NO_REBOOT:
            node.persistent = data
            await self._set_active(node, data)
        elif label is Mode.STAGED:
            node.persistent = data
            node.touch()
        else:  # REBOOT
            node.persistent = data
            node.touch()
            self._schedule_reboot(node)
        return ApplyResult(label, details + suffix, tuple(warnings))

    async def _set_active(self, node: SimNode, data: bytes) -> None:
        node.config = data
        node.touch()
        await self.sync_omni(node)

    def _cancel_try(self, node: SimNode) -> None:
        if node._try_task is not None and not node._try_task.done():
            node._try_task.cancel()
        node._try_task = None

    def _schedule_rollback(self, node: SimNode, timeout: float, previous: bytes) -> None:
        self._cancel_try(node)

        async def rollback() -> None:
            await asyncio.sleep(timeout)
            node._try_task = None
            await self._set_active(node, previous)

        node._try_task = asyncio.get_running_loop().create_task(rollback())

    def _schedule_reboot(self, node: SimNode) -> None:
        node.reboot_until = time.monotonic() + REBOOT_SECONDS

        async def reboot() -> None:
            await asyncio.sleep(REBOOT_SECONDS)
            node.boot_time = time.time()
            node._reboot_task = None
            await self._set_active(node, node.persistent)

        if node._reboot_task is not None and not node._reboot_task.done():
            node._reboot_task.cancel()
        node._reboot_task = asyncio.get_running_loop().create_task(reboot())

    # -- Omni membership --

    async def sync_omni(self, node: SimNode) -> None:
        """Connect or disconnect ``node`` from Omni to match its active config and faults."""
        if self.omni is None:
            return
        wants = node.view.has_siderolink and not self.faults.never_connect
        link = node.view.document(SIDEROLINK_KIND) or {}
        if wants and node.joined_omni and str(link.get("apiUrl") or "") != node.joined_url:
            # another URL or token: Talos drops the link and dials again with the new one
            node.joined_omni = False
            await self.omni.on_node_left(node.machine_uuid)
        if wants and not node.joined_omni:
            # Omni refuses a wrong URL or join token; the node keeps retrying (next sync).
            node.joined_omni = await self.omni.on_node_joined(
                machine_uuid=node.machine_uuid,
                address=node.address,
                hostname=node.hostname,
                talos_version=node.talos_version,
                role=node.role,
                schematic_id=node.schematic_id,
                api_url=str(link.get("apiUrl") or ""),
            )
            node.joined_url = str(link.get("apiUrl") or "") if node.joined_omni else ""
        elif not node.view.has_siderolink and node.joined_omni:
            node.joined_omni = False
            await self.omni.on_node_left(node.machine_uuid)

    async def sync_all(self) -> None:
        """After a fault change: nodes that were kept from connecting try again."""
        for node in self.nodes:
            await self.sync_omni(node)

    async def close(self) -> None:
        for node in self.nodes:
            for task in (node._try_task, node._reboot_task):
                if task is not None and not task.done():
                    task.cancel()

    # -- status --

    def status(self, *, with_configs: bool = False) -> dict[str, Any]:
        """The ``omniport lab status --json`` document (a stable contract)."""
        nodes = []
        for node in self.nodes:
            entry: dict[str, Any] = {
                "address": node.address,
                "hostname": node.hostname,
                "machine_id": node.machine_uuid,
                "role": node.role,
                "talos_version": node.talos_version,
                "kubernetes_version": node.kubernetes_version,
                "config_sha256": node.config_sha256,
                "connected": node.joined_omni
                and (self.omni is None or self.omni.connected(node.machine_uuid)),
                "maintenance": node.maintenance,
            }
            if with_configs:
                entry["config"] = node.config.decode("utf-8", errors="replace")
            nodes.append(entry)
        resources = self.omni.resources() if self.omni is not None else []
        requests = list(self.factory.requests) if self.factory is not None else []
        return {
            "nodes": nodes,
            "factory": {
                "requests": [
                    {"method": r.method, "path": r.path, "status": r.status} for r in requests
                ]
            },
            "omni": {
                "resources": [
                    {
                        "type": r.get("type", ""),
                        "id": r.get("id", ""),
                        "labels": dict(r.get("labels") or {}),
                        "annotations": dict(r.get("annotations") or {}),
                        "phase": r.get("phase", ""),
                    }
                    for r in resources
                ]
            },
        }


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
