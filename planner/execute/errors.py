"""The errors execution raises, shared by its commands (each: what happened, and the fix).

    OmniportError                 planner/errors.py
     ├── ApplyError               apply refused or failed; also a recorded spec unusable here
     │    ├── StalePlanError      the world moved since the plan was made
     │    └── ForgedPlanError     the plan was edited and re-checksummed: its seal fails
     ├── Cancelled                Ctrl-C before the first change: nothing changed (exit 130)
     ├── JournalError             the journal cannot be written (a full disk): a fault that
     │                            stops the run and rolls it back
     ├── RollbackError            rollback refused (foreign file, rotated CAs) or unfinished
     ├── AbortError               abort or unlock refused or unfinished
     ├── LockedError              lock.py: another omniport run holds the cluster
     ├── BackupError              backup.py: the backup zip cannot be written or read
     └── RollbackFileError        rollbackfile.py: a rollback file is tampered, foreign, unreadable

A failed step inside a run is not one of these: ``apply.StepFailed`` carries it to the run's
guard, which rolls back and then raises ApplyError naming the step.
"""

from __future__ import annotations

from omniport.planner.errors import OmniportError


class ApplyError(OmniportError):
    """Apply refused to start, or failed (the message says whether anything was rolled back)."""


class StalePlanError(ApplyError):
    """The world moved since the plan was made: the plan no longer describes what would happen."""


class ForgedPlanError(ApplyError):
    """The plan's seal does not verify with the cluster's unchanged secrets: someone edited
    the plan and recomputed its checksum. Not stale: the world may not have moved at all."""


class Cancelled(OmniportError):
    """The user pressed Ctrl-C before the first change: nothing was changed. Exit 130, as a
    shell reports a command ended by SIGINT."""

    exit_code = 130


class JournalError(OmniportError):
    """The journal cannot be written (a full disk, an I/O error): the run stops and rolls back
    from what it holds in memory."""


class RollbackError(OmniportError):
    """Rollback refused (foreign file, rotated CAs, bad backup) or could not finish."""


class AbortError(OmniportError):
    """Abort or unlock refused, or unfinished."""
