"""The pre-apply backup: one zip, one ``<hostname>-<node>.yaml`` entry per node (omnictl layout).

It holds every node's full machine config, secrets included, so it is created with mode 0600,
written to a temporary name, fsynced and renamed: a backup either exists whole or not at all.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from planner.errors import OmniportError


class BackupError(OmniportError):
    pass


@dataclass(frozen=True)
class BackupEntry:
    node: str
    hostname: str
    config: bytes

    @property
    def name(self) -> str:
        return f"{self.hostname}-{self.node}.yaml"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.config).hexdigest()


def backup_name(cluster: str, when: datetime) -> str:
    return f"{cluster}-backup-{when.strftime('%Y%m%d-%H%M%S')}.zip"


def write_backup(path: Path, entries: Iterable[BackupEntry]) -> Path:
    path = Path(path)
    directory = path.resolve().parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as err:
        raise BackupError(
            f"cannot write the backup in {directory}: {err.strerror}",
            "set backup.directory in the spec to a writable directory",
        ) from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for entry in entries:
                    info = zipfile.ZipInfo(entry.name, date_time=(2000, 1, 1, 0, 0, 0))
                    info.external_attr = 0o600 << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, entry.config)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def read_backup(path: Path) -> dict[str, bytes]:
    """Entry name -> config bytes."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except FileNotFoundError:
        raise BackupError(
            f"the backup {path} is missing", "restore it from where you keep it"
        ) from None
    except (zipfile.BadZipFile, OSError) as err:
        raise BackupError(f"the backup {path} cannot be read ({err})", "restore it") from None
