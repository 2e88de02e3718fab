"""Remembers signed Omni calls that verified, so an identical one skips the public-key work.

A client signs each call over its method, a few headers and a timestamp in whole seconds, and
Ed25519 and RSA (PKCS#1 v1.5) signatures are deterministic: the calls one client makes to one
method within a second carry the very same metadata. Verifying them again cannot give another
answer except through time, so a success is reused while it provably still holds:

Every check in ``siderov1.verify`` that depends on the clock fails either only before some
instant (timestamp or signature from the future) or only after one (timestamp too old, key or
signature expired). A call that verified at ``since`` and again at the end of its timestamp
window ``until`` is therefore accepted at every instant in between. The second sighting of the
same metadata runs that check at ``until``; later ones within ``[since, until]`` are answered
from memory. Failures are never remembered: a bad signature is checked, and refused, each time;
any change to the method, the metadata or the registered key is a different entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omniport.providers.codec import siderov1


@dataclass
class _Entry:
    call: siderov1.VerifiedCall
    key: siderov1.PublicKey
    since: float
    until: float | None = None
    """Set once the call also verified at the end of its window."""
    extendable: bool = True
    """False once the check at the end of the window failed (the key or signature expires
    before it): such a call is verified in full every time, and not checked there again."""


class VerifiedCalls:
    """``siderov1.verify`` with successes reused (see the module docstring for why it is safe)."""

    def __init__(self, limit: int = 4096) -> None:
        self._entries: dict[tuple[str, tuple[Any, ...]], _Entry] = {}
        self._limit = limit
        self.reused = 0
        """Calls accepted from memory instead of a full check at their own instant."""

    def __len__(self) -> int:
        return len(self._entries)

    def verify(
        self,
        metadata: Any,
        method: str,
        keys: Mapping[str, siderov1.PublicKey],
        now: float,
    ) -> siderov1.VerifiedCall:
        """The same answer as ``siderov1.verify(metadata, method, keys, now)``, or its error."""
        try:
            slot = (method, tuple(metadata.items()))
            hash(slot)
        except (AttributeError, TypeError):  # not a MultiDict of strings: no memory
            return siderov1.verify(metadata, method, keys, now)
        entry = self._entries.get(slot)
        if entry is not None and keys.get(entry.call.fingerprint) is entry.key:
            if entry.until is None and entry.extendable and now >= entry.since:
                self._extend(entry, metadata, method, keys)
            if entry.until is not None and entry.since <= now <= entry.until:
                self.reused += 1
                return entry.call
        call = siderov1.verify(metadata, method, keys, now)
        key = keys[call.fingerprint]
        if entry is None or entry.key is not key:
            self._remember(slot, _Entry(call, key, now))
        return call

    @staticmethod
    def _extend(
        entry: _Entry, metadata: Any, method: str, keys: Mapping[str, siderov1.PublicKey]
    ) -> None:
        """Check the call at the last instant its timestamp allows; on success it holds for the
        whole of ``[since, until]``."""
        until = entry.call.timestamp + siderov1.ALLOWED_SKEW.total_seconds()
        try:
            siderov1.verify(metadata, method, keys, until)
        except siderov1.SignatureRejected:
            entry.extendable = False
            return
        entry.until = until

    def _remember(self, slot: tuple[str, tuple[Any, ...]], entry: _Entry) -> None:
        if len(self._entries) >= self._limit:
            skew = siderov1.ALLOWED_SKEW.total_seconds()
            stale = [s for s, e in self._entries.items() if e.call.timestamp + skew < entry.since]
            for s in stale:
                del self._entries[s]
            while len(self._entries) >= self._limit:
                del self._entries[next(iter(self._entries))]
        self._entries[slot] = entry
