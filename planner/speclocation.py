"""Where a plan's spec lives, so that a plan applies from any directory or checkout.

A spec names files by paths relative to its own directory (``talos.talosconfig``,
``omni.caFile``, ...). The plan records where the spec was: its path relative to the root of
the git repository holding it (a checkout is found by walking up to ``.git``, no ``git``
command), else its absolute path. Apply and rollback then look for the spec's directory:

1. in the git checkout of the current directory, then in the one holding the plan file, at the
   recorded repository path (another checkout of the same repository: a CI job, a colleague);
2. at the recorded absolute path;
3. else the plan file's own directory (a plan written beside its spec, the default), or, for a
   rollback file (kept in the state directory, away from any checkout), the spec's directory
   as apply saw it.

Only the directory is taken from the file system: what the spec says is the copy recorded in
the plan, hashed and sealed there.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from omniport.planner.plan import SpecLocation


def repository_root(directory: Path) -> Path | None:
    """The nearest directory at or above ``directory`` holding ``.git`` (a directory, or the
    file a worktree or submodule has), or None outside any checkout."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def locate(spec_path: Path) -> SpecLocation:
    """The location to record for the spec file at ``spec_path``."""
    absolute = spec_path.resolve()
    root = repository_root(absolute.parent)
    if root is not None:
        relative = absolute.relative_to(root)
        return SpecLocation(path=PurePosixPath(*relative.parts).as_posix(), in_repository=True)
    return SpecLocation(path=str(absolute), in_repository=False)


def spec_directory(
    location: SpecLocation | None,
    plan_path: Path,
    cwd: Path | None = None,
    fallback: Path | None = None,
) -> Path:
    """The directory the recorded spec's relative paths resolve from (see the module doc);
    ``fallback`` replaces the plan file's directory as the last resort."""
    plan_dir = plan_path.resolve().parent
    if location is not None:
        if location.in_repository:
            roots: list[Path] = []
            for start in (cwd or Path.cwd(), plan_dir):
                root = repository_root(start.resolve())
                if root is not None and root not in roots:
                    roots.append(root)
            for root in roots:
                candidate = root.joinpath(*PurePosixPath(location.path).parts)
                if candidate.is_file():
                    return candidate.parent
        else:
            candidate = Path(location.path)
            if candidate.is_file():
                return candidate.parent
    return fallback if fallback is not None else plan_dir


def described(location: SpecLocation | None) -> str:
    """The recorded location in words, for messages."""
    if location is None:
        return "no recorded spec location"
    if location.in_repository:
        return f"{location.path} in the git repository"
    return location.path
