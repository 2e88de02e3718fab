"""Copies of config documents with every secret replaced, for display and plan files.

A value is secret when the field that holds it is named like one (``key``, ``token``,
``secret``, ``password``, ``auth``, ``privateKey``, ``*Token``, ``*Secret``, ...). That covers
what Talos redacts itself (machine and bootstrap tokens, CA keys, the cluster secret, etcd
encryption secrets, registry credentials, WireGuard keys, SideroLink tokens, disk encryption
keys) and the same names inside any other kind or in free-form fields such as ``env``.
Secrets inside URL query strings (``?jointoken=...``) and PEM private keys in any field
(plain, or base64 as Talos stores PEM) are replaced too.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any

from omniport.planner.machineconfig.document import Document, MachineConfig, as_documents

SENSITIVE = "(sensitive value)"

_EXACT = frozenset(
    (
        "key",
        "keys",
        "token",
        "secret",
        "password",
        "passwd",
        "username",  # registry auth: DESIGN counts every registry credential as sensitive
        "auth",
        "keydata",
        "credentials",
        "passphrase",
        "bootstraptoken",
    )
)
_SUFFIXES = ("token", "secret", "password", "privatekey", "presharedkey", "secretkey", "apikey")
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:[a-z0-9_-]*token|secret|password|key|auth|signature)=)[^&#\s]+"
)


def is_sensitive(field: str) -> bool:
    """Whether a field of this name holds a secret."""
    name = field.lower().replace("_", "").replace("-", "")
    return name in _EXACT or name.endswith(_SUFFIXES)


def redact(
    documents: MachineConfig | Iterable[Document | Mapping[str, Any]],
) -> tuple[Document, ...]:
    """Documents with every secret value replaced by ``(sensitive value)``."""
    return tuple(Document(redact_value(doc.data)) for doc in as_documents(documents))


def redact_value(value: Any, field: str = "") -> Any:
    """A copy of ``value`` (held by ``field``) with its secrets replaced."""
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        if field and is_sensitive(field) and all(not isinstance(v, dict | list) for v in value):
            return [SENSITIVE if _has_content(v) else v for v in value]
        return [redact_value(v, field) for v in value]
    if field and is_sensitive(field) and _has_content(value):
        return SENSITIVE
    if isinstance(value, str):
        if _is_private_key(value):
            return SENSITIVE
        if "=" in value:
            return _QUERY_SECRET.sub(lambda m: m.group(1) + SENSITIVE, value)
    return value


def _is_private_key(text: str) -> bool:
    # A PEM private key anywhere (a file's content, say), plain or base64 as Talos stores PEM.
    if "PRIVATE KEY-----" in text:
        return True
    if text.startswith("LS0tLS1CRUdJTi"):
        try:
            head = base64.b64decode(text[:64] + "=" * (-len(text[:64]) % 4), validate=False)
        except (ValueError, binascii.Error):
            return False
        return b"PRIVATE KEY" in head
    return False


def _has_content(value: Any) -> bool:
    return value is not None and value != "" and not isinstance(value, bool)
