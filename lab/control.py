"""What ``omniport lab up|down|status|fault|patch`` call: start, stop and talk to a lab process.

A lab is one background process (``python -m lab.server --daemon``) per directory. ``up``
spawns it, waits until it has written ``lab.json`` (it does so only once every listener
serves), and returns; ``down`` stops it by the pid in ``lab.json`` and waits until it is gone;
the other commands use the admin endpoint whose port and bearer token ``lab.json`` holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAB_JSON = "lab.json"
LAB_ERROR = "lab.error"
LAB_LOG = "lab.log"

_STOP_GRACE = 10.0


class LabError(Exception):
    """A lab operation that failed: ``message`` says what, ``fix`` what to do."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass(frozen=True)
class UpOptions:
    """``lab up`` options; None means the lab's default (see ``lab.build``)."""

    nodes: int | None = None
    controlplanes: int | None = None
    talos_version: str | None = None
    initial_talos_version: str | None = None
    kubernetes_version: str | None = None
    initial_kubernetes_version: str | None = None
    latency_ms: float | None = None
    seed: int | None = None
    factory_schematic: bool = True
    omni_version: str | None = None
    """The Omni release the lab's Omni answers as (its denylist follows it)."""
    omni_zstd_dict: str | None = None
    """Omni's zstd dictionary file, to read compressed config patches."""
    omni_join_ms: float | None = None
    omni_api_version: int | None = None
    """The API version the lab's Omni reports (SysVersions); default Omni's, 1."""
    """How long a SideroLink join stays pending in the lab's Omni (default: a short while)."""
    extra_args: tuple[str, ...] = field(default=())

    def argv(self) -> list[str]:
        args: list[str] = []
        for flag, value in (
            ("--nodes", self.nodes),
            ("--controlplanes", self.controlplanes),
            ("--talos-version", self.talos_version),
            ("--initial-talos-version", self.initial_talos_version),
            ("--kubernetes-version", self.kubernetes_version),
            ("--initial-kubernetes-version", self.initial_kubernetes_version),
            ("--latency-ms", self.latency_ms),
            ("--seed", self.seed),
            ("--omni-version", self.omni_version),
            ("--omni-zstd-dict", self.omni_zstd_dict),
            ("--omni-join-ms", self.omni_join_ms),
            ("--omni-api-version", self.omni_api_version),
        ):
            if value is not None:
                args += [flag, str(value)]
        if not self.factory_schematic:
            args.append("--no-factory-schematic")
        return args + list(self.extra_args)


# ---- process helpers ----


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""
    return state not in ("Z", "X")


