"""Image Factory client: schematics, Talos versions, official extensions.

The factory is called a handful of times per plan, so each call opens one HTTPS connection
(through ``$HTTPS_PROXY`` when set), with :attr:`Timeouts.connect` for the TCP and TLS
handshakes and :attr:`Timeouts.call` for every read after that. Failures are the provider
error tree, each naming the URL:

    404 -> NotFound        400 -> InvalidRequest (the factory's text)   401 -> Unauthenticated
    403 -> PermissionDenied 402 -> Unsupported (Enterprise-only)        409 -> Conflict
    502/503/504, refused, reset, DNS -> Unreachable   TLS -> TLSFailure   slow -> Timeout
    anything else -> ProtocolError

:meth:`FactoryClient.check_schematic` is what ``plan`` uses: it hashes the schematic a node
reports (its ``extraInfo``) offline and asks the factory with a GET whether it knows the ID.
It never POSTs, so planning registers nothing. When the offline ID differs but the factory
holds the node's ID for the very same schematic, the factory wins: the two emitters disagree
on formatting (quoting changed between factory versions), not on content.
:meth:`FactoryClient.create_schematic` is what ``apply`` uses to register a node's schematic.

Credentials (an Enterprise factory's basic auth, which Omni keeps in ``ImageFactoryAuth``) go
in an ``Authorization`` header on every call; they never appear in a message or a ``repr``.
:class:`AsyncFactoryClient` offers the same calls to asyncio code, each in a worker thread.

Transient failures (a refused or reset connection, 502/503/504; see :mod:`providers.retry`) are
retried under the client's :class:`~providers.retry.RetryPolicy` for every call this client
makes: the GETs only read, and ``POST /schematics`` is idempotent because the factory stores a
schematic under the SHA-256 of its canonical text, so registering the same schematic again
answers the same ID and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import ssl
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from omniport.providers import errors
from omniport.providers.codec.schematic import (
    ExtensionInfo,
    InvalidSchematic,
    Schematic,
    canonical_yaml,
    is_schematic_id,
    parse_schematic,
    schematic_id,
)
from omniport.providers.retry import DEFAULT_RETRY, RetryPolicy, retry_sync
from omniport.providers.timeouts import DEFAULT_TIMEOUTS, Timeouts

__all__ = [
    "DEFAULT_FACTORY_URL",
    "AsyncFactoryClient",
    "FactoryClient",
    "SchematicCheck",
    "SchematicStatus",
]

DEFAULT_FACTORY_URL = "https://factory.talos.dev"
_MAX_BODY = 16 * 1024 * 1024
_USER_AGENT = "omniport"
_T = TypeVar("_T")


class SchematicStatus(StrEnum):
    MATCH = "match"
    """The node's extraInfo hashes to its schematic ID and the factory knows that ID."""
    MISMATCH = "mismatch"
    """The extraInfo is unreadable or hashes to another ID: the ID cannot be ensured."""
    UNKNOWN_TO_FACTORY = "unknown-to-factory"
    """The ID is consistent but this factory has no such schematic (another factory's?)."""


@dataclass(frozen=True)
class SchematicCheck:
    """The outcome of :meth:`FactoryClient.check_schematic`, for a plan finding."""

    status: SchematicStatus
    node_id: str
    computed_id: str | None
    """The ID of the node's extraInfo, or None when there was none or it was unreadable."""
    known_to_factory: bool | None
    """Whether GET /schematics/{node_id} answered 200; None when the ID is malformed."""
    factory_url: str
    detail: str
    """One sentence saying why, fit for a plan finding."""
    schematic: Schematic | None = None
    """The parsed extraInfo, when it could be read."""
    offline_id: str | None = None
    """The ID omniport's own emitter gives the extraInfo, when it differs from ``computed_id``
    (the factory confirmed the node's ID for the same content: a formatting difference)."""


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    content_type: str
    request_id: str
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


_STATUS_ERRORS: dict[int, type[errors.ProviderError]] = {
    400: errors.InvalidRequest,
    401: errors.Unauthenticated,
    402: errors.Unsupported,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    409: errors.Conflict,
    502: errors.Unreachable,
    503: errors.Unreachable,
    504: errors.Unreachable,
}


