"""Nodes joining and leaving the lab's Omni, Omni-side faults, and the factory, over the network.

A node that applies a config with a SideroLinkConfig registers with Omni (a Link appears and
``lab status`` says connected); dropping the document disconnects it. ``never-connect`` keeps
nodes away until it is cleared. Omni call failures and a factory outage are injected through
``omniport lab fault`` and seen by the real clients.
"""

from __future__ import annotations

import time

import pytest
import yaml

from omniport.providers.codec.joinurl import join_api_url
from omniport.providers.codec.omni_names import DEFAULT_JOIN_TOKENS, SIDEROLINK_API_CONFIGS
from omniport.providers.errors import ProviderError, Unreachable
from omniport.providers.factory import FactoryClient, SchematicStatus
from omniport.providers.talos import ApplyMode

LINKS = "Links.omni.sidero.dev"

JOIN = (
    b"---\napiVersion: v1alpha1\nkind: SideroLinkConfig\n"
    b"apiUrl: '%s'\n"
    b"---\napiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[fdae:41e4:649b:9303::1]:8090'\n"
    b"---\napiVersion: v1alpha1\nkind: KmsgLogConfig\nname: omni-kmsg\n"
    b"url: tcp://[fdae:41e4:649b:9303::1]:8092\n"
)


@pytest.fixture(scope="module")
def jlab(lab_factory):
    return lab_factory("--nodes", "3", name="join-lab")


@pytest.fixture(autouse=True)
def _clear_faults(jlab):
    yield
    jlab.fault(kind="clear")


def talos(aio, lab, fn):
    async def go():
        async with lab.client() as client:
            return await fn(client)

    return aio(go())


def omni(aio, lab, fn):
    async def go():
        async with lab.omni() as client:
            return await fn(client)

    return aio(go())


def connected(lab) -> dict[str, bool]:
    return {n["address"]: n["connected"] for n in lab.status()["nodes"]}


def machine_id(lab, address: str) -> str:
    return next(n["machine_id"] for n in lab.info["nodes"] if n["address"] == address)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def join_url(aio, lab) -> str:
    """The apiUrl Omni's join options give: its advertised URL with its default join token."""
    token = omni(aio, lab, lambda c: c.get(DEFAULT_JOIN_TOKENS, "default")).spec.token_id
    api = omni(aio, lab, lambda c: c.get(SIDEROLINK_API_CONFIGS, "siderolink-config"))
    return join_api_url(api.spec.machine_api_advertised_url, token)


def join(aio, lab, node, api_url=None):
    config = talos(aio, lab, lambda c: c.machine_config(node))
    docs = JOIN % (api_url or join_url(aio, lab)).encode()
    result = talos(aio, lab, lambda c: c.apply_configuration(node, config + docs))
    assert result.mode is ApplyMode.NO_REBOOT
    return config


def test_join_documents_connect_the_node_and_removing_them_disconnects(aio, jlab):
    node = jlab.workers[0]
    uuid = machine_id(jlab, node)
    assert connected(jlab)[node] is False
    before = join(aio, jlab, node)
    wait_for(lambda: connected(jlab)[node])  # a first join is pending for a moment
    link = omni(aio, jlab, lambda c: c.get(LINKS, uuid))
    assert link.spec.connected is True
    types = {(r["type"], r["id"]) for r in jlab.status()["omni"]["resources"]}
    assert (LINKS, uuid) in types

    talos(aio, jlab, lambda c: c.apply_configuration(node, before))
    assert connected(jlab)[node] is False
    wait_for(lambda: omni(aio, jlab, lambda c: c.get(LINKS, uuid)).spec.connected is False)


PENDING = "PendingMachines.omni.sidero.dev"


def pending(lab) -> list[dict]:
    return [r for r in lab.status()["omni"]["resources"] if r["type"] == PENDING]


def test_a_stalled_first_join_stays_pending_until_cleared(aio, lab_factory):
    lab = lab_factory("--nodes", "2", name="pending-lab")
    node = lab.workers[0]
    uuid = machine_id(lab, node)
    lab.fault(kind="join", node=node, problem="stalled")
    join(aio, lab, node)
    time.sleep(0.3)  # three times the lab's default join time
    assert connected(lab)[node] is False
    assert len(pending(lab)) == 1
    assert omni(aio, lab, lambda c: c.find(LINKS, uuid)) is None
    lab.fault(kind="join", node=node, clear=True)
    wait_for(lambda: connected(lab)[node])
    assert pending(lab) == []
    assert omni(aio, lab, lambda c: c.get(LINKS, uuid)).spec.connected is True


