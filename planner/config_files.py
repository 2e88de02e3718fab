"""Files for the ``omniport config`` commands: read configs and patches, write results.

The machine-config engine does no I/O; this module is where file names meet it. Every problem
becomes one ``OmniportError`` sentence naming the file and the fix. Results may hold secrets,
so they are written owner-only (0600), atomically.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from omniport.planner import files
from omniport.planner.errors import UsageProblem
from omniport.planner.machineconfig.document import Document, MachineConfig, emit, parse
from omniport.planner.machineconfig.merge import Patch, load_patches

PATCH_FILE_NAMES = ("10-patch.yaml", "20-patch.yaml")


def read_bytes(path: str | os.PathLike[str], what: str = "file") -> bytes:
    """A file's bytes, or one clear error saying why it cannot be read."""
    p = Path(path)
    try:
        return files.read_bytes(p, files.CONFIG_LIMIT)  # a FIFO is refused, not waited on
    except FileNotFoundError:
        raise UsageProblem(f"{what} {str(p)!r} does not exist", "check the path") from None
    except files.Unreadable as err:
        if err.reason == "is a directory, not a file":
            raise UsageProblem(f"{what} {str(p)!r} is a directory", "give a file") from None
        if err.reason == "cannot be read: Permission denied":
            raise UsageProblem(
                f"{what} {str(p)!r} cannot be read (permission denied)", "check its permissions"
            ) from None
        raise UsageProblem(f"{what} {str(p)!r} {err.reason}", "give a regular file") from None


def read_config(path: str | os.PathLike[str]) -> MachineConfig:
    """Read and parse a machine config file."""
    return parse(read_bytes(path, "config file"), str(path))


def patch_argument(argument: str) -> tuple[str, bytes]:
    """Resolve one ``--patch`` value as talosctl does: ``@file``, a bare file name, or inline.

    A value with no space or newline that does not start with ``[`` or ``{`` is a file name.
    Returns ``(source, contents)``; ``source`` names the patch in error messages.
    """
    if argument.startswith("@"):
        name = argument[1:]
        return name, read_bytes(name, "patch file")
    if not any(c in argument for c in " \n") and not argument.startswith(("[", "{")):
        return argument, read_bytes(argument, "patch file")
    return "inline patch", argument.encode("utf-8")


def load_patch_arguments(arguments: Iterable[str]) -> list[Patch]:
    """Load every ``--patch`` value in order."""
    return load_patches(patch_argument(argument) for argument in arguments)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` owner-only and atomically (temporary file, fsync, rename)."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UsageProblem(
            f"cannot write {str(target)!r}: folder {str(directory)!r} does not exist",
            "create it first",
        )
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    except OSError as err:
        raise UsageProblem(f"cannot write {str(target)!r}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except OSError as err:
        Path(temporary).unlink(missing_ok=True)
        raise UsageProblem(f"cannot write {str(target)!r}: {err.strerror}") from None
    return target


def write_patches(
    directory: str | os.PathLike[str], patches: Sequence[Sequence[Document]]
) -> list[Path]:
    """Write diff patches as ``10-patch.yaml`` and ``20-patch.yaml`` (non-empty ones only).

    A patch file of that name left from an earlier run is removed, so the folder never holds a
    stale patch that would be applied with the new ones.
    """
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageProblem(f"cannot create folder {str(folder)!r}: {err.strerror}") from None
    written = []
    for position, name in enumerate(PATCH_FILE_NAMES):
        patch = patches[position] if position < len(patches) else ()
        if patch:
            written.append(write_text(folder / name, emit(patch)))
        else:
            try:
                (folder / name).unlink(missing_ok=True)
            except OSError as err:
                raise UsageProblem(
                    f"cannot remove the stale {str(folder / name)!r}: {err.strerror}"
                ) from None
    return written
