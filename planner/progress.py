"""Progress on long steps: what a run is waiting for, said again while it waits.

The stages say what they wait for (:func:`waiting`, :func:`begin`/:func:`end`); a
:class:`Board`, installed by the command line for the run (:func:`reporting`), announces the
newest open wait whenever nothing was said for :data:`TICK_SECONDS` ("Reading 3 node(s)... [2s
elapsed]", then "Still reading 3 node(s)... [4s elapsed]", as Terraform says "Still
creating..."), through a sink: a line on stderr, or a ``progress`` event with ``--json``. So no
long step is silent (not discovery's batches, the health check, a step of apply, nor the wait
for the nodes to connect to Omni), and a fast run prints nothing more than before.

Without a board (a library caller, a test of a stage) every call here does nothing. The board
is found through a context variable, so the stages need no extra parameter and every asyncio
task of the run sees it. One event loop thread drives a board; its ticker is an asyncio task
that only sleeps and reports, so cancelling it is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import count
from typing import Any

TICK_SECONDS = 2.0
"""A wait is re-announced once nothing has been said for this long."""

_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Progress:
    """One announcement: ``what`` is waited for (a phrase that follows "Still"), by ``stage``.

    ``subject`` names the step the wait belongs to (a resource address), ``done``/``total``
    count work where it is countable, ``detail`` is the latest word on it (the health check's
    current check), ``repeat`` marks a wait that was announced before."""

    stage: str
    what: str
    elapsed_seconds: float
    subject: str | None = None
    done: int | None = None
    total: int | None = None
    repeat: bool = False
    detail: str | None = None

    def text(self) -> str:
        """The human line: ``Reading 3 node(s)... [2s elapsed]`` when first said, then
        ``Still reading 3 node(s)... [4s elapsed]`` (a step's subject first: ``addr: Still
        creating... [4s elapsed]``, as Terraform says it)."""
        counted = f" ({self.done}/{self.total})" if self.done is not None and self.total else ""
        what = f"Still {self.what}" if self.repeat else f"{self.what[:1].upper()}{self.what[1:]}"
        line = f"{what}{counted}... [{self.elapsed_seconds:.0f}s elapsed]"
        if self.detail:
            line += f" {self.detail}"
        return f"{self.subject}: {line}" if self.subject else line


Sink = Callable[[Progress], None]


@dataclass
class _Wait:
    stage: str
    what: str
    subject: str | None
    started: float
    task: asyncio.Task[Any] | None
    done: int | None = None
    total: int | None = None
    detail: str | None = None
    announced: bool = False


@dataclass
class Board:
    """The open waits of one run, and the ticker that announces the newest of them whenever
    nothing has been said for :attr:`tick` seconds (a run that says something more often than
    that, or waits less, prints nothing more)."""

    sink: Sink
    tick: float = TICK_SECONDS
    clock: Callable[[], float] = time.monotonic
    _waits: dict[int, _Wait] = field(default_factory=dict)
    _keys: Iterator[int] = field(default_factory=count)
    _last: float = 0.0
    _ticker: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self._last = self.clock()  # the run starts silent: its first tick counts from here

    def touch(self) -> None:
        """Something was just said to the user (a step's line): the silence starts now."""
        self._last = self.clock()

    def begin(
        self,
        stage: str,
        what: str,
        *,
        subject: str | None = None,
        said: bool = False,
        done: int | None = None,
        total: int | None = None,
    ) -> int:
        """Open a wait; returns its key for :meth:`update` and :meth:`end`. ``said``: the caller
        has just announced it its own way (a step's "Creating..." line)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        task = asyncio.current_task() if loop is not None else None
        key = next(self._keys)
        now = self.clock()
        self._waits[key] = _Wait(stage, what, subject, now, task, done, total, announced=said)
        if said:
            self._last = now
        if loop is not None and (self._ticker is None or self._ticker.done()):
            self._ticker = loop.create_task(self._run_ticker())
        return key

    def update(
        self,
        key: int,
        what: str | None = None,
        *,
        done: int | None = None,
        total: int | None = None,
        detail: str | None = None,
    ) -> None:
        """Change what an open wait says when it is next announced."""
        wait = self._waits.get(key)
        if wait is None:
            return
        if what is not None:
            wait.what = what
        if done is not None:
            wait.done = done
        if total is not None:
            wait.total = total
        if detail is not None:
            wait.detail = detail

    def end(self, key: int) -> None:
        self._waits.pop(key, None)

    def _newest_open(self) -> _Wait | None:
        """The newest wait whose task still runs (a cancelled step never ends its wait)."""
        for key in reversed(list(self._waits)):
            wait = self._waits[key]
            if wait.task is not None and wait.task.done():
                del self._waits[key]
                continue
            return wait
        return None

    def _announce(self, wait: _Wait) -> None:
        subject = wait.subject
        others = len(self._waits) - 1
        if others and subject:  # steps side by side: say how many
            subject = f"{subject} (+{others} more)"
        progress = Progress(
            stage=wait.stage,
            what=wait.what,
            elapsed_seconds=round(self.clock() - wait.started, 3),
            subject=subject,
            done=wait.done,
            total=wait.total,
            repeat=wait.announced,
            detail=wait.detail,
        )
        wait.announced = True
        self._last = self.clock()
        self.sink(progress)

    async def _run_ticker(self) -> None:
        while True:
            await asyncio.sleep(min(_POLL_SECONDS, self.tick / 4))
            wait = self._newest_open()
            if wait is None:
                return
            if self.clock() - self._last >= self.tick:
                try:
                    self._announce(wait)
                except OSError:  # the output is gone (a closed pipe): the run will tell
                    return


_board: ContextVar[Board | None] = ContextVar("omniport_progress_board", default=None)


@contextlib.contextmanager
def reporting(board: Board) -> Iterator[Board]:
    """Use ``board`` for the waits of this run (the command line's job)."""
    token = _board.set(board)
    try:
        yield board
    finally:
        _board.reset(token)


def current() -> Board | None:
    return _board.get()


def touch() -> None:
    """Something was just said to the user: the run's board counts its silence from now."""
    board = _board.get()
    if board is not None:
        board.touch()


def begin(
    stage: str,
    what: str,
    *,
    subject: str | None = None,
    said: bool = False,
    done: int | None = None,
    total: int | None = None,
) -> int | None:
    """Open a wait on the run's board (None without one); close it with :func:`end`."""
    board = _board.get()
    if board is None:
        return None
    return board.begin(stage, what, subject=subject, said=said, done=done, total=total)


def update(
    key: int | None,
    what: str | None = None,
    *,
    done: int | None = None,
    total: int | None = None,
    detail: str | None = None,
) -> None:
    board = _board.get()
    if board is not None and key is not None:
        board.update(key, what, done=done, total=total, detail=detail)


def end(key: int | None) -> None:
    board = _board.get()
    if board is not None and key is not None:
        board.end(key)


class Waiting:
    """An open wait as :func:`waiting` yields it: say what changed while it runs."""

    def __init__(self, key: int | None) -> None:
        self.key = key

    def update(
        self,
        what: str | None = None,
        *,
        done: int | None = None,
        total: int | None = None,
        detail: str | None = None,
    ) -> None:
        update(self.key, what, done=done, total=total, detail=detail)


@contextlib.contextmanager
def waiting(
    stage: str,
    what: str,
    *,
    subject: str | None = None,
    said: bool = False,
    done: int | None = None,
    total: int | None = None,
) -> Iterator[Waiting]:
    """``with waiting("discovery", "reading 3 node(s)") as w: ...``: announced while the block
    runs whenever the run has been silent for a tick, closed when it ends (however it ends)."""
    key = begin(stage, what, subject=subject, said=said, done=done, total=total)
    try:
        yield Waiting(key)
    finally:
        end(key)
