"""A small, real ``cosi.resource.State`` server for the Omni client tests (grpclib, TLS).

It behaves like Omni's COSI endpoint where the client depends on it: every call is checked with
``siderov1.verify`` against registered public keys (UNAUTHENTICATED "invalid signature" otherwise);
resources live in memory with versions, owners, phases and finalizers; errors use upstream codes
and message shapes; Watch sends the empty "ready" reply first; a destroy controller removes
resources that are tearing down once their finalizers are gone. Test-only: no RBAC, no validation
beyond what the COSI store itself enforces.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from omniport.providers.codec import siderov1
from omniport.providers.wire.v1alpha1 import resource_pb2, state_pb2
from omniport.providers.wire.v1alpha1.state_grpc import StateBase

Key = tuple[str, str, str]  # namespace, type, id


def _ref(md: resource_pb2.Metadata, version: str | None = None) -> str:
    return f"{md.type}({md.namespace}/{md.id}@{version if version is not None else md.version})"


def _copy(res: resource_pb2.Resource) -> resource_pb2.Resource:
    out = resource_pb2.Resource()
    out.CopyFrom(res)
    return out


def matches(
    md: resource_pb2.Metadata,
    queries: list[resource_pb2.LabelQuery],
    id_query: resource_pb2.IDQuery | None,
) -> bool:
    """COSI label-query and ID-regexp semantics (EXISTS, EQUAL, IN; invert)."""
    labels = md.labels
    for query in queries:
        for term in query.terms:
            if term.op == resource_pb2.LabelTerm.EXISTS:
                ok = term.key in labels
            elif term.op == resource_pb2.LabelTerm.EQUAL:
                ok = term.key in labels and bool(term.value) and labels[term.key] == term.value[0]
            elif term.op == resource_pb2.LabelTerm.IN:
                ok = term.key in labels and labels[term.key] in term.value
            else:
                raise GRPCError(Status.INVALID_ARGUMENT, f"unsupported label operation {term.op}")
            if ok == term.invert:
                return False
    if id_query is not None and id_query.regexp and not re.search(id_query.regexp, md.id):
        return False
    return True


@dataclass
class _Watcher:
    namespace: str
    type: str
    id: str | None
    queries: list[resource_pb2.LabelQuery]
    id_query: resource_pb2.IDQuery | None
    queue: asyncio.Queue[state_pb2.Event] = field(default_factory=asyncio.Queue)


class StateServer(StateBase):
    """In-memory COSI store behind siderov1 authentication."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.keys: dict[str, siderov1.PublicKey] = {}
        self.store: dict[Key, resource_pb2.Resource] = {}
        self.calls: list[tuple[str, str]] = []  # (method, identity) of accepted calls
        self.rejections: list[str] = []  # reasons, as the server would log them
        self.clock = clock
        self.get_delay = 0.0
        self.teardown_unimplemented = False
        self._watchers: list[_Watcher] = []
        self._server: Server | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------

    def register_key(self, key: siderov1.PublicKey) -> None:
        self.keys[key.fingerprint] = key

    async def start(self, *, cert: Path | None, key: Path | None) -> int:
        server = Server([self])
        listen(server, RecvRequest, self._authenticate)
        context = None
        if cert is not None and key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            context.set_alpn_protocols(["h2"])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await server.start(sock=sock, ssl=context)
        self._server = server
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _authenticate(self, event: RecvRequest) -> None:
        try:
            verified = siderov1.verify(event.metadata, event.method_name, self.keys, self.clock())
        except siderov1.SignatureRejected as exc:
            self.rejections.append(exc.reason)
            raise GRPCError(Status.UNAUTHENTICATED, "invalid signature") from None
        self.calls.append((event.method_name, verified.identity))

    # -- store helpers (also used by tests to play controllers) ----------------------------

    def _publish(
        self,
        kind: int,
        res: resource_pb2.Resource,
        old: resource_pb2.Resource | None = None,
    ) -> None:
        md = res.metadata
        for w in self._watchers:
            if (w.namespace, w.type) != (md.namespace, md.type):
                continue
            if w.id is not None and w.id != md.id:
                continue
            if w.id is None and not matches(md, w.queries, w.id_query):
                continue
            event = state_pb2.Event(event_type=kind, resource=_copy(res))
            if old is not None:
                event.old.CopyFrom(old)
            w.queue.put_nowait(event)

    def put(self, res: resource_pb2.Resource) -> resource_pb2.Resource:
        """Store as a controller would (no checks): version 1 or +1, publish the event."""
        md = res.metadata
        key = (md.namespace, md.type, md.id)
        old = self.store.get(key)
        stored = _copy(res)
        stored.metadata.version = str(int(old.metadata.version) + 1 if old else 1)
        stored.metadata.phase = stored.metadata.phase or "running"
        now = self.clock()
        if old is None:
            stored.metadata.created.FromSeconds(int(now))
        stored.metadata.updated.FromSeconds(int(now))
        self.store[key] = stored
        self._publish(state_pb2.UPDATED if old else state_pb2.CREATED, stored, old)
        return stored

    def remove_finalizer(self, type_: str, id_: str, finalizer: str, ns: str = "default") -> None:
        res = _copy(self.store[(ns, type_, id_)])
        kept = [f for f in res.metadata.finalizers if f != finalizer]
        del res.metadata.finalizers[:]
        res.metadata.finalizers.extend(kept)
        self.put(res)
        self._destroy_controller(ns, type_, id_)

    def _remove(self, key: Key) -> None:
        old = self.store.pop(key)
        self._publish(state_pb2.DESTROYED, old)

    def _destroy_controller(self, ns: str, type_: str, id_: str) -> None:
        """Omni's generic destroy controller: tearingDown + no finalizers -> destroyed (soon)."""

        def run() -> None:
            res = self.store.get((ns, type_, id_))
            if res and res.metadata.phase == "tearingDown" and not res.metadata.finalizers:
                self._remove((ns, type_, id_))

        asyncio.get_running_loop().call_later(0.01, run)

    def _existing(self, ns: str, type_: str, id_: str) -> resource_pb2.Resource:
        res = self.store.get((ns, type_, id_))
        if res is None:
            raise GRPCError(
                Status.NOT_FOUND, f"resource {type_}({ns}/{id_}@undefined) doesn't exist"
            )
        return res

    @staticmethod
    def _check_written(res: resource_pb2.Resource) -> None:
        md = res.metadata
        if not res.HasField("spec"):
            raise GRPCError(Status.UNKNOWN, "spec is missing")
        if md.version != "undefined" and not md.version.isdigit():
            raise GRPCError(Status.UNKNOWN, f"error parsing version {md.version!r}")
        if md.phase not in ("running", "tearingDown"):
            raise GRPCError(Status.UNKNOWN, f"unknown phase: {md.phase!r}")

    # -- the service -----------------------------------------------------------------------

    async def Get(self, stream: Stream) -> None:
        req = await stream.recv_message()
        if self.get_delay:
            await asyncio.sleep(self.get_delay)
        res = self._existing(req.namespace, req.type, req.id)
        await stream.send_message(state_pb2.GetResponse(resource=res))

    async def List(self, stream: Stream) -> None:
        req = await stream.recv_message()
        id_query = req.options.id_query if req.options.HasField("id_query") else None
        for (ns, type_, _), res in sorted(self.store.items()):
            if (ns, type_) == (req.namespace, req.type) and matches(
                res.metadata, list(req.options.label_query), id_query
            ):
                await stream.send_message(state_pb2.ListResponse(resource=res))

    async def Create(self, stream: Stream) -> None:
        req = await stream.recv_message()
        self._check_written(req.resource)
        md = req.resource.metadata
        existing = self.store.get((md.namespace, md.type, md.id))
        if existing is not None:
            raise GRPCError(
                Status.ALREADY_EXISTS, f"resource {_ref(existing.metadata)} already exists"
            )
        if md.version != "undefined":
            raise GRPCError(Status.UNKNOWN, f"create needs version undefined, got {md.version}")
        stored = self.put(req.resource)
        await stream.send_message(state_pb2.CreateResponse(resource=stored))

    async def Update(self, stream: Stream) -> None:
        req = await stream.recv_message()
        new = req.new_resource
        self._check_written(new)
        md = new.metadata
        current = self._existing(md.namespace, md.type, md.id)
        cur = current.metadata
        if md.version != cur.version:
            raise GRPCError(
                Status.FAILED_PRECONDITION,
                f"resource {_ref(cur)} update conflict: expected version "
                f'"{md.version}", actual version "{cur.version}"',
            )
        if req.options.owner != cur.owner:
            raise GRPCError(
                Status.PERMISSION_DENIED, f'resource {_ref(cur)} is owned by "{cur.owner}"'
            )
        if req.options.HasField("expected_phase") and req.options.expected_phase != cur.phase:
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"resource {_ref(cur)} is not in phase {req.options.expected_phase}",
            )
        stored = self.put(new)
        self._destroy_controller(md.namespace, md.type, md.id)
        await stream.send_message(state_pb2.UpdateResponse(resource=stored))

    async def Destroy(self, stream: Stream) -> None:
        req = await stream.recv_message()
        current = self._existing(req.namespace, req.type, req.id)
        cur = current.metadata
        if req.options.owner != cur.owner:
            raise GRPCError(
                Status.PERMISSION_DENIED, f'resource {_ref(cur)} is owned by "{cur.owner}"'
            )
        if cur.finalizers:
            raise GRPCError(
                Status.FAILED_PRECONDITION,
                f"resource {_ref(cur)} has pending finalizers [{' '.join(cur.finalizers)}]",
            )
        self._remove((req.namespace, req.type, req.id))
        await stream.send_message(state_pb2.DestroyResponse())

    async def Teardown(self, stream: Stream) -> None:
        req = await stream.recv_message()
        if self.teardown_unimplemented:
            raise GRPCError(Status.UNIMPLEMENTED, "unknown method Teardown")
        current = self._existing(req.namespace, req.type, req.id)
        if current.metadata.phase != "tearingDown":
            changed = _copy(current)
            changed.metadata.phase = "tearingDown"
            current = self.put(changed)
        self._destroy_controller(req.namespace, req.type, req.id)
        await stream.send_message(
            state_pb2.TeardownResponse(destroy_ready=not current.metadata.finalizers)
        )

    async def TeardownAndDestroy(self, stream: Stream) -> None:
        await stream.recv_message()
        raise GRPCError(Status.UNIMPLEMENTED, "not served by the test server")

    async def Watch(self, stream: Stream) -> None:
        req = await stream.recv_message()
        watcher = _Watcher(
            namespace=req.namespace,
            type=req.type,
            id=req.id if req.HasField("id") else None,
            queries=list(req.options.label_query),
            id_query=req.options.id_query if req.options.HasField("id_query") else None,
        )
        self._watchers.append(watcher)
        try:
            await stream.send_message(state_pb2.WatchResponse())  # "ready"
            if watcher.id is not None:
                res = self.store.get((req.namespace, req.type, watcher.id))
                if res is not None:
                    event = state_pb2.Event(event_type=state_pb2.CREATED, resource=res)
                else:
                    tomb = resource_pb2.Resource()
                    tomb.metadata.namespace = req.namespace
                    tomb.metadata.type = req.type
                    tomb.metadata.id = watcher.id
                    tomb.metadata.version = "undefined"
                    event = state_pb2.Event(event_type=state_pb2.DESTROYED, resource=tomb)
                await stream.send_message(state_pb2.WatchResponse(event=[event]))
            elif req.options.bootstrap_contents:
                for (ns, type_, _), res in sorted(self.store.items()):
                    if (ns, type_) == (req.namespace, req.type) and matches(
                        res.metadata, watcher.queries, watcher.id_query
                    ):
                        event = state_pb2.Event(event_type=state_pb2.CREATED, resource=res)
                        await stream.send_message(state_pb2.WatchResponse(event=[event]))
                if req.api_version >= 1:
                    done = state_pb2.Event(event_type=state_pb2.BOOTSTRAPPED)
                    await stream.send_message(state_pb2.WatchResponse(event=[done]))
            while True:
                event = await watcher.queue.get()
                await stream.send_message(state_pb2.WatchResponse(event=[event]))
        finally:
            self._watchers.remove(watcher)
