"""The Image Factory as Omni uses it, against a lab whose factory wants credentials.

The lab (``--factory-auth``) plays an Enterprise factory: basic auth on every call, the
credentials in Omni's ``ImageFactoryAuths/image-factory-auth``. Omni's primary factory
(FeaturesConfig) points at a port nobody listens on, and the TalosVersion of the nodes' Talos
version records the lab's factory: so only a client that picks the factory as Omni does, and
authenticates as Omni does, reaches it. The spec names no factory URL, only its CA.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml

from omniport.planner.discover import TLS_CLOSE_GRACE
from omniport.providers.codec.omni_names import IMAGE_FACTORY_AUTH_ID, IMAGE_FACTORY_AUTHS
from tests.reliability.labkit import World, assert_no_secret, assert_restored, start_world

DEAD_PRIMARY = "https://127.0.0.1:9"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Any:
    w = start_world(
        tmp_path_factory.mktemp("factory-auth") / "lab",
        "--nodes",
        "2",
        "--seed",
        "5",
        "--factory-auth",
        "--omni-version-factory",
        "--omni-factory-url",
        DEAD_PRIMARY,
    )
    data = yaml.safe_load(w.spec.read_text())
    w.info["factory_url"] = data["imageFactory"].pop("url")  # Omni says which factory
    w.spec.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        yield w
    finally:
        w.stop()


def credentials(world: World) -> tuple[str, str]:
    """What Omni holds for its factory, read as any Omni client reads it."""

    async def read() -> Any:
        async with world.handle.omni() as omni:
            found = await omni.get(IMAGE_FACTORY_AUTHS, IMAGE_FACTORY_AUTH_ID)
        await asyncio.sleep(TLS_CLOSE_GRACE)
        return found

    spec = asyncio.run(read()).spec
    assert spec.username and spec.password
    return spec.username, spec.password


def factory_requests(world: World) -> list[dict[str, Any]]:
    return world.status()["factory"]["requests"]


def texts_of(world: World, *results: Any) -> list[str]:
    out = [r.text for r in results]
    for path in (world.plan, world.journal, world.rollback, world.dir / "lab.log"):
        if path.exists():
            out.append(path.read_text(errors="replace"))
    return out


def test_plan_picks_the_factory_omni_records_and_authenticates(world: World):
    _, password = credentials(world)
    seen = len(factory_requests(world))
    planned = world.cli("plan", str(world.spec), "-o", str(world.plan), "--json")
    assert planned.code == 0, planned.text
    data = json.loads(world.plan.read_text())
    assert {f["code"] for f in data["findings"]} == {"DENYLISTED_VALUES"}, data["findings"]
    assert data["cluster"]["factory_url"] == world.info["factory_url"]
    registrations = [c for c in data["changes"] if c["address"].startswith("image_factory_")]
    schematic = world.info["schematic_id"]
    assert [(c["node"], c["resource_id"], c["action"]) for c in registrations] == [
        (node, schematic, "create") for node in world.nodes
    ]
    assert all(c["after"]["factory"] == world.info["factory_url"] for c in registrations)
    # read-only, and every read authenticated (a 401 would be a FACTORY_UNREACHABLE finding)
    new = factory_requests(world)[seen:]
    assert new and {(r["method"], r["status"]) for r in new} == {("GET", 200)}
    for text in texts_of(world, planned):
        assert password not in text


def test_apply_registers_the_schematic_then_rollback_restores(world: World):
    username, password = credentials(world)
    before = world.snapshot()
    world.make_plan()
    seen = len(factory_requests(world))
    applied = world.apply()
    assert applied.code == 0, applied.text
    posts = [r for r in factory_requests(world)[seen:] if r["method"] == "POST"]
    assert posts == [{"method": "POST", "path": "/schematics", "status": 201}]  # once per ID
    records = world.records()
    steps = [r["step"] for r in records if r["event"] == "end"]
    first = [s for s in steps if s.startswith("image_factory_schematic.")]
    assert first == [f"image_factory_schematic.{n}" for n in world.nodes]
    assert steps[: len(first)] == first  # before anything in Omni or on a node
    ended = [r for r in records if r["event"] == "end" and r["step"] in first]
    assert {r["data"]["schematic_id"] for r in ended} == {world.info["schematic_id"]}
    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)
    for text in texts_of(world, applied, rolled):
        assert password not in text
    assert_no_secret(world, before, applied.text, rolled.text)


def test_a_factory_that_will_not_register_stops_apply_and_rolls_back(world: World):
    before = world.snapshot()
    world.make_plan()
    world.fault(kind="factory-read-only")  # answers GETs, 503 to POST /schematics
    try:
        applied = world.apply()
    finally:
        world.fault(kind="factory-read-only", clear=True)
    assert applied.code == 1, applied.text
    records = world.records()
    failed = [r for r in records if r["event"] == "failed"]
    assert [r["step"] for r in failed] == [f"image_factory_schematic.{world.nodes[0]}"]
    assert "HTTP 503" in failed[0]["data"]["error"]
    assert not [r for r in records if r["event"] == "start" and "omni_" in (r["step"] or "")]
    assert "rolled back" in applied.text.lower() or "rollback" in applied.text.lower()
    assert_restored(world, before)


def test_spec_url_overrides_and_gets_no_credentials_for_another_host(world: World, tmp_path):
    """A spec may point elsewhere; Omni's credentials stay with the factories Omni names."""
    data = yaml.safe_load(world.spec.read_text())
    data["imageFactory"]["url"] = world.info["factory_url"].replace("127.0.0.1", "localhost")
    spec = tmp_path / "import.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    for section, key in (
        ("talos", "talosconfig"),
        ("omni", "caFile"),
        ("omni", "serviceAccountKeyFile"),
        ("imageFactory", "caFile"),
        ("backup", "directory"),
    ):
        if key in data.get(section, {}):
            data[section][key] = str((world.dir / data[section][key]).resolve())
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    planned = world.cli("plan", str(spec), "-o", str(tmp_path / "plan.json"))
    assert planned.code == 1, planned.text
    found = json.loads((tmp_path / "plan.json").read_text())["findings"]
    unreachable = [f for f in found if f["code"] == "FACTORY_UNREACHABLE"]
    assert unreachable and "HTTP 401" in unreachable[0]["message"], found
    assert not [
        c
        for c in json.loads((tmp_path / "plan.json").read_text())["changes"]
        if c["address"].startswith("image_factory_")
    ]