def test_a_refused_join_registers_nothing_until_cleared(aio, lab_factory):
    lab = lab_factory("--nodes", "2", "--omni-join-ms", "0", name="refused-lab")
    node = lab.workers[0]
    uuid = machine_id(lab, node)
    lab.fault(kind="join", node=node, problem="refused")
    join(aio, lab, node)
    assert connected(lab)[node] is False
    assert pending(lab) == [] and omni(aio, lab, lambda c: c.find(LINKS, uuid)) is None
    lab.fault(kind="join", node=node, clear=True)  # the node dials again and gets in
    wait_for(lambda: connected(lab)[node])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda url: url.replace("jointoken=", "jointoken=x"),  # another token
        lambda url: url.split("?")[0] + "?jointoken=",  # no token
        lambda url: url.replace("127.0.0.1", "127.0.0.2"),  # not this Omni's endpoint
    ],
    ids=["wrong-token", "empty-token", "other-endpoint"],
)
def test_omni_refuses_a_join_without_its_url_and_token(aio, jlab, mangle):
    node = jlab.workers[1]
    uuid = machine_id(jlab, node)
    before = join(aio, jlab, node, api_url=mangle(join_url(aio, jlab)))
    try:
        assert connected(jlab)[node] is False
        assert omni(aio, jlab, lambda c: c.find(LINKS, uuid)) is None
    finally:
        talos(aio, jlab, lambda c: c.apply_configuration(node, before))


def test_never_connect_keeps_nodes_away_until_cleared(aio, jlab):
    node = jlab.workers[1]
    uuid = machine_id(jlab, node)
    jlab.fault(kind="never-connect")
    join(aio, jlab, node)
    assert connected(jlab)[node] is False
    assert omni(aio, jlab, lambda c: c.find(LINKS, uuid)) is None
    jlab.fault(kind="never-connect", clear=True)
    wait_for(lambda: connected(jlab)[node])
    assert omni(aio, jlab, lambda c: c.get(LINKS, uuid)).spec.connected is True


def test_lab_status_lists_omni_resources_with_metadata(jlab):
    resources = jlab.status()["omni"]["resources"]
    assert resources, "a fresh Omni has its seeded resources"
    assert all(set(r) == {"type", "id", "labels", "annotations", "phase"} for r in resources)
    types = {r["type"] for r in resources}
    assert {"TalosVersions.omni.sidero.dev", "DefaultJoinTokens.omni.sidero.dev"} <= types
    assert {r["phase"] for r in resources} <= {"running", "tearingDown"}


def test_omni_failure_by_method_and_type(aio, jlab):
    jlab.fault(kind="omni-failure", method="List", type="TalosVersions.omni.sidero.dev", code=13)
    with pytest.raises(ProviderError) as err:
        omni(aio, jlab, lambda c: c.list("TalosVersions.omni.sidero.dev"))
    assert err.value.code == 13
    # other types and methods still work
    assert omni(aio, jlab, lambda c: c.list("DefaultJoinTokens.omni.sidero.dev"))
    assert omni(aio, jlab, lambda c: c.get("TalosVersions.omni.sidero.dev", "1.11.5"))
    jlab.fault(kind="omni-failure", method="List", clear=True)
    assert omni(aio, jlab, lambda c: c.list("TalosVersions.omni.sidero.dev"))


def test_omni_knows_the_lab_versions(aio, jlab):
    versions = omni(aio, jlab, lambda c: c.get("TalosVersions.omni.sidero.dev", "1.11.5"))
    assert "1.34.1" in versions.spec.compatible_kubernetes_versions


def factory(lab) -> FactoryClient:
    spec = yaml.safe_load((lab.dir / "import.yaml").read_text())["imageFactory"]
    return FactoryClient(spec["url"], ca_file=str(lab.dir / spec["caFile"]))


def test_node_schematics_are_known_to_the_lab_factory(aio, jlab):
    schematic = talos(aio, jlab, lambda c: c.schematic(jlab.nodes[0]))
    check = factory(jlab).check_schematic(schematic.id, schematic.extra_info)
    assert check.status is SchematicStatus.MATCH


def test_factory_down_and_back(jlab):
    jlab.fault(kind="factory-down")
    with pytest.raises(Unreachable, match="503"):
        factory(jlab).versions()
    jlab.fault(kind="factory-down", clear=True)
    assert "v1.11.5" in factory(jlab).versions()