class FactoryClient:
    """Blocking client of one Image Factory (``base_url`` may carry a path prefix)."""

    def __init__(
        self,
        base_url: str = DEFAULT_FACTORY_URL,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        ca_data: str | None = None,
        user_agent: str = _USER_AGENT,
        username: str | None = None,
        password: str | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url.strip())
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise errors.InvalidRequest(
                "the Image Factory URL must look like https://factory.example.com",
                target=base_url,
            )
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._prefix = parsed.path.rstrip("/")
        netloc = parsed.netloc.rsplit("@", 1)[-1]  # never carry credentials into messages
        self._base = f"{parsed.scheme}://{netloc}{self._prefix}"
        self.timeouts = timeouts
        self.retry = retry
        self._user_agent = user_agent
        if ssl_context is None and parsed.scheme == "https":
            ssl_context = ssl.create_default_context(cafile=ca_file, cadata=ca_data)
        self._ssl = ssl_context
        self._authorization: str | None = None
        if username and password:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._authorization = f"Basic {token}"

    def __repr__(self) -> str:
        auth = ", authenticated" if self._authorization else ""
        return f"FactoryClient({self._base!r}{auth})"

    @property
    def base_url(self) -> str:
        return self._base

    @property
    def authenticated(self) -> bool:
        """Whether calls carry credentials."""
        return self._authorization is not None

    # -- API ---------------------------------------------------------------------------------

    def get_schematic_text(self, schematic_id_: str) -> str:
        """The factory's canonical text of a schematic (GET /schematics/{id})."""
        path = self._schematic_path(schematic_id_)
        return self._call("GET", path).text()

    def get_schematic(self, schematic_id_: str) -> Schematic:
        text = self.get_schematic_text(schematic_id_)
        try:
            return parse_schematic(text)
        except InvalidSchematic as exc:
            raise errors.ProtocolError(
                f"the factory answered a schematic omniport cannot read: {exc}",
                target=self._url(self._schematic_path(schematic_id_)),
                method="GET",
            ) from None

    def create_schematic(self, schematic: Schematic | str | bytes) -> str:
        """Register a schematic (POST /schematics) and return its ID.

        A :class:`Schematic` is sent as canonical YAML; text is sent as given, so that the
        factory's own validation (and its 400 message) applies.
        """
        if isinstance(schematic, Schematic):
            body = canonical_yaml(schematic).encode("utf-8")
        elif isinstance(schematic, str):
            body = schematic.encode("utf-8")
        else:
            body = bytes(schematic)
        response = self._call("POST", "/schematics", body=body, content_type="application/yaml")
        data = self._json(response, "POST", "/schematics")
        new_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(new_id, str) or not is_schematic_id(new_id):
            raise self._protocol("answered without a schematic ID", "POST", "/schematics")
        canonical = data.get("schematic")
        if isinstance(canonical, str) and hashlib.sha256(canonical.encode()).hexdigest() != new_id:
            raise self._protocol(
                f"answered schematic ID {new_id} for a text that hashes differently",
                "POST",
                "/schematics",
            )
        return new_id

    def versions(self) -> list[str]:
        """Talos versions the factory can build (GET /versions)."""
        data = self._json(self._call("GET", "/versions"), "GET", "/versions")
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise self._protocol("answered something other than a list of versions", "GET")
        return data

    def official_extensions(self, version: str) -> list[ExtensionInfo]:
        """Official system extensions for a Talos version."""
        path = f"/version/{_segment(version)}/extensions/official"
        data = self._json(self._call("GET", path), "GET", path)
        try:
            if not isinstance(data, list):
                raise ValueError("not a list")
            return [ExtensionInfo.from_json(item) for item in data]
        except (ValueError, AttributeError) as exc:
            raise self._protocol(
                f"answered an unreadable extension list ({exc})", "GET", path
            ) from None

    def health(self) -> None:
        """Raise unless the factory answers GET /healthz with 200."""
        self._call("GET", "/healthz")

    def check_schematic(
        self, node_schematic_id: str, extra_info_yaml: str | bytes | None
    ) -> SchematicCheck:
        """Whether a node's schematic can be ensured, without registering anything.

        ``extra_info_yaml`` is the ``extraInfo`` of the node's ``schematic`` extension: the
        factory's canonical YAML. Its ID must equal ``node_schematic_id`` (the text's own
        SHA-256 when it arrives byte for byte, else the ID of its re-emitted canonical form)
        and the factory must know that ID (GET). Unreachable factories raise; everything else
        is a result.
        """
        parsed: Schematic | None = None
        computed: str | None = None
        problem = ""
        if extra_info_yaml:
            raw = (
                extra_info_yaml.encode("utf-8")
                if isinstance(extra_info_yaml, str)
                else extra_info_yaml
            )
            try:
                parsed = parse_schematic(raw)
                computed = schematic_id(parsed)
            except InvalidSchematic as exc:
                problem = f"the node's schematic extraInfo cannot be read ({exc})"
            if hashlib.sha256(raw).hexdigest() == node_schematic_id:
                computed, problem = node_schematic_id, ""

        if not is_schematic_id(node_schematic_id):
            return self._check(
                SchematicStatus.MISMATCH,
                node_schematic_id,
                computed,
                None,
                f"the node reports {node_schematic_id!r}, which is not a schematic ID",
                parsed,
            )
        stored = self._fetch(node_schematic_id)
        known = stored is not None
        offline: str | None = None
        if computed is not None and computed != node_schematic_id and stored is not None:
            try:
                same = parsed is not None and parse_schematic(stored) == parsed
            except InvalidSchematic:
                same = False
            if same:  # the factory's answer is authoritative: only formatting differs
                offline, computed = computed, node_schematic_id
        if problem:
            return self._check(
                SchematicStatus.MISMATCH, node_schematic_id, None, known, problem, None
            )
        if computed is not None and computed != node_schematic_id:
            return self._check(
                SchematicStatus.MISMATCH,
                node_schematic_id,
                computed,
                known,
                f"the node's schematic extraInfo hashes to {computed}, "
                f"not to its schematic ID {node_schematic_id}",
                parsed,
            )
        if not known:
            return self._check(
                SchematicStatus.UNKNOWN_TO_FACTORY,
                node_schematic_id,
                computed,
                False,
                f"schematic {node_schematic_id} is not known to the Image Factory at {self._base}",
                parsed,
            )
        detail = (
            f"schematic {node_schematic_id} matches the node's extraInfo and is known to the "
            "Image Factory"
            if computed
            else f"the node has no schematic extraInfo, but the Image Factory knows "
            f"schematic {node_schematic_id}"
        )
        if offline:
            detail = (
                f"the Image Factory holds schematic {node_schematic_id} with the node's content; "
                f"omniport's own emitter formats it differently ({offline})"
            )
        return SchematicCheck(
            SchematicStatus.MATCH,
            node_schematic_id,
            computed,
            True,
            self._base,
            detail,
            parsed,
            offline,
        )

    # -- plumbing ----------------------------------------------------------------------------

    def _check(
        self,
        status: SchematicStatus,
        node_id: str,
        computed: str | None,
        known: bool | None,
        detail: str,
        parsed: Schematic | None,
    ) -> SchematicCheck:
        return SchematicCheck(status, node_id, computed, known, self._base, detail, parsed)

    def _fetch(self, schematic_id_: str) -> str | None:
        """The factory's text of a schematic, or None when it does not know the ID."""
        try:
            return self._call("GET", self._schematic_path(schematic_id_)).text()
        except errors.NotFound:
            return None

    def _schematic_path(self, schematic_id_: str) -> str:
        if not is_schematic_id(schematic_id_):
            raise errors.InvalidRequest(
                f"{schematic_id_!r} is not a schematic ID (64 lowercase hex digits)",
                target=self._base,
            )
        return f"/schematics/{schematic_id_}"

    def _url(self, path: str) -> str:
        return self._base + path

    def _protocol(self, message: str, method: str, path: str = "") -> errors.ProtocolError:
        return errors.ProtocolError(message, target=self._url(path), method=method)

    def _json(self, response: _Response, method: str, path: str) -> Any:
        try:
            return json.loads(response.body)
        except ValueError:
            raise self._protocol("answered something that is not JSON", method, path) from None

    def _connection(self, proxy: _Proxy | None) -> http.client.HTTPConnection:
        timeout = self.timeouts.connect
        conn: http.client.HTTPConnection
        if self._scheme == "https" and proxy:
            conn = http.client.HTTPSConnection(
                proxy.host, proxy.port, timeout=timeout, context=self._ssl
            )
            conn.set_tunnel(self._host, self._port, headers=proxy.headers)
        elif self._scheme == "https":
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._ssl
            )
        elif proxy:
            conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        return conn

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> _Response:
        """One request, retried after transient failures (every call here may be repeated;
        see the module docstring)."""
        return retry_sync(
            lambda: self._call_once(method, path, body=body, content_type=content_type),
            self.retry,
        )

    def _call_once(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> _Response:
        url = self._url(path)
        headers = {
            "User-Agent": self._user_agent,
            "Accept": "*/*",
            "X-Request-ID": str(uuid.uuid4()),
        }
        if content_type:
            headers["Content-Type"] = content_type
        if self._authorization:
            headers["Authorization"] = self._authorization
        target = self._prefix + path
        proxy = _proxy_for(self._scheme, self._host)
        if self._scheme == "http" and proxy:
            target = url  # absolute form through a plain HTTP proxy
            headers.update(proxy.headers)
        conn = self._connection(proxy)
        phase = "connect"
        try:
            conn.connect()
            phase = "call"
            if conn.sock is not None:
                conn.sock.settimeout(self.timeouts.call)
            conn.request(method, target, body=body, headers=headers)
            raw = conn.getresponse()
            data = raw.read(_MAX_BODY + 1)
            if len(data) > _MAX_BODY:
                raise self._protocol("answered more than 16 MiB", method, path)
            response = _Response(
                raw.status,
                raw.reason,
                raw.getheader("Content-Type", ""),
                raw.getheader("X-Request-ID", headers["X-Request-ID"]),
                data,
            )
        except errors.ProviderError:
            raise
        except Exception as exc:
            raise _map_failure(exc, phase, url, method) from exc
        finally:
            conn.close()
        if 200 <= response.status < 300:
            return response
        cls = _STATUS_ERRORS.get(response.status, errors.ProtocolError)
        text = " ".join(response.text().split())[:500] or "(no message)"
        raise cls(
            f"HTTP {response.status} {response.reason}: {text} (request ID {response.request_id})",
            target=url,
            method=method,
            code=response.status,
        )


class AsyncFactoryClient:
    """:class:`FactoryClient` for asyncio code: same calls, each awaited in a worker thread."""

    def __init__(self, client: FactoryClient | None = None, **kwargs: Any) -> None:
        self.sync = client if client is not None else FactoryClient(**kwargs)

    @property
    def base_url(self) -> str:
        return self.sync.base_url

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.to_thread(fn, *args)

    async def get_schematic_text(self, schematic_id_: str) -> str:
        return await self._run(self.sync.get_schematic_text, schematic_id_)

    async def get_schematic(self, schematic_id_: str) -> Schematic:
        return await self._run(self.sync.get_schematic, schematic_id_)

    async def create_schematic(self, schematic: Schematic | str | bytes) -> str:
        return await self._run(self.sync.create_schematic, schematic)

    async def versions(self) -> list[str]:
        return await self._run(self.sync.versions)

    async def official_extensions(self, version: str) -> list[ExtensionInfo]:
        return await self._run(self.sync.official_extensions, version)

    async def health(self) -> None:
        await self._run(self.sync.health)

    async def check_schematic(
        self, node_schematic_id: str, extra_info_yaml: str | bytes | None
    ) -> SchematicCheck:
        return await self._run(self.sync.check_schematic, node_schematic_id, extra_info_yaml)


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    headers: dict[str, str]


def _proxy_for(scheme: str, host: str) -> _Proxy | None:
    """The proxy the environment asks for, honouring no_proxy (loopback is never proxied)."""
    if host in ("localhost", "127.0.0.1", "::1") or host.startswith("127."):
        return None
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parsed.hostname:
        return None
    headers = {}
    if parsed.username is not None:
        user = urllib.parse.unquote(parsed.username)
        password = urllib.parse.unquote(parsed.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Proxy-Authorization"] = f"Basic {token}"
    return _Proxy(parsed.hostname, parsed.port or 80, headers)


def _map_failure(exc: BaseException, phase: str, url: str, method: str) -> errors.ProviderError:
    if isinstance(exc, TimeoutError):
        seconds = "connecting" if phase == "connect" else "waiting for the answer"
        return errors.Timeout(f"timed out {seconds}", target=url, method=method)
    if isinstance(exc, http.client.RemoteDisconnected):
        return errors.Unreachable(
            "the connection closed before an answer", target=url, method=method
        )
    if isinstance(exc, http.client.HTTPException):
        return errors.ProtocolError(
            f"answered something that is not HTTP ({type(exc).__name__})",
            target=url,
            method=method,
        )
    return errors.from_exception(exc, target=url, method=method)