def _is_lab_process(pid: int) -> bool:
    """Guard against pid reuse: only ever signal a process that is a lab server."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)  # no /proc: trust the pid file
    return b"omniport.lab.server" in cmdline


def _reap(pid: int) -> None:
    """Collect ``pid`` if it happens to be our child (a lab started in this process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# ---- lab.json ----


def read_info(directory: Path) -> dict[str, Any]:
    """The ``lab.json`` of the lab in ``directory``."""
    path = Path(directory) / LAB_JSON
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(
            f"no lab in {directory} (no {LAB_JSON})",
            f"start one with `omniport lab up --dir {directory}`",
        ) from None
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {path}: {exc}", "remove it and start the lab again") from None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        raise LabError(f"{path} is not a lab.json written by omniport", "remove it")
    return info


def running_pid(directory: Path) -> int | None:
    """The pid of the live lab serving ``directory``, or None."""
    try:
        info = read_info(directory)
    except LabError:
        return None
    pid = int(info["pid"])
    return pid if pid_alive(pid) and _is_lab_process(pid) else None


# ---- up / down ----


def up(directory: Path, options: UpOptions, *, timeout: float | None = None) -> dict[str, Any]:
    """Start a lab for ``directory`` in the background; return its ``lab.json``."""
    directory = Path(directory).resolve()
    busy = running_pid(directory)
    if busy is not None:
        raise LabError(
            f"{directory} is in use by a running lab (pid {busy})",
            f"stop it with `omniport lab down --dir {directory}` or pick another --dir",
        )
    directory.mkdir(parents=True, exist_ok=True)
    for name in (LAB_JSON, LAB_ERROR):
        (directory / name).unlink(missing_ok=True)
    nodes = options.nodes or 3
    limit = timeout if timeout is not None else 60.0 + 0.1 * nodes
    env = dict(os.environ)
    with open(directory / LAB_LOG, "ab") as log:
        starter = subprocess.Popen(
            [sys.executable, "-m", "omniport.lab.server", "--dir", str(directory), "--daemon"]
            + options.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=directory,
        )
        out, _ = starter.communicate(timeout=30)
    text = out.decode(errors="replace").strip()
    if starter.returncode != 0 or not text.isdigit():
        raise LabError(_failure(directory, "the lab process did not start"), _see_log(directory))
    pid = int(text)
    deadline = time.monotonic() + limit
    try:
        return _await_ready(directory, pid, deadline, limit)
    except BaseException:  # Ctrl-C while waiting included: what was started is stopped
        if pid_alive(pid) and _is_lab_process(pid):
            _terminate(pid)
        raise


def _await_ready(directory: Path, pid: int, deadline: float, limit: float) -> dict[str, Any]:
    while True:
        info = _ready_info(directory, pid)
        if info is not None:
            return info
        if not pid_alive(pid):
            _reap(pid)
            raise LabError(_failure(directory, "the lab process exited"), _see_log(directory))
        if time.monotonic() > deadline:
            _terminate(pid)
            raise LabError(
                f"the lab did not start within {limit:.0f} s",
                f"see {directory / LAB_LOG}; try fewer --nodes",
            )
        time.sleep(0.02)


def _ready_info(directory: Path, pid: int) -> dict[str, Any] | None:
    try:
        info = json.loads((directory / LAB_JSON).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("pid") == pid else None


def _failure(directory: Path, default: str) -> str:
    """The lab's own sentence: from ``lab.error``, else the last ``lab: `` line it wrote to
    ``lab.log`` before it started (a bad option is refused before a daemon exists)."""
    try:
        text = (directory / LAB_ERROR).read_text().strip()
    except OSError:
        text = ""
    if text:
        return text.splitlines()[-1]
    try:
        log = (directory / LAB_LOG).read_text(errors="replace").splitlines()
    except OSError:
        log = []
    said = [line.removeprefix("lab: ") for line in log if line.startswith("lab: ")]
    return said[-1] if said else default


def _see_log(directory: Path) -> str:
    return f"see {directory / LAB_LOG}"


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + _STOP_GRACE
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.02)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while pid_alive(pid):
            _reap(pid)
            time.sleep(0.02)
    _reap(pid)


def down(directory: Path) -> int | None:
    """Stop the lab of ``directory`` by its pid and wait until it is gone.

    Returns the pid that was stopped, or None when the lab had already exited (its stale
    ``lab.json`` is removed).
    """
    directory = Path(directory).resolve()
    info = read_info(directory)
    pid = int(info["pid"])
    stopped: int | None = None
    if pid_alive(pid) and _is_lab_process(pid):
        _terminate(pid)
        stopped = pid
    (directory / LAB_JSON).unlink(missing_ok=True)
    return stopped


# ---- admin endpoint ----


def _call(directory: Path, method: str, path: str, body: Any = None) -> Any:
    directory = Path(directory).resolve()
    info = read_info(directory)
    if not pid_alive(int(info["pid"])):
        raise LabError(
            f"the lab in {directory} is not running (pid {info['pid']} is gone)",
            f"start it again with `omniport lab up --dir {directory}`",
        )
    port = int(info["ports"]["admin"])
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {info['token']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error") or str(err)
        except ValueError:
            message = str(err)
        finally:
            err.close()
        raise LabError(message) from None
    except (urllib.error.URLError, OSError) as exc:
        raise LabError(
            f"the lab in {directory} does not answer on its admin port {port}: {exc}",
            f"see {directory / LAB_LOG}",
        ) from None


def status(directory: Path, *, with_configs: bool = False) -> dict[str, Any]:
    return _call(directory, "GET", "/status" + ("?configs=1" if with_configs else ""))


def faults(directory: Path) -> dict[str, Any]:
    return _call(directory, "GET", "/faults")


def fault(directory: Path, change: dict[str, Any]) -> dict[str, Any]:
    """Inject or clear one fault (see ``lab.admin.change_faults``); returns all faults."""
    return _call(directory, "POST", "/faults", change)


def patch(directory: Path, node: str, patch_text: str) -> dict[str, Any]:
    """Patch a node's config as ``talosctl patch machineconfig`` would (mode auto)."""
    return _call(directory, "POST", "/patch", {"node": node, "patch": patch_text})
