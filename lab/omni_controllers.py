"""The Omni controllers an import relies on, over the lab's store (omni-wire.md §5).

Each controller names the resource types it watches and maps a change to the keys it must
reconcile; the runtime queues those keys and calls ``reconcile(key)`` until nothing is pending,
so work is proportional to what changed (1000 machines stay cheap). Reconciles are level-based:
they read the current state and converge it, so a repeated or late event is harmless.

Controllers write to the store directly (no authorization or validation, like Omni's internal
actor) and own what they create: the owner names below are Omni's controller names.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from omniport.lab.omni_store import Event, Resource, Store, equal, exists
from omniport.lab.omni_types import (
    CLUSTER_BOOTSTRAP_STATUSES,
    CLUSTER_MACHINE_CONFIG_STATUSES,
    CLUSTER_SECRETS,
    JOIN_TOKEN_USAGES,
    LOAD_BALANCER_CONFIGS,
    TYPES,
    USER_MANAGED_DESTROYABLE,
    ClusterBootstrapData,
    ClusterSecretsData,
    ConfigStatusData,
    LoadBalancerData,
)
from omniport.providers.codec.omni_names import (
    ANNOTATION_CLUSTER_LOCKED,
    ANNOTATION_IMPORT_IN_PROGRESS,
    CLUSTER_MACHINES,
    CLUSTER_STATUSES,
    CLUSTERS,
    CONFIG_PATCHES,
    DEFAULT_NAMESPACE,
    IMPORTED_CLUSTER_SECRETS,
    LABEL_CLUSTER,
    LABEL_CLUSTER_MACHINE,
    LABEL_INSTALLED,
    LABEL_MACHINE_SET,
    LABEL_ROLE_CONTROLPLANE,
    LABEL_ROLE_WORKER,
    LABEL_TAINTED_BY_IMPORTING,
    LABEL_TALOS_VERSION,
    LINKS,
    MACHINE_SET_NODES,
    MACHINE_SETS,
    MACHINE_STATUSES,
    MACHINES,
    PHASE_RUNNING,
    PHASE_TEARING_DOWN,
)
from omniport.providers.wire.omni.specs import omni_pb2

log = logging.getLogger("lab.omni")

MACHINE_CONTROLLER = "MachineController"
MACHINE_STATUS_CONTROLLER = "MachineStatusController"
MACHINE_SET_STATUS_CONTROLLER = "MachineSetStatusController"
CLUSTER_CONTROLLER = "ClusterController"
CLUSTER_STATUS_CONTROLLER = "ClusterStatusController"
SECRETS_CONTROLLER = "SecretsController"
JOIN_TOKEN_USAGE_CONTROLLER = "JoinTokenUsageController"
LOAD_BALANCER_CONTROLLER = "LoadBalancerController"
CONFIG_STATUS_CONTROLLER = "ClusterMachineConfigStatusController"


class NodeGateway(Protocol):
    """How Omni reaches the lab's nodes (implemented by the Talos side of the lab)."""

    async def push_config(self, machine_uuid: str, config: bytes) -> None: ...

    def node_config(self, machine_uuid: str) -> bytes: ...

    async def reset_machine(self, machine_uuid: str) -> None:
        """Talos Reset as Omni calls it on a machine leaving a cluster: wipe, then maintenance."""
        ...


@dataclass
class NodeInfo:
    """What Omni learns about a machine over SideroLink (from the node's own APIs)."""

    machine_uuid: str
    address: str
    hostname: str
    talos_version: str
    role: str
    schematic_id: str | None
    connected: bool = True
    initial_talos_version: str = ""


@dataclass(frozen=True)
class RenderRequest:
    """Everything the config render step needs for one machine (see ``lab/omni_render.py``)."""

    cluster_id: str
    machine_uuid: str
    role: str  # "controlplane" or "worker"
    talos_version: str
    kubernetes_version: str
    secrets_yaml: str
    endpoint: str
    patches: tuple[str, ...]


