"""Bounded retries with backoff for transient failures (a network blip), as a value.

A brief blip between omniport and Talos, Omni or the Image Factory (a connection reset, a
refused connection while a load balancer restarts, ``UNAVAILABLE``, a server-side
``DEADLINE_EXCEEDED``) should cost a moment, not a full rollback of an apply. The clients retry
such failures under a :class:`RetryPolicy`: at most ``attempts`` tries, waiting
``min(cap, base_delay * 2**n)`` between them, shortened at random by up to ``jitter`` of itself
(so that many nodes retried together do not hit the server in lockstep).

What is retried is decided by the client that makes the call, because it alone knows whether
the call is safe to repeat:

* a failure to *connect* is retried for every call: the request never left this machine;
* a failure *during* a call is retried only for reads and for writes that are idempotent (the
  same request twice leaves the same state as once); each client's docstring lists which;
* nothing else is retried: permission, validation, not-found and conflict answers are the
  server's verdict, and our own call timeout (``Timeouts.call``) already bounds the wait the
  user asked for, so it is not multiplied.

When the budget is spent the last error is raised with how many tries were made, so the
message stays one sentence naming the target.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from omniport.providers.errors import ProviderError, Timeout, Unreachable

T = TypeVar("T")

DEADLINE_EXCEEDED = 4
UNAVAILABLE = 14


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried.

    ``attempts`` counts every try (1 means never retry); ``base_delay`` is the first wait in
    seconds, doubled after each try up to ``cap``; ``jitter`` (0..1) is the fraction of each
    wait that may be taken off at random."""

    attempts: int = 4
    base_delay: float = 0.1
    cap: float = 1.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")
        if self.base_delay < 0 or self.cap < 0:
            raise ValueError("retry delays must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("retry jitter must be between 0 and 1")

    def delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        full = min(self.cap, self.base_delay * (2 ** (retry - 1)))
        return full * (1.0 - self.jitter * rng())

    @property
    def longest_wait(self) -> float:
        """The most a caller can spend waiting between tries (no jitter taken off)."""
        return sum(min(self.cap, self.base_delay * 2**n) for n in range(self.attempts - 1))


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


def transient(exc: ProviderError) -> bool:
    """Whether ``exc`` is what a brief network blip looks like.

    Unreachable covers refused and reset connections, a peer that closed the stream and
    ``UNAVAILABLE`` (Talos's apid says so when it cannot reach the node it proxies to).
    ``DEADLINE_EXCEEDED`` counts only when the *server* answered it (``code`` 4): a timeout of
    our own call has no code and is the user's limit, not a blip."""
    if isinstance(exc, Unreachable):
        return True
    return isinstance(exc, Timeout) and exc.code == DEADLINE_EXCEEDED


def gave_up(exc: ProviderError, tries: int) -> ProviderError:
    """``exc`` saying it is the last of ``tries`` tries (a copy: the original is untouched)."""
    if tries <= 1:
        return exc
    final = copy.copy(exc)
    final.message = f"{exc.message} (gave up after {tries} tries)"
    final.args = (final.message,)
    return final


async def retry_async(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retryable: Callable[[ProviderError], bool] = transient,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """``await call()``, tried again after a ``retryable`` ProviderError, under ``policy``."""
    tries = 0
    while True:
        tries += 1
        try:
            return await call()
        except ProviderError as exc:
            if not retryable(exc):
                raise
            if tries >= policy.attempts:
                raise gave_up(exc, tries) from exc.__cause__
        await sleep(policy.delay(tries))


def retry_sync(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    retryable: Callable[[ProviderError], bool] = transient,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """:func:`retry_async` for blocking code (the Image Factory client)."""
    tries = 0
    while True:
        tries += 1
        try:
            return call()
        except ProviderError as exc:
            if not retryable(exc):
                raise
            if tries >= policy.attempts:
                raise gave_up(exc, tries) from exc.__cause__
        sleep(policy.delay(tries))
