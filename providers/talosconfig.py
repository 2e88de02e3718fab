"""Reading a talosconfig the way talosctl does: which file, which context, which endpoints.

File lookup (first match wins):

1. the ``--talosconfig`` argument (must exist),
2. ``$TALOSCONFIG``,
3. ``$TALOS_HOME/config`` when ``TALOS_HOME`` is an absolute path, otherwise ``~/.talos/config``.

A context holds ``endpoints``, optional ``nodes``, and ``ca``/``crt``/``key`` as standard base64
of PEM. The selected context is the one named by the caller, else the file's ``context`` key.
Endpoints are ``host``, ``host:port``, ``[v6]:port`` or a URL; no port means 50000 (apid),
``https://host`` without a port means 443. Every problem is one :class:`CredentialsError`
naming the file and the fix; key bytes are never rendered.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from omniport.providers.errors import YAML_VALUE_ERRORS, CredentialsError

APID_PORT = 50000
HTTPS_PORT = 443

__all__ = [
    "APID_PORT",
    "Endpoint",
    "TalosContext",
    "find_talosconfig",
    "load_talosconfig",
    "parse_endpoint",
]


@dataclass(frozen=True)
class Endpoint:
    """Where apid listens: a host (name, IPv4 or bare IPv6) and a port."""

    host: str
    port: int = APID_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class TalosContext:
    """One talosconfig context, decoded; ``key`` is sensitive and hidden from repr."""

    name: str
    path: Path
    endpoints: tuple[Endpoint, ...]
    nodes: tuple[str, ...]
    ca: bytes = field(repr=False)
    crt: bytes = field(repr=False)
    key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"TalosContext(name={self.name!r}, path={str(self.path)!r}, "
            f"endpoints={[str(e) for e in self.endpoints]!r}, nodes={list(self.nodes)!r}, "
            "ca=(certificate), crt=(certificate), key=(sensitive value))"
        )


def parse_endpoint(text: str) -> Endpoint:
    """Parse one talosconfig endpoint; raises ``ValueError`` with a readable reason."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty endpoint")
    if "://" in raw:
        parts = urlsplit(raw)
        if not parts.hostname:
            raise ValueError(f"endpoint {text!r} has no host")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"endpoint {text!r} has an invalid port") from None
        default = HTTPS_PORT if parts.scheme == "https" else APID_PORT
        return Endpoint(parts.hostname, port or default)
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep:
            raise ValueError(f"endpoint {text!r} has an unclosed '['")
        if rest and not rest.startswith(":"):
            raise ValueError(f"endpoint {text!r} has text after ']'")
        return Endpoint(_check_host(host, text), _port(rest[1:], text) if rest else APID_PORT)
    if raw.count(":") > 1:  # a bare IPv6 address
        return Endpoint(_check_host(raw, text), APID_PORT)
    host, sep, port_text = raw.partition(":")
    return Endpoint(_check_host(host, text), _port(port_text, text) if sep else APID_PORT)