@dataclass
class Context:
    """What controllers share: the store, the node facts, the gateway and the render step."""

    store: Store
    nodes: dict[str, NodeInfo]
    gateway: NodeGateway
    render: Callable[[RenderRequest], bytes]
    siderolink_host: str
    load_balancer_port_base: int
    retry_delay: float = 0.5
    patch_text: Callable[[Any], str] = field(default=lambda spec: str(spec.data))
    system_patches: Callable[[], bool] = field(default=lambda: False)
    """Whether Omni adds its own system patch to each cluster (lab/omni_system_patches.py)."""
    """A ConfigPatch spec's YAML (``compressed_data`` decoded)."""


Key = Any


class Controller:
    name: str = ""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        raise NotImplementedError

    async def reconcile(self, key: Key) -> None:
        raise NotImplementedError

    def observe(self, event: Event) -> None:
        """Called by the runtime for every store event, before keys are queued; controllers
        that keep derived state (to reconcile in time independent of the cluster's size)
        update it here from the store's current state, so a replayed event is harmless."""

    # ---- helpers ---------------------------------------------------------------------------

    def peek(self, type_: str, id_: str) -> Resource | None:
        return self.store.peek(TYPES[type_].namespace, type_, id_)

    def scan(self, type_: str, label: str, value: str) -> list[Resource]:
        return self.store.scan(TYPES[type_].namespace, type_, [equal(label, value)])

    def count(self, type_: str, label: str, value: str) -> int:
        return self.store.count(TYPES[type_].namespace, type_, [equal(label, value)])

    def ensure(
        self,
        type_: str,
        id_: str,
        spec: Any,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        keep_annotations: bool = False,
    ) -> Resource:
        """Create or update an owned resource; no write (and no event) when nothing changes."""
        info = TYPES[type_]
        cur = self.store.peek(info.namespace, type_, id_)
        labels = dict(labels or {})
        annotations = dict(annotations or {})
        if cur is None:
            res = Resource(info.namespace, type_, id_, spec, labels=labels, annotations=annotations)
            return self.store.create(res, owner=info.owner)
        if keep_annotations:
            annotations = {**cur.annotations, **annotations}
        if cur.spec == spec and cur.labels == labels and cur.annotations == annotations:
            return cur
        new = cur.copy()
        new.spec, new.labels, new.annotations = spec, labels, annotations
        return self.store.update(new, owner=info.owner)

    def destroy_owned(self, type_: str, id_: str) -> bool:
        """Destroy an owned resource if present; False while finalizers hold it."""
        info = TYPES[type_]
        cur = self.store.peek(info.namespace, type_, id_)
        if cur is None:
            return True
        if cur.finalizers:
            if cur.phase == PHASE_RUNNING:
                self.store.teardown(info.namespace, type_, id_, owner=info.owner)
            return False
        self.store.destroy(info.namespace, type_, id_, owner=info.owner)
        return True

    def teardown_user(self, res: Resource) -> None:
        if res.phase == PHASE_RUNNING:
            self.store.teardown(res.namespace, res.type, res.id, owner=res.owner)

    def add_finalizer(self, type_: str, id_: str) -> None:
        self.store.add_finalizer(TYPES[type_].namespace, type_, id_, self.name)

    def remove_finalizer(self, type_: str, id_: str) -> None:
        self.store.remove_finalizer(TYPES[type_].namespace, type_, id_, self.name)


def _same(res: Resource) -> list[Key]:
    return [res.id]


def _cluster_label(res: Resource) -> list[Key]:
    cluster = res.labels.get(LABEL_CLUSTER)
    return [cluster] if cluster else []


def _role(labels: dict[str, str]) -> str:
    return "controlplane" if LABEL_ROLE_CONTROLPLANE in labels else "worker"


# ---- machines ------------------------------------------------------------------------------


