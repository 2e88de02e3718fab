"""How the commands that change things talk to the user: engine reports and approval.

The engines (``apply.py``, ``rollback.py``, ``abort.py``) report through a :class:`ConsoleUi`,
which draws Terraform-style lines or JSON Lines events (``--json``). Approval is asked here,
and only on a terminal: without one (or with ``--json``) the run needs ``--auto-approve``.
Commands import this module when they run, not at start-up (it pulls in the engines' types).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from omniport.planner import render
from omniport.planner.cli.context import CliContext, Echo
from omniport.planner.errors import OmniportError
from omniport.planner.execute.errors import ApplyError
from omniport.planner.execute.session import StepRef


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


def approval_console(console: CliContext, command: str, *, auto_approve: bool) -> ConsoleUi:
    """The console of a command that changes things: JSON starts with the version event, and
    without a terminal the command needs --auto-approve."""
    ui = ConsoleUi(console.echo, as_json=console.as_json, color=console.color)
    if console.as_json:
        ui.emit(render.version_event())
    require_approval_channel(auto_approve, console.as_json, command)
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
    """Terraform's prompt: only ``yes`` approves. Ctrl-C at the prompt ends the run before
    anything changed (KeyboardInterrupt, exit 130)."""

    def confirm(name: str) -> bool:
        ui.echo("")
        ui.echo(ui.style.bold(question))
        ui.echo(f"  {what(name)}")
        ui.echo("  Only 'yes' will be accepted to approve.")
        ui.echo("")
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            answer = input("  Enter a value: ")
        except EOFError:
            answer = ""  # no answer: not approved (exit 1); Ctrl-C ends the run (exit 130)
        finally:
            signal.signal(signal.SIGINT, previous)
        ui.echo("")
        return answer.strip() == "yes"

    return confirm
