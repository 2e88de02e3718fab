"""The apply journal: JSON Lines, one record per step start and end, fsynced before moving on.

It is the write-ahead log that makes rollback resumable after a crash at any point: a step whose
``start`` is recorded may have happened (rollback undoes it idempotently); a step whose ``end``
is recorded did happen. A torn last line (the process died mid-write) is ignored.

Steps that run concurrently share their fsyncs (group commit, as databases do with their
write-ahead logs): each record is written at once, in order, and its writer waits until an
fsync that began after the write has finished. The fsync runs in a worker thread, so the event
loop keeps serving the other steps' network calls meanwhile, and one fsync makes every record
written before it durable. The guarantee is the same as one fsync per record (no step acts
before its record is on disk); what changes is that ten concurrent steps cost one or two
fsyncs instead of ten, none of which blocks the loop.

A full disk must not leave an apply half done with no way back. Before its first change, apply
reserves room for the journal (:class:`Reserve`: a file of preallocated blocks beside it); when
a journal write fails (ENOSPC, EIO), the reserve is released so that the rollback that follows
has room to journal its own records, and a write that was cut short leaves a torn line, which
the next record starts after and :func:`read` ignores. The test hook :data:`FULL_ENV` makes
this process's disk fill up at its N-th journal write (see :class:`SimulatedFullDisk`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FULL_ENV = "OMNIPORT_TEST_JOURNAL_FULL"
"""Test hook: ``N`` makes this process's N-th journal write (and every later one) meet a full
disk, cut short halfway, as a real full disk cuts a write; the space a released reserve frees
is then available again, as on a real filesystem. ``N:stays-full`` keeps the disk full even
after the reserve is released (another writer took the space). ``0`` means full from the
start: the reserve itself cannot be made."""

RESERVE_SUFFIX = ".reserve"


@dataclass(frozen=True)
class Record:
    seq: int
    event: str  # "begin" | "start" | "end" | "failed" | "undo_start" | "undo_end" | "complete"
    step: str | None
    data: dict[str, Any]
    at: str


class Journal:
    """Append-only journal whose every record is fsynced before its writer goes on (mode 0600:
    it names nodes and resources). Every record written is also kept in :attr:`memory`, so
    that a run whose journal stopped being writable still knows what it did."""

    def __init__(self, path: Path, environ: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.disk = SimulatedFullDisk.from_env(environ)
        self.memory: list[Record] = []
        existing = read(self.path) if self.path.exists() else []
        self._seq = existing[-1].seq if existing else 0
        self._durable = self._seq
        self._flush: asyncio.Future[None] | None = None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(self._fd, 0o600)
        size = os.fstat(self._fd).st_size
        # a torn record from a crash (or a full disk): the next record starts on its own line
        self._torn = bool(size) and Path(self.path).read_bytes()[-1:] != b"\n"

    def write(self, event: str, step: str | None = None, **data: Any) -> Record:
        """Write one record (in order) without waiting for the disk; see :meth:`durable`.

        The record is in :attr:`memory` even when the write fails (OSError): a write cut
        short leaves a torn line, which the next record starts after."""
        self._seq += 1
        record = Record(self._seq, event, step, data, datetime.now(UTC).isoformat())
        self.memory.append(record)
        line = json.dumps(
            {"seq": record.seq, "event": event, "step": step, "data": data, "at": record.at},
            sort_keys=True,
        )
        payload = (b"\n" if self._torn else b"") + (line + "\n").encode()
        self._torn = True  # until the whole line is written
        if self.disk is not None:
            self.disk.write(self._fd, payload)
        else:
            _write_all(self._fd, payload)
        self._torn = False
        return record

    def append(self, event: str, step: str | None = None, **data: Any) -> Record:
        """Write one record and fsync it before returning (for code outside the event loop)."""
        record = self.write(event, step, **data)
        os.fsync(self._fd)
        self._durable = max(self._durable, record.seq)
        return record

    async def append_durable(self, event: str, step: str | None = None, **data: Any) -> Record:
        """Write one record and wait until it is on disk, sharing the fsync with concurrent
        writers (group commit)."""
        record = self.write(event, step, **data)
        await self.durable(record.seq)
        return record

    async def durable(self, seq: int) -> None:
        """Return once every record up to ``seq`` has been fsynced."""
        while self._durable < seq:
            if self._flush is None:
                self._flush = asyncio.ensure_future(self._fsync_written())
                self._flush.add_done_callback(_retrieve)
            # shielded: a cancelled writer must not cancel the fsync others are waiting for
            await asyncio.shield(self._flush)

    async def _fsync_written(self) -> None:
        target = self._seq
        # a duplicate descriptor keeps the fsync valid even if close() runs meanwhile
        fd = os.dup(self._fd)
        try:
            await asyncio.to_thread(_fsync_and_close, fd)
            self._durable = max(self._durable, target)
        finally:
            self._flush = None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write to a nearly full disk may be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class SimulatedFullDisk:
    """The :data:`FULL_ENV` test hook: a disk that fills up at this process's N-th write."""

    def __init__(self, at: int, stays_full: bool) -> None:
        self.at = at
        self.stays_full = stays_full
        self.writes = 0
        self.free: int | None = 0 if at == 0 else None  # None: not full yet

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None) -> SimulatedFullDisk | None:
        raw = (os.environ if environ is None else environ).get(FULL_ENV, "").strip()
        count, _, mode = raw.partition(":")
        if not count.isdigit():
            return None
        return cls(int(count), mode == "stays-full")

    def write(self, fd: int, data: bytes) -> None:
        self.writes += 1
        if self.free is None and self.writes >= self.at:
            self.free = len(data) // 2  # the disk fills up in the middle of this record
        if self.free is None:
            _write_all(fd, data)
            return
        fits = data[: self.free]
        _write_all(fd, fits)
        self.free -= len(fits)
        if len(fits) < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def allocate(self, size: int) -> None:
        if self.free is not None and self.free < size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.free is not None:
            self.free -= size

    def released(self, size: int) -> None:
        if self.free is not None and not self.stays_full:
            self.free += size


