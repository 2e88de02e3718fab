"""One lock per cluster, so a second apply or rollback fails fast and names the holder.

The lock is a file created with O_EXCL and held with ``fcntl.flock``: if its holder died
(SIGKILL), the flock is gone and the next run takes the lock over, so a crash never leaves a
cluster locked forever. The lock info mirrors Terraform's (ID, operation, who, version, created).
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from omniport.planner import __version__
from omniport.planner.errors import OmniportError
from omniport.planner.files import make_private_dirs


class LockedError(OmniportError):
    pass


@dataclass(frozen=True)
class LockInfo:
    id: str
    operation: str
    who: str
    version: str
    created: str
    path: str
    pid: int


def lock_dir() -> Path:
    base = os.environ.get("OMNIPORT_LOCK_DIR")
    if base:
        return Path(base)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "omniport" / "locks"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class ClusterLock:
    """Context manager holding the lock for ``scope`` (e.g. ``<omni host>/<cluster>``)."""

    def __init__(self, scope: str, operation: str, directory: Path | None = None) -> None:
        self.scope = scope
        self.operation = operation
        self.path = (directory or lock_dir()) / f"{_safe(scope)}.lock"
        self._fd = -1
        self.info: LockInfo | None = None

    def acquire(self) -> LockInfo:
        try:
            make_private_dirs(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise LockedError(
                f"cannot create the lock file {self.path}: {err.strerror or err}",
                "free some disk space there (or set OMNIPORT_LOCK_DIR to a writable folder)",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._describe_holder(fd)
            os.close(fd)
            raise LockedError(
                f"cluster {self.scope} is locked by another omniport run ({holder})",
                "wait for it to finish; a crashed run releases the lock by itself",
            ) from None
        self.info = LockInfo(
            id=str(uuid.uuid4()),
            operation=self.operation,
            who=f"{getpass.getuser()}@{socket.gethostname()}",
            version=__version__,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            path=str(self.path),
            pid=os.getpid(),
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(self.info), sort_keys=True).encode(), 0)
            os.fsync(fd)
        except OSError:
            pass  # a full disk: the lock holds all the same (flock); only its note is missing
        self._fd = fd
        return self.info

    @staticmethod
    def _describe_holder(fd: int) -> str:
        try:
            raw = json.loads(os.pread(fd, 65536, 0) or b"{}")
            return (
                f"{raw.get('operation', '?')} by {raw.get('who', '?')}, pid {raw.get('pid', '?')}, "
                f"since {raw.get('created', '?')}, lock ID {raw.get('id', '?')}"
            )
        except (ValueError, OSError):
            return "holder unknown"

    def release(self) -> None:
        if self._fd >= 0:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> LockInfo:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
