"""providers/retry.py: the policy value, what counts as transient, and the retry loops.

The clients' use of it is proven against the lab in tests/reliability/test_blips.py; here the
pure parts: delays grow, cap and jitter; only blips are retried; the budget is honoured and the
final error says how many tries were made.
"""

from __future__ import annotations

import asyncio

import pytest

from omniport.providers.errors import (
    Conflict,
    InvalidRequest,
    PermissionDenied,
    ProviderError,
    Timeout,
    Unreachable,
    from_grpc_status,
)
from omniport.providers.retry import (
    DEFAULT_RETRY,
    NO_RETRY,
    RetryPolicy,
    retry_async,
    retry_sync,
    transient,
)


def test_delays_double_up_to_the_cap_and_jitter_only_shortens():
    policy = RetryPolicy(attempts=6, base_delay=0.1, cap=0.3, jitter=0.5)
    full = [policy.delay(n, rng=lambda: 0.0) for n in range(1, 6)]
    assert full == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])
    shortest = [policy.delay(n, rng=lambda: 1.0) for n in range(1, 6)]
    assert shortest == pytest.approx([0.05, 0.1, 0.15, 0.15, 0.15])
    assert policy.longest_wait == pytest.approx(0.1 + 0.2 + 0.3 + 0.3 + 0.3)


def test_the_default_budget_stays_brief():
    assert DEFAULT_RETRY.attempts > 1
    assert DEFAULT_RETRY.longest_wait < 2.0
    assert NO_RETRY.longest_wait == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"base_delay": -1}, {"cap": -1}, {"jitter": 1.5}],
    ids=["no-attempt", "negative-base", "negative-cap", "jitter"],
)
def test_a_nonsense_policy_is_refused(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (from_grpc_status(14, "unavailable"), True),
        (from_grpc_status(4, "deadline exceeded"), True),
        (Unreachable("connection refused"), True),
        (Timeout("no answer within 30s"), False),  # our own call timeout: the user's limit
        (from_grpc_status(3, "unknown keys found during decoding:\n  machine: foo"), False),
        (from_grpc_status(7, "denied"), False),
        (from_grpc_status(6, "exists"), False),
        (from_grpc_status(9, "version mismatch"), False),
    ],
    ids=["unavailable", "deadline", "refused", "own-timeout", "invalid", "denied", "exists", "fp"],
)
def test_only_blips_are_transient(error, expected):
    assert transient(error) is expected


class Flaky:
    """Fails ``failures`` times with ``error``, then answers ``"ok"``."""

    def __init__(self, failures: int, error: ProviderError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


FAST = RetryPolicy(attempts=4, base_delay=0.0, cap=0.0)


def test_sync_rides_through_fewer_failures_than_the_budget():
    slept: list[float] = []
    call = Flaky(3, Unreachable("reset", target="https://factory"))
    assert retry_sync(call, FAST, sleep=slept.append) == "ok"
    assert call.calls == 4 and len(slept) == 3


def test_sync_gives_up_after_the_budget_with_the_count_in_one_sentence():
    call = Flaky(10, Unreachable("connection reset", target="https://factory", method="GET"))
    with pytest.raises(Unreachable) as err:
        retry_sync(call, FAST, sleep=lambda _: None)
    assert call.calls == 4
    assert str(err.value) == "https://factory: connection reset (gave up after 4 tries) (GET)"
    assert call.error.message == "connection reset"  # the original is not changed


@pytest.mark.parametrize(
    "error",
    [PermissionDenied("no"), InvalidRequest("bad\nsecond line"), Conflict("exists", code=6)],
    ids=["denied", "invalid", "conflict"],
)
def test_a_verdict_is_raised_at_once_and_unchanged(error):
    call = Flaky(10, error)
    with pytest.raises(type(error)) as raised:
        retry_sync(call, FAST, sleep=lambda _: None)
    assert call.calls == 1
    assert raised.value is error  # multi-line server text (Talos's decoder) stays as it was


def test_async_retries_with_the_policy_delays():
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    flaky = Flaky(2, from_grpc_status(14, "unavailable"))

    async def call() -> str:
        return flaky()

    policy = RetryPolicy(attempts=3, base_delay=0.25, cap=1.0, jitter=0.0)
    assert asyncio.run(retry_async(call, policy, sleep=sleep)) == "ok"
    assert slept == [0.25, 0.5]


def test_no_retry_means_one_try():
    call = Flaky(1, Unreachable("reset"))
    with pytest.raises(Unreachable) as err:
        retry_sync(call, NO_RETRY, sleep=lambda _: None)
    assert call.calls == 1 and "gave up" not in str(err.value)
