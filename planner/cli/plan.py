"""``omniport validate|plan|show``: the read-only commands.

``plan`` and ``show`` call ``run_plan``/``run_show``, which load the spec or file, compute
through the plan stage and render; ``omniport demo`` calls them too. The plan stage is imported
when a command runs, so that ``omniport --help`` does not load it.
"""

from __future__ import annotations

from pathlib import Path

import click

from omniport.planner.cli.context import CliContext, json_option, pass_console


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@pass_console
def validate(console: CliContext, spec: str) -> None:
    """Check an import spec against its schema and semantics, without network."""
    from omniport.planner.overrides import adjuster  # imported here: start-up time
    from omniport.planner.spec import load_spec  # imported here: start-up time

    loaded = load_spec(spec, adjust=adjuster(console.overrides))
    console.echo(
        f"{spec}: valid import spec for {len(loaded.talos.nodes)} node(s) "
        f"(sha256 {loaded.sha256[:12]})."
    )


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), help="Plan file to write.")
@json_option("Stream JSON Lines events.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes.")
@click.option("--force", is_flag=True, help="Replace an existing -o file that is not a plan.")
@click.option(
    "--file-mode",
    type=click.Choice(["600", "640", "644"]),
    default="600",
    show_default=True,
    help="Permissions of the plan file.",
)
@pass_console
def plan(
    console: CliContext,
    spec: str,
    out: str | None,
    detailed_exitcode: bool,
    force: bool,
    file_mode: str,
) -> int:
    """Read the live cluster and Omni, change nothing, and write a reviewable plan."""
    return run_plan(
        console,
        spec,
        out,
        detailed_exitcode=detailed_exitcode,
        force=force,
        file_mode=int(file_mode, 8),
    )


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
@json_option("Print the file as JSON.")
@pass_console
def show(console: CliContext, path: str) -> int:
    """Render a saved plan or rollback file."""
    return run_show(console, path)


def run_plan(
    console: CliContext,
    spec_path: str,
    out: str | None,
    *,
    detailed_exitcode: bool,
    force: bool = False,
    file_mode: int = 0o600,
) -> int:
    """Exit code: 1 when apply would be blocked, else 2 for changes with --detailed-exitcode."""
    # imported here: start-up time
    # imported here: start-up time
    import asyncio

    from omniport.planner import planfile, render
    from omniport.planner.overrides import adjuster
    from omniport.planner.planning import make_plan
    from omniport.planner.spec import load_spec

    if console.as_json and not console.streamed:
        console.event(render.version_event())  # first, so that even a bad spec is in the stream
    spec = load_spec(spec_path, adjust=adjuster(console.overrides))
    path = Path(out) if out else planfile.default_path(Path(spec_path))
    protect = (Path(spec_path),)
    planfile.check_target(path, protect=protect, force=force)  # before reading anything
    if not console.as_json:
        console.err(f"Reading {len(spec.talos.nodes)} node(s), Omni and the Image Factory…")
    computed = asyncio.run(make_plan(spec))
    planfile.write(computed.plan, path, protect=protect, force=force, mode=file_mode)
    data = planfile.to_dict(computed.plan)
    if console.as_json:
        for event in render.plan_events(data):
            if event["type"] != "version":  # already out
                console.event(event)
    else:
        console.echo(
            render.render_plan(
                data, color=console.color, path=str(path), hints=console.hints
            ).rstrip("\n")
        )
    if computed.plan.blocking_findings:
        return 1
    if detailed_exitcode and computed.plan.has_changes:
        return 2
    return 0


def run_show(console: CliContext, path: str) -> int:
    """A rollback file is told from a plan file by its ``import_id``."""
    # imported here: start-up time
    # imported here: start-up time
    import json

    from omniport.planner import files, planfile, render
    from omniport.planner.execute import rollbackfile

    text_path = Path(path)
    try:
        raw = json.loads(files.read_text(text_path, files.PLAN_LIMIT))
    except (OSError, files.Unreadable, ValueError, RecursionError):  # the readers below explain
        raw = None
    if isinstance(raw, dict) and "import_id" in raw:
        data = rollbackfile.to_dict(rollbackfile.read(text_path))
        if console.as_json:
            console.echo(json.dumps(data, indent=2, sort_keys=True))
        else:
            console.echo(render.render_rollback(data, color=console.color).rstrip("\n"))
        return 0
    data = planfile.to_dict(planfile.read(text_path))
    if console.as_json:
        console.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        console.echo(render.render_plan(data, color=console.color).rstrip("\n"))
    return 0
