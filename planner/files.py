"""Reading the files a user names (specs, plans, rollback plans), and where a plan may be written.

Users point omniport at paths from scripts and CI; a FIFO must not hang a run, a multi-gigabyte
file must not exhaust memory, and ``-o`` must never replace something that is not a plan (the
spec itself, a talosconfig, a device node). Every refusal carries one sentence and the fix.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB

SPEC_LIMIT = 1 * MIB
"""A spec is a few hundred lines, even for a thousand nodes (about 20 bytes a node)."""
PLAN_LIMIT = 64 * MIB
"""A plan holds redacted patches per node: a few KiB each, so 1000 nodes stay well below."""
ROLLBACK_LIMIT = 16 * MIB
"""A rollback plan holds hashes and names only: under 1 KiB a node, with its spec."""
CONFIG_LIMIT = 16 * MIB
"""A machine config, patch or secrets bundle (``omniport config``): inline manifests make
some configs large, but not this large."""


@dataclass(frozen=True)
class Unreadable(Exception):
    """Why a file cannot be read; callers wrap ``reason`` into their own error."""

    reason: str


def read_text(path: Path, limit: int) -> str:
    """The file's UTF-8 text; raises FileNotFoundError or :class:`Unreadable`.

    Opens without blocking (a FIFO or a device would otherwise wait for a writer forever) and
    refuses anything but a regular file, or one larger than ``limit`` bytes.
    """
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("is not UTF-8 text") from None


def read_bytes(path: Path, limit: int) -> bytes:
    """The file's bytes, with the refusals of :func:`read_text` (but any encoding)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise Unreadable("is a directory, not a file") from None
    except FileNotFoundError:
        raise
    except OSError as err:
        raise Unreadable(f"cannot be read: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise Unreadable("is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(f"is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            size = _size(info.st_size)
            if size == _size(limit):  # "64 MiB, more than the 64 MiB allowed" says nothing
                size = f"{info.st_size:,} bytes"
            raise Unreadable(f"is {size}, more than the {_size(limit)} allowed")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise Unreadable(f"cannot be read: {err.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while being read
        raise Unreadable(f"is more than the {_size(limit)} allowed")
    return data


def readable_by_others(path: Path) -> int | None:
    """The file's mode when group or others may read it (a key file should be 0600), else
    None (also when it cannot be looked at: reading it reports that)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(info.st_mode)
    return mode if stat.S_ISREG(info.st_mode) and mode & 0o077 else None


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents owner-only (0700); leave existing ones be.

    Backups and locks live there; a folder omniport creates must not let others list them."""
    missing = []
    current = Path(directory).resolve()
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


class OutputRefused(Exception):
    """``-o`` names something that must not be replaced by a plan file."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


def plan_target(path: Path, *, protect: tuple[Path, ...] = (), force: bool = False) -> Path:
    """The path to write a plan to, after refusing targets that must not be replaced.

    Refused always: anything but a regular file (device, FIFO, socket, directory), and the
    files in ``protect`` (the spec being planned). Refused unless ``force``: an existing file
    that is not an omniport plan. A symlink is followed, so the link keeps pointing at the plan.
    """
    real = Path(os.path.realpath(path))
    try:
        info = os.stat(real)
    except FileNotFoundError:
        return real
    except OSError as err:
        raise OutputRefused(f"cannot use {path} for the plan: {err.strerror}", _FIX) from None
    if not stat.S_ISREG(info.st_mode):
        raise OutputRefused(
            f"{path} is {_kind(info.st_mode)}; a plan is only written to a regular file", _FIX
        )
    for other in protect:
        try:
            if os.path.samefile(real, other):
                raise OutputRefused(f"{path} is the spec being planned", _FIX)
        except FileNotFoundError:
            continue
    if not force and not _is_plan(real, info.st_size):
        raise OutputRefused(
            f"{path} exists and is not an omniport plan file, so it is left alone",
            "choose another path with -o, or pass --force to replace it",
        )
    return real


_FIX = "choose another path with -o"


def _is_plan(path: Path, size: int) -> bool:
    if size > PLAN_LIMIT:
        return False
    try:
        data = json.loads(read_text(path, PLAN_LIMIT))
    except (Unreadable, OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and {"format_version", "spec_sha256", "fingerprint"} <= set(data)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n / KIB:.0f} KiB" if n >= KIB else f"{n} B"
