"""The ``omniport`` group: global options, its context object, and exit codes.

Commands live one module per group (``plan``, ``execute``, ``config``, ``lab``, ``demo``); each
parses options and delegates, importing the code it drives only when it runs, so that
``omniport --help`` stays fast. Errors are mapped to exit codes in one place, :func:`run`,
because click's own usage errors exit 2, which ``plan --detailed-exitcode`` reserves for
"changes present".
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

import click

from omniport.planner import __version__, progress
from omniport.planner.cli.config import config
from omniport.planner.cli.context import CliContext, add_global_options
from omniport.planner.cli.demo import demo
from omniport.planner.cli.execute import abort, apply, rollback, unlock
from omniport.planner.cli.init import init
from omniport.planner.cli.lab import lab
from omniport.planner.cli.plan import plan, show, validate
from omniport.planner.errors import OmniportError, UsageProblem
from omniport.providers.errors import ProviderError

ACCESS_COMMANDS = frozenset({"validate", "plan", "apply", "rollback", "abort", "unlock"})
"""Commands that read a spec and reach Talos or Omni: they take the access flags after their
name too (``omniport plan S --talosconfig F``), as talosctl's persistent flags go anywhere.
(``init`` has its own, and takes the root group's as defaults.)"""


class OmniportGroup(click.Group):
    """The root group: every command added gets the global flags (``--no-color`` everywhere,
    the access flags on :data:`ACCESS_COMMANDS`), so a one-line registration is enough."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        add_global_options(cmd, access=(name or cmd.name) in ACCESS_COMMANDS)
        super().add_command(cmd, name)


@click.group(
    cls=OmniportGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Environment: NO_COLOR, FORCE_COLOR, OMNIPORT_IN_AUTOMATION (non-empty: leave out "
    "interactive hints, for CI), TALOSCONFIG, OMNICONFIG, OMNI_ENDPOINT, "
    "OMNI_SERVICE_ACCOUNT_KEY.",
)
@click.version_option(__version__, "--version", prog_name="omniport")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Import running Talos Linux clusters into Sidero Omni with plan, apply and rollback."""
    console = ctx.ensure_object(CliContext)
    console.settle()
    # what long steps wait for, re-announced every few seconds (planner/progress.py)
    ctx.with_resource(progress.reporting(progress.Board(console.show_progress)))
    if console.color:  # FORCE_COLOR: click.echo would strip the colors on a pipe
        ctx.color = True


add_global_options(cli, access=True)
for _command in (init, validate, plan, show, apply, rollback, abort, unlock, config, lab, demo):
    cli.add_command(_command)


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  eval "$(omniport completion bash)"   (in ~/.bashrc)
    zsh:   eval "$(omniport completion zsh)"    (in ~/.zshrc)
    fish:  omniport completion fish > ~/.config/fish/completions/omniport.fish
    """
    from click.shell_completion import get_completion_class  # imported here: start-up time

    shell_class = get_completion_class(shell)
    assert shell_class is not None  # click ships all three
    click.echo(shell_class(cli, {}, "omniport", COMPLETE_VAR).source())


COMPLETE_VAR = "_OMNIPORT_COMPLETE"
"""click's completion variable for the program name ``omniport`` (what the scripts set)."""


def _usage_line(err: click.UsageError) -> str:
    """A usage mistake in one line (click's own form spends four): what, then where to look."""
    message = " ".join(err.format_message().split())
    if err.ctx is None:
        return message
    help_hint = f"`{err.ctx.command_path} --help`"
    if message.endswith("?"):  # click's "Did you mean ...?" already ends the sentence
        return f"{message} See {help_hint}."
    return f"{message.rstrip('.')}; see {help_hint}"


def _printable(text: str) -> str:
    """Error text may quote servers and files: no control characters reach the terminal."""
    from omniport.planner.render import printable  # imported here: start-up time

    return printable(text)


STREAM_COMMANDS = frozenset({"plan", "apply", "rollback", "abort", "unlock"})
"""Commands whose ``--json`` is a JSON Lines event stream (schemas/events.schema.json); show
and ``lab status`` print one JSON document instead."""


def _streaming(console: CliContext, args: Sequence[str]) -> bool:
    """Whether this run's failure belongs in a ``--json`` event stream. A usage error can stop
    the run before ``--json`` is parsed, so the words of the command line decide too."""
    words = list(args[: args.index("--")] if "--" in args else args)
    command = next((w for w in words if w in cli.commands), None)
    return command in STREAM_COMMANDS and (console.as_json or "--json" in words)


def _stream_error(console: CliContext, args: Sequence[str], err: Exception) -> None:
    """With ``--json`` on a streaming command: the failure as the stream's last event(s), one
    diagnostic per problem (after the version event, when nothing was streamed yet). The line
    on stderr is printed anyway."""
    if not _streaming(console, args):
        return
    from omniport.planner import render  # imported here: start-up time

    if not console.streamed:
        console.event(render.version_event())
    for event in render.error_events(err):
        console.event(event)


def run(args: Sequence[str] | None = None) -> int:
    """Run the CLI in this process and return its exit code, then give SIGINT back as it was.

    A finished apply ignores Ctrl-C until its process exits (so it exits 0); a caller that
    goes on living (a test, the demo) must not inherit that, nor pass it on to the processes
    it starts (an ignored SIGINT is inherited across exec)."""
    import signal  # imported here: only in-process callers need it
    import threading  # imported here: only in-process callers need it

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        return _run_cli(args)
    finally:
        if previous is not None and signal.getsignal(signal.SIGINT) is not previous:
            signal.signal(signal.SIGINT, previous)


def _run_cli(args: Sequence[str] | None = None) -> int:
    """Run the CLI and return the process exit code (0 ok, 1 error, 2 changes/not built).

    With ``--json`` on a streaming command every failure, however early (a bad flag, a missing
    file, a refused approval), is also the last event of the stream on stdout."""
    argv = list(sys.argv[1:] if args is None else args)
    console = CliContext()
    try:
        result = cli.main(args=argv, prog_name="omniport", standalone_mode=False, obj=console)
    except OmniportError as err:
        _stream_error(console, argv, err)
        click.echo(f"Error: {_printable(str(err))}", err=True)
        return err.exit_code
    except ProviderError as err:
        text = str(err)
        fix = getattr(err, "fix", None)
        if fix and not text.endswith(fix):  # some provider errors already end with their fix
            text += f"; {fix}"
        _stream_error(console, argv, err)
        click.echo(f"Error: {_printable(text)}", err=True)
        return 1
    except click.exceptions.Abort as err:
        if isinstance(err.__context__, KeyboardInterrupt):  # click's form of a Ctrl-C
            _stream_error(console, argv, UsageProblem("Interrupted."))
            click.echo("Interrupted.", err=True)
            return 130
        _stream_error(console, argv, UsageProblem("Aborted."))
        click.echo("Aborted.", err=True)
        return 1
    except click.exceptions.NoArgsIsHelpError as err:
        err.show()
        return 1
    except click.UsageError as err:
        # Usage errors are user mistakes: exit 1, like Terraform's flag errors, so that 2 keeps
        # meaning "changes present" for plan --detailed-exitcode.
        line = _usage_line(err)
        _stream_error(console, argv, UsageProblem(line))
        click.echo(f"Error: {line}", err=True)
        return 1
    except click.ClickException as err:
        _stream_error(console, argv, UsageProblem(err.format_message()))
        err.show()
        return 1
    except click.exceptions.Exit as err:
        return err.exit_code
    except KeyboardInterrupt:
        _stream_error(console, argv, UsageProblem("Interrupted."))
        click.echo("Interrupted.", err=True)
        return 130
    return result if isinstance(result, int) else 0


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: Any = None,
) -> None:
    """A Python warning (Omni's insecure-TLS one, for commands other than ``plan``, which
    reports it as the finding OMNI_TLS_UNVERIFIED) as one line of ours, without Python's
    ``file:line: Category:`` prefix and source line."""
    click.echo(f"Warning: {_printable(str(message))}", err=True)


def main() -> NoReturn:
    """The console script ``omniport`` and ``python -m omniport.planner.cli``."""
    warnings.showwarning = _show_warning
    sys.exit(_run_cli())
