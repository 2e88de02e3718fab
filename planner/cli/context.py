"""The one object every command shares, made by the root group and stored in ``ctx.obj``.

Commands take it with :data:`pass_console` (click's ``make_pass_decorator``, as click's ``repo``
example passes its ``Repo``) instead of re-passing color, JSON mode and echo functions. The
output functions are fields so that ``omniport demo`` and tests can route a command's lines.
This module stays light: the root group imports it on every start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import click

from omniport.planner.overrides import Overrides, in_automation, split_list
from omniport.planner.progress import Progress

Echo = Callable[[str], None]
F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")


def _line(text: str = "") -> None:
    click.echo(text)


def _raw(text: str) -> None:
    click.echo(text, nl=False)


def _error_line(text: str = "") -> None:
    click.echo(text, err=True)


def color_wanted(no_color: bool, environ: Mapping[str, str], tty: bool) -> bool:
    """Whether to paint: never with ``--no-color``; always with ``FORCE_COLOR`` non-empty
    (force-color.org); never with ``NO_COLOR`` non-empty (no-color.org: an empty value does not
    count); else only on a terminal."""
    if no_color:
        return False
    if environ.get("FORCE_COLOR", ""):
        return True
    if environ.get("NO_COLOR", ""):
        return False
    return tty


@dataclass
class CliContext:
    """How this run talks to the user: colors, ``--json`` mode, and where its lines go."""

    color: bool = False
    # Set by a command's ``--json`` flag (see :func:`json_option`): JSON Lines events for
    # plan/apply/rollback/abort/unlock, a JSON document for show and lab status.
    as_json: bool = False
    echo: Echo = _line  # one line on stdout
    write: Echo = _raw  # text on stdout as it is (no newline added)
    err: Echo = _error_line  # one line on stderr: notes, progress, warnings
    # The global --talosconfig/--context/--endpoints/--nodes/--omniconfig flags.
    overrides: Overrides = field(default_factory=Overrides)
    # Interactive hints ("Next: ...", "Press Ctrl-C ..."); off under OMNIPORT_IN_AUTOMATION.
    hints: bool = True
    no_color: bool = False  # --no-color was given (before or after the command)
    # The --json event stream has begun (its version event is out): see :meth:`event`.
    streamed: bool = False

    @classmethod
    def detect(cls, no_color: bool, environ: Mapping[str, str] | None = None) -> CliContext:
        """Colors and hints from the flags, the environment and the terminal."""
        env = os.environ if environ is None else environ
        return cls(
            color=color_wanted(no_color, env, sys.stdout.isatty()),
            hints=not in_automation(env),
            no_color=no_color,
        )

    def event(self, ev: dict[str, Any]) -> None:
        """One event of the ``--json`` stream on stdout (the first must be the version)."""
        from omniport.planner import render  # imported here: start-up time

        self.echo(render.json_line(ev))
        self.streamed = True

    def show_progress(self, progress: Progress) -> None:
        """The sink of the run's progress board: a line on stderr, or with ``--json`` a
        ``progress`` event on stdout (the stream's only channel)."""
        from omniport.planner import render  # imported here: start-up time

        text = render.printable(progress.text())
        if self.as_json:
            if not self.streamed:  # a stream starts with its version event
                self.event(render.version_event())
            self.event(render.progress_event(asdict(progress), text))
        else:
            self.err(text)

    def settle(self, environ: Mapping[str, str] | None = None) -> None:
        """Colors and hints once the root group's flags are parsed (see :func:`global_options`)."""
        env = os.environ if environ is None else environ
        self.color = color_wanted(self.no_color, env, sys.stdout.isatty())
        self.hints = not in_automation(env)


_pass_context_object = click.make_pass_decorator(CliContext)


def pass_console(command: Callable[Concatenate[CliContext, P], R]) -> Callable[P, R]:
    """Give a command the run's :class:`CliContext` as its first argument."""
    return _pass_context_object(command)


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    console = ctx.find_object(CliContext)
    if console is not None:  # else pass_console names the missing context
        console.as_json = value


def json_option(help: str) -> Callable[[F], F]:
    """A command's ``--json`` flag; it sets :attr:`CliContext.as_json` instead of a parameter."""
    return click.option(
        "--json", "as_json", is_flag=True, expose_value=False, callback=_set_json, help=help
    )


# ---- global options -------------------------------------------------------------------------
#
# talosctl's and omnictl's persistent flags: accepted before the command (``omniport
# --talosconfig F plan S``) and after it (``omniport plan S --talosconfig F``). The root group
# and the commands that reach Talos or Omni carry them; ``--no-color`` is on every command.


def _console(ctx: click.Context) -> CliContext:
    """The run's context object, made here when the root group's own flags are parsed first."""
    return ctx.ensure_object(CliContext)


def _set_no_color(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        console = _console(ctx)
        console.no_color = True
        console.color = False


def _set_override(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None or value == ():
        return
    name = param.name or ""
    if name in ("endpoints", "nodes"):
        value = split_list(value)
        if not value:
            raise click.BadParameter("give at least one address", ctx=ctx, param=param)
    elif name in ("talosconfig", "omniconfig"):
        value = Path(value).expanduser().resolve()
    console = _console(ctx)
    console.overrides = replace(console.overrides, **{name: value})


def no_color_option() -> click.Option:
    return click.Option(
        ["--no-color"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_no_color,
        help="Disable colored output (also: NO_COLOR=1; FORCE_COLOR=1 forces it).",
    )


def access_options() -> list[click.Option]:
    """``--talosconfig``, ``--context``, ``--endpoints``, ``--nodes``, ``--omniconfig``."""
    path = click.Path(exists=True, dir_okay=False)
    common: dict[str, Any] = {"expose_value": False, "callback": _set_override}
    return [
        click.Option(
            ["--talosconfig"],
            type=path,
            help="talosconfig to use instead of the spec's talos.talosconfig.",
            **common,
        ),
        click.Option(
            ["--context"],
            help="Context in the talosconfig instead of the spec's talos.context.",
            **common,
        ),
        click.Option(
            ["-e", "--endpoints"],
            multiple=True,
            help="apid endpoints (comma-separated or repeated) instead of talos.endpoints.",
            **common,
        ),
        click.Option(
            ["-n", "--nodes"],
            multiple=True,
            help="Nodes to import (comma-separated or repeated) instead of talos.nodes.",
            **common,
        ),
        click.Option(
            ["--omniconfig"],
            type=path,
            help="omniconfig to use instead of the spec's omni.omniconfig.",
            **common,
        ),
    ]


def add_global_options(command: click.Command, *, access: bool) -> None:
    """Give ``command`` (and every command below it) ``--no-color``, and with ``access`` the
    access flags; a flag the command already defines for itself is left to it."""
    taken = {opt for param in command.params for opt in param.opts}
    wanted = [no_color_option(), *(access_options() if access else [])]
    for option in wanted:
        if not taken.intersection(option.opts):
            command.params.append(option)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_global_options(sub, access=False)
