"""Ctrl-C at every phase of a run (issue 16, item 5), sent as SIGINT to a real process.

- before the transaction starts (reading the world, the prompt): exit 130, "nothing was
  changed", and nothing was;
- inside the transaction: the first rolls back (tests/reliability/test_faults.py), a second
  exits at once naming the rollback command; during the automatic rollback after a failure,
  the first says how to undo and lets the rollback finish, a second exits naming the command;
- after "Apply complete!": ignored, exit 0 (the import is done and kept; a script must not
  take a finished apply for a failed one);
- during ``omniport rollback``: the first stops it where it is, naming the same command to
  finish (which does);
- ``omniport demo`` interrupted stops its lab (by its pid) and removes its temporary folder
  with the keys and backups.

Each is timed by watching the process's own output lines; the lab's latency fault makes the
steps slow enough to land in the phase meant.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from omniport.lab import control as lab_control
from omniport.planner.cli.console import ConsoleUi
from omniport.planner.execute.session import Interrupted, Interrupts
from tests.paths import REPO
from tests.reliability.labkit import World, assert_restored
from tests.test_apply_lab import one_line

pytestmark = pytest.mark.reliability


class Watched:
    """A running omniport process whose stdout lines are collected as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()

    def wait_line(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._seen:
            while True:
                for line in self.lines:
                    found = regex.search(line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}:\n" + self.out)
                self._seen.wait(min(left, 0.1))

    def interrupt(self, times: int = 1, gap: float = 0.3) -> None:
        for n in range(times):
            if n:
                time.sleep(gap)
            self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 180) -> tuple[int, str, str]:
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self.proc.stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code, self.out, err

    @property
    def out(self) -> str:
        return "\n".join(self.lines)


def started(world: World, *args: str, stdin: int | None = None) -> Watched:
    proc = subprocess.Popen(
        [sys.executable, "-m", "omniport.planner.cli", *args],
        cwd=REPO,
        env=world.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        text=True,
        # a shell's background job starts with SIGINT ignored, and children inherit that:
        # give the child the default, as a terminal's foreground process has
        preexec_fn=_default_sigint,
    )
    return Watched(proc)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def apply_again_and_roll_back(world: World, before) -> None:
    """Nothing was left behind: no lock, no blocking journal; the same plan applies."""
    applied = world.apply()
    assert applied.code == 0, applied.text
    rollback = re.search(r"^Rollback: (.+)$", applied.out, re.M)
    assert rollback
    rolled = world.cli("rollback", "--auto-approve", rollback.group(1))
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)


# --- before the transaction ---------------------------------------------------------------------


def test_ctrl_c_while_reading_the_world_changes_nothing_and_exits_130(world: World):
    world.make_plan()
    before = world.snapshot()
    world.fault(kind="latency", ms=400)  # the re-discovery takes seconds
    run = started(world, "apply", "--auto-approve", str(world.plan))
    run.wait_line(r"^Reading 3 node\(s\) and Omni to check that the plan is current")
    time.sleep(0.2)
    run.interrupt()
    code, out, err = run.finish()
    world.fault(kind="clear")
    assert code == 130, out + err
    assert "Traceback" not in out + err
    line = one_line(err)
    assert line == "Error: interrupted (Ctrl-C) before the first change; nothing was changed"
    assert "Backup:" not in out
    assert world.snapshot() == before
    apply_again_and_roll_back(world, before)


def test_ctrl_c_at_the_prompt_changes_nothing_and_exits_130(world: World):
    world.make_plan()
    before = world.snapshot()
    leader, follower = pty.openpty()  # a terminal, so that apply asks for approval
    try:
        run = started(world, "apply", str(world.plan), stdin=follower)
        run.wait_line(r"Only 'yes' will be accepted")
        time.sleep(0.3)  # the prompt is printed without a newline; input() is waiting
        run.interrupt()
        code, out, err = run.finish()
    finally:
        os.close(leader)
        os.close(follower)
    assert code == 130, out + err
    assert "Traceback" not in out + err
    assert one_line(err).endswith("before the first change; nothing was changed")
    assert world.snapshot() == before
    apply_again_and_roll_back(world, before)


