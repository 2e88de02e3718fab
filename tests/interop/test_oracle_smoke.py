"""The oracles are what they claim: built against the pinned machinery, answering cases."""

from __future__ import annotations

from tests.interop import oracles


def test_oracle_is_built_with_the_pinned_machinery(oracle: oracles.Oracle) -> None:
    assert oracle.version() == oracles.MACHINERY[oracle.minor]


def test_oracle_rejects_what_machinery_rejects(oracle: oracles.Oracle) -> None:
    [answer] = oracle.ask(
        [{"id": "bad", "op": "parse", "config": "version: v1alpha1\nmachine: 3\n"}]
    )
    assert answer["error"]
