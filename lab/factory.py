"""The lab's Image Factory: the part of the factory's HTTP API omniport uses, over real TLS.

It answers like the real factory: ``POST /schematics`` reads YAML or JSON with the factory's
rules (400 with go-yaml's message on unknown fields or bad YAML; 201 ``{"id", "schematic"}``,
the same ID for the same content), ``GET /schematics/{id}`` (200 ``application/yaml`` or 404
``schematic not found``), ``GET /versions``, ``GET /version/{v}/extensions/official`` and
``/overlays/official``, ``/healthz`` and ``/readyz``; every answer carries ``X-Request-ID``.

With ``auth=(username, password)`` it is an Enterprise factory as Omni sees one: every route but
the health probes wants HTTP basic authentication with exactly those credentials and answers
``401`` (``WWW-Authenticate: Basic``) otherwise, before reading anything else of the request.

The server is a :class:`ThreadingHTTPServer` in a daemon thread, so it runs beside an asyncio
loop in the same process. TLS is negotiated in each connection's own thread, so a client that
never finishes its handshake holds up nobody. Faults: :meth:`LabFactory.set_down` answers 503
(``"503"``) or closes the listening socket so connections are refused (``"refuse"``), and
:attr:`LabFactory.stall` holds every answer back, for timeout tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import socket
import socketserver
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

from omniport.providers.codec.schematic import (
    ExtensionInfo,
    InvalidSchematic,
    Schematic,
    canonical_yaml,
    parse_schematic,
)

__all__ = ["DownMode", "LabFactory", "RequestRecord"]

DownMode = Literal["503", "refuse", "read-only"]
_MAX_BODY = 4 * 1024 * 1024
_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


@dataclass(frozen=True)
class RequestRecord:
    """One request the lab answered, for tests that prove what a client did (or did not) do."""

    method: str
    path: str
    status: int
    request_id: str
    user: str = ""
    """The basic-auth username the request authenticated as ("" when none was accepted)."""


def _go_json(value: Any) -> bytes:
    """JSON as Go's json.Encoder writes it: compact, HTML characters escaped, newline."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text + "\n").encode("utf-8")


def _version_tag(version: str) -> str:
    return version if version.startswith("v") else "v" + version