# --- after the journal's begin ------------------------------------------------------------------


def _failing_slowly(world: World) -> str:
    """A plan whose last join fails, with slow nodes: the automatic rollback takes seconds."""
    world.make_plan()
    last = world.nodes[-1]
    world.fault(kind="apply-failure", node=last)
    world.fault(kind="latency", ms=300)
    return last


def test_ctrl_c_during_the_automatic_rollback_names_the_rollback_and_lets_it_finish(
    world: World,
):
    before = world.snapshot()
    _failing_slowly(world)
    run = started(world, "apply", "--auto-approve", str(world.plan))
    rollback = run.wait_line(r"^Rollback: (.+)$").group(1)
    run.wait_line(r"^Rolling back every step that was started")
    run.interrupt()
    code, out, err = run.finish()
    world.fault(kind="clear")
    assert code == 1, out + err
    assert (
        "Interrupt received; press Ctrl-C again to exit at once. To undo what was done, run: "
        f"omniport rollback {rollback}" in out
    ), out
    assert "rolled back:" in one_line(err)
    assert_restored(world, before)


def test_second_ctrl_c_during_the_automatic_rollback_exits_naming_the_rollback(world: World):
    before = world.snapshot()
    _failing_slowly(world)
    run = started(world, "apply", "--auto-approve", str(world.plan))
    rollback = run.wait_line(r"^Rollback: (.+)$").group(1)
    run.wait_line(r"^Rolling back every step that was started")
    run.interrupt(times=2)
    code, out, err = run.finish()
    world.fault(kind="clear")
    assert code == 130, out + err
    assert "Traceback" not in out + err
    assert "Exiting immediately; the journal is intact. To undo what was done, run: " in out
    assert f"omniport rollback {rollback}" in out
    rolled = world.cli("rollback", "--auto-approve", rollback)
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)


# --- after "Apply complete!" --------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02, 0.05])
def test_ctrl_c_after_apply_complete_exits_0_and_keeps_the_import(world: World, delay: float):
    """Stopped the moment "Apply complete!" shows, interrupted, continued: wherever the signal
    lands between that line and the exit, apply ends with 0 and prints its closing lines."""
    world.make_plan()
    before = world.snapshot()
    run = started(world, "apply", "--auto-approve", str(world.plan))
    run.wait_line(r"Apply complete!")
    run.proc.send_signal(signal.SIGSTOP)
    try:
        run.proc.send_signal(signal.SIGINT)
    finally:
        run.proc.send_signal(signal.SIGCONT)
    time.sleep(delay)
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    assert code == 0, out + err
    assert err == "", err
    rollback = re.search(r"^To undo the import: omniport rollback (.+)$", out, re.M)
    assert rollback, out
    assert world.snapshot() != before  # the import is kept
    rolled = world.cli("rollback", "--auto-approve", rollback.group(1))
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)


# --- the demo -----------------------------------------------------------------------------------


def _demo(tmp_path: Path) -> Watched:
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "OMNIPORT_LOCK_DIR": str(tmp_path / "locks"),
        "NO_COLOR": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "omniport.planner.cli", "demo"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        preexec_fn=_default_sigint,
    )
    return Watched(proc)