class MachineController(Controller):
    """Links -> Machines; a torn-down Link takes its Machine and JoinTokenUsage with it."""

    name = MACHINE_CONTROLLER

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        return {LINKS: _same, MACHINES: _same}

    async def reconcile(self, key: Key) -> None:
        link = self.peek(LINKS, key)
        if link is not None and link.phase == PHASE_RUNNING:
            self.add_finalizer(LINKS, key)
            spec = omni_pb2.MachineSpec(
                management_address=link.spec.node_subnet.split("/")[0],
                connected=link.spec.connected,
            )
            self.ensure(MACHINES, key, spec)
            return
        if not self.destroy_owned(MACHINES, key):
            return  # wait for the Machine's finalizers
        self.destroy_owned(JOIN_TOKEN_USAGES, key)
        if link is not None:
            self.remove_finalizer(LINKS, key)


class MachineStatusController(Controller):
    """Machines + what the node reports -> MachineStatuses (cluster and role once allocated)."""

    name = MACHINE_STATUS_CONTROLLER

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        return {MACHINES: _same, CLUSTER_MACHINES: _same}

    async def reconcile(self, key: Key) -> None:
        machine = self.peek(MACHINES, key)
        node = self.ctx.nodes.get(key)
        if machine is None or machine.phase == PHASE_TEARING_DOWN or node is None:
            self.destroy_owned(MACHINE_STATUSES, key)
            return
        cm = self.peek(CLUSTER_MACHINES, key)
        spec = omni_pb2.MachineStatusSpec(
            talos_version=_with_v(node.talos_version),
            management_address=machine.spec.management_address,
            connected=machine.spec.connected,
            maintenance=False,
            initial_talos_version=_with_v(node.initial_talos_version or node.talos_version),
        )
        spec.network.hostname = node.hostname
        spec.network.addresses.append(node.address)
        if node.schematic_id:
            spec.schematic.full_id = node.schematic_id
        if cm is not None:
            spec.cluster = cm.labels.get(LABEL_CLUSTER, "")
        role = _role(cm.labels) if cm is not None else node.role
        spec.role = (
            omni_pb2.MachineStatusSpec.CONTROL_PLANE
            if role in ("controlplane", "init")
            else omni_pb2.MachineStatusSpec.WORKER
        )
        labels = {LABEL_CLUSTER: spec.cluster} if spec.cluster else {}
        # Omni derives these labels from the status; its MachineSetNode validation reads them.
        # A lab node runs an installed Talos (a running cluster), never one booted from ISO.
        if spec.talos_version:
            labels[LABEL_TALOS_VERSION] = spec.talos_version
        labels[LABEL_INSTALLED] = ""
        self.ensure(MACHINE_STATUSES, key, spec, labels=labels)


def _with_v(version: str) -> str:
    return version if not version or version.startswith("v") else "v" + version


# ---- machine sets --------------------------------------------------------------------------


def _locked_frozen(cluster: Resource) -> bool:
    """While locked (and not importing) Omni skips MachineSet reconcile and config apply."""
    return (
        cluster.phase == PHASE_RUNNING
        and ANNOTATION_CLUSTER_LOCKED in cluster.annotations
        and ANNOTATION_IMPORT_IN_PROGRESS not in cluster.annotations
    )


