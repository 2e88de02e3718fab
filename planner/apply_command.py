"""What ``omniport apply|rollback|abort|unlock`` do between parsing options and exit codes.

The engines (``apply.py``, ``rollback.py``, ``abort.py``) report through a :class:`ConsoleUi`,
which draws Terraform-style lines or JSON Lines events (``--json``). Approval is asked here,
and only on a terminal: without one (or with ``--json``) the run needs ``--auto-approve``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omniport.planner import planfile, render
from omniport.planner.errors import OmniportError
from omniport.planner.execute import rollbackfile
from omniport.planner.execute.apply import ApplyOptions, apply_plan
from omniport.planner.execute.errors import ApplyError
from omniport.planner.execute.rollbackfile import RollbackPlan
from omniport.planner.execute.session import Interrupts, StepRef
from omniport.planner.plan import Plan

Echo = Callable[[str], None]


class ConsoleUi:
    """Human lines (Terraform-like) or JSON Lines events, from the same calls."""

    def __init__(self, echo: Echo, *, as_json: bool, color: bool) -> None:
        self.echo = echo
        self.as_json = as_json
        self.style = render.Style(color)
        self._last_progress: dict[str, float] = {}

    def emit(self, ev: dict[str, Any]) -> None:
        self.echo(render.json_line(ev))

    def say(self, text: str) -> None:
        if self.as_json:
            self.emit(render.event("log", text))
        else:
            self.echo(render.printable(text))

    def start(self, step: StepRef, note: str = "") -> None:
        data = asdict(step)
        line = render.step_line(data, "start", note=note)
        if self.as_json:
            self.emit(render.hook_event("apply_start", line, data))
        else:
            self.echo(render.printable(line))

    def progress(self, step: StepRef, message: str, **fields: Any) -> None:
        data = asdict(step)
        elapsed = fields.get("elapsed_seconds", 0.0)
        text = f"{message} [{elapsed:.1f}s elapsed]"
        if self.as_json:
            self.emit(render.hook_event("apply_progress", text, data, **fields))
            return
        # On a terminal, throttle: every 10 % of the work, at the end, or every 2 s.
        done, total = fields.get("done"), fields.get("total")
        key = step.address.split(".", 1)[0]
        now = time.monotonic()
        due = (
            done == total
            or not total
            or (done is not None and done % max(1, total // 10) == 0)
            or now - self._last_progress.get(key, 0.0) >= 2.0
        )
        if due:
            self._last_progress[key] = now
            self.echo(f"  {render.printable(text)}")

    def done(self, step: StepRef, elapsed: float, note: str = "") -> None:
        data = asdict(step)
        line = render.step_line(data, "done", elapsed, note)
        if self.as_json:
            self.emit(
                render.hook_event("apply_complete", line, data, elapsed_seconds=round(elapsed, 3))
            )
        else:
            self.echo(render.printable(line))

    def failed(self, step: StepRef, message: str, elapsed: float) -> None:
        data = asdict(step)
        line = f"{step.address}: failed after {elapsed:.1f}s: {message}"
        if self.as_json:
            self.emit(
                render.hook_event(
                    "apply_errored",
                    line,
                    data,
                    level="error",
                    error=message,
                    elapsed_seconds=round(elapsed, 3),
                )
            )
        else:
            self.echo(self.style.paint(render.printable(line), "error"))

    def summary(self, operation: str, message: str, add: int, change: int, remove: int) -> None:
        if self.as_json:
            self.emit(
                render.event(
                    "change_summary",
                    message,
                    changes={
                        "add": add,
                        "change": change,
                        "remove": remove,
                        "operation": operation,
                    },
                )
            )
        else:
            self.echo("")
            self.echo(self.style.bold(render.printable(message)))

    def error(self, err: OmniportError) -> None:
        """In JSON mode the failure is also an event; ``cli.run`` prints the line on stderr."""
        if self.as_json:
            self.emit(
                render.event(
                    "diagnostic",
                    str(err),
                    level="error",
                    diagnostic={"severity": "error", "summary": err.message, "fix": err.fix},
                )
            )


def approval_console(
    command: str, *, auto_approve: bool, as_json: bool, color: bool, echo: Echo
) -> ConsoleUi:
    """The console of a command that changes things: JSON starts with the version event, and
    without a terminal the command needs --auto-approve."""
    ui = ConsoleUi(echo, as_json=as_json, color=color)
    if as_json:
        ui.emit(render.version_event())
    require_approval_channel(auto_approve, as_json, command)
    return ui


def require_approval_channel(auto_approve: bool, as_json: bool, command: str) -> None:
    """Refuse before doing anything when approval cannot be asked for."""
    if auto_approve:
        return
    if as_json:
        raise ApplyError(
            f"`omniport {command} --json` cannot ask for approval on its event stream",
            "review first, then pass --auto-approve",
        )
    if not sys.stdin.isatty():
        raise ApplyError(
            f"`omniport {command}` needs approval, but there is no terminal to ask on",
            "review the plan, then pass --auto-approve",
        )


def make_confirm(ui: ConsoleUi, question: str, what: Callable[[str], str]) -> Callable[[str], bool]:
    """Terraform's prompt: only ``yes`` approves. Ctrl-C at the prompt cancels."""

    def confirm(name: str) -> bool:
        ui.echo("")
        ui.echo(ui.style.bold(question))
        ui.echo(f"  {what(name)}")
        ui.echo("  Only 'yes' will be accepted to approve.")
        ui.echo("")
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            answer = input("  Enter a value: ")
        except (EOFError, KeyboardInterrupt):
            answer = ""
        finally:
            signal.signal(signal.SIGINT, previous)
        ui.echo("")
        return answer.strip() == "yes"

    return confirm