def _check_host(host: str, text: str) -> str:
    if not host:
        raise ValueError(f"endpoint {text!r} has no host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ValueError(f"endpoint {text!r} is not a valid IPv6 address") from None
    return host


def _port(port: str, text: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"endpoint {text!r} has an invalid port")
    return int(port)


def find_talosconfig(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """The talosconfig path to use, by the lookup order in the module docstring."""
    env = os.environ if env is None else env
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise CredentialsError(
                "talosconfig not found",
                target=str(path),
                fix="check the --talosconfig path",
            )
        return path
    tried: list[Path] = []
    if env.get("TALOSCONFIG"):
        tried.append(Path(env["TALOSCONFIG"]).expanduser())
    talos_home = env.get("TALOS_HOME", "")
    if talos_home and Path(talos_home).is_absolute():
        tried.append(Path(talos_home) / "config")
    else:
        home = env.get("HOME") or str(Path.home())
        tried.append(Path(home) / ".talos" / "config")
    for path in tried:
        if path.is_file():
            return path
    raise CredentialsError(
        f"no talosconfig found (looked at {', '.join(str(p) for p in tried)})",
        fix="pass --talosconfig, set TALOSCONFIG, or create one with `talosctl gen config`",
    )


def load_talosconfig(
    path: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    endpoints: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> TalosContext:
    """Find, read and decode one context; ``endpoints`` (if given) replaces the file's."""
    file = find_talosconfig(path, env)
    where = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CredentialsError(
            "the talosconfig is not UTF-8 text",
            target=where,
            fix="point at the YAML file `talosctl gen config` wrote",
        ) from None
    except OSError as exc:
        raise CredentialsError(
            f"cannot read the talosconfig ({exc.strerror or type(exc).__name__})",
            target=where,
            fix="check the file's permissions",
        ) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise CredentialsError(
            f"the talosconfig is not valid YAML{at}",
            target=where,
            fix="fix the file or regenerate it with `talosctl config merge`",
        ) from None
    except YAML_VALUE_ERRORS:
        raise CredentialsError(
            "the talosconfig is not valid YAML (a value cannot be read)",
            target=where,
            fix="fix the file or regenerate it with `talosctl config merge`",
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts"), dict):
        raise CredentialsError(
            "the talosconfig has no `contexts` map",
            target=where,
            fix="point --talosconfig at a file written by `talosctl gen config`",
        )
    contexts: dict = doc["contexts"]
    name = context or doc.get("context")
    if not name:
        raise CredentialsError(
            "the talosconfig selects no context",
            target=where,
            fix=f"pass --context (available: {_names(contexts)})",
        )
    if name not in contexts:
        raise CredentialsError(
            f"context {name!r} is not in the talosconfig (available: {_names(contexts)})",
            target=where,
            fix="pick one of the available contexts",
        )
    ctx = contexts[name] or {}
    if not isinstance(ctx, dict):
        raise CredentialsError(
            f"context {name!r} is not a map", target=where, fix="fix the context entry"
        )

    raw_endpoints = list(endpoints) if endpoints else _strings(ctx.get("endpoints"))
    if not raw_endpoints and ctx.get("target"):  # legacy single-target form
        raw_endpoints = [str(ctx["target"])]
    if not raw_endpoints:
        raise CredentialsError(
            f"context {name!r} has no endpoints",
            target=where,
            fix="pass --endpoints or run `talosctl config endpoint <ip>`",
        )
    parsed: list[Endpoint] = []
    for item in raw_endpoints:
        try:
            parsed.append(parse_endpoint(item))
        except ValueError as exc:
            raise CredentialsError(
                f"context {name!r}: {exc}",
                target=where,
                fix="use host, host:port, [ipv6]:port or https://host",
            ) from None

    pem = {key: _pem_field(ctx, key, name, where) for key in ("ca", "crt", "key")}
    return TalosContext(
        name=str(name),
        path=file,
        endpoints=tuple(parsed),
        nodes=tuple(_strings(ctx.get("nodes"))),
        ca=pem["ca"],
        crt=pem["crt"],
        key=pem["key"],
    )


def _names(contexts: Mapping) -> str:
    return ", ".join(sorted(str(k) for k in contexts)) or "none"


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return []


def _pem_field(ctx: Mapping, key: str, name: str, where: str) -> bytes:
    value = ctx.get(key)
    if not value or not isinstance(value, str):
        raise CredentialsError(
            f"context {name!r} has no `{key}`",
            target=where,
            fix="regenerate the talosconfig with `talosctl gen config` or `talosctl config new`",
        )
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if b"-----BEGIN " not in data:
        raise CredentialsError(
            f"context {name!r} field `{key}` is not base64-encoded PEM",
            target=where,
            fix="regenerate the talosconfig with `talosctl gen config` or `talosctl config new`",
        )
    return data
