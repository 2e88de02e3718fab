"""Omni's ``cosi.resource.State`` service for the lab: protobuf in, store and checks, protobuf out.

Translates requests to the store's resources (with Omni's UNKNOWN errors for malformed metadata),
then per call: latency and injected failures from the lab's faults, the siderov1 interceptor,
authorization, validation, the store operation. Watches follow COSI: an empty "ready" reply,
then the initial state (single resource) or the replay (kind watch with bootstrap contents).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, Protocol

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from omniport.lab.faults import Faults
from omniport.lab.grpc_compression import Messages
from omniport.lab.omni_access import Caller, authorize
from omniport.lab.omni_patchdata import PatchData, PatchDataError
from omniport.lab.omni_store import (
    EVENT_CREATED,
    EVENT_DESTROYED,
    EVENT_UPDATED,
    VERSION_UNDEFINED,
    Event,
    LabelOp,
    LabelQuery,
    LabelTerm,
    Resource,
    StateError,
    Store,
    matches_queries,
    not_found,
    q,
)
from omniport.lab.omni_types import TYPES, spec_yaml
from omniport.lab.omni_validate import Validator, wrap
from omniport.providers.codec.omni_names import PHASE_RUNNING, PHASE_TEARING_DOWN
from omniport.providers.wire.omni.specs import omni_pb2
from omniport.providers.wire.v1alpha1 import resource_pb2, state_grpc, state_pb2

# ---- proto <-> store -----------------------------------------------------------------------


def _parse_version(text: str) -> int:
    if text == "undefined":
        return VERSION_UNDEFINED
    if text.isdigit() and text.isascii():
        return int(text)
    raise StateError(
        Status.UNKNOWN,
        f'error parsing version: strconv.ParseUint: parsing "{text}": invalid syntax',
    )


def _parse_phase(text: str) -> str:
    if text in (PHASE_RUNNING, PHASE_TEARING_DOWN):
        return text
    raise StateError(Status.UNKNOWN, f"unknown phase: {text}")


def _from_proto(msg: resource_pb2.Resource) -> Resource:
    md = msg.metadata
    version = _parse_version(md.version)
    phase = _parse_phase(md.phase)
    if not msg.HasField("spec"):
        raise StateError(Status.UNKNOWN, "spec is missing")
    info = TYPES.get(md.type)
    spec: Any = bytes(msg.spec.proto_spec)
    if info is not None and info.spec is not None:
        try:
            spec = info.spec.FromString(msg.spec.proto_spec)
        except DecodeError as exc:
            raise StateError(
                Status.UNKNOWN, f"failed to decode the spec of {md.type}: {exc}"
            ) from None
    return Resource(
        namespace=md.namespace,
        type=md.type,
        id=md.id,
        spec=spec,
        version=version,
        owner=md.owner,
        phase=phase,
        finalizers=list(md.finalizers),
        labels=dict(md.labels),
        annotations=dict(md.annotations),
    )


def _timestamp(value: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(value * 1e9))
    return ts


def _metadata(res: Resource) -> resource_pb2.Metadata:
    md = resource_pb2.Metadata(
        namespace=res.namespace,
        type=res.type,
        id=res.id,
        version="undefined" if res.version == VERSION_UNDEFINED else str(res.version),
        owner=res.owner,
        phase=res.phase,
        finalizers=res.finalizers,
        labels=res.labels,
        annotations=res.annotations,
    )
    if res.created is not None:
        md.created.CopyFrom(_timestamp(res.created))
    if res.updated is not None:
        md.updated.CopyFrom(_timestamp(res.updated))
    return md


def _yaml_view(msg: Any, patch_data: PatchData) -> Any:
    """What a spec's ``yaml_spec`` shows: a compressed ConfigPatch shows its YAML in ``data``
    (as Omni's spec renders it), everything else is itself."""
    if not isinstance(msg, omni_pb2.ConfigPatchSpec) or not msg.compressed_data:
        return msg
    try:
        text = patch_data.text(msg)
    except PatchDataError:
        return msg
    return omni_pb2.ConfigPatchSpec(data=text)


def _to_proto(res: Resource, patch_data: PatchData) -> resource_pb2.Resource:
    spec = resource_pb2.Spec()
    if hasattr(res.spec, "SerializeToString"):
        data = res.spec.SerializeToString()
        spec.proto_spec = data
        view = _yaml_view(res.spec, patch_data)
        spec.yaml_spec = spec_yaml(view, data if view is res.spec else None)
    elif isinstance(res.spec, bytes):
        spec.proto_spec = res.spec
    return resource_pb2.Resource(metadata=_metadata(res), spec=spec)


def _tombstone(namespace: str, type_: str, id_: str) -> resource_pb2.Resource:
    md = resource_pb2.Metadata(
        namespace=namespace, type=type_, id=id_, version="undefined", phase=PHASE_RUNNING
    )
    return resource_pb2.Resource(metadata=md, spec=resource_pb2.Spec())


def _queries(msgs: Any) -> list[LabelQuery]:
    out = []
    for query in msgs:
        terms = []
        for term in query.terms:
            try:
                op = LabelOp(term.op)
            except ValueError:
                raise StateError(
                    Status.UNKNOWN, f"unsupported label query operator: {term.op}"
                ) from None
            if op not in (LabelOp.EXISTS, LabelOp.NOT_EXISTS) and not term.value:
                raise StateError(Status.UNKNOWN, f"label query term {q(term.key)} has no value")
            terms.append(LabelTerm(term.key, op, tuple(term.value), term.invert))
        out.append(tuple(terms))
    return out


_EVENT_TYPES = {
    EVENT_CREATED: state_pb2.CREATED,
    EVENT_UPDATED: state_pb2.UPDATED,
    EVENT_DESTROYED: state_pb2.DESTROYED,
}


# ---- the service ---------------------------------------------------------------------------


class StateHost(Protocol):
    """What the State service uses of the Omni that serves it (``lab.omni.OmniSim``).

    Declared here, by the service, so that the service does not import the simulator that
    builds it: the simulator depends on the service, never the other way round."""

    store: Store
    patch_data: PatchData
    faults: Faults
    validator: Validator

    def authenticate(self, metadata: Any, method: str) -> Caller: ...


class StateService(state_grpc.StateBase):
    """``/cosi.resource.State/*`` as Omni serves it: authenticate, fault, authorize, validate."""

    def __init__(self, sim: StateHost) -> None:
        self.sim = sim
        self.store = sim.store

    def _proto(self, res: Resource) -> resource_pb2.Resource:
        return _to_proto(res, self.sim.patch_data)

    async def _begin(self, stream: Messages, method: str, type_: str) -> Caller:
        faults = self.sim.faults
        delay = faults.delay()
        if delay > 0:
            await asyncio.sleep(delay)
        failure = faults.omni_failure(method, type_)
        if failure is not None:
            raise GRPCError(Status(failure.code), failure.message)
        return self.sim.authenticate(stream.metadata, f"/cosi.resource.State/{method}")

    def _check(self, problems: list[Any]) -> None:
        problems = [p for p in problems if p is not None]
        if problems:
            raise wrap(problems)

    async def _run(self, stream: Stream[Any, Any], method: str, body: Callable[..., Any]) -> None:
        messages = Messages(stream)
        request = await messages.recv_message()
        assert request is not None
        type_ = self._request_type(request)
        try:
            caller = await self._begin(messages, method, type_)
            await body(messages, request, caller)
        except StateError as exc:
            raise GRPCError(exc.status, exc.message) from None

    @staticmethod
    def _request_type(request: Any) -> str:
        fields = request.DESCRIPTOR.fields_by_name
        if "resource" in fields:
            return str(request.resource.metadata.type)
        if "new_resource" in fields:
            return str(request.new_resource.metadata.type)
        return str(request.type)

    # -- reads --

    async def Get(self, stream: Stream[Any, Any]) -> None:
        async def body(stream: Messages, req: Any, caller: Caller) -> None:
            res = self.store.peek(req.namespace, req.type, req.id)
            self._check([authorize(caller, req.type, "get")])
            if res is None:
                raise not_found(req.namespace, req.type, req.id)
            await stream.send_message(state_pb2.GetResponse(resource=self._proto(res)))

        await self._run(stream, "Get", body)

    async def List(self, stream: Stream[Any, Any]) -> None:
        async def body(stream: Messages, req: Any, caller: Caller) -> None:
            self._check([authorize(caller, req.type, "list")])
            queries = _queries(req.options.label_query)
            regexp = req.options.id_query.regexp if req.options.HasField("id_query") else None
            # stored objects are replaced, never changed: the snapshot needs no copies
            for res in self.store.scan(req.namespace, req.type, queries, regexp or None):
                await stream.send_message(state_pb2.ListResponse(resource=self._proto(res)))

        await self._run(stream, "List", body)

    # -- writes --

    async def Create(self, stream: Stream[Any, Any]) -> None:
        async def body(stream: Messages, req: Any, caller: Caller) -> None:
            res = _from_proto(req.resource)
            self._check([authorize(caller, res.type, "create"), *self.sim.validator.on_create(res)])
            created = self.store.create(res, owner=req.options.owner)
            await stream.send_message(state_pb2.CreateResponse(resource=self._proto(created)))

        await self._run(stream, "Create", body)

    async def Update(self, stream: Stream[Any, Any]) -> None:
        async def body(stream: Messages, req: Any, caller: Caller) -> None:
            new = _from_proto(req.new_resource)
            expected = None
            if req.options.HasField("expected_phase"):
                expected = _parse_phase(req.options.expected_phase)
            old = self.store.peek(new.namespace, new.type, new.id)
            self._check(
                [authorize(caller, new.type, "update"), *self.sim.validator.on_update(old, new)]
            )
            updated = self.store.update(new, owner=req.options.owner, expected_phase=expected)
            await stream.send_message(state_pb2.UpdateResponse(resource=self._proto(updated)))

        await self._run(stream, "Update", body)

    def _destroy_checks(self, req: Any, caller: Caller) -> None:
        existing = self.store.peek(req.namespace, req.type, req.id)
        self._check(
            [
                authorize(caller, req.type, "destroy"),
                *self.sim.validator.on_destroy(req.type, req.id, existing),
            ]
        )

    async def Destroy(self, stream: Stream[Any, Any]) -> None:
        async def body(stream: Messages, req: Any, caller: Caller) -> None:
            self._destroy_checks(req, caller)
            self.store.destroy(req.namespace, req.type, req.id, owner=req.options.owner)
            await stream.send_message(state_pb2.DestroyResponse())

        await self._run(stream, "Destroy", body)

    async def Teardown(self, stream: Stream[Any, Any]) -> None:
        async def body(stream: Messages, req: Any, caller: Caller) -> None:
            self._destroy_checks(req, caller)
            ready = self.store.teardown(req.namespace, req.type, req.id, owner=req.options.owner)
            await stream.send_message(state_pb2.TeardownResponse(destroy_ready=ready))

        await self._run(stream, "Teardown", body)

    async def TeardownAndDestroy(self, stream: Stream[Any, Any]) -> None:
        async def body(stream: Messages, req: Any, caller: Caller) -> None:
            self._destroy_checks(req, caller)
            owner = req.options.owner
            self.store.teardown(req.namespace, req.type, req.id, owner=owner)
            changed = asyncio.Event()

            def listener(event: Event) -> None:
                if event.resource.key == (req.namespace, req.type, req.id):
                    changed.set()

            unsubscribe = self.store.subscribe(listener)
            try:
                while True:
                    cur = self.store.peek(req.namespace, req.type, req.id)
                    if cur is None:
                        break
                    if not cur.finalizers:
                        self.store.destroy(req.namespace, req.type, req.id, owner=owner)
                        break
                    changed.clear()
                    await changed.wait()
            finally:
                unsubscribe()
            await stream.send_message(state_pb2.TeardownAndDestroyResponse())

        await self._run(stream, "TeardownAndDestroy", body)

    # -- watch --

    async def Watch(self, stream: Stream[Any, Any]) -> None:
        async def body(stream: Messages, req: Any, caller: Caller) -> None:
            self._check([authorize(caller, req.type, "watch")])
            single = req.HasField("id")
            options = req.options
            if single and options.bootstrap_contents:
                raise StateError(
                    Status.UNIMPLEMENTED, "bootstrap contents is not implemented for resource watch"
                )
            if single and options.label_query:
                raise StateError(
                    Status.UNIMPLEMENTED, "label query is not implemented for resource watch"
                )
            queries = _queries(options.label_query)
            regexp = options.id_query.regexp if options.HasField("id_query") else ""
            await self._watch(stream, req, single, queries, regexp)

        await self._run(stream, "Watch", body)

    async def _watch(
        self,
        stream: Messages,
        req: Any,
        single: bool,
        queries: list[LabelQuery],
        regexp: str,
    ) -> None:
        pattern = re.compile(regexp) if regexp else None
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def matches(res: Resource) -> bool:
            if single:
                return res.id == req.id
            return matches_queries(res.labels, queries) and (
                pattern is None or bool(pattern.search(res.id))
            )

        def listener(event: Event) -> None:
            res = event.resource
            if res.namespace != req.namespace or res.type != req.type:
                return
            if single or event.kind != EVENT_UPDATED or event.old is None:
                if matches(res):
                    queue.put_nowait(event)
                return
            now, before = matches(res), matches(event.old)
            if now and before:
                queue.put_nowait(event)
            elif now:
                queue.put_nowait(Event(EVENT_CREATED, res))
            elif before:
                queue.put_nowait(Event(EVENT_DESTROYED, res))

        # snapshot and subscribe with no await in between: nothing can slip through
        if single:
            cur = self.store.peek(req.namespace, req.type, req.id)
            initial = [
                state_pb2.Event(event_type=state_pb2.CREATED, resource=self._proto(cur))
                if cur is not None
                else state_pb2.Event(
                    event_type=state_pb2.DESTROYED,
                    resource=_tombstone(req.namespace, req.type, req.id),
                )
            ]
        elif req.options.bootstrap_contents:
            initial = [
                state_pb2.Event(event_type=state_pb2.CREATED, resource=self._proto(r))
                for r in self.store.scan(req.namespace, req.type, queries, regexp or None)
            ]
            if req.api_version >= 1:
                initial.append(
                    state_pb2.Event(
                        event_type=state_pb2.BOOTSTRAPPED,
                        resource=_tombstone(req.namespace, req.type, ""),
                    )
                )
        else:
            initial = []
        unsubscribe = self.store.subscribe(listener)
        try:
            await stream.send_message(state_pb2.WatchResponse())
            for first in initial:
                await stream.send_message(state_pb2.WatchResponse(event=[first]))
            while True:
                change = await queue.get()
                msg = state_pb2.Event(
                    event_type=_EVENT_TYPES[change.kind], resource=self._proto(change.resource)
                )
                if change.old is not None:
                    msg.old.CopyFrom(self._proto(change.old))
                await stream.send_message(state_pb2.WatchResponse(event=[msg]))
        finally:
            unsubscribe()
