"""A typed client for Omni's COSI ``State`` service (``/cosi.resource.State/*``) over grpclib.

Two layers, as in httpx: :func:`make_ssl_context` and a grpclib ``Channel`` carry bytes (TLS via
Python's ``ssl``); :class:`OmniClient` signs every call (siderov1), turns protobuf resources into
:class:`Resource` values with decoded spec messages, and maps every failure into the provider
error tree with the resource (``Type(ns/id)``) and method named.

The wire rules Omni enforces (omni-wire.md section 0) are applied here once:

* Create sends ``version "undefined"``, ``phase "running"``, owner ``""`` and always a spec;
* Update echoes what was read (owner, finalizers, labels, annotations, timestamps) and resends
  the spec bytes as received when the spec message was not changed;
* Teardown falls back to Update(phase ``tearingDown``) on servers without the RPC.

Transient failures (see :mod:`providers.retry`) are retried under the client's
:class:`~providers.retry.RetryPolicy` when that is safe: a failure to connect, for every call
(nothing was sent); ``Get``, ``List`` and opening a ``Watch``, which only read; and
``Teardown``, which is idempotent (it moves the resource to ``tearingDown`` and answers whether
finalizers remain, the same answer for a repeat). Never ``Create``, ``Update`` or ``Destroy``
once the request may have reached Omni: a Create that landed before the connection dropped
would answer AlreadyExists on a repeat (and the resource would not be known as ours), an
Update carries the version it read and a repeat of one that landed fails as a conflict, and a
Destroy repeat answers NotFound for a resource this call removed. Those failures go to the
caller (an apply rolls back). A Watch that breaks after it was opened is not resumed.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import ssl
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message
from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from omniport.providers.codec import siderov1

# Omni's names and resource types are part of this module's API too (o.CLUSTERS, ...)
from omniport.providers.codec.omni_names import *  # noqa: F403
from omniport.providers.codec.omni_names import (
    DEFAULT_NAMESPACE,
    PHASE_RUNNING,
    PHASE_TEARING_DOWN,
    SYS_VERSIONS,
)
from omniport.providers.codec.omni_resources import RESOURCE_TYPES
from omniport.providers.codec.omni_resources import ResourceType as ResourceType
from omniport.providers.errors import (
    ConfigurationError,
    Conflict,
    NotFound,
    ProtocolError,
    ProviderError,
    Timeout,
    Unsupported,
    from_exception,
)
from omniport.providers.omniconfig import Endpoint, OmniSettings
from omniport.providers.retry import DEFAULT_RETRY, RetryPolicy, gave_up, transient
from omniport.providers.timeouts import DEFAULT_TIMEOUTS, Timeouts
from omniport.providers.wire.v1alpha1 import resource_pb2, state_pb2
from omniport.providers.wire.v1alpha1.state_grpc import StateStub

SERVICE = "cosi.resource.State"

API_VERSION = 1
"""The Omni API version omniport speaks: that of Omni's Go client (its ``version.API``)."""

VERSION_UNDEFINED = "undefined"

RETRIED_AFTER_SENDING = frozenset({"Get", "List", "Watch", "Teardown"})
"""Methods retried after a transient failure even when the request may have reached Omni
(reads, and the idempotent Teardown; see the module docstring)."""


def namespace_of(type_: str) -> str:
    known = RESOURCE_TYPES.get(type_)
    return known.namespace if known else DEFAULT_NAMESPACE


def ref(type_: str, namespace: str, id_: str) -> str:
    """How errors name a resource, as COSI does: ``Type(ns/id)``."""
    return f"{type_}({namespace}/{id_})"


# ---------------------------------------------------------------------------------------------
# Values


def _timestamp(pb: Any, present: bool) -> datetime | None:
    return pb.ToDatetime(tzinfo=UTC) if present else None


SpecT = TypeVar("SpecT", bound=Message)


