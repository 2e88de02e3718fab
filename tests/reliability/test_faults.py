"""Fault matrix: every injected failure ends in an automatic rollback with nothing left behind.

Faults come from the lab (``omniport lab fault``): ApplyConfiguration failing on the k-th
node, Omni's Create failing for each resource type, machines that never connect, a node that
becomes unreachable while nodes are being connected, and Ctrl-C (once: roll back; twice: exit
at once with the journal intact).
"""

from __future__ import annotations

import json
import threading

import pytest

from tests.reliability.labkit import (
    World,
    assert_no_secret,
    assert_restored,
    interrupt,
    start_world,
)
from tests.test_apply_lab import one_line

pytestmark = pytest.mark.reliability


def planned(world: World, **tuning):
    if tuning:
        world.tune(**tuning)
    world.make_plan()
    return world.snapshot()


@pytest.mark.parametrize("k", [0, 1, 2], ids=["canary", "second", "third"])
def test_apply_configuration_failing_on_the_kth_node(world: World, k: int):
    before = planned(world)
    # join order: the canary (the first worker), then the others, in plan order
    nodes = world.info["nodes"]
    canary = next(n["address"] for n in nodes if n["role"] == "worker")
    order = [canary] + [n["address"] for n in nodes if n["address"] != canary]
    world.fault(kind="apply-failure", node=order[k])
    result = world.apply()
    assert result.code == 1
    line = one_line(result.err)
    assert f"apply failed at talos_join.{order[k]}" in line
    assert "injected failure: ApplyConfiguration" in line and "rolled back:" in line
    assert_restored(world, before)
    assert_no_secret(world, before, result.text)
    failed = [r for r in world.records() if r["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["step"].startswith("talos_join.")
    assert world.records()[-1]["event"] == "rollback_complete"


@pytest.mark.parametrize(
    "kind",
    [
        "ImportedClusterSecrets",
        "Clusters",
        "MachineSets",
        "MachineSetNodes",
        "ConfigPatches",
    ],
)
def test_omni_create_failing_for_each_resource_type(world: World, kind: str):
    before = planned(world)
    world.fault(kind="omni-failure", method="Create", type=f"{kind}.omni.sidero.dev")
    result = world.apply()
    assert result.code == 1
    line = one_line(result.err)
    assert f"{kind}.omni.sidero.dev" in line and "injected failure" in line
    assert "rolled back:" in line
    world.fault(kind="clear")
    assert_restored(world, before)
    assert_no_secret(world, before, result.text)


def test_machines_that_never_connect_stop_at_the_canary(world: World):
    """The canary proves the whole path (issue 16, item 4): with nodes that cannot reach Omni,
    only the canary was touched when the failure shows."""
    before = planned(world, apply={"waitTimeout": "2s"})
    world.fault(kind="never-connect")
    result = world.apply()
    assert result.code == 1
    line = one_line(result.err)
    canary = world.nodes[1]  # the first worker
    assert f"apply failed at talos_join.{canary}" in line
    assert f"({canary}) did not connect to Omni within 2s after its node joined" in line
    assert "restored 1 node(s) to their backup" in line
    joins = {r["step"] for r in world.records() if r["event"] == "start"}
    assert {s for s in joins if s.startswith("talos_join.")} == {f"talos_join.{canary}"}
    assert_restored(world, before)
    assert_no_secret(world, before, result.text)
    world.fault(kind="clear")
    assert_restored(world, before)


def test_a_stalled_join_times_out_naming_the_machine_and_its_stage(world: World):
    before = planned(world, apply={"waitTimeout": "2s"})
    stalled = world.nodes[-1]
    world.fault(kind="join", node=stalled, problem="stalled")
    result = world.apply()
    assert result.code == 1
    line = one_line(result.err)
    # the wait for this machine's Link (before its MachineSetNode) names it and the timeout
    assert f"({stalled}) did not appear in Omni within 2s after its node joined" in line, line
    assert "restored 3 node(s) to their backup" in line
    assert_restored(world, before)
    world.fault(kind="clear")
    assert_restored(world, before)


def test_a_slow_join_is_waited_for_and_reported_while_pending(tmp_path):
    world = start_world(tmp_path / "lab", "--omni-join-ms", "1200")
    try:
        planned(world, apply={"waitTimeout": "20s"})
        result = world.apply()
        assert result.code == 0, result.text
        assert result.seconds >= 1.2, result.seconds  # every first join is pending 1.2 s
        canary = next(
            line
            for line in result.out.splitlines()
            if "complete after" in line and "(canary)" in line
        )
        assert float(canary.split("complete after ")[1].split("s")[0]) >= 1.2, canary
        assert "3/3 machine(s) connected to Omni" in result.text, result.text
    finally:
        world.stop()


def _when(world: World, event: str, step: str, **fault) -> threading.Thread:
    """Inject ``fault`` as soon as the journal shows ``event`` for ``step``."""

    def watch() -> None:
        world.wait_for_record(lambda r: r["event"] == event and r["step"] == step)
        world.fault(**fault)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_node_unreachable_mid_connect(world: World):
    before = planned(world)
    node = world.nodes[2]  # not the canary (the first worker)
    world.fault(kind="latency", node=node, ms=1000)
    watcher = _when(world, "start", f"talos_join.{node}", kind="unreachable", node=node)
    result = world.apply()
    watcher.join(timeout=30)
    assert result.code == 1
    line = one_line(result.err)
    assert f"apply failed at talos_join.{node}" in line and "rolled back:" in line
    assert_restored(world, before)  # while the node is still down: it was never changed
    world.fault(kind="clear")
    assert_restored(world, before)


def test_node_lost_after_its_join_then_rollback_resumes(world: World):
    before = planned(world, apply={"waitTimeout": "2s"})
    node = world.nodes[2]
    canary = world.nodes[1]
    # once the canary has connected, the other nodes cannot reach Omni, and one goes down
    quiet = _when(world, "end", f"talos_join.{canary}", kind="never-connect")
    watcher = _when(world, "end", f"talos_join.{node}", kind="unreachable", node=node)
    result = world.apply()
    quiet.join(timeout=30)
    watcher.join(timeout=30)
    assert result.code == 1
    line = one_line(result.err)
    assert "the automatic rollback did not finish" in line
    assert f"omniport rollback {world.rollback}" in line
    world.fault(kind="clear")
    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)


def test_first_ctrl_c_rolls_back(world: World):
    before = planned(world)
    world.fault(kind="latency", ms=150)
    proc = world.popen("apply", "--auto-approve", str(world.plan))
    world.wait_for_record(lambda r: r["event"] == "end" and r["step"].startswith("omni_cluster"))
    out, err = interrupt(proc)
    world.fault(kind="clear")
    assert proc.returncode == 1, out + err
    assert "Interrupt received: stopping and rolling back" in out
    assert "apply was interrupted" in one_line(err)
    assert_restored(world, before)


def test_second_ctrl_c_exits_at_once_with_the_journal_intact(world: World):
    before = planned(world)
    world.fault(kind="latency", ms=150)
    proc = world.popen("apply", "--auto-approve", str(world.plan))
    world.wait_for_record(lambda r: r["event"] == "end" and r["step"].startswith("omni_cluster"))
    out, err = interrupt(proc, times=2)
    world.fault(kind="clear")
    assert proc.returncode == 130, out + err
    assert "Exiting immediately; the journal is intact." in out
    assert f"omniport rollback {world.rollback}" in out
    lines = world.journal.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # no torn record
    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)
