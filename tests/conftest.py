"""Shared fixtures: labs started with ``omniport lab up`` and stopped by pid.

``lab`` is one read-mostly lab for the whole session (3 nodes: 1 control plane, 2 workers, the
default versions). Tests that change node state or faults start their own with ``lab_factory``
(one per module, usually), so they never disturb each other. Every lab is stopped in teardown
by its pid, and teardown checks that the process is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class LabHandle:
    """A running lab, seen only from outside: its directory, lab.json and client files."""

    dir: Path
    info: dict[str, Any]
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def talosconfig(self) -> Path:
        return self.dir / "talosconfig"

    @property
    def nodes(self) -> list[str]:
        return [n["address"] for n in self.info["nodes"]]

    @property
    def controlplanes(self) -> list[str]:
        return [n["address"] for n in self.info["nodes"] if n["role"] == "controlplane"]

    @property
    def workers(self) -> list[str]:
        return [n["address"] for n in self.info["nodes"] if n["role"] == "worker"]

    def client(self, role: str = "admin", **kw: Any) -> Any:
        """A TalosClient for this lab with the os:``role`` talosconfig it wrote."""
        from omniport.providers.talos import TalosClient

        name = "talosconfig" if role == "admin" else f"talosconfig-{role}"
        return TalosClient.from_talosconfig(self.dir / name, **kw)

    def omni(self, **kw: Any) -> Any:
        """An OmniClient for this lab's Omni, signed with the service account it wrote."""
        import yaml

        from omniport.providers.codec.siderov1 import decode_service_account
        from omniport.providers.omni import OmniClient, TLSOptions
        from omniport.providers.omniconfig import parse_endpoint

        spec = yaml.safe_load((self.dir / "import.yaml").read_text())["omni"]
        account = decode_service_account((self.dir / "service-account.key").read_text())
        return OmniClient(
            parse_endpoint(spec["url"], where="import.yaml"),
            account.key,
            tls=TLSOptions(ca_file=self.dir / "lab-ca.pem"),
            **kw,
        )

    def status(self, *, with_configs: bool = False) -> dict[str, Any]:
        from omniport.lab.control import status

        return status(self.dir, with_configs=with_configs)

    def fault(self, **change: Any) -> dict[str, Any]:
        from omniport.lab.control import fault

        return fault(self.dir, change)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        stop_by_pid(self.pid)


def pid_running(pid: int) -> bool:
    from omniport.lab.control import pid_alive

    return pid_alive(pid)


def stop_by_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, wait, SIGKILL if needed; fail the test run if the process survives."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if pid_running(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    assert not pid_running(pid), f"lab process {pid} survived its teardown"


def start_lab(directory: Path, *args: str) -> LabHandle:
    """``omniport lab up --dir DIR ARGS`` through the CLI, then read lab.json."""
    from omniport.planner.cli import run

    code = run(["lab", "up", "--dir", str(directory), *args])
    assert code == 0, f"lab up failed with exit code {code}: see {directory / 'lab.log'}"
    info = json.loads((directory / "lab.json").read_text())
    return LabHandle(directory, info)


class LoopRunner:
    """Runs coroutines on one event loop kept for the whole session.

    ``asyncio.run`` closes its loop at once, before TLS connections that were just closed
    have finished their shutdown handshake, and the half-closed sockets then warn as
    unclosed (an error under ``filterwarnings = error``). One long-lived loop lets those
    closes finish during later calls, and teardown gives the last ones time to complete.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __call__(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.run_until_complete(asyncio.sleep(0.3))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture(scope="session")
def aio() -> Iterator[LoopRunner]:
    """``aio(coro)`` runs ``coro`` on the session's event loop and returns its result."""
    runner = LoopRunner()
    yield runner
    runner.close()


@pytest.fixture(scope="session", autouse=True)
def _no_state_in_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test writes backups, rollback plans, journals or locks to the developer's
    ``~/.local/state``: the session's default state directory is a temporary one."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
    patch.delenv("OMNIPORT_STATE_DIR", raising=False)
    patch.delenv("OMNIPORT_LOCK_DIR", raising=False)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own state directory (``$OMNIPORT_STATE_DIR``), so that no two tests meet in
    one cluster's state (``World`` sets its own for the commands it runs)."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("OMNIPORT_STATE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LabHandle]]:
    """``lab_factory(*lab_up_args) -> LabHandle``; every lab is stopped at session end."""
    started: list[LabHandle] = []

    def factory(*args: str, name: str = "lab") -> LabHandle:
        handle = start_lab(tmp_path_factory.mktemp(name), *args)
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        handle.stop()


@pytest.fixture(scope="session")
def lab(lab_factory: Callable[..., LabHandle]) -> LabHandle:
    """The shared default lab (do not change its nodes or faults)."""
    return lab_factory(name="shared-lab")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Any]:
    """A fresh default lab for one test, ready to plan (``tests.reliability.labkit.World``)."""
    from tests.reliability.labkit import start_world

    w = start_world(tmp_path / "lab")
    try:
        yield w
    finally:
        w.stop()