@dataclass(frozen=True)
class Resource:
    """One resource as read from (or to be written to) Omni.

    ``spec`` is the decoded message (``None`` for types not in :data:`RESOURCE_TYPES`);
    ``spec_bytes`` are the bytes as received, resent verbatim by :meth:`OmniClient.update` when
    ``spec`` still equals them. The spec message is mutable: change a copy (:meth:`spec_copy`)
    and :meth:`replace` it in, so that the value read stays what was read."""

    type: str
    id: str
    namespace: str = DEFAULT_NAMESPACE
    version: str = VERSION_UNDEFINED
    owner: str = ""
    phase: str = PHASE_RUNNING
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()
    created: datetime | None = None
    updated: datetime | None = None
    spec: Message | None = None
    spec_bytes: bytes = field(default=b"", repr=False)
    _raw_times: tuple[Any, Any] = field(default=(None, None), repr=False, compare=False)

    @property
    def ref(self) -> str:
        return ref(self.type, self.namespace, self.id)

    def spec_as(self, cls: builtins.type[SpecT]) -> SpecT | None:
        """The decoded spec as the message class its type uses (None when absent or another)."""
        spec = self.spec
        return spec if isinstance(spec, cls) else None

    def replace(self, **changes: Any) -> Resource:
        return dataclasses.replace(self, **changes)

    def spec_copy(self) -> Message:
        """A private copy of the spec to edit (an empty one if the type is known but unset)."""
        if self.spec is not None:
            copy = type(self.spec)()
            copy.CopyFrom(self.spec)
            return copy
        known = RESOURCE_TYPES.get(self.type)
        if known is None:
            raise TypeError(f"{self.type} has no registered spec message")
        return known.spec()

    def with_label(self, key: str, value: str = "") -> Resource:
        return self.replace(labels={**self.labels, key: value})

    def without_label(self, key: str) -> Resource:
        return self.replace(labels={k: v for k, v in self.labels.items() if k != key})

    def with_annotation(self, key: str, value: str = "") -> Resource:
        return self.replace(annotations={**self.annotations, key: value})

    def without_annotation(self, key: str) -> Resource:
        return self.replace(annotations={k: v for k, v in self.annotations.items() if k != key})


def _decode_spec(type_: str, data: bytes, where: str) -> Message | None:
    known = RESOURCE_TYPES.get(type_)
    if known is None:
        return None
    message = known.spec()
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise ProtocolError(f"{where}: spec is not a valid {known.spec.__name__}") from None
    return message


def resource_from_proto(pb: resource_pb2.Resource) -> Resource:
    """A :class:`Resource` from the wire form (spec decoded via the registry)."""
    md = pb.metadata
    where = ref(md.type, md.namespace, md.id)
    data = pb.spec.proto_spec
    return Resource(
        type=md.type,
        id=md.id,
        namespace=md.namespace,
        version=md.version,
        owner=md.owner,
        phase=md.phase,
        labels=dict(md.labels),
        annotations=dict(md.annotations),
        finalizers=tuple(md.finalizers),
        created=_timestamp(md.created, md.HasField("created")),
        updated=_timestamp(md.updated, md.HasField("updated")),
        spec=_decode_spec(md.type, data, where),
        spec_bytes=data,
        _raw_times=(
            _copy(md.created) if md.HasField("created") else None,
            _copy(md.updated) if md.HasField("updated") else None,
        ),
    )


def _copy(message: Message) -> Message:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def _spec_bytes(resource: Resource) -> bytes:
    """What to send as ``proto_spec``: the bytes read, unless the spec message was changed."""
    if resource.spec is None:
        return resource.spec_bytes
    known = RESOURCE_TYPES.get(resource.type)
    if known is not None and not isinstance(resource.spec, known.spec):
        given = type(resource.spec).__name__
        raise TypeError(f"{resource.ref}: spec must be {known.spec.__name__}, not {given}")
    original = type(resource.spec)()
    try:
        original.ParseFromString(resource.spec_bytes)
    except DecodeError:
        return resource.spec.SerializeToString()
    if original == resource.spec:
        return resource.spec_bytes
    return resource.spec.SerializeToString()


