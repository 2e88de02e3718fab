"""The journal's group commit: concurrent writers share fsyncs, and none goes on early."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from omniport.planner.execute import journal
from omniport.planner.execute.session import KILL_ENV


def counting_fsync(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(journal.os, "fsync", fsync)
    return calls


def test_concurrent_writers_share_fsyncs_and_keep_order(tmp_path, monkeypatch):
    calls = counting_fsync(monkeypatch)
    path = tmp_path / "j.jsonl"

    async def main() -> list[int]:
        with journal.Journal(path) as j:
            records = await asyncio.gather(
                *(j.append_durable("start", f"step{n}", n=n) for n in range(50))
            )
            return [r.seq for r in records]

    seqs = asyncio.run(main())
    assert seqs == list(range(1, 51))
    assert [r.step for r in journal.read(path)] == [f"step{n}" for n in range(50)]
    assert 1 <= len(calls) < 50


def test_a_writer_returns_only_after_an_fsync_that_began_after_its_write(tmp_path, monkeypatch):
    path = tmp_path / "j.jsonl"
    covered: list[int] = []  # file size when each finished fsync began
    real = os.fsync

    def fsync(fd: int) -> None:
        size = os.fstat(fd).st_size
        real(fd)
        covered.append(size)

    monkeypatch.setattr(journal.os, "fsync", fsync)

    async def main() -> None:
        with journal.Journal(path) as j:

            async def one(n: int) -> None:
                await asyncio.sleep(n * 0.0005)
                record = await j.append_durable("start", f"s{n}")
                lines = path.read_bytes().splitlines(keepends=True)
                end = sum(len(line) for line in lines[: record.seq])
                assert covered and max(covered) >= end

            await asyncio.gather(*(one(n) for n in range(30)))

    asyncio.run(main())


def test_a_cancelled_writer_does_not_cancel_the_shared_fsync(tmp_path):
    path = tmp_path / "j.jsonl"

    async def main() -> None:
        with journal.Journal(path) as j:
            first = asyncio.ensure_future(j.append_durable("start", "a"))
            second = asyncio.ensure_future(j.append_durable("start", "b"))
            await asyncio.sleep(0)
            first.cancel()
            record = await second
            assert record.seq == 2
            await j.durable(2)

    asyncio.run(main())
    assert [r.step for r in journal.read(path)] == ["a", "b"]


def test_a_failed_fsync_reaches_the_writer(tmp_path, monkeypatch):
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal.os, "fsync", broken)

    async def main() -> None:
        with journal.Journal(tmp_path / "j.jsonl") as j:
            with pytest.raises(OSError, match="Input/output error"):
                await j.append_durable("start", "a")

    asyncio.run(main())


def test_the_kill_hook_fires_after_the_nth_durable_record(tmp_path):
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {os.getcwd()!r})
        from omniport.planner.execute.session import Recorder
        record = Recorder({str(tmp_path / "j.jsonl")!r})

        async def main():
            record("begin", None)
            await asyncio.gather(*(record.durably("start", f"step{{n}}") for n in range(10)))

        asyncio.run(main())
        """
    )
    env = {**os.environ, KILL_ENV: "4"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert proc.returncode == -signal.SIGKILL
    steps = [r.step for r in journal.read(tmp_path / "j.jsonl")]
    # the first four records are on disk; later ones may have been written, never lost order
    assert steps[:4] == [None, "step0", "step1", "step2"]
    assert steps == [None] + [f"step{n}" for n in range(len(steps) - 1)]