class Reserve:
    """Disk space set aside for a journal: ``<journal>.reserve``, blocks preallocated (mode
    0600), released (deleted) when a journal write fails, so the rollback can journal."""

    def __init__(self, journal_path: Path, disk: SimulatedFullDisk | None = None) -> None:
        self.path = Path(journal_path).with_name(Path(journal_path).name + RESERVE_SUFFIX)
        self.disk = disk
        self.size = 0

    def take(self, size: int) -> None:
        """Preallocate ``size`` bytes; raises OSError (ENOSPC) when the disk has not the room."""
        if self.disk is not None:
            self.disk.allocate(size)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as err:
                if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                _write_all(fd, bytes(size))  # a filesystem without fallocate: write zeros
            os.fsync(fd)
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)
        self.size = size

    def adopt(self) -> bool:
        """Take over a reserve an earlier, killed run left behind (released on need)."""
        try:
            self.size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        return True

    def release(self) -> int:
        """Delete the reserve; returns the bytes freed (0 when there was none)."""
        freed, self.size = self.size, 0
        try:
            self.path.unlink()
        except FileNotFoundError:
            return 0
        if self.disk is not None:
            self.disk.released(freed)
        return freed


def reserve_size(steps: int) -> int:
    """Room for the records of ``steps`` steps and their undo (a record is ~300 bytes)."""
    return 64 * 1024 + 4 * 1024 * steps


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _retrieve(flush: asyncio.Future[None]) -> None:
    """Mark a failed fsync as seen: its waiters raise it; without waiters it must not warn."""
    if not flush.cancelled():
        flush.exception()


def read(path: Path) -> list[Record]:
    """Every complete record; a torn or garbled trailing line (crash mid-write) is dropped."""
    records: list[Record] = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            raw = json.loads(line)
            records.append(
                Record(
                    int(raw["seq"]),
                    str(raw["event"]),
                    raw.get("step"),
                    dict(raw["data"]),
                    raw["at"],
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return records


def started_steps(records: list[Record]) -> list[str]:
    """Steps that began (in order), whether or not they ended: the ones rollback must undo."""
    seen: list[str] = []
    for r in records:
        if r.event == "start" and r.step and r.step not in seen:
            seen.append(r.step)
    return seen


def undone_steps(records: list[Record]) -> set[str]:
    return {r.step for r in records if r.event == "undo_end" and r.step}