def resource_to_proto(resource: Resource) -> resource_pb2.Resource:
    """The wire form; the spec is always present (Omni answers "spec is missing" otherwise)."""
    pb = resource_pb2.Resource()
    md = pb.metadata
    md.namespace = resource.namespace
    md.type = resource.type
    md.id = resource.id
    md.version = resource.version
    md.owner = resource.owner
    md.phase = resource.phase
    md.finalizers.extend(resource.finalizers)
    md.labels.update(resource.labels)
    md.annotations.update(resource.annotations)
    raw_created, raw_updated = resource._raw_times
    if raw_created is not None:
        md.created.CopyFrom(raw_created)
    elif resource.created is not None:
        md.created.FromDatetime(resource.created)
    if raw_updated is not None:
        md.updated.CopyFrom(raw_updated)
    elif resource.updated is not None:
        md.updated.FromDatetime(resource.updated)
    pb.spec.SetInParent()
    pb.spec.proto_spec = _spec_bytes(resource)
    return pb


class UnsupportedAPIVersion(Unsupported):
    """Omni answers with another API version than omniport speaks; omnictl refuses it too."""


@dataclass(frozen=True)
class ServerVersion:
    """What Omni says it runs (``SysVersions.system.sidero.dev/current``)."""

    backend_version: str
    api_version: int
    instance_name: str = ""


def check_server_version(spec: Any, url: str) -> ServerVersion:
    """omnictl's check before every command: Omni must report exactly our API version.

    A backend reporting 0 predates API versions (older than the client); any other value
    means the resources' wire contract may differ, so nothing is read or written further.
    """
    found = ServerVersion(
        backend_version=str(spec.backend_version),
        api_version=int(spec.backend_api_version),
        instance_name=str(spec.instance_name),
    )
    method = f"{SERVICE}/Get"
    if found.api_version == 0:
        raise UnsupportedAPIVersion(
            f"Omni {found.backend_version or '(unknown version)'} reports no API version: it is "
            f"older than the Omni client omniport speaks as (API version {API_VERSION}); "
            "upgrade Omni",
            target=url,
            method=method,
        )
    if found.api_version != API_VERSION:
        raise UnsupportedAPIVersion(
            f"Omni {found.backend_version or '(unknown version)'} speaks API version "
            f"{found.api_version}, omniport speaks API version {API_VERSION}; use an omniport "
            "release made for this Omni",
            target=url,
            method=method,
        )
    return found


@dataclass(frozen=True)
class LabelTerm:
    """One condition of a label query; build with :func:`label_equal`, ``_exists``, ``_in``."""

    key: str
    op: resource_pb2.LabelTerm.Operation.ValueType
    values: tuple[str, ...] = ()
    invert: bool = False

    def to_proto(self) -> resource_pb2.LabelTerm:
        return resource_pb2.LabelTerm(
            key=self.key, op=self.op, value=list(self.values), invert=self.invert
        )


def label_equal(key: str, value: str, *, invert: bool = False) -> LabelTerm:
    return LabelTerm(key, resource_pb2.LabelTerm.EQUAL, (value,), invert)


def label_exists(key: str, *, invert: bool = False) -> LabelTerm:
    return LabelTerm(key, resource_pb2.LabelTerm.EXISTS, (), invert)


def label_in(key: str, values: Iterable[str], *, invert: bool = False) -> LabelTerm:
    return LabelTerm(key, resource_pb2.LabelTerm.IN, tuple(values), invert)


LabelQuery = Sequence[LabelTerm] | Mapping[str, str]


def _label_query(labels: LabelQuery | None) -> list[resource_pb2.LabelQuery]:
    if not labels:
        return []
    terms = (
        [label_equal(k, v) for k, v in labels.items()]
        if isinstance(labels, Mapping)
        else list(labels)
    )
    return [resource_pb2.LabelQuery(terms=[t.to_proto() for t in terms])]