class ClusterMachineController(Controller):
    """MachineSetNodes -> ClusterMachines (once the machine has a MachineStatus), with finalizers
    on the node and Machine; a ClusterMachine that goes away resets its machine first."""

    name = MACHINE_SET_STATUS_CONTROLLER

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        def by_machine_set(res: Resource) -> list[Key]:
            return [n.id for n in self.scan(MACHINE_SET_NODES, LABEL_MACHINE_SET, res.id)]

        def by_cluster(res: Resource) -> list[Key]:
            return [n.id for n in self.scan(MACHINE_SET_NODES, LABEL_CLUSTER, res.id)]

        return {
            MACHINE_SET_NODES: _same,
            CLUSTER_MACHINES: _same,
            MACHINES: _same,
            MACHINE_STATUSES: _same,
            MACHINE_SETS: by_machine_set,
            CLUSTERS: by_cluster,
        }

    async def reconcile(self, key: Key) -> None:
        msn = self.peek(MACHINE_SET_NODES, key)
        ms = cluster = None
        if msn is not None:
            ms = self.peek(MACHINE_SETS, msn.labels.get(LABEL_MACHINE_SET, ""))
            cluster = self.peek(CLUSTERS, msn.labels.get(LABEL_CLUSTER, ""))
        if cluster is not None and _locked_frozen(cluster):
            return
        wanted = (
            msn is not None
            and msn.phase == PHASE_RUNNING
            and ms is not None
            and ms.phase == PHASE_RUNNING
            and cluster is not None
            and cluster.phase == PHASE_RUNNING
        )
        if wanted and self.peek(CLUSTER_MACHINES, key) is None:
            # Omni's MachineSet controller creates a ClusterMachine only for a node whose
            # MachineStatus exists; until the machine has joined, its MachineSetNode waits.
            wanted = self.peek(MACHINE_STATUSES, key) is not None
            if not wanted:
                return
        if wanted:
            assert msn is not None and ms is not None and cluster is not None
            labels = {LABEL_CLUSTER: cluster.id, LABEL_MACHINE_SET: ms.id}
            role_label = (
                LABEL_ROLE_CONTROLPLANE
                if LABEL_ROLE_CONTROLPLANE in ms.labels
                else LABEL_ROLE_WORKER
            )
            labels[role_label] = ""
            spec = omni_pb2.ClusterMachineSpec(kubernetes_version=cluster.spec.kubernetes_version)
            self.add_finalizer(MACHINE_SET_NODES, key)
            if self.peek(MACHINES, key) is not None:
                self.add_finalizer(MACHINES, key)
            self.ensure(CLUSTER_MACHINES, key, spec, labels=labels)
            return
        cm = self.peek(CLUSTER_MACHINES, key)
        if cm is not None and not await self._reset_before_release(cm):
            return
        if not self.destroy_owned(CLUSTER_MACHINES, key):
            return
        self.remove_finalizer(MACHINES, key)
        self.remove_finalizer(MACHINE_SET_NODES, key)

    async def _reset_before_release(self, cm: Resource) -> bool:
        """Omni resets (wipes) a machine whose ClusterMachine goes away, before letting it go.

        The only exemption is the one import abort relies on: the Cluster is locked, tearing
        down, and its ClusterStatus is still ``tainted-by-importing``. No MachineStatus, or a
        Machine that is gone or tearing down, also means no reset (there is nothing to reach).
        A machine that must be reset but is not connected holds its ClusterMachine until it
        is (False: try again on the next Machine event). True once the machine may be released.
        """
        key = cm.id
        machine = self.peek(MACHINES, key)
        if (
            self.peek(MACHINE_STATUSES, key) is None
            or machine is None
            or machine.phase != PHASE_RUNNING
        ):
            return True
        cluster_id = cm.labels.get(LABEL_CLUSTER, "")
        cluster = self.peek(CLUSTERS, cluster_id)
        status = self.peek(CLUSTER_STATUSES, cluster_id)
        if cluster is None or status is None:
            return True  # Omni cannot decide and retries; here the cluster is already gone
        if (
            ANNOTATION_CLUSTER_LOCKED in cluster.annotations
            and LABEL_TAINTED_BY_IMPORTING in status.labels
            and cluster.phase == PHASE_TEARING_DOWN
        ):
            log.info("machine %s: removed from cluster %s without reset", key, cluster_id)
            return True
        if not machine.spec.connected:
            log.info("machine %s: must be reset but is not connected; waiting", key)
            return False
        log.info("machine %s: resetting (leaving cluster %s)", key, cluster_id)
        await self.ctx.gateway.reset_machine(key)
        return True


class MachineSetController(Controller):
    """Holds a MachineSet while it has nodes; tearing it down tears its MachineSetNodes down."""

    name = "MachineSetController"

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        def by_label(res: Resource) -> list[Key]:
            ms = res.labels.get(LABEL_MACHINE_SET)
            return [ms] if ms else []

        return {MACHINE_SETS: _same, MACHINE_SET_NODES: by_label, CLUSTER_MACHINES: by_label}

    async def reconcile(self, key: Key) -> None:
        ms = self.peek(MACHINE_SETS, key)
        if ms is None:
            return
        if ms.phase == PHASE_RUNNING:
            self.add_finalizer(MACHINE_SETS, key)
            return
        nodes = self.scan(MACHINE_SET_NODES, LABEL_MACHINE_SET, key)
        for node in nodes:
            self.teardown_user(node)
        if nodes or self.scan(CLUSTER_MACHINES, LABEL_MACHINE_SET, key):
            return
        self.remove_finalizer(MACHINE_SETS, key)


