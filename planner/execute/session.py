"""The session kernel: what every command that changes the world runs on.

apply, rollback, abort and unlock are peers above this module; none imports another's
machinery. A session here is:

- access: the spec's endpoints and credentials, the environment and timeouts (:class:`Access`),
  and the recorded spec a plan or rollback file carries (:func:`spec_from_data`);
- the per-cluster lock (:func:`cluster_lock`), keyed by Omni host and cluster name;
- the recorder (:class:`Recorder`): every journal record is durable before the step it
  describes goes on, with the crash hook the reliability tests use;
- Ctrl-C handling (:class:`Interrupts`): the first cancels the guarded work, the second exits;
- the UI seam (:class:`Ui`, :class:`StepRef`) that ``cli/console.py`` draws as text or JSON Lines.

The secret scrubber is in ``secrets`` and the error types in ``errors``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from omniport.planner import planfile
from omniport.planner.discover import omni_client, talos_client
from omniport.planner.errors import OmniportError
from omniport.planner.execute import journal, statedir
from omniport.planner.execute.errors import AbortError, ApplyError, JournalError
from omniport.planner.execute.lock import ClusterLock
from omniport.planner.overrides import Overrides, adjuster, in_automation, unrecorded
from omniport.planner.plan import Plan
from omniport.planner.spec import Spec, SpecError, load_spec, parse_spec
from omniport.planner.speclocation import spec_directory
from omniport.providers.errors import ProviderError
from omniport.providers.omni import OmniClient
from omniport.providers.talos import TalosClient
from omniport.providers.timeouts import Timeouts

T = TypeVar("T")

KILL_ENV = "OMNIPORT_TEST_KILL_AFTER_RECORD"
"""Test hook: SIGKILL this process right after it has fsynced its N-th journal record."""

POLL_SECONDS = 0.2
"""How often a wait re-reads Omni or a node."""

ALREADY_EXISTS = 6
"""gRPC status code of a Create whose resource exists."""


# ---- the UI seam ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRef:
    """One journaled step as the UI shows it (Terraform's hook: address, type, name, action)."""

    address: str
    action: str  # create | update | delete | read
    resource_type: str
    resource_id: str
    node: str | None = None


class Ui(Protocol):
    """What the engines report; ``planner/cli/console.py`` draws it as text or JSON Lines."""

    def say(self, text: str) -> None: ...

    def start(self, step: StepRef, note: str = "") -> None: ...

    def progress(self, step: StepRef, message: str, **fields: Any) -> None: ...

    def done(self, step: StepRef, elapsed: float, note: str = "") -> None: ...

    def failed(self, step: StepRef, message: str, elapsed: float) -> None: ...

    def summary(self, operation: str, message: str, add: int, change: int, remove: int) -> None: ...


Confirm = Callable[[str], bool]
"""Asks the user to approve a run against the named cluster (``yes``)."""


def error_text(exc: BaseException) -> str:
    """A failure as one line: our own errors as they read, anything else with its type."""
    if isinstance(exc, ProviderError | OmniportError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# ---- access ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """How a run reaches Talos and Omni: the spec's settings, the environment (config file
    lookup, service-account keys) and the timeouts; the clients are made when asked for."""

    spec: Spec
    env: dict[str, str]
    timeouts: Timeouts

    @classmethod
    def of(cls, spec: Spec, environ: Mapping[str, str] | None = None) -> Access:
        env = dict(os.environ if environ is None else environ)
        return cls(spec, env, Timeouts(wait_connected=spec.wait_timeout))

    def talos(self) -> TalosClient:
        return talos_client(self.spec, self.timeouts, self.env)

    def omni(self) -> OmniClient:
        return omni_client(self.spec, self.timeouts, self.env)


def spec_from_data(
    data: dict[str, Any],
    base: Path,
    source: str,
    overrides: Overrides | None = None,
    fix: str = "run it from a checkout holding the spec, or keep the plan file beside its spec",
) -> Spec:
    """The Spec a plan or rollback file recorded, with relative paths resolved from ``base``;
    ``overrides`` (the global --talosconfig, ... flags) change how it reaches Talos and Omni,
    not its recorded data (so it still hashes to the plan's spec_sha256)."""
    adjust = adjuster(overrides) if overrides else None
    try:
        spec = parse_spec(
            json.dumps(data), file=source, base=base, path=base / "import.yaml", adjust=adjust
        )
        if adjust is None:
            return spec
        return replace(spec, normalized=unrecorded(spec.normalized, data))
    except SpecError as err:
        first = err.problems[0].message if err.problems else str(err)
        raise ApplyError(
            f"the spec recorded in {source} cannot be used from {base}: {first}",
            fix,
        ) from None


def spec_for(spec_path: str | None, plan_path: str | None) -> tuple[Spec, Plan | None]:
    """Access settings from ``--spec``, else from the spec recorded in ``--plan``."""
    plan = planfile.read(Path(plan_path)) if plan_path else None
    if spec_path:
        return load_spec(spec_path), plan
    if plan is not None and plan_path is not None:
        base = spec_directory(plan.spec_location, Path(plan_path))
        return spec_from_data(plan.spec, base, plan_path), plan
    raise AbortError(
        "this command needs access settings for Talos and Omni",
        "pass --spec SPEC (the import spec) or --plan PLAN",
    )


# ---- the lock -------------------------------------------------------------------------------


def lock_scope(omni_url: str, cluster: str) -> str:
    host = urlsplit(omni_url).netloc or omni_url
    return f"{host}/{cluster}"


def cluster_lock(
    omni_url: str, cluster: str, operation: str, environ: Mapping[str, str] | None = None
) -> ClusterLock:
    """The lock (not yet taken) every command that changes ``cluster`` in that Omni holds, in
    the cluster's state directory (``statedir.lock_directory``). It holds on this host only:
    across hosts, Omni's atomic create of the cluster's resources decides (README)."""
    directory = statedir.lock_directory(cluster, omni_url, environ)
    return ClusterLock(lock_scope(omni_url, cluster), operation, directory)


# ---- the recorder ---------------------------------------------------------------------------


class Recorder:
    """Appends journal records (each durable before the caller goes on); the test hook kills
    the process right after the N-th record this process wrote is on disk.

    A record that cannot be written (a full disk, an I/O error) is a fault, not a crash: the
    journal's reserve is released (room for the rollback's records), the record stays in
    :attr:`memory` (what this run did, which a rollback can be driven from), and with
    ``strict`` such a failure raises :class:`JournalError` so that the run stops and
    rolls back. Failures when not ``strict`` (as during a rollback) are reported once through
    ``warn`` and the run goes on from memory.

    ``strict`` holds while a transaction runs (every failed record raises, so no step acts on
    a record that is not on disk); its owner clears it before rolling back."""

    def __init__(
        self,
        path: Path,
        environ: Mapping[str, str] | None = None,
        *,
        strict: bool = True,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        try:
            self.journal = journal.Journal(self.path, environ)
        except OSError as err:
            raise JournalError(
                f"cannot open the journal {self.path}: {err.strerror or err}",
                "free some disk space there and run the command again",
            ) from None
        self.reserve = journal.Reserve(self.path, self.journal.disk)
        self.reserve.adopt()  # one an earlier, killed run left: released on need
        self.count = 0
        self.strict = strict
        self.warn = warn
        self.failure: str | None = None
        """Why the journal could not be written (None while every record reached the disk)."""
        raw = (os.environ if environ is None else environ).get(KILL_ENV, "")
        self.kill_after = int(raw) if raw.strip().isdigit() else None

    @property
    def memory(self) -> list[journal.Record]:
        """Every record this run wrote (or tried to write), in order."""
        return list(self.journal.memory)

    def reserve_space(self, steps: int) -> None:
        """Set aside room for the journal of ``steps`` steps before the first change."""
        size = journal.reserve_size(steps)
        try:
            self.reserve.take(size)
        except OSError as err:
            raise JournalError(
                f"there is no room for the journal {self.path} "
                f"({size // 1024} KiB needed: {err.strerror or err}), so nothing was changed",
                "free some disk space there and run apply again",
            ) from None

    def __call__(self, event: str, step: str | None = None, **data: Any) -> None:
        """Write and fsync one record now (for the sequential parts of a run)."""
        try:
            self.journal.append(event, step, **data)
        except OSError as err:
            self._lost(err)
        self.count += 1
        self._hook(self.count)

    async def durably(self, event: str, step: str | None = None, **data: Any) -> None:
        """Write one record and wait until it is on disk; concurrent steps share fsyncs."""
        self.count += 1
        ordinal = self.count
        try:
            record = self.journal.write(event, step, **data)
            await self.journal.durable(record.seq)
        except OSError as err:
            self._lost(err)
        self._hook(ordinal)

    def _lost(self, err: OSError) -> None:
        text = f"cannot write the journal {self.path}: {err.strerror or err}"
        first = self.failure is None
        if first:
            self.failure = text
            self.reserve.release()  # the rollback that follows needs room for its records
        if self.strict:
            raise JournalError(text, None)
        if first and self.warn is not None:
            self.warn(
                f"Warning: {text}; going on without it (what this run did is kept in memory, "
                "and a rollback checks every node and resource again when run again)."
            )

    def _hook(self, ordinal: int) -> None:
        if self.kill_after is not None and ordinal == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        self.reserve.release()
        self.journal.close()


# ---- interrupts -----------------------------------------------------------------------------


class Interrupted(Exception):
    """The user's first Ctrl-C cancelled the guarded work (see :meth:`Interrupts.guard`)."""


class Interrupts:
    """Ctrl-C handling: the first cancels the guarded task (which then rolls back), the second
    exits at once; every journal record is already fsynced, so nothing is lost.

    Where a run is decides what a Ctrl-C means: before the journal's ``begin`` (``begun``
    false) the run stops with nothing changed (exit 130); between ``begin`` and the guarded
    work, the work is not started and what was begun is rolled back; once the work is
    ``finished`` (apply's ``complete`` record), a Ctrl-C changes nothing and the run ends as
    it would have (exit 0)."""

    def __init__(self, ui: Ui, exit_now: Callable[[], None] | None = None) -> None:
        self.ui = ui
        self.count = 0
        self.task: asyncio.Task[Any] | None = None
        self.hint = ""
        self.stopping = "stopping and rolling back what was done"
        """What the first Ctrl-C inside the guarded work does, in words (rollback's own work
        stops where it is instead)."""
        self.begun = False
        self.finished = False
        self._exit_now = exit_now or (lambda: os._exit(130))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ignoring = False

    def arm(self) -> None:
        """Take over SIGINT on the running loop (after any prompt: a blocked read would hide
        the signal until the read returns)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_signal_handler(signal.SIGINT, self.fire)

    def disarm(self) -> None:
        """Give SIGINT back; a finished run keeps ignoring it until :meth:`release` (so that
        the lines after "Apply complete!" are printed and the exit code stays 0)."""
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGINT)
            self._loop = None
            if self.finished:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                self._ignoring = True

    def release(self) -> None:
        """After a finished run has reported: Ctrl-C interrupts again."""
        if self._ignoring:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._ignoring = False

    def fire(self) -> None:
        self.count += 1
        hints = not in_automation(os.environ)  # no one at a keyboard to press Ctrl-C again
        if self.finished:
            self.ui.say("Interrupt received after the work was complete; nothing to stop.")
            return
        if self.count == 1 and self.task is not None and not self.task.done():
            self.ui.say(f"Interrupt received: {self.stopping}…")
            if hints:
                self.ui.say("Press Ctrl-C again to exit at once (the journal stays intact).")
            self.task.cancel()
            return
        if self.count == 1 and not self.begun:
            self.ui.say("Interrupt received: stopping before the first change…")
            return
        if self.count == 1:
            self.ui.say(
                (
                    "Interrupt received; press Ctrl-C again to exit at once."
                    if hints
                    else "Interrupt received."
                )
                + self.hint
            )
            return
        if not self.begun:
            self.ui.say("Exiting immediately; nothing was changed.")
        else:
            self.ui.say("Exiting immediately; the journal is intact." + self.hint)
        self._exit_now()

    async def guard(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` as the task the first Ctrl-C cancels; raises :class:`Interrupted` when
        that happened (any other cancellation propagates as it is)."""
        if self.count:  # a Ctrl-C came before the work started: it does not start
            work.close()
            self.ui.say(f"Interrupt received: {self.stopping}…")
            raise Interrupted
        task = asyncio.create_task(work)
        self.task = task
        try:
            return await task
        except asyncio.CancelledError:
            if not task.cancelled() or self.count == 0:
                raise
            raise Interrupted from None
        finally:
            self.task = None
