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

from omniport.planner import __version__
from omniport.planner.cli.config import config
from omniport.planner.cli.context import CliContext
from omniport.planner.cli.demo import demo
from omniport.planner.cli.execute import abort, apply, rollback, unlock
from omniport.planner.cli.init import init
from omniport.planner.cli.lab import lab
from omniport.planner.cli.plan import plan, show, validate
from omniport.planner.errors import OmniportError
from omniport.providers.errors import ProviderError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="omniport")
@click.option("--no-color", is_flag=True, help="Disable colored output (also: NO_COLOR=1).")
@click.pass_context
def cli(ctx: click.Context, no_color: bool) -> None:
    """Import running Talos Linux clusters into Sidero Omni with plan, apply and rollback."""
    ctx.obj = CliContext.detect(no_color)


for _command in (init, validate, plan, show, apply, rollback, abort, unlock, config, lab, demo):
    cli.add_command(_command)


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


def run(args: Sequence[str] | None = None) -> int:
    """Run the CLI and return the process exit code (0 ok, 1 error, 2 changes/not built)."""
    try:
        result = cli.main(args=args, prog_name="omniport", standalone_mode=False)
    except OmniportError as err:
        click.echo(f"Error: {_printable(str(err))}", err=True)
        return err.exit_code
    except ProviderError as err:
        text = str(err)
        fix = getattr(err, "fix", None)
        if fix and not text.endswith(fix):  # some provider errors already end with their fix
            text += f"; {fix}"
        click.echo(f"Error: {_printable(text)}", err=True)
        return 1
    except click.exceptions.Abort as err:
        if isinstance(err.__context__, KeyboardInterrupt):  # click's form of a Ctrl-C
            click.echo("Interrupted.", err=True)
            return 130
        click.echo("Aborted.", err=True)
        return 1
    except click.exceptions.NoArgsIsHelpError as err:
        err.show()
        return 1
    except click.UsageError as err:
        click.echo(f"Error: {_usage_line(err)}", err=True)
        return 1
    except click.ClickException as err:
        # Usage errors are user mistakes: exit 1, like Terraform's flag errors, so that 2 keeps
        # meaning "changes present" for plan --detailed-exitcode.
        err.show()
        return 1
    except click.exceptions.Exit as err:
        return err.exit_code
    except KeyboardInterrupt:
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
    sys.exit(run())
