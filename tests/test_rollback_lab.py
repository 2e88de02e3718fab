"""rollback, abort and unlock against the lab: idempotence, refusals, resuming, Omni's rules."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time

from omniport.planner.discover import TLS_CLOSE_GRACE
from omniport.planner.machineconfig import document as mcdoc
from omniport.planner.machineconfig import pki
from tests.reliability.labkit import World, assert_restored, start_world
from tests.test_apply_lab import IMPORTING, LOCKED, one_line, resources


def applied(world: World):
    world.make_plan()
    before = world.snapshot()
    result = world.apply()
    assert result.code == 0, result.text
    return before


def test_rollback_is_idempotent(world: World):
    before = applied(world)
    first = world.roll_back()
    assert first.code == 0, first.text
    assert_restored(world, before)
    again = world.roll_back()
    assert again.code == 0, again.text
    assert "Rollback complete! 3 node(s) needed nothing." in again.out
    assert_restored(world, before)


def test_rollback_file_of_another_cluster_is_refused(world: World, tmp_path):
    before = applied(world)
    other = start_world(tmp_path / "other", "--seed", "7")
    try:
        other_before = other.snapshot()
        result = world.roll_back("--spec", str(other.spec))
        assert result.code == 1
        line = one_line(result.err)
        assert "does not match this cluster" in line, line
        assert other.snapshot() == other_before
    finally:
        other.stop()
    assert world.roll_back().code == 0
    assert_restored(world, before)


def _rotate_os_ca(world: World) -> None:
    """What `talosctl rotate-ca` leaves on the nodes: a new OS CA in machine.ca."""
    ca = pki.new_ca(dt.datetime.now(dt.UTC), organizations=["talos"])
    crt = base64.b64encode(ca.crt).decode()
    for node in world.nodes:
        old = world.status()["nodes"]
        sha = next(n["config_sha256"] for n in old if n["address"] == node)
        world.patch(node, f"machine:\n  ca:\n    crt: {crt}\n")
        deadline = time.monotonic() + 10
        while (
            next(n["config_sha256"] for n in world.status()["nodes"] if n["address"] == node) == sha
        ):
            assert time.monotonic() < deadline, "the node never took the rotated CA"
            time.sleep(0.05)


def test_rollback_refuses_after_unlock_and_ca_rotation(world: World):
    applied(world)
    unlocked = world.cli("unlock", "lab", "--plan", str(world.plan), "--auto-approve")
    assert unlocked.code == 0, unlocked.text
    _rotate_os_ca(world)
    before = world.snapshot()
    result = world.roll_back()
    assert result.code == 1
    line = one_line(result.err)
    assert "no longer trusts the OS CA recorded in the backup" in line
    assert "rollback refuses" in line
    assert world.snapshot() == before


def test_unlock_shows_the_preview_then_rollback_still_restores(world: World):
    before = applied(world)
    unlocked = world.cli("unlock", "lab", "--plan", str(world.plan), "--auto-approve")
    assert unlocked.code == 0, unlocked.text
    assert "omniport will unlock cluster 'lab'" in unlocked.out
    assert "Unlock: 0 to add, 1 to change, 0 to destroy." in unlocked.out
    assert "Unlock complete!" in unlocked.out
    cluster = resources(world.status(), "Clusters.omni.sidero.dev")["lab"]
    assert LOCKED not in cluster["annotations"] and IMPORTING not in cluster["annotations"]
    again = world.cli("unlock", "lab", "--plan", str(world.plan), "--auto-approve")
    assert again.code == 0 and "is not locked; nothing to do" in again.out
    # rollback locks the cluster again before deleting it (Omni would reset the machines of
    # an unlocked cluster), then restores every node from its backup
    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)


def test_abort_removes_the_cluster_links_and_join_documents(world: World):
    before = applied(world)
    result = world.cli("abort", "lab", "--spec", str(world.spec), "--auto-approve")
    assert result.code == 0, result.text
    assert "Abort: 0 to add, 3 to change, 4 to destroy." in result.out
    assert "import operation was aborted successfully for cluster lab" in result.out
    after = world.snapshot()
    assert after.resources == before.resources, sorted(after.extra_resources(before))
    for address, config in after.configs.items():
        kinds = {d.key.kind for d in mcdoc.parse(config).documents}
        assert not kinds & {"SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig"}
        assert mcdoc.canonical_json(mcdoc.parse(config)) == mcdoc.canonical_json(
            mcdoc.parse(before.configs[address])
        )
    again = world.cli("abort", "lab", "--spec", str(world.spec), "--auto-approve")
    assert again.code == 1 and "has no cluster lab" in one_line(again.err)


def test_abort_refuses_an_unlocked_cluster(world: World):
    applied(world)
    assert world.cli("unlock", "lab", "--spec", str(world.spec), "--auto-approve").code == 0
    result = world.cli("abort", "lab", "--spec", str(world.spec), "--auto-approve")
    assert result.code == 1
    assert "is not locked, so it cannot be aborted" in one_line(result.err)
    assert world.roll_back().code == 0


def test_rollback_resumes_once_an_unreachable_node_is_back(world: World):
    before = applied(world)
    down = world.nodes[2]
    world.fault(kind="unreachable", node=down)
    first = world.roll_back()
    assert first.code == 1
    line = one_line(first.err)
    assert f"rollback did not finish: talos_join.{down}" in line
    assert "run `omniport rollback` again" in line
    world.fault(kind="clear")
    second = world.roll_back()
    assert second.code == 0, second.text
    assert_restored(world, before)


def _delete_cluster_as_is(world: World) -> None:
    """Delete the Cluster without locking it again first (what rollback must never do)."""

    async def delete() -> None:
        async with world.handle.omni() as op:
            await op.teardown("Clusters.omni.sidero.dev", "lab")
            await op.wait_destroyed("Clusters.omni.sidero.dev", "lab", timeout=30)
        await asyncio.sleep(TLS_CLOSE_GRACE)  # let the TLS close finish before the loop ends

    asyncio.run(delete())


def test_deleting_an_unlocked_imported_cluster_wipes_its_nodes(world: World):
    """The wrong order: unlock, then delete. Omni resets every machine it lets go of, and so
    does the lab: the nodes lose their config, sit in maintenance, and no rollback can reach
    them any more."""
    applied(world)
    assert world.cli("unlock", "lab", "--spec", str(world.spec), "--auto-approve").code == 0
    _delete_cluster_as_is(world)
    nodes = world.status(with_configs=True)["nodes"]
    assert all(n["maintenance"] and n["config"] == "" and not n["connected"] for n in nodes)
    shown = world.cli("lab", "status", "--dir", str(world.dir))
    assert shown.out.count("WIPED (maintenance)") == len(nodes), shown.out
    rolled = world.roll_back()
    assert rolled.code == 1, rolled.text
    line = one_line(rolled.err)
    assert "3 of the 3 node(s) of cluster lab answer with a certificate" in line, line
    assert "talosctl apply-config --insecure" in line, line