class LabFactory:
    """An Image Factory on loopback. Seed it with Talos versions, their official extensions and
    schematics that exist before any client calls; ``start()`` binds and ``url`` says where."""

    def __init__(
        self,
        cert_pem: str | bytes,
        key_pem: str | bytes,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        versions: Iterable[str] = (),
        extensions: Mapping[str, Iterable[ExtensionInfo]] | None = None,
        schematics: Iterable[Schematic | str | bytes] = (),
        enterprise: bool = False,
        auth: tuple[str, str] | None = None,
        yaml_v3: bool = False,
    ) -> None:
        self.host = host
        self._port = port
        self._context = _server_context(cert_pem, key_pem)
        self.versions = [_version_tag(v) for v in versions]
        self.extensions = {_version_tag(v): list(items) for v, items in (extensions or {}).items()}
        self.enterprise = enterprise or auth is not None
        self.auth = auth
        self.yaml_v3 = yaml_v3
        """Write canonical text as factories built on yaml.v3 did (see ``canonical_yaml``)."""
        self._schematics: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._down: DownMode | None = None
        self._refused = False  # the listener was closed by the "refuse" fault
        self._stall = 0.0
        self.blip: Callable[[], bool] = lambda: False
        """Asked on every request: True closes its connection unanswered (a network blip);
        the lab's server points it at its faults."""
        self._stopping = threading.Event()
        self.requests: list[RequestRecord] = []
        for item in schematics:
            self.register(item)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LabFactory:
        self._stopping.clear()
        if self._server is None and not self._refused:
            self._bind()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._unbind()
        self._down = None
        self._refused = False

    def __enter__(self) -> LabFactory:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self._port}"

    # -- seeding and inspection --------------------------------------------------------------

    def register(self, schematic: Schematic | str | bytes) -> str:
        """Store a schematic as if a client had POSTed it; returns its ID."""
        parsed = schematic if isinstance(schematic, Schematic) else parse_schematic(schematic)
        text = self.canonical(parsed)
        new_id = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self._lock:
            self._schematics[new_id] = text
        return new_id

    def keep(self, text: str) -> str:
        """Store a schematic text under its own SHA-256, as an earlier version of this
        factory (another emitter) registered it; returns that ID. GET serves it as stored."""
        parse_schematic(text)  # it must be a schematic
        old_id = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self._lock:
            self._schematics.setdefault(old_id, text)
        return old_id

    def canonical(self, schematic: Schematic) -> str:
        """This factory's canonical text of ``schematic`` (what its IDs hash)."""
        return canonical_yaml(schematic, yaml_v3=self.yaml_v3)

    def schematics(self) -> dict[str, str]:
        """ID -> canonical text of every schematic the lab knows."""
        with self._lock:
            return dict(self._schematics)

    def lookup(self, schematic_id_: str) -> str | None:
        with self._lock:
            return self._schematics.get(schematic_id_)

    # -- faults ------------------------------------------------------------------------------

    @property
    def down(self) -> DownMode | None:
        return self._down

    def set_down(self, mode: DownMode | None) -> None:
        """``"503"``: answer everything 503; ``"refuse"``: stop listening; ``"read-only"``:
        answer reads but 503 to ``POST /schematics`` (a mirror); ``None``: recover."""
        if mode not in (None, "503", "refuse", "read-only"):
            raise ValueError(
                f"unknown factory fault {mode!r}; use '503', 'refuse', 'read-only' or None"
            )
        if mode == "refuse" and not self._refused:
            self._unbind()
            self._refused = True
        elif mode != "refuse" and self._refused:
            self._refused = False
            self._bind()
        self._down = mode

    @property
    def stall(self) -> float:
        return self._stall

    @stall.setter
    def stall(self, seconds: float) -> None:
        """Hold every answer back this many seconds (0 to answer at once)."""
        self._stall = max(0.0, float(seconds))

    # -- internals ---------------------------------------------------------------------------

    def _bind(self) -> None:
        server = _Server((self.host, self._port), _Handler, self)
        self._port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"lab-factory-{self._port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()

    def _unbind(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)