@pytest.fixture(scope="module")
def drifted(tmp_path_factory) -> Any:
    """Nodes whose image a yaml.v3-era factory built (kernel argument ``off``, double-quoted
    then, single-quoted by today's factory): the factory still serves the old ID, but
    registering the same content today answers another one."""
    w = start_world(
        tmp_path_factory.mktemp("factory-drift") / "lab",
        "--nodes",
        "2",
        "--seed",
        "6",
        "--schematic-kernel-arg",
        "off",
        "--schematic-yaml-v3",
    )
    try:
        yield w
    finally:
        w.stop()


def test_a_factory_answering_another_id_stops_apply_and_rolls_back(drifted: World):
    from omniport.providers.codec.schematic import schematic_id

    node_id = drifted.info["schematic_id"]
    built = next(iter(drifted.status()["nodes"]))["address"]
    before = drifted.snapshot()
    drifted.make_plan()  # clean: the node's text hashes to its ID and the factory has that ID
    data = json.loads(drifted.plan.read_text())
    assert {f["code"] for f in data["findings"]} == {"DENYLISTED_VALUES"}
    applied = drifted.apply()
    assert applied.code == 1, applied.text
    failed = [r for r in drifted.records() if r["event"] == "failed"]
    assert [r["step"] for r in failed] == [f"image_factory_schematic.{built}"]
    message = failed[0]["data"]["error"]
    assert f"schematic ID mismatch for node {built}" in message and node_id in message
    posts = [r for r in drifted.status()["factory"]["requests"] if r["method"] == "POST"]
    assert [(r["path"], r["status"]) for r in posts] == [("/schematics", 201)]
    assert schematic_id(_schematic_text(drifted, node_id)) in message  # today's ID
    assert_restored(drifted, before)


def _schematic_text(world: World, schematic: str) -> str:
    async def read() -> Any:
        async with world.handle.client() as client:
            found = await client.schematic(world.nodes[0])
        await asyncio.sleep(TLS_CLOSE_GRACE)
        return found

    found = asyncio.run(read())
    assert found.id == schematic
    return found.extra_info
