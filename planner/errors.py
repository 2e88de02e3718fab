"""The planner's error tree.

Every user mistake the planner detects is an ``OmniportError``: one sentence naming the place,
plus the fix. ``cli.run`` alone turns these (and provider errors) into exit codes and one line of
output, so no traceback ever reaches a user for a mistake they can correct.
"""

from __future__ import annotations


class OmniportError(Exception):
    """A failure explained to the user: ``message`` says what and where, ``fix`` what to do."""

    exit_code = 1

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}; {self.fix}"
        return self.message


class UsageProblem(OmniportError):
    """Bad command-line input (a missing file, a wrong flag value)."""


class PlanningError(OmniportError):
    """The plan cannot be computed (not a finding: nothing to accept, something to fix first)."""