# ---- clusters ------------------------------------------------------------------------------


class ClusterController(Controller):
    """Cluster teardown: tear down its MachineSets and ConfigPatches, wait, drop the secrets."""

    name = CLUSTER_CONTROLLER

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        return {
            CLUSTERS: _same,
            MACHINE_SETS: _cluster_label,
            CONFIG_PATCHES: _cluster_label,
            CLUSTER_MACHINES: _cluster_label,
            IMPORTED_CLUSTER_SECRETS: _same,
        }

    async def reconcile(self, key: Key) -> None:
        cluster = self.peek(CLUSTERS, key)
        if cluster is None:
            return
        if cluster.phase == PHASE_RUNNING:
            self.add_finalizer(CLUSTERS, key)
            return
        sets = self.scan(MACHINE_SETS, LABEL_CLUSTER, key)
        for res in sets + self.scan(CONFIG_PATCHES, LABEL_CLUSTER, key):
            self.teardown_user(res)
        if sets or self.scan(CLUSTER_MACHINES, LABEL_CLUSTER, key):
            return
        imported = self.peek(IMPORTED_CLUSTER_SECRETS, key)
        if imported is not None:
            self.store.destroy(imported.namespace, imported.type, imported.id, owner=imported.owner)
        self.remove_finalizer(CLUSTERS, key)


class SecretsController(Controller):
    """ImportedClusterSecrets -> ClusterSecrets (imported) once the control-plane set exists;
    then the imported copy is destroyed (Omni's cleanup controller)."""

    name = SECRETS_CONTROLLER

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        return {
            CLUSTERS: _same,
            IMPORTED_CLUSTER_SECRETS: _same,
            MACHINE_SETS: _cluster_label,
            CLUSTER_SECRETS: _same,
        }

    async def reconcile(self, key: Key) -> None:
        cluster = self.peek(CLUSTERS, key)
        secrets = self.peek(CLUSTER_SECRETS, key)
        imported = self.peek(IMPORTED_CLUSTER_SECRETS, key)
        if cluster is None:
            self.destroy_owned(CLUSTER_SECRETS, key)
            return
        if cluster.phase != PHASE_RUNNING:
            return
        if secrets is None:
            control_planes = self.peek(MACHINE_SETS, f"{key}-control-planes")
            if imported is None or imported.phase != PHASE_RUNNING or control_planes is None:
                return
            data = ClusterSecretsData(data=imported.spec.data, imported=True)
            secrets = self.ensure(CLUSTER_SECRETS, key, data)
        if imported is not None and secrets.spec.imported:
            self.store.destroy(imported.namespace, imported.type, imported.id, owner=imported.owner)


class LoadBalancerController(Controller):
    """Gives each cluster a port for Omni's Kubernetes API load balancer over SideroLink."""

    name = LOAD_BALANCER_CONTROLLER

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        return {CLUSTERS: _same}

    async def reconcile(self, key: Key) -> None:
        if self.peek(CLUSTERS, key) is None:
            self.destroy_owned(LOAD_BALANCER_CONFIGS, key)
            return
        if self.peek(LOAD_BALANCER_CONFIGS, key) is not None:
            return
        taken = {
            r.spec.bind_port for r in self.store.scan(DEFAULT_NAMESPACE, LOAD_BALANCER_CONFIGS)
        }
        port = self.ctx.load_balancer_port_base
        while port in taken:
            port += 1
        endpoint = f"https://[{self.ctx.siderolink_host}]:{port}"
        self.ensure(LOAD_BALANCER_CONFIGS, key, LoadBalancerData(port, endpoint))


