"""The one object every command shares, made by the root group and stored in ``ctx.obj``.

Commands take it with :data:`pass_console` (click's ``make_pass_decorator``, as click's ``repo``
example passes its ``Repo``) instead of re-passing color, JSON mode and echo functions. The
output functions are fields so that ``omniport demo`` and tests can route a command's lines.
This module stays light: the root group imports it on every start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import click

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


@dataclass
class CliContext:
    """How this run talks to the user: colors, ``--json`` mode, and where its lines go."""

    color: bool
    # Set by a command's ``--json`` flag (see :func:`json_option`): JSON Lines events for
    # plan/apply/rollback/abort/unlock, a JSON document for show and lab status.
    as_json: bool = False
    echo: Echo = _line  # one line on stdout
    write: Echo = _raw  # text on stdout as it is (no newline added)
    err: Echo = _error_line  # one line on stderr: notes, progress, warnings

    @classmethod
    def detect(cls, no_color: bool) -> CliContext:
        """Color only on a terminal, and never with ``--no-color`` or ``NO_COLOR`` set."""
        return cls(color=not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty())


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
