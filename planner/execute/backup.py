"""The pre-apply backup: one zip, one ``<hostname>-<node>.yaml`` entry per node (omnictl layout).

It holds every node's full machine config, secrets included, so it is created with mode 0600,
written to a temporary name, fsynced and renamed: a backup either exists whole or not at all.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from omniport.planner.errors import OmniportError
from omniport.planner.files import make_private_dirs
from omniport.planner.sealed import write_private


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
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry in entries:
            info = zipfile.ZipInfo(entry.name, date_time=(2000, 1, 1, 0, 0, 0))
            info.external_attr = 0o600 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entry.config)
    try:
        make_private_dirs(path.resolve().parent)
        write_private(path, buffer.getvalue(), mode=0o600)
    except OSError as err:
        raise BackupError(
            f"cannot write the backup {path}: {err.strerror}",
            "point $OMNIPORT_STATE_DIR (or state.directory or backup.directory in the spec) at "
            "a directory you can write",
        ) from None
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