EVENT_KINDS = {
    state_pb2.CREATED: "created",
    state_pb2.UPDATED: "updated",
    state_pb2.DESTROYED: "destroyed",
    state_pb2.BOOTSTRAPPED: "bootstrapped",
    state_pb2.ERRORED: "errored",
    state_pb2.NOOP: "noop",
}


@dataclass(frozen=True)
class WatchEvent:
    """``kind`` is created, updated, destroyed (``resource`` is the tombstone) or bootstrapped
    (every existing resource has been replayed; ``resource`` is ``None``)."""

    kind: str
    resource: Resource | None
    old: Resource | None = None


# ---------------------------------------------------------------------------------------------
# TLS


class InsecureTLSWarning(UserWarning):
    """Certificate verification was turned off by an explicit option."""


@dataclass(frozen=True)
class TLSOptions:
    """How to trust Omni's certificate. Default: the system's CA bundle (or ``SSL_CERT_FILE``).

    ``ca_file`` replaces the system bundle; ``pinned_cert_file`` trusts exactly that server
    certificate (hostname still checked); ``insecure_skip_verify`` checks nothing and warns."""

    ca_file: Path | None = None
    pinned_cert_file: Path | None = None
    insecure_skip_verify: bool = False

    @property
    def customized(self) -> bool:
        return bool(self.ca_file or self.pinned_cert_file or self.insecure_skip_verify)


def _read_pem(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not PEM text"
        raise ConfigurationError(f"cannot read {what} {path}: {reason}", target=str(path)) from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigurationError(
            f"{what} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            target=str(path),
        )
    return text


def _trusting(path: Path, what: str) -> ssl.SSLContext:
    """A verifying context whose only trust anchors are the certificates in ``path``."""
    pem = _read_pem(path, what)
    try:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=pem)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"{what} {path} is not a valid certificate ({exc.reason or exc})", target=str(path)
        ) from None


def make_ssl_context(options: TLSOptions, *, target: str, warn: bool = True) -> ssl.SSLContext:
    """A client context for Omni: TLS 1.2+, ALPN h2, verification as ``options`` say.

    ``warn=False`` skips the :class:`InsecureTLSWarning` for a caller that reports the
    unverified connection itself (``plan`` makes it the finding OMNI_TLS_UNVERIFIED)."""
    if options.insecure_skip_verify and warn:
        warnings.warn(
            InsecureTLSWarning(
                f"TLS certificate verification for Omni at {target} is OFF "
                "(insecure_skip_verify): anyone on the network path can impersonate it"
            ),
            stacklevel=3,
        )
    if options.insecure_skip_verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif options.pinned_cert_file is not None:
        ctx = _trusting(options.pinned_cert_file, "pinned Omni certificate")
        # The pinned certificate is a leaf, not a self-signed root: let it anchor the chain.
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    elif options.ca_file is not None:
        ctx = _trusting(options.ca_file, "Omni CA bundle")
    else:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    return ctx


# ---------------------------------------------------------------------------------------------
# Client


_UNAUTHENTICATED_FIX = (
    "; Omni refused the request signature: check the service account key (or log in again "
    "with omnictl) and this machine's clock"
)


