"""The reliability README states the corpus counts that ``corpus_counts.py`` computes.

A case added to (or dropped from) a corpus, or a bad input that stops giving a clean error or
starts changing the working folder, changes the computed numbers; this test then fails until
the README's block is rewritten (``python -m tests.reliability.corpus_counts``).
"""

from __future__ import annotations

import pytest

from tests.paths import REPO
from tests.reliability import corpus_counts

pytestmark = pytest.mark.reliability

README = REPO / "tests" / "reliability" / "README.md"


def _block(text: str) -> str:
    start = text.index(corpus_counts.BEGIN)
    end = text.index(corpus_counts.END) + len(corpus_counts.END)
    return text[start:end]


def test_the_readme_states_the_computed_corpus_counts():
    stated = _block(README.read_text(encoding="utf-8"))
    computed = corpus_counts.render()
    assert stated == computed, (
        "tests/reliability/README.md's corpus counts drifted from the corpora; replace its "
        "block with the output of `python -m tests.reliability.corpus_counts`"
    )


def test_every_bad_input_is_a_clean_error_that_changes_nothing():
    """The measured columns are not copies of "cases tried": they are what running found."""
    for row in corpus_counts.bad_inputs():
        assert row.tried > 0
        assert (row.held, row.unchanged) == (row.tried, row.tried), row
