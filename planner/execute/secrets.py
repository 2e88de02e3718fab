"""Machine-config secrets as execution meets them: the strings no message may carry, and the
CA fingerprints that tie a rollback plan to its cluster.

Error messages come from Talos and Omni, and a server may echo what it was sent; so every
command that changes nodes builds a :class:`Scrubber` from the configs it holds, and every
message that reaches the terminal or the journal passes through it first.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

from omniport.planner.errors import OmniportError
from omniport.planner.machineconfig import document as mcdoc
from omniport.planner.machineconfig.redact import SENSITIVE, redact_value
from omniport.planner.planning import sha256


class Scrubber:
    """Replaces every known secret string in a message with ``(sensitive value)``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for value in secrets:
            if isinstance(value, str) and len(value) >= 6:
                self._secrets.add(value)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, SENSITIVE)
        return text


def config_secrets(config: bytes | mcdoc.MachineConfig) -> set[str]:
    """Every secret string in a machine config (bytes, or already parsed): what redaction
    would hide, plus decodings."""
    if isinstance(config, mcdoc.MachineConfig):
        parsed = config
    else:
        try:
            parsed = mcdoc.parse(config, source="machine config")
        except OmniportError:
            return set()
    found: set[str] = set()

    def walk(original: Any, redacted: Any) -> None:
        if isinstance(original, dict) and isinstance(redacted, dict):
            for key, value in original.items():
                walk(value, redacted.get(key))
        elif isinstance(original, list) and isinstance(redacted, list):
            for a, b in zip(original, redacted, strict=False):
                walk(a, b)
        elif isinstance(original, str) and original != redacted:
            found.add(original)
            if isinstance(redacted, str) and SENSITIVE in redacted and redacted != SENSITIVE:
                # a secret inside a URL query: the part that was replaced
                head, _, tail = redacted.partition(SENSITIVE)
                inner = original[len(head) : len(original) - len(tail) or None]
                found.add(inner)
            try:
                decoded = base64.b64decode(original, validate=True).decode("utf-8")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                decoded = ""
            if decoded:
                found.add(decoded)
                found.update(line for line in decoded.splitlines() if len(line) >= 16)

    for doc in parsed.documents:
        walk(doc.data, redact_value(doc.data))
    return found


def os_ca_sha256(config: bytes) -> str | None:
    """sha256 of the OS CA certificate a config trusts (``machine.ca.crt``): apply records it
    in the rollback plan, rollback refuses a cluster whose nodes now trust another."""
    return _ca_sha(config, ("machine", "ca", "crt"))


def k8s_ca_sha256(config: bytes) -> str | None:
    return _ca_sha(config, ("cluster", "ca", "crt"))


def _ca_sha(config: bytes, path: tuple[str, ...]) -> str | None:
    try:
        legacy = mcdoc.parse(config).v1alpha1
    except OmniportError:
        return None
    value: Any = legacy.data if legacy else None
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return sha256(str(value)) if value else None
