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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from omniport.planner import planfile
from omniport.planner.discover import omni_client, talos_client
from omniport.planner.errors import OmniportError
from omniport.planner.execute import journal
from omniport.planner.execute.errors import AbortError, ApplyError
from omniport.planner.execute.lock import ClusterLock
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


def spec_from_data(data: dict[str, Any], base: Path, source: str) -> Spec:
    """The Spec a plan or rollback file recorded, with relative paths resolved from ``base``."""
    try:
        return parse_spec(json.dumps(data), file=source, base=base, path=base / "import.yaml")
    except SpecError as err:
        first = err.problems[0].message if err.problems else str(err)
        raise ApplyError(
            f"the spec recorded in {source} cannot be used from {base}: {first}",
            "run it from a checkout holding the spec, or keep the plan file beside its spec",
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


def cluster_lock(omni_url: str, cluster: str, operation: str) -> ClusterLock:
    """The lock (not yet taken) every command that changes ``cluster`` in that Omni holds."""
    return ClusterLock(lock_scope(omni_url, cluster), operation)


# ---- the recorder ---------------------------------------------------------------------------


class Recorder:
    """Appends journal records (each durable before the caller goes on); the test hook kills
    the process right after the N-th record this process wrote is on disk."""

    def __init__(self, path: Path, environ: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.journal = journal.Journal(self.path)
        self.count = 0
        raw = (os.environ if environ is None else environ).get(KILL_ENV, "")
        self.kill_after = int(raw) if raw.strip().isdigit() else None

    def __call__(self, event: str, step: str | None = None, **data: Any) -> None:
        """Write and fsync one record now (for the sequential parts of a run)."""
        self.journal.append(event, step, **data)
        self.count += 1
        self._hook(self.count)

    async def durably(self, event: str, step: str | None = None, **data: Any) -> None:
        """Write one record and wait until it is on disk; concurrent steps share fsyncs."""
        record = self.journal.write(event, step, **data)
        self.count += 1
        ordinal = self.count
        await self.journal.durable(record.seq)
        self._hook(ordinal)

    def _hook(self, ordinal: int) -> None:
        if self.kill_after is not None and ordinal == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        self.journal.close()


# ---- interrupts -----------------------------------------------------------------------------


class Interrupted(Exception):
    """The user's first Ctrl-C cancelled the guarded work (see :meth:`Interrupts.guard`)."""


class Interrupts:
    """Ctrl-C handling: the first cancels the guarded task (which then rolls back), the second
    exits at once; every journal record is already fsynced, so nothing is lost."""

    def __init__(self, ui: Ui, exit_now: Callable[[], None] | None = None) -> None:
        self.ui = ui
        self.count = 0
        self.task: asyncio.Task[Any] | None = None
        self.hint = ""
        self._exit_now = exit_now or (lambda: os._exit(130))
        self._loop: asyncio.AbstractEventLoop | None = None

    def arm(self) -> None:
        """Take over SIGINT on the running loop (after any prompt: a blocked read would hide
        the signal until the read returns)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_signal_handler(signal.SIGINT, self.fire)

    def disarm(self) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGINT)
            self._loop = None

    def fire(self) -> None:
        self.count += 1
        if self.count == 1 and self.task is not None and not self.task.done():
            self.ui.say("Interrupt received: stopping and rolling back what was done…")
            self.ui.say("Press Ctrl-C again to exit at once (the journal stays intact).")
            self.task.cancel()
            return
        if self.count == 1:
            self.ui.say("Interrupt received; press Ctrl-C again to exit at once.")
            return
        self.ui.say("Exiting immediately; the journal is intact." + self.hint)
        self._exit_now()

    async def guard(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` as the task the first Ctrl-C cancels; raises :class:`Interrupted` when
        that happened (any other cancellation propagates as it is)."""
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
