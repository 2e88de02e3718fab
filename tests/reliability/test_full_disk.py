"""A full disk mid-apply (issue 16, item 3): the journal cannot be written.

Before its first change, apply reserves room for its journal (``<journal>.reserve``, blocks
preallocated). A journal write that fails is a fault like any failed step: the run stops, the
reserve is released so that the rollback has room for its records, the rollback is driven from
the run's memory of what it did, and one line says what happened and names the rollback
command. ``rollback`` works on a disk that is still full (it says once that it goes on without
its journal), and a torn last line (a write the full disk cut short) is ignored.

The disk fills up through the test hook ``OMNIPORT_TEST_JOURNAL_FULL=N``: the N-th journal
write of the process is cut short halfway and fails with ENOSPC, as on a real full disk, and
so does every later one; the room a released reserve frees is usable again, unless
``N:stays-full`` (another writer took it). Real labs, real processes; paths are found from
what apply printed and recorded, never assumed.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
from pathlib import Path

import pytest

from omniport.planner.execute import journal, rollbackfile
from omniport.planner.execute.errors import JournalError
from omniport.planner.execute.session import Recorder
from tests.reliability.labkit import Result, World, assert_restored
from tests.test_apply_lab import one_line

pytestmark = pytest.mark.reliability

FULL = journal.FULL_ENV


# --- where apply wrote its files ----------------------------------------------------------------


def rollback_file(result: Result) -> Path:
    """The rollback plan, as apply printed it before its first change."""
    found = re.search(r"^Rollback: (.+)$", result.out, re.M)
    assert found, result.text
    return Path(found.group(1))


def journal_file(rollback: Path) -> Path:
    """The journal, as the rollback plan records it."""
    return Path(rollbackfile.read(rollback).journal)


def raw_lines(path: Path) -> list[str]:
    return path.read_text().split("\n")


def torn(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if not line:
            continue
        try:
            json.loads(line)
        except ValueError:
            out.append(line)
    return out


# --- through the lab ---------------------------------------------------------------------------

# (journal write that meets the full disk, what it is in a default 3-node apply, where the
# error says apply failed)
POINTS = [
    (2, "the first step's start", "apply failed at "),
    (15, "an Omni create's record", "apply failed at omni_"),
    (31, "a node join's record", "apply failed at talos_join."),
    (43, "the complete record", "apply failed at the journal's complete record"),
]


@pytest.mark.parametrize("stays_full", [False, True], ids=["reserve-frees-room", "stays-full"])
@pytest.mark.parametrize(
    ("at", "where"), [(p[0], p[2]) for p in POINTS], ids=[p[1] for p in POINTS]
)
def test_a_full_disk_mid_apply_rolls_back_and_names_the_rollback(
    world: World, at: int, where: str, stays_full: bool
):
    world.make_plan()
    before = world.snapshot()
    hook = f"{at}:stays-full" if stays_full else str(at)
    result = world.apply(env={FULL: hook})
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    rollback = rollback_file(result)
    line = one_line(result.err)
    assert "cannot write the journal" in line and "No space left on device" in line, line
    assert "rolled back:" in line and "driven from memory" in line, line
    assert line.startswith(f"Error: {where}"), line
    assert f"run `omniport rollback {rollback}` to confirm that nothing is left" in line, line
    assert_restored(world, before)

    path = journal_file(rollback)
    lines = raw_lines(path)
    assert len(torn(lines)) == 1, "the write the full disk cut short is one torn line"
    records = journal.read(path)  # the torn line is recognised and ignored
    assert [r.seq for r in records] == sorted(r.seq for r in records)
    events = [r.event for r in records]
    assert events[0] == "begin"
    if stays_full:  # nothing after the torn line reached the disk
        assert lines[-1] != "" and lines[-1] in torn(lines)
        assert "rollback_complete" not in events
    else:  # the released reserve gave the rollback room for its records
        assert events[-1] == "rollback_complete"
    assert not Path(str(path) + journal.RESERVE_SUFFIX).exists()

    # the rollback the message names works on the still full disk, and changes nothing more
    again = world.roll_back(env={FULL: "1:stays-full"})
    assert again.code == 0, again.text
    assert "Warning: cannot write the journal" in again.out
    assert "Rollback complete!" in again.out
    assert_restored(world, before)
    # once there is room again, it records its completion
    last = world.roll_back()
    assert last.code == 0, last.text
    assert journal.read(path)[-1].event == "rollback_complete"


def test_rollback_on_a_disk_that_is_still_full_works(world: World):
    world.make_plan()
    before = world.snapshot()
    applied = world.apply()
    assert applied.code == 0, applied.text
    rollback = rollback_file(applied)
    result = world.roll_back(env={FULL: "1:stays-full"})
    assert result.code == 0, result.text
    assert "Traceback" not in result.text
    warnings = [line for line in result.out.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1, result.out  # said once, not once per record
    assert f"cannot write the journal {journal_file(rollback)}" in warnings[0]
    assert_restored(world, before)
    records = journal.read(journal_file(rollback))
    assert records[-1].event == "complete"  # the rollback's own records did not fit
    assert len(torn(raw_lines(journal_file(rollback)))) == 1


def test_no_room_for_the_reserve_means_nothing_changes(world: World):
    world.make_plan()
    before = world.snapshot()
    result = world.apply(env={FULL: "0"})
    assert result.code == 1, result.text
    line = one_line(result.err)
    assert "there is no room for the journal" in line and "nothing was changed" in line, line
    named = re.search(r"no room for the journal (\S+) \(", line)
    assert named, line
    assert not [r for r in journal.read(Path(named.group(1))) if r.event == "begin"]
    assert not Path(named.group(1) + journal.RESERVE_SUFFIX).exists()
    after = world.snapshot()
    assert after == before
    # with room again, the same plan applies (the unused write-ahead files are moved aside)
    applied = world.apply()
    assert applied.code == 0, applied.text


def test_the_reserve_is_taken_before_the_first_change(world: World):
    """Killed right after ``begin``: the reserve is on disk, its blocks allocated; the rollback
    takes it over and releases it when it is done."""
    from omniport.planner.execute.session import KILL_ENV

    world.make_plan()
    before = world.snapshot()
    killed = world.apply(env={KILL_ENV: "1"})
    assert killed.code < 0
    rollback = rollback_file(killed)
    reserve = Path(str(journal_file(rollback)) + journal.RESERVE_SUFFIX)
    info = reserve.stat()
    plan = json.loads(world.plan.read_text())
    assert info.st_size == journal.reserve_size(len(plan["changes"]) + len(plan["nodes"]))
    assert info.st_blocks * 512 >= info.st_size, "the reserve's blocks are allocated"
    assert info.st_mode & 0o777 == 0o600
    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert not reserve.exists()
    assert_restored(world, before)


# --- the journal and recorder alone ------------------------------------------------------------


def test_a_write_cut_short_leaves_one_torn_line_that_the_next_record_starts_after(tmp_path):
    path = tmp_path / "j.jsonl"
    with journal.Journal(path, {FULL: "2"}) as j:
        j.append("begin")
        reserve = journal.Reserve(path, j.disk)
        with pytest.raises(OSError) as err:
            j.append("start", "a")
        assert err.value.errno == errno.ENOSPC
        assert reserve.release() == 0  # no reserve taken: nothing frees room
        with pytest.raises(OSError):
            j.append("end", "a")
        assert [r.event for r in j.memory] == ["begin", "start", "end"]
    assert [r.event for r in journal.read(path)] == ["begin"]
    text = path.read_text()
    assert not text.endswith("\n") and len(torn(text.split("\n"))) == 1


def test_released_room_lets_the_next_record_through_on_its_own_line(tmp_path):
    path = tmp_path / "j.jsonl"
    with journal.Journal(path, {FULL: "3"}) as j:
        reserve = journal.Reserve(path, j.disk)
        reserve.take(4096)
        j.append("begin")
        j.append("start", "a")
        with pytest.raises(OSError):
            j.append("end", "a")
        assert reserve.release() == 4096
        j.append("undo_start", "a")
    assert [r.event for r in journal.read(path)] == ["begin", "start", "undo_start"]
    assert len(torn(raw_lines(path))) == 1
    assert path.read_text().endswith("\n")


def test_a_reopened_journal_with_a_torn_tail_goes_on_after_it(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"seq": 1, "event": "begin", "step": null, "data": {}, "at": "x"}\n{"seq": 2')
    with journal.Journal(path, {}) as j:
        j.append("undo_start", "a")
    assert [(r.seq, r.event) for r in journal.read(path)] == [(1, "begin"), (2, "undo_start")]


def test_the_recorder_raises_while_strict_and_warns_once_when_not(tmp_path):
    said: list[str] = []
    record = Recorder(tmp_path / "j.jsonl", {FULL: "2:stays-full"}, warn=said.append)
    record.reserve_space(10)
    record("begin")
    with pytest.raises(JournalError, match="No space left on device"):
        record("start", "a")
    assert not Path(str(record.path) + journal.RESERVE_SUFFIX).exists(), "released on need"
    with pytest.raises(JournalError):  # while strict, no record is silently lost
        asyncio.run(record.durably("start", "b"))
    record.strict = False
    record("undo_start", "a")
    asyncio.run(record.durably("undo_end", "a"))
    record.close()
    assert said == []  # the failure was already reported by the raise
    assert [r.event for r in record.memory] == ["begin", "start", "start", "undo_start", "undo_end"]

    quiet = Recorder(tmp_path / "k.jsonl", {FULL: "1:stays-full"}, strict=False, warn=said.append)
    quiet("rollback_begin")
    quiet("undo_start", "x")
    quiet.close()
    assert len(said) == 1 and said[0].startswith("Warning: cannot write the journal")


def test_the_reserve_is_preallocated_owner_only_and_refused_without_room(tmp_path):
    path = tmp_path / "j.jsonl"
    reserve = journal.Reserve(path)
    reserve.take(256 * 1024)
    info = os.stat(reserve.path)
    assert info.st_size == 256 * 1024 and info.st_blocks * 512 >= info.st_size
    assert info.st_mode & 0o777 == 0o600
    assert reserve.release() == 256 * 1024 and not reserve.path.exists()
    record = Recorder(tmp_path / "full.jsonl", {FULL: "0"})
    with pytest.raises(JournalError, match="there is no room for the journal .* nothing was"):
        record.reserve_space(3)
    record.close()


def test_a_lock_file_that_cannot_be_made_is_one_clear_error(tmp_path):
    """The lock is taken before anything else; a folder it cannot be made in (a full disk,
    or here a file in the way) is a refusal naming the path and the fix, not a traceback."""
    from omniport.planner.execute.lock import ClusterLock, LockedError

    blocker = tmp_path / "state"
    blocker.write_text("a file where the lock folder should be\n")
    lock = ClusterLock("omni.example.com/prod", "apply", directory=blocker / "locks")
    with pytest.raises(LockedError, match="cannot create the lock file .*OMNIPORT_LOCK_DIR"):
        lock.acquire()
