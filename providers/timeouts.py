"""Timeouts as a value: built once from CLI options or the spec, passed to every client."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Timeouts:
    """Seconds for each kind of wait. ``None`` means no limit (never the default)."""

    connect: float | None = 10.0
    """Opening a connection, including the TLS handshake."""
    call: float | None = 30.0
    """One unary call, or the wait for the next message of a stream."""
    wait_connected: float | None = 300.0
    """Waiting for machines to connect to Omni after they received the join documents."""

    def with_call(self, seconds: float | None) -> Timeouts:
        return replace(self, call=seconds)


DEFAULT_TIMEOUTS = Timeouts()
