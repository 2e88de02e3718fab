"""Copies of config documents with every secret replaced, for display and plan files.

Three rules, applied to every value of every document:

- **by field name**: a value is secret when its field is named like one (``key``, ``token``,
  ``secret``, ``password``, ``auth``, ``privateKey``, ``*Token``, ``*Secret``, ...). That covers
  what Talos redacts itself (machine and bootstrap tokens, CA keys, the cluster secret, etcd
  encryption secrets, registry credentials, WireGuard keys, SideroLink tokens, disk encryption
  keys) and the same names inside any other kind or in free-form maps such as ``env``;
- **by place in the Talos schema**: fields that carry user content which often holds
  credentials — inline manifests (Secrets), extra manifest headers (``Authorization``), the
  contents of ``machine.files`` and of extension service ``configFiles`` (unless the spec asks
  to show file contents), and ``NAME=value`` environment entries whose name is a secret's;
- **by the shape of the value**, anywhere, also inside longer text: URL userinfo
  (``https://user:pass@host``), secrets in URL query strings (``?jointoken=...``), bearer and
  basic credentials, ``password=...``-style assignments, PEM blocks other than certificates
  and public keys, and base64 of any of those (as Talos stores PEM).

The patch omniport applies is never redacted: only what is shown or written for review is.
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
        "authorization",
        "keydata",
        "credentials",
        "passphrase",
        "bootstraptoken",
    )
)
_SUFFIXES = (
    "token",
    "secret",
    "password",
    "passwd",
    "privatekey",
    "presharedkey",
    "secretkey",
    "apikey",
    "accesskey",
    "credentials",
)

# Places in the Talos schema whose value is user content likely to hold credentials, matched
# against the end of a value's path ("[]" stands for any list element, "*" for any key).
_CONTENT_PLACES: tuple[tuple[str, ...], ...] = (
    ("inlineManifests", "[]", "contents"),  # Kubernetes manifests: Secrets, tokens
    ("extraManifestHeaders", "*"),  # HTTP headers sent to fetch manifests: Authorization
)
_FILE_PLACES: tuple[tuple[str, ...], ...] = (
    ("files", "[]", "content"),  # machine.files
    ("configFiles", "[]", "content"),  # ExtensionServiceConfig
)
_ENV_LISTS = frozenset(("environment", "env"))

_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:[a-z0-9_-]*token|secret|password|key|auth|signature)=)(?!\(sensitive value\))"
    r"[^&#\s]+"
)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#@\s]+)@")
_HTTP_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)([ \t]+)([A-Za-z0-9._~+/-]{6,}=*)")
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b([a-z0-9_.-]*(?:password|passwd|secret|token|apikey|api_key|access_key))"
    r"""([ \t]*[=:][ \t]*)(["']?)(?!\(sensitive value\))([^\s"'&,;]+)"""
)
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?(?:-----END \1-----|\Z)", re.DOTALL)
_PUBLIC_PEM = frozenset(
    ("CERTIFICATE", "TRUSTED CERTIFICATE", "PUBLIC KEY", "CERTIFICATE REQUEST", "X509 CRL")
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def is_sensitive(field: str) -> bool:
    """Whether a field of this name holds a secret."""
    name = field.lower().replace("_", "").replace("-", "").replace(".", "")
    return name in _EXACT or name.endswith(_SUFFIXES)


def redact(
    documents: MachineConfig | Iterable[Document | Mapping[str, Any]],
    *,
    show_file_contents: bool = False,
) -> tuple[Document, ...]:
    """Documents with every secret value replaced by ``(sensitive value)``."""
    return tuple(
        Document(redact_value(doc.data, show_file_contents=show_file_contents))
        for doc in as_documents(documents)
    )


def redact_value(
    value: Any,
    field: str = "",
    *,
    path: tuple[str, ...] = (),
    show_file_contents: bool = False,
) -> Any:
    """A copy of ``value`` (held by ``field``, at ``path`` in its document) without secrets."""
    path = path or ((field,) if field else ())
    if isinstance(value, dict):
        return {
            k: redact_value(v, str(k), path=(*path, str(k)), show_file_contents=show_file_contents)
            for k, v in value.items()
        }
    if isinstance(value, list):
        if field and is_sensitive(field) and all(not isinstance(v, dict | list) for v in value):
            return [SENSITIVE if _has_content(v) else v for v in value]
        inner = (*path, "[]")
        if field in _ENV_LISTS:
            return [_env_entry(v) if isinstance(v, str) else v for v in value]
        return [
            redact_value(v, field, path=inner, show_file_contents=show_file_contents) for v in value
        ]
    if not _has_content(value):
        return value
    if field and is_sensitive(field):
        return SENSITIVE
    if _at(path, _CONTENT_PLACES) or (not show_file_contents and _at(path, _FILE_PLACES)):
        return SENSITIVE
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """Free text with every secret-shaped part replaced (see the module docstring)."""
    if _is_secret_base64(text):
        return SENSITIVE
    out = _PEM_BLOCK.sub(_pem, text)
    if "PRIVATE KEY-----" in out:  # a mangled key the block pattern did not recognise
        return SENSITIVE
    out = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{SENSITIVE}@", out)
    if "=" in out:
        out = _QUERY_SECRET.sub(lambda m: m.group(1) + SENSITIVE, out)
    out = _HTTP_CREDENTIAL.sub(lambda m: f"{m.group(1)}{m.group(2)}{SENSITIVE}", out)
    out = _ASSIGNED_SECRET.sub(_assigned, out)
    return out


def _assigned(match: re.Match[str]) -> str:
    name, sep, quote, _ = match.groups()
    return f"{name}{sep}{quote}{SENSITIVE}"


def _pem(match: re.Match[str]) -> str:
    return match.group(0) if match.group(1) in _PUBLIC_PEM else SENSITIVE


def _env_entry(entry: str) -> str:
    """``NAME=value`` as in extension services' environment: the value goes when NAME is a
    secret's name or the value has a secret's shape."""
    name, sep, value = entry.partition("=")
    if sep and value and is_sensitive(name):
        return f"{name}={SENSITIVE}"
    return redact_text(entry)


def _at(path: tuple[str, ...], places: tuple[tuple[str, ...], ...]) -> bool:
    for place in places:
        if len(path) >= len(place) and all(
            want == "*" or want == got for want, got in zip(place, path[-len(place) :], strict=True)
        ):
            return True
    return False


def _is_secret_base64(text: str) -> bool:
    """Base64 (as Talos stores PEM) whose decoding is, or holds, a secret."""
    if len(text) < 16 or len(text) % 4 or not _BASE64.fullmatch(text):
        return False
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return redact_text(decoded) != decoded


def _has_content(value: Any) -> bool:
    return value is not None and value != "" and not isinstance(value, bool)