class ClusterStatusController(Controller):
    """ClusterStatus: phase and counts, ``tainted-by-importing``, mirrored ``cluster-locked``.

    Counts come from the store's label index, and which ClusterMachines have a connected
    Machine is kept per cluster as events arrive, so a reconcile does not walk the cluster.
    """

    name = CLUSTER_STATUS_CONTROLLER

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._connected: dict[str, set[str]] = {}
        """Cluster ID -> IDs of its ClusterMachines whose Machine is connected."""
        self._connected_in: dict[str, str] = {}
        """ClusterMachine ID -> the cluster it counts as connected in."""

    def observe(self, event: Event) -> None:
        if event.resource.type not in (CLUSTER_MACHINES, MACHINES):
            return
        id_ = event.resource.id
        cm = self.peek(CLUSTER_MACHINES, id_)
        machine = self.peek(MACHINES, id_)
        cluster = None
        if cm is not None and machine is not None and machine.spec.connected:
            cluster = cm.labels.get(LABEL_CLUSTER)
        before = self._connected_in.get(id_)
        if before == cluster:
            return
        if before is not None:
            members = self._connected[before]
            members.discard(id_)
            if not members:
                del self._connected[before]
            del self._connected_in[id_]
        if cluster is not None:
            self._connected.setdefault(cluster, set()).add(id_)
            self._connected_in[id_] = cluster

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        def by_machine(res: Resource) -> list[Key]:
            cm = self.peek(CLUSTER_MACHINES, res.id)
            return _cluster_label(cm) if cm is not None else []

        return {
            CLUSTERS: _same,
            CLUSTER_MACHINES: _cluster_label,
            CLUSTER_SECRETS: _same,
            MACHINES: by_machine,
        }

    async def reconcile(self, key: Key) -> None:
        cluster = self.peek(CLUSTERS, key)
        if cluster is None:
            self.destroy_owned(CLUSTER_STATUSES, key)
            return
        machines = self.count(CLUSTER_MACHINES, LABEL_CLUSTER, key)
        up = self._connected.get(key, set())
        connected = len(up)
        cps = self.store.scan(
            TYPES[CLUSTER_MACHINES].namespace,
            CLUSTER_MACHINES,
            [(*equal(LABEL_CLUSTER, key), exists(LABEL_ROLE_CONTROLPLANE))],
        )
        cps_up = [cm for cm in cps if cm.id in up]
        phases = omni_pb2.ClusterStatusSpec
        if cluster.phase == PHASE_TEARING_DOWN:
            phase = phases.DESTROYING
        elif machines and connected < machines:
            phase = phases.SCALING_UP
        elif machines:
            phase = phases.RUNNING
        else:
            phase = phases.UNKNOWN
        current = self.peek(CLUSTER_STATUSES, key)
        initial = (
            current.spec.initial_talos_version if current is not None else ""
        ) or cluster.spec.talos_version
        ready = bool(machines) and connected == machines
        spec = omni_pb2.ClusterStatusSpec(
            available=bool(cps_up),
            phase=phase,
            ready=ready,
            kubernetesAPIReady=bool(cps_up),
            controlplaneReady=bool(cps) and len(cps_up) == len(cps),
            has_connected_control_planes=bool(cps_up),
            talos_version=cluster.spec.talos_version,
            kubernetes_version=cluster.spec.kubernetes_version,
            initial_talos_version=initial,
        )
        spec.machines.total = machines
        spec.machines.healthy = connected
        spec.machines.connected = connected
        spec.machines.requested = self.count(MACHINE_SET_NODES, LABEL_CLUSTER, key)
        labels: dict[str, str] = {}
        secrets = self.peek(CLUSTER_SECRETS, key)
        if secrets is not None and secrets.spec.imported:
            if not (secrets.spec.talos_ca_rotated and secrets.spec.kubernetes_ca_rotated):
                labels[LABEL_TAINTED_BY_IMPORTING] = ""
        annotations = {}
        if ANNOTATION_CLUSTER_LOCKED in cluster.annotations:
            annotations[ANNOTATION_CLUSTER_LOCKED] = cluster.annotations[ANNOTATION_CLUSTER_LOCKED]
        self.ensure(CLUSTER_STATUSES, key, spec, labels=labels, annotations=annotations)