def _run(coro: Any, ui: ConsoleUi) -> Any:
    try:
        return asyncio.run(coro)
    except OmniportError as err:
        ui.error(err)
        raise


# ---- apply ----------------------------------------------------------------------------------


def run_apply(
    plan_file: str,
    *,
    auto_approve: bool,
    parallelism: int | None,
    no_rollback: bool,
    as_json: bool,
    color: bool,
    echo: Echo,
) -> int:
    ui = approval_console(
        "apply", auto_approve=auto_approve, as_json=as_json, color=color, echo=echo
    )
    path = Path(plan_file)

    def show(plan: Plan) -> None:
        data = planfile.to_dict(plan)
        if auto_approve and not as_json:
            return  # nothing to review at a prompt; the plan was reviewed when it was made
        if as_json:
            for ev in render.plan_events(data):
                if ev["type"] in ("planned_change", "change_summary"):
                    ui.emit(ev)
        else:
            echo(render.render_plan(data, color=color).rstrip("\n"))

    confirm = make_confirm(
        ui,
        "Do you want to perform these actions?",
        lambda name: f"omniport will import cluster {name!r} into Omni as shown above.",
    )
    options = ApplyOptions(
        auto_approve=auto_approve, parallelism=parallelism, no_rollback=no_rollback
    )
    ahead = _run(apply_plan(path, options, ui, confirm, Interrupts(ui), show), ui)
    ui.say("")
    ui.say(f"Cluster is imported and locked in Omni. Backup: {ahead.backup}")
    ui.say(f"Rollback plan: {ahead.rollback}")
    ui.say(f"Journal: {ahead.journal}")
    ui.say(f"To undo the import: omniport rollback {ahead.rollback}")
    ui.say(f"To hand the cluster to Omni: omniport unlock {ahead.plan.cluster_name} --plan {path}")
    return 0


# ---- rollback -------------------------------------------------------------------------------


def run_rollback(
    rollback_file: str,
    *,
    auto_approve: bool,
    spec_path: str | None,
    as_json: bool,
    color: bool,
    echo: Echo,
) -> int:
    from omniport.planner.execute.rollback import RollbackOptions
    from omniport.planner.execute.rollback import rollback_file as execute

    ui = approval_console(
        "rollback", auto_approve=auto_approve, as_json=as_json, color=color, echo=echo
    )

    def show(rb: RollbackPlan) -> None:
        data = rollbackfile.to_dict(rb)
        if as_json:
            for ev in render.rollback_events(data):
                ui.emit(ev)
        else:
            echo(render.render_rollback(data, color=color).rstrip("\n"))

    confirm = make_confirm(
        ui,
        "Do you want to roll back this import?",
        lambda name: f"omniport will restore the nodes of {name!r} and remove it from Omni.",
    )
    report = _run(
        execute(
            Path(rollback_file),
            RollbackOptions(
                auto_approve=auto_approve, spec_path=Path(spec_path) if spec_path else None
            ),
            ui,
            confirm,
            Interrupts(ui),
            show,
        ),
        ui,
    )
    ui.summary(
        "rollback",
        f"Rollback complete! {report.done_line()}.",
        0,
        len(report.restored),
        len(report.destroyed) + len(report.links),
    )
    return 0


# ---- abort and unlock -----------------------------------------------------------------------


def run_abort(
    cluster: str,
    *,
    spec_path: str | None,
    auto_approve: bool,
    as_json: bool,
    color: bool,
    echo: Echo,
) -> int:
    from omniport.planner.execute.abort import AbortPlan, abort_import
    from omniport.planner.execute.session import spec_for

    ui = approval_console(
        "abort", auto_approve=auto_approve, as_json=as_json, color=color, echo=echo
    )
    spec, _ = spec_for(spec_path, None)

    def show(plan: AbortPlan) -> None:
        data = plan.to_dict()
        if as_json:
            for ev in render.abort_events(data):
                ui.emit(ev)
        else:
            echo(render.render_abort(data, color=color).rstrip("\n"))

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
    cluster: str,
    *,
    spec_path: str | None,
    plan_path: str | None,
    auto_approve: bool,
    as_json: bool,
    color: bool,
    echo: Echo,
) -> int:
    from omniport.planner.execute.session import spec_for
    from omniport.planner.execute.unlock import unlock_cluster

    ui = approval_console(
        "unlock", auto_approve=auto_approve, as_json=as_json, color=color, echo=echo
    )
    spec, plan = spec_for(spec_path, plan_path)

    def show(data: dict[str, Any]) -> None:
        if as_json:
            for ev in render.unlock_events(data):
                ui.emit(ev)
        else:
            echo(render.render_unlock(data, color=color).rstrip("\n"))

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
