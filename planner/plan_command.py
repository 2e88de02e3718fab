"""What ``omniport plan`` and ``omniport show`` do, between parsing options and exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

from omniport.planner import files, planfile, render
from omniport.planner.planning import make_plan
from omniport.planner.spec import load_spec

Echo = Callable[[str], None]


def default_plan_path(spec_path: Path) -> Path:
    return spec_path.parent / f"{spec_path.stem}.plan.json"


def run_plan(
    spec_path: str,
    out: str | None,
    *,
    as_json: bool,
    detailed_exitcode: bool,
    color: bool,
    echo: Echo,
    force: bool = False,
    file_mode: int = 0o600,
) -> int:
    """Exit code: 1 when apply would be blocked, else 2 for changes with --detailed-exitcode."""
    spec = load_spec(spec_path)
    path = Path(out) if out else default_plan_path(Path(spec_path))
    protect = (Path(spec_path),)
    planfile.check_target(path, protect=protect, force=force)  # before reading anything
    if not as_json:
        print(
            f"Reading {len(spec.talos.nodes)} node(s), Omni and the Image Factory…", file=sys.stderr
        )
    computed = asyncio.run(make_plan(spec))
    planfile.write(computed.plan, path, protect=protect, force=force, mode=file_mode)
    data = planfile.to_dict(computed.plan)
    if as_json:
        for event in render.plan_events(data):
            echo(render.json_line(event))
    else:
        echo(render.render_plan(data, color=color, path=str(path)).rstrip("\n"))
    if computed.plan.blocking_findings:
        return 1
    if detailed_exitcode and computed.plan.has_changes:
        return 2
    return 0


def run_show(path: str, *, as_json: bool, color: bool, echo: Echo) -> int:
    from omniport.planner.execute import rollbackfile

    text_path = Path(path)
    try:
        raw = json.loads(files.read_text(text_path, files.PLAN_LIMIT))
    except (OSError, files.Unreadable, ValueError, RecursionError):  # the readers below explain
        raw = None
    if isinstance(raw, dict) and "import_id" in raw:
        rollback = rollbackfile.read(text_path)
        data = rollbackfile.to_dict(rollback)
        if as_json:
            echo(json.dumps(data, indent=2, sort_keys=True))
        else:
            echo(render.render_rollback(data, color=color).rstrip("\n"))
        return 0
    plan = planfile.read(text_path)
    data = planfile.to_dict(plan)
    if as_json:
        echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        echo(render.render_plan(data, color=color).rstrip("\n"))
    return 0
