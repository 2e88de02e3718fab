"""``omniport apply|rollback|abort|unlock``: the commands that change nodes and Omni.

Each command parses its options and calls ``run_<command>``, which wires the engine
(``apply.py``, ``rollback.py``, ``abort.py``) to a :class:`~omniport.planner.cli.console.ConsoleUi`
and an approval prompt. The engines and the console are imported when a command runs, so that
``omniport --help`` does not load them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from omniport.planner.cli.context import CliContext, json_option, pass_console

if TYPE_CHECKING:
    from omniport.planner.cli.console import ConsoleUi
    from omniport.planner.execute.session import Interrupts

_auto_approve = click.option("--auto-approve", is_flag=True, help="Skip the interactive 'yes'.")
_json_events = json_option("Stream JSON Lines events.")


@click.command()
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False))
@_auto_approve
@click.option(
    "--parallelism",
    type=click.IntRange(1, 1000),
    default=None,
    help="Nodes connected at once after the canary (default: apply.parallelism of the spec).",
)
@click.option("--no-rollback", is_flag=True, help="Keep completed steps when a step fails.")
@_json_events
@pass_console
def apply(
    console: CliContext,
    plan_file: str,
    auto_approve: bool,
    parallelism: int | None,
    no_rollback: bool,
) -> int:
    """Execute exactly a saved plan, as a transaction that rolls back on failure.

    Ctrl-C before the first change exits 130 with nothing changed; during the transaction it
    rolls back (twice: exits at once, naming the rollback command); after "Apply complete!"
    it is ignored and apply exits 0.

    The backup, the rollback plan and the journal go to the cluster's state directory,
    never beside the spec: state.directory of the spec, else $OMNIPORT_STATE_DIR, else
    $XDG_STATE_HOME/omniport, else ~/.local/state/omniport (one folder per cluster and Omni
    instance, 0700).
    Apply prints where.
    """
    return run_apply(
        console,
        plan_file,
        auto_approve=auto_approve,
        parallelism=parallelism,
        no_rollback=no_rollback,
        release_interrupts=False,  # complete: a Ctrl-C until the exit changes nothing (exit 0)
    )


@click.command()
@click.argument("rollback_file", metavar="ROLLBACK", type=click.Path(dir_okay=False))
@_auto_approve
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    help="Reach Talos and Omni with this spec's settings instead of the recorded ones "
    "(default: the recorded spec, its files found in this directory's git checkout, else "
    "where apply found them).",
)
@click.option(
    "--backup",
    "backup_path",
    type=click.Path(dir_okay=False),
    help="The backup zip, if it was moved from where apply wrote it; accepted only when its "
    "sha256 equals the one the rollback file pins.",
)
@_json_events
@pass_console
def rollback(
    console: CliContext,
    rollback_file: str,
    auto_approve: bool,
    spec_path: str | None,
    backup_path: str | None,
) -> int:
    """Put nodes and Omni back as they were before an apply (idempotent)."""
    return run_rollback(
        console,
        rollback_file,
        auto_approve=auto_approve,
        spec_path=spec_path,
        backup_path=backup_path,
    )


@click.command()
@click.argument("cluster_name", metavar="CLUSTER")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Import spec whose Talos and Omni access settings to use.",
)
@_auto_approve
@_json_events
@pass_console
def abort(console: CliContext, cluster_name: str, spec_path: str, auto_approve: bool) -> int:
    """Abort an import in Omni and remove the join documents from the nodes."""
    return run_abort(console, cluster_name, spec_path=spec_path, auto_approve=auto_approve)


@click.command()
@click.argument("cluster_name", metavar="CLUSTER")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    help="Import spec whose Omni access settings to use (default: the plan's).",
)
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False),
    help="The applied plan, for its unlock preview.",
)
@_auto_approve
@_json_events
@pass_console
def unlock(
    console: CliContext,
    cluster_name: str,
    spec_path: str | None,
    plan_path: str | None,
    auto_approve: bool,
) -> int:
    """Unlock an imported cluster so that Omni starts managing it."""
    return run_unlock(
        console, cluster_name, spec_path=spec_path, plan_path=plan_path, auto_approve=auto_approve
    )


def _run(
    coro: Coroutine[Any, Any, Any], ui: ConsoleUi, interrupts: Interrupts | None = None
) -> Any:
    """Run an engine (``cli.run`` turns its failure into the stream's last event).

    A Ctrl-C the engine did not take over itself (before it armed its handler: while reading,
    at the prompt) ends the run with exit 130; before the journal's ``begin`` nothing changed.
    """
    import asyncio  # imported here: start-up time

    from omniport.planner.execute.errors import Cancelled  # imported here: start-up time

    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        if interrupts is not None and interrupts.begun:
            raise Cancelled(
                "interrupted (Ctrl-C) after the first change",
                interrupts.hint.strip() or None,
            ) from None
        raise Cancelled(
            "interrupted (Ctrl-C) before the first change; nothing was changed"
        ) from None


def run_apply(
    console: CliContext,
    plan_file: str,
    *,
    auto_approve: bool,
    parallelism: int | None,
    no_rollback: bool,
    exit_now: Callable[[], None] | None = None,
    release_interrupts: bool = True,
) -> int:
    """``exit_now``: what a second Ctrl-C does instead of exiting at once (``demo`` stops its
    lab first). Once the apply is complete a Ctrl-C is ignored, so that it exits 0; with
    ``release_interrupts`` false it stays ignored until the process exits (the command)."""
    # imported here: start-up time
    from omniport.planner import planfile, render
    from omniport.planner.cli.console import approval_console, make_confirm
    from omniport.planner.execute.apply import ApplyOptions, apply_plan
    from omniport.planner.execute.session import Interrupts
    from omniport.planner.plan import Plan

    ui = approval_console(console, "apply", auto_approve=auto_approve)
    path = Path(plan_file)

    def show(plan: Plan) -> None:
        data = planfile.to_dict(plan)
        if auto_approve and not console.as_json:
            return  # nothing to review at a prompt; the plan was reviewed when it was made
        if console.as_json:
            for ev in render.plan_events(data):
                if ev["type"] in ("planned_change", "change_summary"):
                    ui.emit(ev)
        else:
            console.echo(render.render_plan(data, color=console.color).rstrip("\n"))

    confirm = make_confirm(
        ui,
        "Do you want to perform these actions?",
        lambda name: f"omniport will import cluster {name!r} into Omni as shown above.",
    )
    options = ApplyOptions(
        auto_approve=auto_approve,
        parallelism=parallelism,
        no_rollback=no_rollback,
        overrides=console.overrides,
    )
    interrupts = Interrupts(ui, exit_now)
    try:
        ahead = _run(apply_plan(path, options, ui, confirm, interrupts, show), ui, interrupts)
        # complete: a Ctrl-C from here on is ignored, and the exit code stays 0
        ui.say("")
        ui.say(f"Cluster is imported and locked in Omni. Backup: {ahead.backup}")
        ui.say(f"Rollback plan: {ahead.rollback}")
        ui.say(f"Journal: {ahead.journal}")
        ui.say(f"To undo the import: omniport rollback {ahead.rollback}")
        ui.say(
            f"To hand the cluster to Omni: omniport unlock {ahead.plan.cluster_name} --plan {path}"
        )
    finally:
        if release_interrupts:
            interrupts.release()
    return 0


def run_rollback(
    console: CliContext,
    rollback_file: str,
    *,
    auto_approve: bool,
    spec_path: str | None,
    backup_path: str | None = None,
    exit_now: Callable[[], None] | None = None,
) -> int:
    # imported here: start-up time
    from omniport.planner import render
    from omniport.planner.cli.console import approval_console, make_confirm
    from omniport.planner.execute import rollbackfile
    from omniport.planner.execute.rollback import RollbackOptions
    from omniport.planner.execute.rollback import rollback_file as execute
    from omniport.planner.execute.rollbackfile import RollbackPlan
    from omniport.planner.execute.session import Interrupts

    ui = approval_console(console, "rollback", auto_approve=auto_approve)

    def show(rb: RollbackPlan) -> None:
        data = rollbackfile.to_dict(rb)
        if console.as_json:
            for ev in render.rollback_events(data):
                ui.emit(ev)
        else:
            console.echo(render.render_rollback(data, color=console.color).rstrip("\n"))

    confirm = make_confirm(
        ui,
        "Do you want to roll back this import?",
        lambda name: f"omniport will restore the nodes of {name!r} and remove it from Omni.",
    )
    interrupts = Interrupts(ui, exit_now)
    report = _run(
        execute(
            Path(rollback_file),
            RollbackOptions(
                auto_approve=auto_approve,
                spec_path=Path(spec_path) if spec_path else None,
                overrides=console.overrides,
                backup_path=Path(backup_path) if backup_path else None,
            ),
            ui,
            confirm,
            interrupts,
            show,
        ),
        ui,
        interrupts,
    )
    ui.summary(
        "rollback",
        f"Rollback complete! {report.done_line()}.",
        0,
        len(report.restored),
        len(report.destroyed) + len(report.links),
    )
    return 0


def run_abort(console: CliContext, cluster: str, *, spec_path: str, auto_approve: bool) -> int:
    # imported here: start-up time
    from omniport.planner import render
    from omniport.planner.cli.console import approval_console, make_confirm
    from omniport.planner.execute.abort import AbortPlan, abort_import
    from omniport.planner.execute.session import spec_for
    from omniport.planner.overrides import for_access

    ui = approval_console(console, "abort", auto_approve=auto_approve)
    spec, _ = spec_for(spec_path, None)
    spec = for_access(spec, console.overrides, "abort")

    def show(plan: AbortPlan) -> None:
        data = plan.to_dict()
        if console.as_json:
            for ev in render.abort_events(data):
                ui.emit(ev)
        else:
            console.echo(render.render_abort(data, color=console.color).rstrip("\n"))

    confirm = make_confirm(
        ui,
        "Do you want to abort this import?",
        lambda name: (
            f"omniport will remove {name!r} from Omni and the join documents from its nodes."
        ),
    )
    _run(
        abort_import(cluster, spec, ui=ui, confirm=confirm, auto_approve=auto_approve, show=show),
        ui,
    )
    return 0


def run_unlock(
    console: CliContext,
    cluster: str,
    *,
    spec_path: str | None,
    plan_path: str | None,
    auto_approve: bool,
) -> int:
    # imported here: start-up time
    from omniport.planner import render
    from omniport.planner.cli.console import approval_console, make_confirm
    from omniport.planner.execute.session import spec_for
    from omniport.planner.execute.unlock import unlock_cluster
    from omniport.planner.overrides import for_access

    ui = approval_console(console, "unlock", auto_approve=auto_approve)
    spec, plan = spec_for(spec_path, plan_path)
    spec = for_access(spec, console.overrides, "unlock")

    def show(data: dict[str, Any]) -> None:
        if console.as_json:
            for ev in render.unlock_events(data):
                ui.emit(ev)
        else:
            console.echo(render.render_unlock(data, color=console.color).rstrip("\n"))

    confirm = make_confirm(
        ui,
        "Do you want to unlock this cluster?",
        lambda name: f"Omni will start managing {name!r} and push its configs to the nodes.",
    )
    _run(
        unlock_cluster(
            cluster,
            spec,
            ui=ui,
            confirm=confirm,
            auto_approve=auto_approve,
            show=show,
            plan=plan,
        ),
        ui,
    )
    return 0
