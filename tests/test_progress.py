"""Progress on long steps (issue 15 item 4): no step of plan, apply or rollback is silent for
5 s, on a terminal's stderr nor in the ``--json`` stream.

The board (``planner/progress.py``) is exercised first on its own, with real asyncio waits and a
short tick; then the commands run against a lab whose every call is slowed by its latency
fault (2.1 s, longer than the board's 2 s tick), and the longest gap between two output lines,
read as the process writes them, must stay under 5 s.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omniport.planner import progress
from tests.paths import REPO
from tests.reliability.labkit import World, start_world

TICK = 0.3


def board() -> tuple[progress.Board, list[tuple[float, progress.Progress]]]:
    said: list[tuple[float, progress.Progress]] = []
    return progress.Board(lambda p: said.append((time.monotonic(), p)), tick=TICK), said


def run(coro_factory, b: progress.Board):
    async def main():
        with progress.reporting(b):
            return await coro_factory()

    return asyncio.run(main())


def test_a_short_wait_says_nothing():
    b, said = board()

    async def work():
        with progress.waiting("discovery", "reading 3 node(s)"):
            await asyncio.sleep(TICK / 3)

    run(work, b)
    assert said == []


def test_a_long_wait_is_announced_then_said_again_with_its_age():
    b, said = board()

    async def work():
        with progress.waiting("discovery", "reading 3 node(s)", total=3) as wait:
            await asyncio.sleep(TICK * 1.5)
            wait.update(done=2, detail="(batch 2 of 2)")
            await asyncio.sleep(TICK * 2.2)

    started = time.monotonic()
    run(work, b)
    texts = [p.text() for _, p in said]
    assert len(texts) >= 3, texts
    assert texts[0].startswith("Reading 3 node(s)... [0s elapsed]")
    assert texts[-1].startswith("Still reading 3 node(s) (2/3)... [1s elapsed] (batch 2 of 2)")
    assert not said[0][1].repeat and all(p.repeat for _, p in said[1:])
    times = [started] + [t for t, _ in said]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < TICK + 0.3


def test_short_waits_in_a_row_are_not_silent_together():
    """Each wait is shorter than a tick; the run as a whole is not, so it is announced."""
    b, said = board()

    async def work():
        for n in range(8):
            with progress.waiting("discovery", f"step {n}"):
                await asyncio.sleep(TICK * 0.6)

    run(work, b)
    assert len(said) >= 3
    assert {p.what for _, p in said} <= {f"step {n}" for n in range(8)}


def test_something_said_resets_the_silence():
    b, said = board()

    async def work():
        with progress.waiting("step", "creating", subject="omni_cluster.lab", said=True):
            for _ in range(6):
                await asyncio.sleep(TICK * 0.5)
                progress.touch()  # a line the run printed itself

    run(work, b)
    assert said == []


def test_steps_side_by_side_say_how_many_and_a_cancelled_step_goes_quiet():
    b, said = board()

    async def step(n: int, seconds: float):
        with progress.waiting("step", "creating", subject=f"omni_patch.{n}"):
            await asyncio.sleep(seconds)

    async def work():
        slow = asyncio.create_task(step(0, 60))
        await asyncio.gather(step(1, TICK * 1.5), step(2, TICK * 1.5))
        mark = len(said)
        slow.cancel()
        await asyncio.sleep(TICK * 2)
        return mark

    mark = run(work, b)
    assert any("(+2 more)" in p.text() for _, p in said[:mark])
    assert said[mark:] == [], "a cancelled step's wait was still announced"


def test_without_a_board_waits_cost_nothing():
    async def work():
        with progress.waiting("discovery", "reading") as wait:
            wait.update(done=1)
            await asyncio.sleep(0)
        progress.touch()

    asyncio.run(work())  # no board: no error, nothing to say


# ---- against a slow lab ---------------------------------------------------------------------

LATENCY_MS = 2100
LIMIT = 5.0


def timed(world: World, *args: str, env: dict[str, str] | None = None) -> tuple[int, list]:
    """Run omniport, stdout and stderr merged as a terminal shows them; (exit code, [(seconds
    since start, line)])."""
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-m", "omniport.planner.cli", *args],
        cwd=REPO,
        env={**world.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        lines = [(time.monotonic() - started, line.rstrip("\n")) for line in proc.stdout]
        code = proc.wait(timeout=300)
    lines.append((time.monotonic() - started, "<exit>"))
    return code, lines


def longest_silence(lines: list[tuple[float, str]]) -> tuple[float, str]:
    gaps = [(b - a, line) for (a, _), (b, line) in zip([(0.0, "")] + lines, lines, strict=False)]
    return max(gaps)


@pytest.fixture
def slow_world(tmp_path: Path):
    w = start_world(tmp_path / "lab")
    try:
        w.fault(kind="latency", ms=LATENCY_MS)
        yield w
    finally:
        w.stop()


def test_plan_apply_rollback_are_never_silent_for_5s(slow_world: World):
    w = slow_world
    code, lines = timed(w, "plan", "-o", str(w.plan), str(w.spec))
    assert code == 0, lines
    gap, after = longest_silence(lines)
    assert gap < LIMIT, f"plan was silent for {gap:.1f}s before {after!r}"
    assert any("Still " in line or "elapsed]" in line for _, line in lines)

    code, lines = timed(w, "apply", "--json", "--auto-approve", str(w.plan))
    assert code == 0, lines[-5:]
    gap, after = longest_silence(lines)
    assert gap < LIMIT, f"apply --json was silent for {gap:.1f}s before {after[:120]!r}"
    events = [json.loads(line) for _, line in lines[:-1]]
    ticks = [e for e in events if e["type"] == "progress"]
    assert ticks, "no progress event in apply's stream"
    assert {"stage", "what", "elapsed_seconds", "repeat"} <= set(ticks[0]["progress"])
    assert any(e["progress"].get("subject", "").startswith("talos_join.") for e in ticks)

    code, lines = timed(w, "rollback", "--auto-approve", str(w.rollback))
    assert code == 0, lines[-5:]
    gap, after = longest_silence(lines)
    assert gap < LIMIT, f"rollback was silent for {gap:.1f}s before {after!r}"


def test_plan_json_stream_is_never_silent_for_5s(slow_world: World):
    code, lines = timed(
        slow_world, "plan", "--json", "-o", str(slow_world.plan), str(slow_world.spec)
    )
    assert code == 0, lines[-3:]
    gap, after = longest_silence(lines)
    assert gap < LIMIT, f"plan --json was silent for {gap:.1f}s before {after[:120]!r}"
    kinds = [json.loads(line)["type"] for _, line in lines[:-1]]
    assert "progress" in kinds


@pytest.mark.parametrize("automation", [False, True], ids=["terminal", "automation"])
def test_interrupt_hints_follow_automation_mode(tmp_path: Path, automation: bool):
    """The first Ctrl-C during apply rolls back; "Press Ctrl-C again" is a hint for a person,
    left out under OMNIPORT_IN_AUTOMATION."""
    w = start_world(tmp_path / "lab")
    try:
        w.make_plan()
        w.fault(kind="latency", ms=400)
        env = {**w.env, "OMNIPORT_IN_AUTOMATION": "1" if automation else ""}
        proc = subprocess.Popen(
            [sys.executable, "-m", "omniport.planner.cli", "apply", "--auto-approve", str(w.plan)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        w.wait_for_record(lambda r: r.get("event") == "end")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
        assert "Interrupt received" in out, out + err
        assert ("Press Ctrl-C again" in out) is not automation
        assert proc.returncode != 0
    finally:
        w.stop()