class ClusterBootstrapStatusController(Controller):
    """ClusterBootstrapStatus: is the cluster's etcd bootstrapped (MachineSet validation reads it).

    Holds a finalizer on the control-plane MachineSet and turns false once that set is missing
    or tearing down. An import is bootstrapped as soon as ClusterStatus is available with a
    connected control plane and tainted by importing; Omni would call Talos Bootstrap for a
    new cluster, which the lab does not model, so only imports become bootstrapped here.
    """

    name = "ClusterBootstrapStatusController"

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        return {CLUSTER_STATUSES: _same, MACHINE_SETS: _cluster_label}

    async def reconcile(self, key: Key) -> None:
        status = self.peek(CLUSTER_STATUSES, key)
        control_planes = self.peek(MACHINE_SETS, f"{key}-control-planes")
        if status is None:
            if control_planes is not None:
                self.remove_finalizer(MACHINE_SETS, control_planes.id)
            self.destroy_owned(CLUSTER_BOOTSTRAP_STATUSES, key)
            return
        current = self.peek(CLUSTER_BOOTSTRAP_STATUSES, key)
        bootstrapped = current is not None and current.spec.bootstrapped
        if control_planes is None:
            bootstrapped = False
        elif control_planes.phase == PHASE_TEARING_DOWN:
            bootstrapped = False
            self.remove_finalizer(MACHINE_SETS, control_planes.id)
        else:
            self.add_finalizer(MACHINE_SETS, control_planes.id)
            spec = status.spec
            if (
                not bootstrapped
                and spec.available
                and spec.has_connected_control_planes
                and LABEL_TAINTED_BY_IMPORTING in status.labels
            ):
                bootstrapped = True
        self.ensure(CLUSTER_BOOTSTRAP_STATUSES, key, ClusterBootstrapData(bootstrapped))


# ---- config apply --------------------------------------------------------------------------


def _patch_order(patch: Resource) -> tuple[int, str]:
    """Omni applies cluster-wide patches, then machine-set ones, then per-machine ones."""
    if LABEL_CLUSTER_MACHINE in patch.labels:
        return (2, patch.id)
    if LABEL_MACHINE_SET in patch.labels:
        return (1, patch.id)
    return (0, patch.id)


