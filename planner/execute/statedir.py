"""Where apply keeps what it must not lose and must not publish: the state directory.

Backups hold every node's full config (keys included); the rollback plan, the journal and the
lock say what a run did. None of them belongs beside a spec that is committed to git, so they
live in one directory per cluster, ``<base>/<cluster>/<omni>/``, where ``<omni>`` is the Omni
instance's host (and port): two Omnis may each have a cluster of the same name, and one's
unfinished import must not block, or be mistaken for, the other's. ``<base>`` is the first of:

1. the spec's ``state.directory`` (relative to the spec's directory),
2. ``$OMNIPORT_STATE_DIR``,
3. ``$XDG_STATE_HOME/omniport`` (the XDG Base Directory spec: only an absolute value counts),
4. ``~/.local/state/omniport``.

``backup.directory`` in the spec still moves the backup zips alone. The lock ignores the spec's
``state.directory`` (:func:`lock_directory`): every command that changes a cluster from this
host, with or without a spec (``abort`` and ``unlock`` take none), must meet the same lock.

Directories omniport creates here are 0700; the files in them are written 0600 by their
writers (backup, rollback plan, journal, lock).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from omniport.planner.errors import OmniportError
from omniport.planner.files import make_private_dirs
from omniport.planner.spec import Spec

STATE_ENV = "OMNIPORT_STATE_DIR"
LOCK_ENV = "OMNIPORT_LOCK_DIR"
"""Overrides the lock's directory alone (for tests that point many runs at one lock)."""


class StateDirError(OmniportError):
    pass


def safe_name(name: str) -> str:
    """``name`` as one path component: letters, digits and ``-_.`` kept, the rest ``_``."""
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return out if out.strip(".") else f"_{out}"


def base_directory(environ: Mapping[str, str] | None = None) -> Path:
    """The directory that holds one state directory per cluster, from the environment."""
    env = os.environ if environ is None else environ
    explicit = env.get(STATE_ENV, "")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # relative values are invalid, and ignored, per XDG
        return Path(xdg) / "omniport"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "omniport"


def omni_name(omni_url: str) -> str:
    """The Omni instance as one path component: its host, and its port when it names one."""
    parts = urlsplit(omni_url if "//" in omni_url else f"//{omni_url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or omni_url
    return safe_name(f"{host}_{port}" if port else host)


def cluster_directory(
    cluster: str,
    omni_url: str,
    spec: Spec | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """``<base>/<cluster>/<omni>/``: the spec's ``state.directory`` first, else the
    environment's."""
    base = spec.state_directory if spec is not None and spec.state_directory else None
    return (base or base_directory(environ)) / safe_name(cluster) / omni_name(omni_url)


def lock_directory(cluster: str, omni_url: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where the cluster's lock lives: the same for every command on this host."""
    env = os.environ if environ is None else environ
    override = env.get(LOCK_ENV, "")
    if override:
        return Path(override).expanduser().absolute()
    return base_directory(env) / safe_name(cluster) / omni_name(omni_url)


@dataclass(frozen=True)
class StateFiles:
    """The files one apply of one plan writes (absolute paths)."""

    directory: Path
    rollback: Path
    journal: Path
    backups: Path
    """The directory for the backup zip (``backup.directory``, else :attr:`directory`)."""


def plan_stem(plan_path: Path) -> str:
    name = Path(plan_path).name
    return name[: -len(".json")] if name.endswith(".json") else name


def files_for(
    plan_path: Path,
    cluster: str,
    omni_url: str,
    spec: Spec | None,
    environ: Mapping[str, str] | None = None,
) -> StateFiles:
    """``<plan stem>.rollback.json`` and ``<plan stem>.journal.jsonl`` in the cluster's state
    directory, and where the backup goes."""
    directory = cluster_directory(cluster, omni_url, spec, environ)
    stem = plan_stem(plan_path)
    backups = spec.backup_directory if spec is not None and spec.backup_directory else directory
    return StateFiles(
        directory=directory,
        rollback=directory / f"{stem}.rollback.json",
        journal=directory / f"{stem}.journal.jsonl",
        backups=backups,
    )


def prepare(directory: Path, setting: str) -> Path:
    """Create ``directory`` (and missing parents) 0700; one clear error when it cannot be."""
    try:
        make_private_dirs(directory)
        if not directory.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as err:
        raise StateDirError(
            f"cannot use the state directory {directory}: {err.strerror or err}",
            f"point {setting} at a directory you can write (it holds backups, rollback plans "
            "and journals; keep it out of git)",
        ) from None
    return directory


def setting_for(spec: Spec | None, environ: Mapping[str, str] | None = None) -> str:
    """Which setting chose the state directory, for error messages."""
    env = os.environ if environ is None else environ
    if spec is not None and spec.state_directory:
        return "state.directory in the spec"
    if env.get(STATE_ENV):
        return f"${STATE_ENV}"
    return f"${STATE_ENV} (or state.directory in the spec)"
