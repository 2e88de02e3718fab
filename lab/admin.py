"""The lab's admin endpoint: HTTP/1.1 + JSON on loopback, bearer token from ``lab.json``.

``omniport lab status|fault|patch`` talk to a running lab through it; tests may too. It is
deliberately tiny (asyncio streams, one request per connection) because it serves a handful of
local calls, never the simulated systems' own traffic.

Routes:

    GET  /status[?configs=1]   the ``lab status --json`` document
    GET  /faults               the current faults
    POST /faults               change faults: {"kind": ..., ...} (see :func:`change_faults`)
    POST /patch                {"node": ADDRESS|HOSTNAME|UUID, "patch": TEXT} -> apply result
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from omniport.lab.faults import (
    HEALTH_PROBLEMS,
    JOIN_PROBLEMS,
    ONE_TO_MANY_PROBLEMS,
    SCHEMATIC_CONTENT,
    ApplyFailure,
    Faults,
    OmniFailure,
    TalosBlip,
)

MAX_BODY = 16 * 1024 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


class AdminError(Exception):
    """A request the endpoint refuses; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


Handler = Callable[[Request], Awaitable[Any]]


class AdminServer:
    """Serves ``routes`` (``(METHOD, path) -> handler``) to callers holding ``token``."""

    def __init__(self, token: str, routes: dict[tuple[str, str], Handler]) -> None:
        self._token = token
        self._routes = routes
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await self._handle(reader)
        except AdminError as err:
            status, payload = err.status, {"error": err.message}
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            status, payload = 400, {"error": f"malformed request: {exc}"}
        body = json.dumps(payload, sort_keys=True).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except ConnectionError:
            pass

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        request_line = (await reader.readuntil(b"\r\n")).decode("latin-1").strip()
        parts = request_line.split(" ")
        if len(parts) != 3:
            raise AdminError(400, f"bad request line {request_line!r}")
        method, target, _ = parts
        headers: dict[str, str] = {}
        while True:
            line = (await reader.readuntil(b"\r\n")).decode("latin-1")
            if line == "\r\n":
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        auth = headers.get("authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self._token}".encode()):
            raise AdminError(401, "missing or wrong bearer token (see lab.json)")
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            raise AdminError(413, "request body too large")
        raw = await reader.readexactly(length) if length else b""
        body = json.loads(raw) if raw else None
        url = urlsplit(target)
        handler = self._routes.get((method, url.path))
        if handler is None:
            if any(path == url.path for _, path in self._routes):
                raise AdminError(405, f"{method} is not allowed on {url.path}")
            raise AdminError(404, f"no route {url.path}")
        result = await handler(Request(method, url.path, parse_qs(url.query), body))
        return 200, result


# ---- faults ----

FAULT_KINDS = (
    "unreachable",
    "latency",
    "apply-failure",
    "omni-failure",
    "talos-blip",
    "factory-blip",
    "factory-down",
    "factory-read-only",
    "never-connect",
    "join",
    "service-unhealthy",
    "etcd-member",
    "schematic",
    "health",
    "one-to-many",
    "system-patch",
    "kubelet-lag",
    "clear",
)

_OMNI_METHODS = ("Get", "List", "Watch", "Create", "Update", "Destroy", "Teardown")


