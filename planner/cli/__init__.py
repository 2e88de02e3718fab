"""The ``omniport`` command line: small click commands that parse options and delegate.

:mod:`.root` holds the group, its one context object (:class:`.context.CliContext`) and the
exit-code mapping; each command group has its own module. Nothing outside the CLI imports it.
"""

from omniport.planner.cli.root import cli, main, run

__all__ = ["cli", "main", "run"]
