"""The counts the reliability README states, computed from the corpora themselves.

The bad-input corpus is run here (in this process, as its tests run it, about 20 s): "clean
errors" counts the cases that ended in exactly one clear error (exit 1, one ``Error:`` line,
no traceback), "nothing changed" those whose working folder stayed byte-identical. The secret
corpus and the crash matrix need labs (minutes), so they are counted, not run: each counted
case is a test that fails unless its property holds (no marker found; every node restored
byte for byte, nothing left in Omni), so while the suite is green the columns agree. A case
added to any corpus changes the numbers, and ``test_readme_counts.py`` fails until the README
says so.

Print the README block with ``python -m tests.reliability.corpus_counts``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BEGIN = "<!-- corpus-counts:begin (python -m tests.reliability.corpus_counts) -->"
END = "<!-- corpus-counts:end -->"


@dataclass(frozen=True)
class Row:
    corpus: str
    where: str
    tried: int
    held: int
    """Cases whose property held: a clean error, no leak, a byte-identical restore."""
    unchanged: int | None
    """Cases that also prove nothing changed (None: the column does not apply)."""


def _clean(outcome: Any, needle: str, spec_lines: bool) -> bool:
    from tests.reliability.conftest import assert_one_clear_error

    try:
        assert_one_clear_error(outcome, needle, spec_lines=spec_lines)
    except AssertionError:
        return False
    return True


def _invoke(args: list[str]) -> Any:
    """``omniport ARGS`` in this process, as the corpus test runs it."""
    from omniport.planner.cli import run
    from tests.reliability.conftest import Outcome

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(args)
    return Outcome(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _workdir() -> Iterator[tuple[Path, pytest.MonkeyPatch]]:
    """An empty current directory that is also $HOME, without credential variables."""
    from tests.reliability.conftest import CREDENTIAL_VARIABLES

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        work = Path(tmp)
        patch.chdir(work)
        patch.setenv("HOME", str(work))
        for name in CREDENTIAL_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("NO_COLOR", "1")
        yield work, patch


@functools.cache
def bad_inputs() -> list[Row]:
    """Runs every case of the bad-input corpus (in this process, as its tests do) and counts
    the clean errors and the unchanged working folders it measured."""
    from tests.reliability import test_bad_inputs as corpus
    from tests.reliability import test_file_targets as targets
    from tests.reliability.conftest import Outcome, snapshot

    material = corpus.make_material()
    clean = unchanged = 0
    for case in corpus.CASES:
        with _workdir() as (work, patch):
            corpus._materialize(case, work, material, patch)
            before = snapshot(work)
            outcome = _invoke(list(case.args))
            clean += _clean(outcome, case.needle, case.spec_lines)
            unchanged += snapshot(work) == before
    rows = [
        Row(
            "bad inputs, through the CLI entry point",
            "test_bad_inputs.py `CASES`",
            len(corpus.CASES),
            clean,
            unchanged,
        )
    ]
    clean = unchanged = 0
    for _, args, files, needle in corpus.SUBPROCESS_CASES:
        with _workdir() as (work, _patch):
            for name, content in files.items():
                if content is None:
                    (work / name).mkdir()
                elif isinstance(content, bytes):
                    (work / name).write_bytes(content)
                else:
                    (work / name).write_text(content)
            before = snapshot(work)
            proc = subprocess.run(
                [sys.executable, "-m", "omniport.planner.cli", *args],
                cwd=work,
                env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            outcome = Outcome(proc.returncode, proc.stdout, proc.stderr)
            clean += _clean(outcome, needle, False)
            unchanged += snapshot(work) == before
    rows.append(
        Row(
            "bad inputs, through a real process",
            "test_bad_inputs.py `SUBPROCESS_CASES`",
            len(corpus.SUBPROCESS_CASES),
            clean,
            unchanged,
        )
    )
    clean = unchanged = 0
    for args, needle in targets.FIFO_CASES:
        with _workdir() as (work, _patch):
            fifo = work / "input.yaml"
            os.mkfifo(fifo)
            config = work / "c.yaml"
            config.write_text("version: v1alpha1\nmachine:\n  type: worker\n")
            before = targets._listing(work)
            outcome = _invoke([a.format(fifo=fifo, config=config) for a in args])
            clean += _clean(outcome, needle, True)
            unchanged += targets._listing(work) == before
    rows.append(
        Row(
            "FIFOs given as input files",
            "test_file_targets.py `FIFO_CASES`",
            len(targets.FIFO_CASES),
            clean,
            unchanged,
        )
    )
    return rows


def secrets() -> list[Row]:
    from tests.reliability import test_secret_corpus as corpus

    configs = len(corpus.CORPUS)
    places = 2 * len(corpus.COMMANDS) + len(corpus.FILES)  # stdout and stderr, files
    scans = configs * places
    return [
        Row(
            f"secret-bearing configs ({configs}) x outputs and files scanned ({places})",
            "test_secret_corpus.py `CORPUS`, `COMMANDS`, `FILES`",
            scans,
            scans,
            None,
        )
    ]


def crashes() -> list[Row]:
    from tests.reliability import test_crash_matrix as matrix
    from tests.reliability import test_full_disk as disk

    full = 2 * len(disk.POINTS)  # each point with the reserve freeing room, and without
    return [
        Row(
            "SIGKILL of apply after each journal record, then rollback",
            "test_crash_matrix.py `APPLY_RECORDS`",
            matrix.APPLY_RECORDS,
            matrix.APPLY_RECORDS,
            None,
        ),
        Row(
            "SIGKILL of rollback after each of its records, then rollback again",
            "test_crash_matrix.py `ROLLBACK_RECORDS`",
            matrix.ROLLBACK_RECORDS,
            matrix.ROLLBACK_RECORDS,
            None,
        ),
        Row(
            "full disk at a journal write of apply (automatic rollback)",
            "test_full_disk.py `POINTS` x 2",
            full,
            full,
            None,
        ),
    ]


def _table(header: tuple[str, ...], rows: list[Row]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.corpus, row.where, str(row.tried), str(row.held)]
        if row.unchanged is not None:
            cells.append(str(row.unchanged))
        lines.append("| " + " | ".join(cells) + " |")
    total = [sum(r.tried for r in rows), sum(r.held for r in rows)]
    cells = ["**total**", "", str(total[0]), str(total[1])]
    if rows and rows[0].unchanged is not None:
        cells.append(str(sum(r.unchanged or 0 for r in rows)))
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def render() -> str:
    """The README block, markers included."""
    lines = [
        BEGIN,
        "",
        "Bad-input corpus (every case: exit 1, one clear `Error:` line, no "
        "traceback, the working folder byte-identical):",
        "",
    ]
    lines += _table(
        ("corpus", "where", "cases tried", "clean errors", "nothing changed"), bad_inputs()
    )
    lines += ["", "Secret corpus (a fresh random marker per secret, searched for verbatim):", ""]
    lines += _table(("corpus", "where", "scans", "no secret found"), secrets())
    lines += [
        "",
        "Crash and fault matrix (every case: nodes byte-identical to before, nothing of the "
        "import left in Omni):",
        "",
    ]
    lines += _table(("matrix", "where", "cases tried", "restored"), crashes())
    lines += ["", END]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
