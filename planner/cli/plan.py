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
@click.option(
    "--offline",
    is_flag=True,
    help="Check only what the spec itself holds (schema, types, versions, finding codes, "
    "durations), not the files it names: for a pull-request job without talosconfig or keys.",
)
@pass_console
def validate(console: CliContext, spec: str, offline: bool) -> None:
    """Check an import spec against its schema and semantics, without network.

    Errors are printed as FILE:LINE:COL: message, one per line, and exit 1.
    """
    from omniport.planner.spec import load_spec, named_files  # imported here: start-up time

    loaded = load_spec(spec, offline=offline)
    if offline:
        unread = named_files(loaded)
        if unread:
            console.err(f"Offline: not read: {', '.join(unread)}.")
    nodes = (
        f"{len(loaded.talos.nodes)} node(s)"
        if loaded.talos.nodes
        else "the nodes Talos discovery lists at plan time"
    )
    console.echo(f"{spec}: valid import spec for {nodes} (sha256 {loaded.sha256[:12]}).")


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "-out",
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    help="Plan file to write (Terraform's -out=FILE works too). It may go anywhere: apply "
    "finds the spec again from where the plan records it.",
)
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
@json_option("Print the file as JSON (the same as --format json).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default=None,
    help="text (default), json, or markdown: a plan as a pull-request comment (collapsible "
    "redacted patches, at most 65536 characters).",
)
@pass_console
def show(console: CliContext, path: str, output_format: str | None) -> int:
    """Render a saved plan or rollback file."""
    return run_show(console, path, output_format)


def run_plan(
    console: CliContext,
    spec_path: str,
    out: str | None,
    *,
    detailed_exitcode: bool,
    force: bool = False,
    file_mode: int = 0o600,
) -> int:
    """Exit code: 1 when apply would be blocked, else 2 for changes with --detailed-exitcode.

    With ``--json`` a failure before the plan exists (a spec error, an unreachable endpoint) is
    in the event stream too, as ``apply --json`` has it: the version event, then one
    ``diagnostic`` per problem; ``cli.run`` still prints it on stderr and sets the exit code."""
    from omniport.planner.errors import OmniportError  # imported here: start-up time
    from omniport.providers.errors import ProviderError  # imported here: start-up time

    try:
        return _plan(console, spec_path, out, detailed_exitcode, force, file_mode)
    except (OmniportError, ProviderError) as err:
        if console.as_json:
            from omniport.planner import render  # imported here: start-up time

            console.echo(render.json_line(render.version_event()))
            for event in render.error_events(err):
                console.echo(render.json_line(event))
        raise


def _plan(
    console: CliContext,
    spec_path: str,
    out: str | None,
    detailed_exitcode: bool,
    force: bool,
    file_mode: int,
) -> int:
    # imported here: start-up time
    import asyncio

    from omniport.planner import planfile, render
    from omniport.planner.planning import make_plan
    from omniport.planner.spec import load_spec

    spec = load_spec(spec_path)
    path = Path(out) if out else planfile.default_path(Path(spec_path))
    protect = (Path(spec_path),)
    planfile.check_target(path, protect=protect, force=force)  # before reading anything
    if not console.as_json:
        nodes = (
            f"{len(spec.talos.nodes)} node(s)"
            if spec.talos.nodes
            else "the nodes Talos discovery lists"
        )
        console.err(f"Reading {nodes}, Omni and the Image Factory…")
    computed = asyncio.run(make_plan(spec))
    planfile.write(computed.plan, path, protect=protect, force=force, mode=file_mode)
    data = planfile.to_dict(computed.plan)
    if console.as_json:
        for event in render.plan_events(data):
            console.echo(render.json_line(event))
    else:
        console.echo(render.render_plan(data, color=console.color, path=str(path)).rstrip("\n"))
    if computed.plan.blocking_findings:
        return 1
    if detailed_exitcode and computed.plan.has_changes:
        return 2
    return 0


def run_show(console: CliContext, path: str, output_format: str | None = None) -> int:
    """A rollback file is told from a plan file by its ``import_id``."""
    # imported here: start-up time
    # imported here: start-up time
    import json

    from omniport.planner import files, planfile, render
    from omniport.planner.errors import UsageProblem
    from omniport.planner.execute import rollbackfile

    if output_format == "json" or (output_format is None and console.as_json):
        console.as_json = True
    elif console.as_json:
        raise UsageProblem(
            f"--json and --format {output_format} ask for two formats", "pass only one of them"
        )
    text_path = Path(path)
    try:
        raw = json.loads(files.read_text(text_path, files.PLAN_LIMIT))
    except (OSError, files.Unreadable, ValueError, RecursionError):  # the readers below explain
        raw = None
    if isinstance(raw, dict) and "import_id" in raw:
        if output_format == "markdown":
            raise UsageProblem(
                f"{path} is a rollback plan; --format markdown renders plan files",
                f"run `omniport show {path}` for its text",
            )
        data = rollbackfile.to_dict(rollbackfile.read(text_path))
        if console.as_json:
            console.echo(json.dumps(data, indent=2, sort_keys=True))
        else:
            console.echo(render.render_rollback(data, color=console.color).rstrip("\n"))
        return 0
    data = planfile.to_dict(planfile.read(text_path))
    if console.as_json:
        console.echo(json.dumps(data, indent=2, sort_keys=True))
    elif output_format == "markdown":
        from omniport.planner.render_markdown import render_markdown  # imported here: start-up time

        console.echo(render_markdown(data, path=path).rstrip("\n"))
    else:
        console.echo(render.render_plan(data, color=console.color).rstrip("\n"))
    return 0