class OmniClient:
    """Typed COSI State calls against one Omni, each signed with ``key``.

    Use as ``async with OmniClient(...) as omni:``; the connection opens on first use."""

    def __init__(
        self,
        endpoint: Endpoint,
        key: siderov1.SigningKey,
        *,
        tls: TLSOptions | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy = DEFAULT_RETRY,
        warn_insecure: bool = True,
    ) -> None:
        tls = tls or TLSOptions()
        if not endpoint.tls and tls.customized:
            raise ConfigurationError(
                f"TLS options were given but the Omni URL {endpoint.url} is plaintext; use an "
                "https:// URL or drop the TLS options",
                target=endpoint.url,
            )
        self.endpoint = endpoint
        self.timeouts = timeouts
        self.retry = retry
        self._warn_insecure = warn_insecure
        self._key = key
        self._tls = tls
        self._clock = clock
        self._channel: Channel | None = None
        self._stub: StateStub | None = None
        self._signed: dict[str, tuple[int, builtins.list[tuple[str, str]]]] = {}

    @classmethod
    def from_settings(
        cls,
        settings: OmniSettings,
        *,
        tls: TLSOptions | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy = DEFAULT_RETRY,
        warn_insecure: bool = True,
    ) -> OmniClient:
        return cls(
            settings.endpoint,
            settings.key,
            tls=tls,
            timeouts=timeouts,
            clock=clock,
            retry=retry,
            warn_insecure=warn_insecure,
        )

    async def __aenter__(self) -> OmniClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None

    # -- plumbing --------------------------------------------------------------------------

    def _stub_or_new(self) -> StateStub:
        if self._stub is None:
            context = (
                make_ssl_context(self._tls, target=self.endpoint.target, warn=self._warn_insecure)
                if self.endpoint.tls
                else None
            )
            self._channel = Channel(self.endpoint.host, self.endpoint.port, ssl=context)
            self._stub = StateStub(self._channel)
        return self._stub

    async def connect(self, *, method: str = "connect") -> None:
        """Open the connection (TLS handshake included) within ``timeouts.connect``."""
        self._stub_or_new()
        assert self._channel is not None
        try:
            async with asyncio.timeout(self.timeouts.connect):
                await self._channel.__connect__()
        except TimeoutError:
            raise Timeout(
                f"no connection within {_seconds(self.timeouts.connect)}",
                target=self.endpoint.url,
                method=method,
            ) from None
        except Exception as exc:
            raise from_exception(exc, target=self.endpoint.url, method=method) from exc

    def _metadata(self, name: str) -> builtins.list[tuple[str, str]]:
        """The siderov1 headers for a call to ``name``, signed at most once per method a second.

        The signed payload holds only the method and the outgoing headers, whose one varying
        value is the timestamp in whole seconds; so every call to one method within a second
        signs the very same bytes, and Omni accepts the same signature for each (it checks
        the payload and the clock, and keeps no nonce). Re-signing identical bytes cost about
        0.7 ms of CPU per call; at a thousand calls a second that was the client's largest
        single cost.
        """
        second = int(self._clock())
        cached = self._signed.get(name)
        if cached is None or cached[0] != second:
            method = f"/{SERVICE}/{name}"
            cached = (second, siderov1.signed_metadata(method, self._key, now=second))
            self._signed[name] = cached
        return list(cached[1])

    def _error(self, exc: BaseException, name: str, where: str | None) -> ProviderError:
        method = f"{SERVICE}/{name}"
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            what = f"{where}: " if where else ""
            return Timeout(
                f"{what}no answer within {_seconds(self.timeouts.call)}",
                target=self.endpoint.url,
                method=method,
            )
        err = from_exception(exc, target=self.endpoint.url, method=method)
        if isinstance(exc, GRPCError):
            message = f"{where}: {err.message}" if where else err.message
            if err.code == 16:
                message += _UNAUTHENTICATED_FIX
            err = type(err)(message, target=err.target, method=method, code=err.code)
        return err

    async def _unary(self, name: str, request: Message, where: str | None) -> Any:
        """One call, retried as the module docstring says."""
        tries = 0
        while True:
            tries += 1
            sent = False
            try:
                stub = self._stub_or_new()
                await self.connect(method=f"{SERVICE}/{name}")
                sent = True
                call = getattr(stub, name)
                try:
                    return await call(
                        request, metadata=self._metadata(name), timeout=self.timeouts.call
                    )
                except Exception as exc:
                    raise self._error(exc, name, where) from exc
            except ProviderError as exc:
                if not self.retryable(exc, name, sent=sent):
                    raise
                if tries >= self.retry.attempts:
                    raise gave_up(exc, tries) from exc.__cause__
            await asyncio.sleep(self.retry.delay(tries))

    @staticmethod
    def retryable(exc: ProviderError, name: str, *, sent: bool) -> bool:
        """Whether a failure of method ``name`` may be retried (``sent``: the request may
        have reached Omni)."""
        return transient(exc) and (not sent or name in RETRIED_AFTER_SENDING)

    # -- typed calls -----------------------------------------------------------------------

    async def server_version(self) -> ServerVersion:
        """Read SysVersions and check its API version as omnictl does (raises
        :class:`UnsupportedAPIVersion`)."""
        current = await self.get(SYS_VERSIONS, "current")
        return check_server_version(current.spec, self.endpoint.url)

    async def get(self, type_: str, id_: str, *, namespace: str | None = None) -> Resource:
        ns = namespace or namespace_of(type_)
        request = state_pb2.GetRequest(namespace=ns, type=type_, id=id_)
        reply = await self._unary("Get", request, ref(type_, ns, id_))
        return resource_from_proto(reply.resource)

    async def find(self, type_: str, id_: str, *, namespace: str | None = None) -> Resource | None:
        """Like :meth:`get`, but ``None`` when the resource does not exist."""
        try:
            return await self.get(type_, id_, namespace=namespace)
        except NotFound:
            return None

    async def list(
        self,
        type_: str,
        *,
        namespace: str | None = None,
        labels: LabelQuery | None = None,
        id_regexp: str | None = None,
    ) -> builtins.list[Resource]:
        """Every resource of a type matching all label terms (a mapping means equality)."""
        ns = namespace or namespace_of(type_)
        options = state_pb2.ListOptions(label_query=_label_query(labels))
        if id_regexp is not None:
            options.id_query.regexp = id_regexp
        request = state_pb2.ListRequest(namespace=ns, type=type_, options=options)
        replies = await self._unary("List", request, f"{type_}({ns}/*)")
        return [resource_from_proto(r.resource) for r in replies if r.HasField("resource")]

    async def create(
        self,
        type_: str,
        id_: str,
        spec: Message | None = None,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Resource:
        """Create a user-owned resource; returns it as stored (version 1)."""
        ns = namespace or namespace_of(type_)
        if spec is None:
            known = RESOURCE_TYPES.get(type_)
            if known is None:
                raise TypeError(f"{type_} has no registered spec message: pass spec=")
            spec = known.spec()
        draft = Resource(
            type=type_,
            id=id_,
            namespace=ns,
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            spec=spec,
            spec_bytes=spec.SerializeToString(),
        )
        request = state_pb2.CreateRequest(
            resource=resource_to_proto(draft), options=state_pb2.CreateOptions(owner="")
        )
        reply = await self._unary("Create", request, draft.ref)
        return resource_from_proto(reply.resource)

    async def update(
        self,
        resource: Resource,
        *,
        expected_phase: str | None = PHASE_RUNNING,
        owner: str = "",
    ) -> Resource:
        """Replace ``resource`` (its ``version`` must be the stored one); returns it as stored.

        ``owner`` is who we update as ("" = a user, not a controller); ``expected_phase=None``
        accepts any phase."""
        options = state_pb2.UpdateOptions(owner=owner)
        if expected_phase is not None:
            options.expected_phase = expected_phase
        request = state_pb2.UpdateRequest(new_resource=resource_to_proto(resource), options=options)
        reply = await self._unary("Update", request, resource.ref)
        return resource_from_proto(reply.resource)

    async def destroy(
        self, type_: str, id_: str, *, namespace: str | None = None, owner: str = ""
    ) -> None:
        """Remove a resource; Conflict while finalizers remain, NotFound if it is gone."""
        ns = namespace or namespace_of(type_)
        request = state_pb2.DestroyRequest(
            namespace=ns, type=type_, id=id_, options=state_pb2.DestroyOptions(owner=owner)
        )
        await self._unary("Destroy", request, ref(type_, ns, id_))

    async def teardown(
        self, type_: str, id_: str, *, namespace: str | None = None, owner: str = ""
    ) -> bool:
        """Move a resource to ``tearingDown``; True when no finalizers remain (destroy-ready).

        Servers older than COSI runtime 1.16 lack the RPC: then Get + Update(phase)."""
        ns = namespace or namespace_of(type_)
        request = state_pb2.TeardownRequest(
            namespace=ns, type=type_, id=id_, options=state_pb2.TeardownOptions(owner=owner)
        )
        try:
            reply = await self._unary("Teardown", request, ref(type_, ns, id_))
        except Unsupported:
            current = await self.get(type_, id_, namespace=ns)
            if current.phase != PHASE_TEARING_DOWN:
                current = await self.update(
                    current.replace(phase=PHASE_TEARING_DOWN), expected_phase=None, owner=owner
                )
            return not current.finalizers
        return bool(reply.destroy_ready)

    def watch(
        self,
        type_: str,
        id_: str | None = None,
        *,
        namespace: str | None = None,
        bootstrap: bool = False,
        labels: LabelQuery | None = None,
        id_regexp: str | None = None,
    ) -> Watch:
        """Watch one resource (``id_``) or a whole type: ``async with omni.watch(...) as w:``.

        A single-resource watch first reports the current state (created) or a destroyed
        tombstone; a type watch with ``bootstrap`` replays every resource, then bootstrapped."""
        ns = namespace or namespace_of(type_)
        request = state_pb2.WatchRequest(namespace=ns, type=type_, api_version=1)
        if id_ is not None:
            request.id = id_
        request.options.bootstrap_contents = bootstrap
        request.options.label_query.extend(_label_query(labels))
        if id_regexp is not None:
            request.options.id_query.regexp = id_regexp
        return Watch(self, request, ref(type_, ns, id_ if id_ is not None else "*"))

    # -- helpers ---------------------------------------------------------------------------

    async def modify_create_if_missing(
        self,
        type_: str,
        id_: str,
        spec: Message | None = None,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> tuple[Resource, bool]:
        """omnictl's import "Modify": Get, Create only if missing. Returns (resource, created).

        Not for ImportedClusterSecrets, which Omni never lets anyone read."""
        found = await self.find(type_, id_, namespace=namespace)
        if found is not None:
            return found, False
        try:
            created = await self.create(
                type_, id_, spec, namespace=namespace, labels=labels, annotations=annotations
            )
        except Conflict as exc:
            if exc.code != 6:  # not ALREADY_EXISTS: a real failure
                raise
            return await self.get(type_, id_, namespace=namespace), False
        return created, True

    async def update_with_conflicts(
        self,
        type_: str,
        id_: str,
        change: Callable[[Resource], Resource | None],
        *,
        namespace: str | None = None,
        attempts: int = 5,
        expected_phase: str | None = PHASE_RUNNING,
    ) -> Resource:
        """Get, apply ``change``, Update with the version read; on a version conflict
        (FAILED_PRECONDITION) read again and retry, up to ``attempts`` times.

        ``change`` returns the wanted resource (or ``None`` for "leave it"); when nothing
        differs from what was read, no Update is sent."""
        for attempt in range(1, attempts + 1):
            current = await self.get(type_, id_, namespace=namespace)
            wanted = change(current)
            if wanted is None or _unchanged(current, wanted):
                return current
            try:
                return await self.update(
                    wanted.replace(version=current.version), expected_phase=expected_phase
                )
            except Conflict as exc:
                if exc.code != 9 or attempt == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def wait_destroyed(
        self, type_: str, id_: str, *, namespace: str | None = None, timeout: float | None
    ) -> None:
        """Return once the resource no longer exists (Timeout after ``timeout`` seconds)."""
        try:
            async with asyncio.timeout(timeout):
                async with self.watch(type_, id_, namespace=namespace) as events:
                    async for event in events:
                        if event.kind == "destroyed":
                            return
        except TimeoutError:
            raise Timeout(
                f"{ref(type_, namespace or namespace_of(type_), id_)} still exists after "
                f"{_seconds(timeout)}",
                target=self.endpoint.url,
                method=f"{SERVICE}/Watch",
            ) from None
        raise ProtocolError(  # pragma: no cover - the server closed the watch
            f"{ref(type_, namespace or namespace_of(type_), id_)}: watch ended early",
            target=self.endpoint.url,
            method=f"{SERVICE}/Watch",
        )


def _seconds(value: float | None) -> str:
    return "the time limit" if value is None else f"{value:g}s"


def _unchanged(current: Resource, wanted: Resource) -> bool:
    same_meta = (
        dict(current.labels) == dict(wanted.labels)
        and dict(current.annotations) == dict(wanted.annotations)
        and tuple(current.finalizers) == tuple(wanted.finalizers)
        and current.phase == wanted.phase
        and current.owner == wanted.owner
    )
    if not same_meta:
        return False
    if wanted.spec is None:
        return wanted.spec_bytes == current.spec_bytes
    original = type(wanted.spec)()
    try:
        original.ParseFromString(current.spec_bytes)
    except DecodeError:
        return False
    return original == wanted.spec


class Watch:
    """An open Watch stream: an async context manager and an async iterator of events.

    Entering sends the request and waits (``timeouts.call``) for Omni's empty "ready" reply, so
    that nothing that happens after ``__aenter__`` returns can be missed."""

    def __init__(self, client: OmniClient, request: state_pb2.WatchRequest, where: str) -> None:
        self._client = client
        self._request = request
        self._where = where
        self._cm: Any = None
        self._stream: Any = None
        self._pending: list[WatchEvent] = []

    async def __aenter__(self) -> Watch:
        """Open the stream; a transient failure before Omni said "ready" opens it again."""
        client = self._client
        tries = 0
        while True:
            tries += 1
            try:
                return await self._open()
            except ProviderError as exc:
                if not client.retryable(exc, "Watch", sent=True):
                    raise
                if tries >= client.retry.attempts:
                    raise gave_up(exc, tries) from exc.__cause__
            self._pending.clear()
            await asyncio.sleep(client.retry.delay(tries))

    async def _open(self) -> Watch:
        client = self._client
        stub = client._stub_or_new()
        await client.connect(method=f"{SERVICE}/Watch")
        try:
            self._cm = stub.Watch.open(metadata=client._metadata("Watch"))
            self._stream = await self._cm.__aenter__()
            async with asyncio.timeout(client.timeouts.call):
                await self._stream.send_message(self._request, end=True)
                while True:
                    reply = await self._stream.recv_message()
                    if reply is None:
                        break
                    self._pending.extend(self._events(reply))
                    if not reply.event:  # the "watch ready" reply
                        break
        except BaseException as exc:
            await self._close(exc)
            if isinstance(exc, ProviderError):
                raise
            if isinstance(exc, Exception):
                raise self._client._error(exc, "Watch", self._where) from exc
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(exc)

    async def _close(self, exc: BaseException | None) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                await self._stream.cancel()
        if self._cm is not None:
            cm, self._cm = self._cm, None
            with contextlib.suppress(Exception):
                await cm.__aexit__(type(exc) if exc else None, exc, None)
        self._stream = None

    def _events(self, reply: state_pb2.WatchResponse) -> list[WatchEvent]:
        events = []
        for ev in reply.event:
            kind = EVENT_KINDS.get(ev.event_type, "unknown")
            if kind == "errored":
                raise ProtocolError(
                    f"{self._where}: watch failed: {ev.error or 'no reason given'}",
                    target=self._client.endpoint.url,
                    method=f"{SERVICE}/Watch",
                )
            resource = resource_from_proto(ev.resource) if ev.HasField("resource") else None
            old = resource_from_proto(ev.old) if ev.HasField("old") else None
            events.append(WatchEvent(kind=kind, resource=resource, old=old))
        return events

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._pending:
            if self._stream is None:
                raise StopAsyncIteration
            try:
                reply = await self._stream.recv_message()
            except Exception as exc:
                raise self._client._error(exc, "Watch", self._where) from exc
            if reply is None:
                raise StopAsyncIteration
            self._pending.extend(self._events(reply))
        return self._pending.pop(0)