def _server_context(cert_pem: str | bytes, key_pem: str | bytes) -> ssl.SSLContext:
    """A TLS server context from PEM text (written briefly to a private temporary folder,
    because ``ssl`` loads certificate chains only from files)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="omniport-lab-factory-") as folder:
        paths = []
        for name, pem in (("cert.pem", cert_pem), ("key.pem", key_pem)):
            path = os.path.join(folder, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem.encode() if isinstance(pem, str) else pem)
            paths.append(path)
        context.load_cert_chain(paths[0], paths[1])
    return context


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, lab: LabFactory) -> None:
        self.lab = lab
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    # self: Self because typeshed types RequestHandlerClass's server argument as Self
    def finish_request(self: Self, request: Any, client_address: Any) -> None:
        """TLS handshake in the connection's own thread, then the HTTP exchange."""
        request.settimeout(10)
        try:
            conn = self.lab._context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            request.close()
            return
        with self._connections_lock:
            self._connections.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(conn)
            conn.close()

    def close_connections(self) -> None:
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that vanish mid-exchange are normal in fault tests; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server_version = "image-factory-lab"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence the per-request lines on stderr."""

    @property
    def lab(self) -> LabFactory:
        return self.server.lab

    def version_string(self) -> str:
        return "Image Factory (omniport lab)" + (" Enterprise" if self.lab.enterprise else "")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # -- routing -----------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        self._request_id = self.headers.get("X-Request-ID") or str(uuid.uuid4())
        path = self.path.split("?", 1)[0]
        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        if self.lab.stall and self.lab._stopping.wait(self.lab.stall):
            self.close_connection = True
            return
        if self.lab.blip():
            self.close_connection = True  # dropped under the request: no answer at all
            return
        if self.lab.down == "503" or (self.lab.down == "read-only" and method == "POST"):
            self._drain()
            self._text(503, "service temporarily unavailable")
            return
        self._user = ""
        if path not in ("/healthz", "/readyz") and not self._authenticated():
            self._drain()
            self._text(
                401,
                "unauthorized",
                extra={"WWW-Authenticate": 'Basic realm="image-factory", charset="UTF-8"'},
            )
            return
        routes: list[tuple[str, tuple[str, ...], Any]] = [
            (r"/schematics", ("POST",), self._create),
            (r"/schematics/([^/]+)", ("GET",), self._get),
            (r"/versions", ("GET",), lambda: self._versions(query)),
            (r"/version/([^/]+)/extensions/official", ("GET",), self._extensions),
            (r"/version/([^/]+)/overlays/official", ("GET",), self._overlays),
            (r"/healthz", ("GET", "HEAD"), self._empty),
            (r"/readyz", ("GET", "HEAD"), self._empty),
        ]
        for pattern, methods, handler in routes:
            match = re.fullmatch(pattern, path)
            if match is None:
                continue
            if method not in methods:
                self._drain()
                self._text(405, "Method Not Allowed", allow=", ".join(methods))
                return
            handler(*match.groups())
            return
        self._drain()
        self._text(404, "404 page not found")

    def _authenticated(self) -> bool:
        """True when the factory wants no credentials, or the request carries its own."""
        wanted = self.lab.auth
        if wanted is None:
            return True
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        expected_user, expected_password = (v.encode("utf-8") for v in wanted)
        ok = bool(sep) and (
            hmac.compare_digest(user, expected_user)
            & hmac.compare_digest(password, expected_password)
        )
        if ok:
            self._user = wanted[0]
        return ok

    # -- handlers ----------------------------------------------------------------------------

    def _create(self) -> None:
        body = self._body()
        if body is None:
            return
        try:
            parsed = parse_schematic(body)
        except InvalidSchematic as exc:
            self._text(400, str(exc))
            return
        if parsed.owner and not self.lab.enterprise:
            self._text(400, "owner field is only supported in Enterprise edition")
            return
        text = self.lab.canonical(parsed)
        new_id = self.lab.register(parsed)
        self._send(201, "application/json", _go_json({"id": new_id, "schematic": text}))

    def _get(self, schematic_id_: str) -> None:
        text = self.lab.lookup(schematic_id_)
        if text is None:
            self._text(404, "schematic not found")
            return
        self._send(200, "application/yaml", text.encode("utf-8"))

    def _versions(self, query: str) -> None:
        broken = "broken=true" in query.split("&")
        self._send(200, "application/json", _go_json([] if broken else self.lab.versions))

    def _extensions(self, version: str) -> None:
        tag = self._known_version(version)
        if tag is not None:
            items = self.lab.extensions.get(tag, [])
            self._send(200, "application/json", _go_json([e.to_json() for e in items]))

    def _overlays(self, version: str) -> None:
        if self._known_version(version) is not None:
            self._send(200, "application/json", _go_json([]))

    def _empty(self) -> None:
        self._send(200, "text/plain; charset=utf-8", b"")

    def _known_version(self, version: str) -> str | None:
        tag = _version_tag(version)
        if not _SEMVER.fullmatch(tag[1:]):
            self._text(500, "internal server error")  # the real factory's answer, too
            return None
        if tag not in self.lab.versions:
            self._text(404, f"Talos version {tag} not found")
            return None
        return tag

    # -- HTTP plumbing -----------------------------------------------------------------------

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._text(411, "length required")
            self.close_connection = True
            return None
        size = int(length)
        if size > _MAX_BODY:
            self._text(413, "request body too large")
            self.close_connection = True
            return None
        return self.rfile.read(size)

    def _drain(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= _MAX_BODY:
            self.rfile.read(int(length))
        elif length:
            self.close_connection = True

    def _text(
        self,
        status: int,
        message: str,
        *,
        allow: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        headers = {"X-Content-Type-Options": "nosniff", **(extra or {})}
        if allow:
            headers["Allow"] = allow
        body = (message + "\n").encode("utf-8")
        self._send(status, "text/plain; charset=utf-8", body, headers)

    def _send(
        self,
        status: int,
        content_type: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-ID", self._request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.lab._record(
            RequestRecord(
                self.command,
                self.path.split("?", 1)[0],
                status,
                self._request_id,
                getattr(self, "_user", ""),
            )
        )