class ConfigApplyController(Controller):
    """Pushes each machine's rendered config once its cluster is unlocked.

    Render = Omni's base for the cluster's Talos version with the cluster's secrets and Omni's
    load-balancer endpoint, plus the machine's patches, plus its join documents (the render
    step itself is ``Context.render``). A push that fails is recorded and retried with backoff.
    """

    name = CONFIG_STATUS_CONTROLLER

    def __init__(self, ctx: Context, requeue: Callable[[Controller, Key, float], None]) -> None:
        super().__init__(ctx)
        self._requeue = requeue

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        def cluster_machines(cluster_id: str) -> list[Key]:
            return [cm.id for cm in self.scan(CLUSTER_MACHINES, LABEL_CLUSTER, cluster_id)]

        def by_patch(res: Resource) -> list[Key]:
            if LABEL_CLUSTER_MACHINE in res.labels:
                return [res.labels[LABEL_CLUSTER_MACHINE]]
            if LABEL_MACHINE_SET in res.labels:
                ms = res.labels[LABEL_MACHINE_SET]
                return [cm.id for cm in self.scan(CLUSTER_MACHINES, LABEL_MACHINE_SET, ms)]
            return cluster_machines(res.labels.get(LABEL_CLUSTER, ""))

        return {
            CLUSTER_MACHINES: _same,
            CLUSTERS: lambda r: cluster_machines(r.id),
            CLUSTER_SECRETS: lambda r: cluster_machines(r.id),
            LOAD_BALANCER_CONFIGS: lambda r: cluster_machines(r.id),
            CONFIG_PATCHES: by_patch,
        }

    def request_for(self, key: Key) -> RenderRequest | None:
        """What would be rendered for machine ``key`` now, or None if nothing can be."""
        cm = self.peek(CLUSTER_MACHINES, key)
        if cm is None or cm.phase != PHASE_RUNNING:
            return None
        cluster_id = cm.labels.get(LABEL_CLUSTER, "")
        cluster = self.peek(CLUSTERS, cluster_id)
        secrets = self.peek(CLUSTER_SECRETS, cluster_id)
        lb = self.peek(LOAD_BALANCER_CONFIGS, cluster_id)
        if cluster is None or secrets is None or lb is None:
            return None
        patches = [
            p
            for p in self.scan(CONFIG_PATCHES, LABEL_CLUSTER, cluster_id)
            if p.phase == PHASE_RUNNING
            and p.labels.get(LABEL_CLUSTER_MACHINE, key) == key
            and p.labels.get(LABEL_MACHINE_SET, cm.labels.get(LABEL_MACHINE_SET))
            == cm.labels.get(LABEL_MACHINE_SET)
        ]
        patches.sort(key=_patch_order)
        return RenderRequest(
            cluster_id=cluster_id,
            machine_uuid=key,
            role=_role(cm.labels),
            talos_version=cluster.spec.talos_version,
            kubernetes_version=cm.spec.kubernetes_version or cluster.spec.kubernetes_version,
            secrets_yaml=secrets.spec.data,
            endpoint=lb.spec.siderolink_endpoint,
            patches=tuple(self.ctx.patch_text(p.spec) for p in patches),
        )

    async def reconcile(self, key: Key) -> None:
        cm = self.peek(CLUSTER_MACHINES, key)
        if cm is None:
            self.destroy_owned(CLUSTER_MACHINE_CONFIG_STATUSES, key)
            return
        cluster = self.peek(CLUSTERS, cm.labels.get(LABEL_CLUSTER, ""))
        if cluster is None or cluster.phase != PHASE_RUNNING:
            return
        if ANNOTATION_CLUSTER_LOCKED in cluster.annotations:
            return  # while locked, config is rendered but never applied
        request = self.request_for(key)
        if request is None:
            return
        status = self.peek(CLUSTER_MACHINE_CONFIG_STATUSES, key)
        labels = {LABEL_CLUSTER: request.cluster_id}
        try:
            config = self.ctx.render(request)
        except Exception as exc:  # a render failure is Omni's "config generation error"
            self._failed(key, status, labels, f"rendering the machine config failed: {exc}")
            return
        digest = hashlib.sha256(config).hexdigest()
        if (
            status is not None
            and status.spec.config_sha256 == digest
            and not status.spec.last_error
        ):
            return
        try:
            await self.ctx.gateway.push_config(key, config)
        except Exception as exc:
            self._failed(key, status, labels, f"applying the machine config failed: {exc}")
            return
        self.ensure(CLUSTER_MACHINE_CONFIG_STATUSES, key, ConfigStatusData(digest), labels=labels)

    def _failed(
        self, key: Key, status: Resource | None, labels: dict[str, str], message: str
    ) -> None:
        previous = status.spec if status is not None else ConfigStatusData()
        attempts = previous.attempts + 1
        spec = replace(previous, last_error=message, attempts=attempts)
        self.ensure(CLUSTER_MACHINE_CONFIG_STATUSES, key, spec, labels=labels)
        log.info("machine %s: %s (attempt %d)", key, message, attempts)
        self._requeue(self, key, min(self.ctx.retry_delay * 2 ** (attempts - 1), 10.0))


# ---- generic destroy -----------------------------------------------------------------------


class DestroyController(Controller):
    """Destroys user-managed resources (and Links) that are tearing down without finalizers."""

    name = "DestroyController"

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        return {t: (lambda r: [(r.type, r.id)]) for t in USER_MANAGED_DESTROYABLE}

    async def reconcile(self, key: Key) -> None:
        type_, id_ = key
        res = self.peek(type_, id_)
        if res is not None and res.phase == PHASE_TEARING_DOWN and not res.finalizers:
            self.store.destroy(res.namespace, type_, id_, owner=res.owner)
