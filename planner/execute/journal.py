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
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Record:
    seq: int
    event: str  # "begin" | "start" | "end" | "failed" | "undo_start" | "undo_end" | "complete"
    step: str | None
    data: dict[str, Any]
    at: str


class Journal:
    """Append-only journal whose every record is fsynced before its writer goes on (mode 0600:
    it names nodes and resources)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        existing = read(self.path) if self.path.exists() else []
        self._seq = existing[-1].seq if existing else 0
        self._durable = self._seq
        self._flush: asyncio.Future[None] | None = None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(self._fd, 0o600)
        size = os.fstat(self._fd).st_size
        if size and Path(self.path).read_bytes()[-1:] != b"\n":
            # a torn record from a crash: end it so the next record starts on its own line
            os.write(self._fd, b"\n")
            os.fsync(self._fd)

    def write(self, event: str, step: str | None = None, **data: Any) -> Record:
        """Write one record (in order) without waiting for the disk; see :meth:`durable`."""
        self._seq += 1
        record = Record(self._seq, event, step, data, datetime.now(UTC).isoformat())
        line = json.dumps(
            {"seq": record.seq, "event": event, "step": step, "data": data, "at": record.at},
            sort_keys=True,
        )
        os.write(self._fd, (line + "\n").encode())
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