def _lab_pid(lab_dir: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(json.loads((lab_dir / "lab.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    raise AssertionError("the demo's lab never came up")


@pytest.mark.parametrize(
    ("phase", "times", "codes"),
    [
        ("omniport plan", 1, (130,)),
        ("omniport apply", 1, (1,)),  # the apply rolls back, the demo stops: an error
        ("omniport apply", 2, (130,)),
    ],
    ids=["plan-once", "apply-once", "apply-twice"],
)
def test_an_interrupted_demo_stops_its_lab_and_removes_its_keys(
    tmp_path: Path, phase: str, times: int, codes: tuple[int, ...]
):
    run = _demo(tmp_path)
    lab_dir = Path(run.wait_line(r"Starting a lab in (\S+): ").group(1))
    workdir = lab_dir.parent
    assert workdir.parent == tmp_path and workdir.name.startswith("omniport-demo-")
    pid = _lab_pid(lab_dir)
    try:
        lab_control.fault(lab_dir, {"kind": "latency", "ms": 300})
        run.wait_line(re.escape(phase))
        if phase == "omniport apply":
            run.wait_line(r"^Journal: ")  # inside the transaction
            time.sleep(0.5)
        else:
            time.sleep(0.3)
        run.interrupt(times=times, gap=0.5)
        code, out, err = run.finish()
        assert code in codes, out + err
        assert "Traceback" not in out + err
        assert not lab_control.pid_alive(pid), "the demo's lab is still running"
        assert not workdir.exists(), sorted(p.name for p in workdir.rglob("*"))
    finally:
        if lab_control.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


# --- the phases, one by one (the kernel alone) --------------------------------------------------


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        self.lines.append(text)


def test_a_ctrl_c_between_begin_and_the_work_keeps_the_work_from_starting():
    out = Lines()
    interrupts = Interrupts(ConsoleUi(out, as_json=False, color=False), exit_now=lambda: None)
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    async def main() -> None:
        interrupts.begun = True
        interrupts.fire()  # no task yet
        with pytest.raises(Interrupted):
            await interrupts.guard(work())

    asyncio.run(main())
    assert ran == []
    assert any("rolling back" in line for line in out.lines)


def test_before_begin_a_second_ctrl_c_says_nothing_changed_and_after_finish_none_exits():
    out = Lines()
    exits: list[int] = []
    interrupts = Interrupts(ConsoleUi(out, as_json=False, color=False), lambda: exits.append(1))
    interrupts.fire()
    assert out.lines[-1] == "Interrupt received: stopping before the first change…"
    interrupts.fire()
    assert exits == [1] and out.lines[-1] == "Exiting immediately; nothing was changed."
    done = Interrupts(ConsoleUi(out, as_json=False, color=False), lambda: exits.append(2))
    done.begun = done.finished = True
    done.fire()
    done.fire()
    assert exits == [1]


def test_ctrl_c_during_plan_exits_130_and_writes_no_plan(world: World):
    world.fault(kind="latency", ms=400)
    target = world.dir / "interrupted.plan.json"
    run = started(world, "plan", str(world.spec), "-o", str(target))
    time.sleep(1.5)  # reading the slow nodes
    run.interrupt()
    code, out, err = run.finish()
    world.fault(kind="clear")
    assert code == 130, out + err
    assert "Traceback" not in out + err
    assert err.strip().endswith("Interrupted.")
    assert not target.exists()


# --- omniport rollback --------------------------------------------------------------------------


def test_ctrl_c_during_rollback_stops_it_and_the_same_command_finishes_it(world: World):
    """The first Ctrl-C stops the rollback itself (it does not roll anything "back" again);
    the journal keeps what it did, and the command it names finishes the job."""
    world.make_plan()
    before = world.snapshot()
    applied = world.apply()
    assert applied.code == 0, applied.text
    rollback = re.search(r"^Rollback: (.+)$", applied.out, re.M)
    assert rollback
    world.fault(kind="latency", ms=300)
    run = started(world, "rollback", "--auto-approve", rollback.group(1))
    run.wait_line(r"^omni_cluster\.lab: Destroying\.\.\.")  # nodes restored, Omni next
    run.interrupt()
    code, out, err = run.finish()
    world.fault(kind="clear")
    assert code == 1, out + err
    assert "Traceback" not in out + err
    assert "Interrupt received: stopping the rollback where it is" in out, out
    assert "rolling back what was done" not in out
    assert one_line(err) == (
        f"Error: rollback interrupted; run `omniport rollback {rollback.group(1)}` again to finish"
    )
    assert "Rollback complete!" not in out
    again = world.cli("rollback", "--auto-approve", rollback.group(1))
    assert again.code == 0, again.text
    assert_restored(world, before)
