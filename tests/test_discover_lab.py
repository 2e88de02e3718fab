"""Discovery against the lab's apid run in this process, so its call counter can be read.

The facts must be exactly those of reading every resource one node at a time (the reference
reader below), as Omni's importer reads them; what changes is the number of calls and round
trips: one-to-many machine calls per batch, and every COSI read of a batch at once. What the
node's config states is only a cross-check (``fact_mismatches``).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from omniport.planner.discover import read_error, read_nodes
from omniport.planner.facts import EtcdMember, NodeFacts, Service
from omniport.providers.errors import ProviderError, Unreachable
from omniport.providers.talos import TalosClient
from tests.lab_inprocess import InProcessLab, start_world


@pytest.fixture(scope="module")
def world(aio):
    started = start_world(aio, nodes=6, controlplanes=2)
    yield started
    aio(started.close())


async def _settle(aw: Any) -> Any:
    try:
        return await aw
    except ProviderError as exc:
        return exc


async def reference_facts(client: TalosClient, address: str) -> NodeFacts:
    """Every fact read from its own resource, one call each, one node at a time."""
    values = {
        "version": await _settle(client.version(address)),
        "type": await _settle(client.machine_type(address)),
        "hostname": await _settle(client.hostname(address)),
        "uuid": await _settle(client.system_uuid(address)),
    }
    for value in values.values():
        if isinstance(value, ProviderError):
            return NodeFacts(address=address, error=read_error(value))
    config = await _settle(client.machine_config(address))
    extensions = await _settle(client.extension_statuses(address))
    kubelet = await _settle(client.kubelet_image(address))
    services = await _settle(client.service_list(address))
    is_cp = values["type"] in ("controlplane", "init")
    images = etcd = cluster = None
    if is_cp:
        images = await _settle(client.control_plane_images(address))
        etcd = await _settle(client.etcd_members(address))
        cluster = await _settle(client.cluster_info(address))
    images, etcd, cluster = (
        None if isinstance(v, ProviderError) else v for v in (images, etcd, cluster)
    )
    exts = [] if isinstance(extensions, ProviderError) else extensions
    schematic = next((e for e in exts if e.name == "schematic"), None)
    return NodeFacts(
        address=address,
        role="controlplane" if is_cp else "worker",
        talos_version=values["version"].tag.removeprefix("v"),
        hostname=values["hostname"],
        machine_uuid=values["uuid"],
        config=None if isinstance(config, ProviderError) else config,
        config_error=read_error(config) if isinstance(config, ProviderError) else None,
        schematic_id=schematic.version if schematic else None,
        schematic_yaml=(schematic.extra_info or None) if schematic else None,
        extensions=tuple(e.name for e in exts if e.name != "schematic"),
        kubelet_image=None if isinstance(kubelet, ProviderError) else kubelet,
        apiserver_image=images.apiserver if images else None,
        scheduler_image=images.scheduler if images else None,
        controller_manager_image=images.controller_manager if images else None,
        services=()
        if isinstance(services, ProviderError)
        else tuple(Service(s.id, s.state, s.healthy) for s in services),
        etcd_members=tuple(
            EtcdMember(m.id, m.hostname, tuple(m.peer_urls), m.is_learner) for m in etcd or ()
        ),
        cluster_name=cluster.cluster_name if cluster else None,
    )


def discover(aio, world: InProcessLab, *roles: str, **kw: Any) -> tuple[tuple[NodeFacts, ...], int]:
    """``read_nodes`` of every lab node: (facts, calls the apid answered for them)."""

    async def go() -> tuple[tuple[NodeFacts, ...], int]:
        async with world.client(*roles) as client:
            before = world.apid.calls
            facts = await read_nodes(client, tuple(world.nodes), **kw)
            return facts, world.apid.calls - before

    return aio(go())


def reference(aio, world: InProcessLab, *roles: str) -> tuple[NodeFacts, ...]:
    async def go() -> tuple[NodeFacts, ...]:
        async with world.client(*roles) as client:
            return tuple([await reference_facts(client, a) for a in world.nodes])

    return aio(go())


def hints(world: InProcessLab, wrong: bool = False) -> dict[str, str]:
    """The role hints Talos discovery would give (``wrong``: every node called a worker)."""
    cps = set(world.controlplanes)
    return {a: "worker" if wrong or a not in cps else "controlplane" for a in world.nodes}


@pytest.mark.parametrize("how", ["no hints", "right hints", "all called workers", "batches of 4"])
def test_facts_equal_reading_every_resource(aio, world, how):
    kw: dict[str, Any] = {
        "no hints": {},
        "right hints": {"role_hints": hints(world)},
        "all called workers": {"role_hints": hints(world, wrong=True)},
        "batches of 4": {"parallelism": 4},
    }[how]
    facts, _ = discover(aio, world, **kw)
    want = reference(aio, world)
    assert facts == want
    cp = next(f for f in facts if f.role == "controlplane")
    assert cp.apiserver_image and cp.etcd_members and cp.cluster_name and cp.kubelet_image
    assert all(f.error is None and f.config for f in facts)


def test_reader_role_facts_equal_reading_every_resource(aio, world):
    """os:reader cannot read the config: every config-stated fact comes from its resource."""
    facts, calls = discover(aio, world, "os:reader")
    assert facts == reference(aio, world, "os:reader")
    assert all(f.config is None and f.config_error.kind == "PermissionDenied" for f in facts)
    assert all(f.kubelet_image and f.role for f in facts)
    # 3 one-to-many calls + 6 reads per node; then the control planes' 3 images + cluster name
    assert calls == 3 + 6 * 6 + 2 * (3 + 1)


def test_calls_per_node(aio, world):
    """3 one-to-many calls per batch, 6 COSI reads per node (hostname, UUID, config,
    extensions, machine type, kubelet config) and 4 more per control plane (3 pod configs and
    the cluster info): in the first round trip when discovery names the control planes."""
    n, cps = len(world.nodes), len(world.controlplanes)
    _, calls = discover(aio, world)
    assert calls == 3 + 6 * n + 4 * cps
    _, calls = discover(aio, world, role_hints=hints(world))
    assert calls == 3 + 6 * n + 4 * cps
    _, calls = discover(aio, world, parallelism=4)  # two batches
    assert calls == 2 * 3 + 6 * n + 4 * cps
    # a control plane called a worker: its etcd members take a second (one-to-many) call
    _, calls = discover(aio, world, role_hints=hints(world, wrong=True))
    assert calls == 2 + 6 * n + 4 * cps + 1
    print(f"{calls / n:.1f} calls per node (8 per worker, 13 per control plane one by one)")


def test_unreachable_node_in_a_many_call(aio, world):
    """One node down (lab fault): the one-to-many calls give every other node its answer, and
    that node the same error its own call gives; discovery reports it as today."""
    down = world.workers[1]
    world.lab.faults.unreachable.add(down)
    try:

        async def go() -> tuple[dict, Any, Any]:
            async with world.client() as client:
                many = await client.version_many(world.nodes)
                alone = await _settle(client.version(down))
                facts = await read_nodes(client, tuple(world.nodes))
                return many, alone, facts

        many, alone, facts = aio(go())
        want = reference(aio, world)
    finally:
        world.lab.faults.unreachable.discard(down)
    assert {a for a, v in many.items() if isinstance(v, ProviderError)} == {down}
    assert all(many[a].tag == "v1.11.5" for a in world.nodes if a != down)
    assert isinstance(many[down], Unreachable) and isinstance(alone, Unreachable)
    assert (str(many[down]), many[down].code) == (str(alone), alone.code)
    assert "i/o timeout" in str(many[down])
    assert facts == want
    broken = next(f for f in facts if f.address == down)
    assert broken.error == read_error(alone)


def _without(config: bytes, *path: str) -> bytes:
    """``config`` with the field at ``path`` of its v1alpha1 document removed."""
    docs = list(yaml.safe_load_all(config))
    legacy = next(d for d in docs if "kind" not in d)
    parent = legacy
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return yaml.safe_dump_all(docs, sort_keys=False).encode()


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("worker", ("machine", "kubelet", "image")),  # KubeletConfig
        ("controlplane", ("cluster", "apiServer", "image")),  # the three pod configs
        ("controlplane", ("cluster", "clusterName")),  # cluster Info
    ],
    ids=["kubelet image", "apiserver image", "cluster name"],
)
def test_fact_the_config_does_not_state_is_read_from_its_resource(aio, world, role, path):
    """Talos then uses its version's default: only the resource knows it, and nothing
    disagrees (the config is silent, not different)."""
    address = (world.workers if role == "worker" else world.controlplanes)[-1]
    node = world.lab.by_address[address]
    original = node.config
    node.config = _without(original, *path)
    node.touch()  # the lab renders resources again
    try:
        facts, calls = discover(aio, world, role_hints=hints(world))
        want = reference(aio, world)
    finally:
        node.config = original
        node.touch()
    assert facts == want
    assert calls == 3 + 6 * len(world.nodes) + 4 * len(world.controlplanes)
    got = next(f for f in facts if f.address == address)
    assert got.kubelet_image and got.role == role and got.fact_mismatches == ()
    if role == "controlplane":
        assert got.apiserver_image and got.cluster_name is not None


def test_a_resource_that_disagrees_with_the_config_wins_and_is_reported(aio, world):
    """Omni's importer takes KubeletConfig's image; the config's word is the cross-check."""
    node = world.workers[0]
    world.lab.faults.kubelet_images[node] = "ghcr.io/siderolabs/kubelet:v1.30.0"
    world.lab.by_address[node].touch()
    try:
        facts, _ = discover(aio, world, role_hints=hints(world))
        want = reference(aio, world)
    finally:
        world.lab.faults.kubelet_images.clear()
        world.lab.by_address[node].touch()
    got = next(f for f in facts if f.address == node)
    assert got.kubelet_image == "ghcr.io/siderolabs/kubelet:v1.30.0"
    assert [f.kubelet_image for f in facts] == [f.kubelet_image for f in want]
    [mismatch] = got.fact_mismatches
    assert mismatch.startswith("machine.kubelet.image is ghcr.io/siderolabs/kubelet:v")
    assert mismatch.endswith("KubeletConfigs reports ghcr.io/siderolabs/kubelet:v1.30.0")
    assert all(f.fact_mismatches == () for f in facts if f.address != node)


@pytest.mark.parametrize(
    ("version", "config_states_kubernetes_facts"),
    [("v1.13.9", True), ("v1.14.0", False)],
    ids=["1.13 (config as a YAML string spec)", "1.14 (Kube* documents)"],
)
def test_facts_equal_on_other_talos_versions(aio, version, config_states_kubernetes_facts):
    """From 1.14 the Kubernetes facts live in Kube* documents, which discovery does not
    interpret: their resources are read in a second round trip, and the facts stay the same."""
    started = start_world(
        aio, nodes=3, controlplanes=1, talos_version=version, initial_talos_version=version
    )
    try:
        facts, calls = discover(aio, started)
        want = reference(aio, started)
    finally:
        aio(started.close())
    assert facts == want
    assert all(f.error is None and f.kubelet_image for f in facts)
    assert calls == 3 + 6 * 3 + 1 * (3 + 1)
    assert all(f.fact_mismatches == () for f in facts), config_states_kubernetes_facts
