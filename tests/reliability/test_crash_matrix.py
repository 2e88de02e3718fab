"""Crash matrix: SIGKILL apply right after each journal record in turn, then rollback must
restore everything; and SIGKILL rollback after each of its records, then rollback again.

The apply kills itself (OMNIPORT_TEST_KILL_AFTER_RECORD=N) right after fsyncing its N-th record,
so every step boundary is covered: before a step, after its start, after the node's new config
was sent, after its end. Concurrent steps share fsyncs (group commit), so when the N-th record
is on disk a concurrent step may already have written its next record too; no step acts on a
record before it is on disk, and rollback must cope with either. Each case runs against its own
3-node lab.
"""

from __future__ import annotations

import signal

import pytest

from omniport.planner import planfile
from omniport.planner.changes import SCHEMATIC_TYPE
from omniport.planner.execute.session import KILL_ENV
from tests.reliability.labkit import World, assert_restored, start_world

pytestmark = pytest.mark.reliability

APPLY_RECORDS = 43
"""Records of a full 3-node apply of the default lab: begin; 3 schematic registrations x
(start, end); 11 Omni creates x (start, end); 3 node joins x (start, send, end); wait (start,
end); verify (start, end); complete."""

ROLLBACK_RECORDS = 18
"""Records of the rollback of that apply: rollback_begin; 3 restores, the cluster, the imported
secrets and 3 Links x (undo_start, undo_end); rollback_complete. (The 9 other marked resources
go with the cluster: rollback finds them gone and has nothing to undo or journal for them.)"""

KILLED = -signal.SIGKILL


@pytest.fixture
def world(tmp_path):
    w = start_world(tmp_path / "lab")
    try:
        w.make_plan()
        yield w
    finally:
        w.stop()


def expected_apply_records(world: World) -> int:
    plan = planfile.read(world.plan)
    omni = sum(1 for c in plan.changes if c.resource_type.endswith(".omni.sidero.dev"))
    schematics = sum(1 for c in plan.changes if c.resource_type == SCHEMATIC_TYPE)
    joins = len(plan.changes) - omni - schematics
    return 1 + 2 * schematics + 2 * omni + 3 * joins + 2 + 2 + 1


@pytest.mark.parametrize("record", range(1, APPLY_RECORDS + 1))
def test_rollback_restores_after_apply_is_killed(world: World, record: int):
    assert expected_apply_records(world) == APPLY_RECORDS, "update APPLY_RECORDS"
    before = world.snapshot()
    killed = world.apply(env={KILL_ENV: str(record)})
    assert killed.code == KILLED, killed.text
    # every record up to N is on disk, intact (concurrent steps may have written more)
    assert len(world.records()) >= record
    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)


@pytest.mark.parametrize("record", range(1, ROLLBACK_RECORDS + 1))
def test_rollback_finishes_after_rollback_is_killed(world: World, record: int):
    before = world.snapshot()
    applied = world.apply()
    assert applied.code == 0, applied.text
    killed = world.roll_back(env={KILL_ENV: str(record)})
    assert killed.code == KILLED, killed.text
    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)
    if record == 1:
        assert len(world.records()) == APPLY_RECORDS + 1 + ROLLBACK_RECORDS