def _field(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif isinstance(value, bool):
        pass
    elif kind is float and isinstance(value, int | float):
        return float(value)
    elif isinstance(value, kind):
        return value
    raise AdminError(400, f"fault field {name!r} must be a {kind.__name__}")


def change_faults(faults: Faults, body: Any, known_nodes: set[str]) -> None:
    """Apply one fault change. ``body["kind"]`` is one of :data:`FAULT_KINDS`; ``clear: true``
    removes that kind of fault instead of adding it."""
    if not isinstance(body, dict):
        raise AdminError(400, "the fault request must be a JSON object with a 'kind'")
    kind = body.get("kind")
    clear = bool(_field(body, "clear", bool, False))
    node = _field(body, "node", str)
    if node is not None and node not in known_nodes:
        raise AdminError(404, f"no node {node!r} in this lab")
    if kind == "unreachable":
        if node is None:
            raise AdminError(400, "an unreachable fault needs a 'node'")
        (faults.unreachable.discard if clear else faults.unreachable.add)(node)
    elif kind == "latency":
        ms = 0.0 if clear else _field(body, "ms", float)
        if ms is None or ms < 0:
            raise AdminError(400, "a latency fault needs 'ms' >= 0")
        if node is None:
            faults.latency_ms = ms
        elif ms:
            faults.node_latency_ms[node] = ms
        else:
            faults.node_latency_ms.pop(node, None)
    elif kind == "apply-failure":
        if clear:
            faults.apply_failures[:] = [
                f for f in faults.apply_failures if node is not None and f.node != node
            ]
        else:
            after = _field(body, "after", int, 0)
            if after < 0:
                raise AdminError(400, "'after' must be >= 0")
            apply_failure = ApplyFailure(node=node, after_calls=after)
            if body.get("message"):
                apply_failure.message = str(body["message"])
            faults.apply_failures.append(apply_failure)
    elif kind == "omni-failure":
        method = _field(body, "method", str)
        rtype = _field(body, "type", str)
        if clear:
            faults.omni_failures[:] = [
                f
                for f in faults.omni_failures
                if method is not None
                and (f.method != method or rtype not in (None, f.resource_type))
            ]
        else:
            if method not in _OMNI_METHODS:
                raise AdminError(400, f"'method' must be one of {', '.join(_OMNI_METHODS)}")
            code = _field(body, "code", int, 14)
            if not 1 <= code <= 16:
                raise AdminError(400, "'code' must be a gRPC status code from 1 to 16")
            times = _field(body, "times", int)
            if times is not None and times < 1:
                raise AdminError(400, "'times' must be >= 1 (leave it out to fail every call)")
            omni_failure = OmniFailure(method=method, resource_type=rtype, code=code, times=times)
            if body.get("message"):
                omni_failure.message = str(body["message"])
            faults.omni_failures.append(omni_failure)
    elif kind == "talos-blip":
        # {"times": N, "node": A?, "method": M?}: the next N Talos calls (of M, for A, or any)
        # fail UNAVAILABLE
        if clear:
            faults.clear_talos_blips(node)
        else:
            times = _field(body, "times", int, 1)
            if times < 1:
                raise AdminError(400, "a talos-blip fault needs 'times' >= 1")
            method = _field(body, "method", str)
            reset = bool(_field(body, "reset", bool, False))
            faults.add_talos_blip(TalosBlip(remaining=times, node=node, method=method, reset=reset))
    elif kind == "factory-blip":
        # {"times": N}: the next N factory requests get their connection closed unanswered
        times = 0 if clear else _field(body, "times", int, 1)
        if times < 0 or (not clear and times < 1):
            raise AdminError(400, "a factory-blip fault needs 'times' >= 1")
        faults.set_factory_blips(times)
    elif kind == "factory-down":
        faults.factory_down = not clear
    elif kind == "factory-read-only":
        faults.factory_read_only = not clear
    elif kind == "never-connect":
        faults.never_connect = not clear
    elif kind == "join":
        if node is None:
            raise AdminError(400, "a join fault needs a 'node'")
        if clear:
            faults.join_faults.pop(node, None)
        else:
            problem = _field(body, "problem", str, "stalled")
            if problem not in JOIN_PROBLEMS:
                raise AdminError(400, f"'problem' must be one of {', '.join(JOIN_PROBLEMS)}")
            faults.join_faults[node] = problem
    elif kind == "service-unhealthy":
        service = _field(body, "service", str)
        if node is None or not service:
            raise AdminError(400, "a service-unhealthy fault needs a 'node' and a 'service'")
        ids = faults.unhealthy_services.setdefault(node, set())
        (ids.discard if clear else ids.add)(service)
    elif kind == "etcd-member":
        # {"node": A, "learner": true}: A's member is a learner; {"hostname": H}: a stale
        # member H that no node is (a machine removed without `etcdctl member remove`).
        hostname = _field(body, "hostname", str)
        if (node is None) == (hostname is None):
            raise AdminError(400, "an etcd-member fault needs either a 'node' or a 'hostname'")
        if node is not None:
            if not clear and not _field(body, "learner", bool, False):
                raise AdminError(400, "an etcd-member fault on a 'node' needs 'learner': true")
            (faults.etcd_learners.discard if clear else faults.etcd_learners.add)(node)
        else:
            stale = faults.stale_etcd_members
            (stale.discard if clear else stale.add)(hostname)
    elif kind == "schematic":
        # {"node": A, "content": "missing" | "edited"}: A's schematic extension reports its ID
        # without its content, or with content that hashes to another ID.
        content = _field(body, "content", str)
        if node is None or (not clear and content not in SCHEMATIC_CONTENT):
            raise AdminError(
                400,
                "a schematic fault needs a 'node' and a 'content': "
                + " or ".join(repr(c) for c in SCHEMATIC_CONTENT),
            )
        if clear:
            faults.schematic_content.pop(node, None)
        else:
            faults.schematic_content[node] = content
    elif kind == "health":
        # {"problem": "not-ready", "node": A}: A's Kubernetes Node is NotReady;
        # {"problem": "cancelled"}: the health check's stream ends with CANCELLED.
        problem = _field(body, "problem", str)
        if problem not in HEALTH_PROBLEMS:
            raise AdminError(
                400,
                "a health fault needs a 'problem': " + " or ".join(map(repr, HEALTH_PROBLEMS)),
            )
        if problem == "cancelled":
            faults.health_cancelled = not clear
        elif node is None:
            raise AdminError(400, "a not-ready health fault needs a 'node'")
        else:
            (faults.not_ready.discard if clear else faults.not_ready.add)(node)
    elif kind == "one-to-many":
        # {"problem": "refused"}: apid refuses the `nodes` metadata;
        # {"problem": "dropped", "node": A}: A is left out of one-to-many replies.
        problem = _field(body, "problem", str)
        if problem not in ONE_TO_MANY_PROBLEMS:
            raise AdminError(
                400,
                "a one-to-many fault needs a 'problem': "
                + " or ".join(map(repr, ONE_TO_MANY_PROBLEMS)),
            )
        if problem == "refused":
            faults.one_to_many_refused = not clear
        elif node is None:
            raise AdminError(400, "a dropped one-to-many fault needs a 'node'")
        else:
            dropped = faults.one_to_many_dropped
            (dropped.discard if clear else dropped.add)(node)
    elif kind == "kubelet-lag":
        # {"node": A, "image": I}: A's KubeletConfig reports I, not the image its config names
        image = _field(body, "image", str)
        if node is None or (not clear and not image):
            raise AdminError(400, "a kubelet-lag fault needs a 'node' and an 'image'")
        if clear:
            faults.kubelet_images.pop(node, None)
        else:
            faults.kubelet_images[node] = image
    elif kind == "system-patch":
        faults.system_patches = not clear
    elif kind == "clear":
        faults.clear()
    else:
        raise AdminError(400, f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
