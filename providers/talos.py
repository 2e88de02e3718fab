"""Async client for the Talos API (apid) over grpclib with talosconfig mutual TLS.

One channel to one endpoint carries every call; the node a call is for travels as the single
``node`` metadata value (apid then proxies one-to-one), and fan-out is done here, with bounded
concurrency (:func:`map_nodes`). Every failure is a :class:`~providers.errors.ProviderError`
whose ``target`` is the node and whose ``method`` is the gRPC method (plus the COSI resource),
so a caller can print it as is.

The ``*_many`` methods read many nodes in one call, as ``talosctl -n a,b,c`` does: the
multi-valued ``nodes`` metadata makes apid proxy one-to-many and answer with one item per
target, stamped with the target as given (``metadata.hostname``); a target that failed is a
metadata-only item carrying its gRPC status. That saves the client and apid the per-call cost
of HTTP/2 streams and TLS records, which dominates a large discovery. apid allows it for the
machine service only (never COSI).

Reads follow what ``talosctl get`` and ``omnictl cluster import`` do: COSI ``Get``/``List``
through apid, the YAML spec decoded for ordinary resources, and the machine configuration taken
from the protobuf spec (``MachineConfigSpec.yaml_marshalled``, the exact bytes the node holds).

Transient failures (a refused or reset connection, ``UNAVAILABLE``, a server-side
``DEADLINE_EXCEEDED``; see :mod:`providers.retry`) are retried under the client's
:class:`~providers.retry.RetryPolicy`, for every call this client makes, because each of them
is safe to repeat: COSI ``Get``/``List``, ``Version``, ``Hostname``, ``ServiceList``, the etcd
reads and the health check only read; ``ApplyConfiguration`` is the one write, and it is
idempotent because it carries the *whole* machine configuration, not a change to it: applying
the same bytes twice leaves the node holding those bytes, exactly as applying them once (a
repeat reports "no changes"). A one-to-many read retries only the nodes whose item was
transient. The health check is retried only while it has produced no message yet.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

import yaml
from google.protobuf import duration_pb2, empty_pb2
from google.protobuf.message import DecodeError
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError

from omniport.providers.errors import (
    CredentialsError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProtocolError,
    ProviderError,
    Timeout,
    TLSFailure,
    Unreachable,
    Unsupported,
    from_exception,
    from_grpc_status,
)
from omniport.providers.retry import DEFAULT_RETRY, RetryPolicy, gave_up, transient
from omniport.providers.talosconfig import Endpoint, TalosContext, load_talosconfig
from omniport.providers.timeouts import DEFAULT_TIMEOUTS, Timeouts
from omniport.providers.tls import TLSConfigError, client_context
from omniport.providers.wire.cluster import cluster_grpc, cluster_pb2
from omniport.providers.wire.machine import machine_grpc, machine_pb2
from omniport.providers.wire.resource.config import config_pb2
from omniport.providers.wire.v1alpha1 import resource_pb2, state_grpc, state_pb2

T = TypeVar("T")

# libyaml's safe loader when PyYAML was built with it: same results, several times faster on
# the thousands of resource specs a large discovery decodes
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# ---- resource coordinates (talos-api.md §2, omni-import.md §2 Phase A) ----

MACHINE_CONFIG = ("config", "MachineConfigs.config.talos.dev", "v1alpha1")
MACHINE_TYPE = ("config", "MachineTypes.config.talos.dev", "machine-type")
VERSION = ("runtime", "Versions.runtime.talos.dev", "version")
EXTENSION_STATUSES = ("runtime", "ExtensionStatuses.runtime.talos.dev")
HOSTNAME_STATUS = ("network", "HostnameStatuses.net.talos.dev", "hostname")
SYSTEM_INFORMATION = ("hardware", "SystemInformations.hardware.talos.dev", "systeminformation")
MEMBERS = ("cluster", "Members.cluster.talos.dev")
CLUSTER_INFO = ("cluster", "Infos.cluster.talos.dev", "current")
KUBELET_CONFIG = ("k8s", "KubeletConfigs.kubernetes.talos.dev", "kubelet")
APISERVER_CONFIG = ("controlplane", "APIServerConfigs.kubernetes.talos.dev", "kube-apiserver")
SCHEDULER_CONFIG = ("controlplane", "SchedulerConfigs.kubernetes.talos.dev", "kube-scheduler")
CONTROLLER_MANAGER_CONFIG = (
    "controlplane",
    "ControllerManagerConfigs.kubernetes.talos.dev",
    "kube-controller-manager",
)

SCHEMATIC_EXTENSION = "schematic"
YAML_SPEC_ANNOTATION = "talos.dev/yaml-spec"

_MACHINE = "/machine.MachineService/"
_STATE = "/cosi.resource.State/"
_HEALTH = "/cluster.ClusterService/HealthCheck"


class ApplyMode(IntEnum):
    """``ApplyConfigurationRequest.Mode`` values."""

    REBOOT = 0
    AUTO = 1
    NO_REBOOT = 2
    STAGED = 3
    TRY = 4


# ---- results ----


@dataclass(frozen=True)
class VersionInfo:
    tag: str
    sha: str
    built: str
    go_version: str
    os: str
    arch: str
    platform_name: str
    platform_mode: str
    rbac: bool | None
    """``None`` when the node has no machine config loaded (maintenance)."""


@dataclass(frozen=True)
class ResourceMetadata:
    namespace: str
    type: str
    id: str
    version: str
    owner: str
    phase: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()


@dataclass(frozen=True)
class TalosResource:
    """A COSI resource read from a node; ``spec`` is the decoded YAML spec (None if empty)."""

    metadata: ResourceMetadata
    spec: Any
    yaml_spec: str = field(repr=False)
    proto_spec: bytes = field(repr=False)


@dataclass(frozen=True)
class ExtensionStatus:
    id: str
    image: str
    name: str
    version: str
    author: str
    description: str
    talos_compatibility: str
    extra_info: str


@dataclass(frozen=True)
class Schematic:
    """The Image Factory's virtual ``schematic`` extension: ``id`` is the 64-hex schematic ID."""

    id: str
    author: str
    extra_info: str
    """The schematic YAML, when the factory recorded it (newer factories)."""


@dataclass(frozen=True)
class ClusterMember:
    id: str
    node_id: str
    hostname: str
    addresses: tuple[str, ...]
    machine_type: str
    operating_system: str
    control_plane_port: int | None


@dataclass(frozen=True)
class ClusterIdentity:
    cluster_id: str
    cluster_name: str


@dataclass(frozen=True)
class ControlPlaneImages:
    apiserver: str
    scheduler: str
    controller_manager: str


@dataclass(frozen=True)
class ServiceStatus:
    id: str
    state: str
    healthy: bool | None
    """``None`` while the service reports no health yet."""
    last_message: str


@dataclass(frozen=True)
class EtcdMemberInfo:
    id: int
    hostname: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool


@dataclass(frozen=True)
class EtcdStatusInfo:
    member_id: int
    leader: int
    protocol_version: str
    storage_version: str
    db_size: int
    db_size_in_use: int
    raft_index: int
    raft_term: int
    raft_applied_index: int
    is_learner: bool
    errors: tuple[str, ...]


@dataclass(frozen=True)
class ApplyResult:
    node: str
    mode: ApplyMode
    """The mode the node actually used."""
    mode_details: str
    warnings: tuple[str, ...]


# ---- fan-out ----


async def map_nodes(
    nodes: Iterable[str],
    fn: Callable[[str], Awaitable[T]],
    parallelism: int = 10,
) -> dict[str, T | ProviderError]:
    """Run ``fn(node)`` for every distinct node, at most ``parallelism`` at once.

    Returns a dict in the order nodes were given, holding each result or the
    :class:`ProviderError` that node raised; any other exception is a bug and propagates
    (cancelling the rest).
    """
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    order = list(dict.fromkeys(nodes))
    gate = asyncio.Semaphore(parallelism)
    results: dict[str, T | ProviderError] = {}

    async def one(node: str) -> None:
        async with gate:
            try:
                results[node] = await fn(node)
            except ProviderError as exc:
                results[node] = exc

    async with asyncio.TaskGroup() as group:
        for node in order:
            group.create_task(one(node))
    return {node: results[node] for node in order}


# ---- the client ----


class TalosClient:
    """Talos API client over one mTLS channel; every call names the node it is for.

    Use as ``async with TalosClient.from_talosconfig(...) as client``. ``node=None`` lets the
    endpoint itself answer (no ``node`` metadata sent).
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        endpoints: Sequence[Endpoint],
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self._ssl = ssl_context
        self._endpoints = tuple(endpoints)
        self._current = 0
        self.timeouts = timeouts
        self.retry = retry
        self._channel: Channel | None = None
        self._lock = asyncio.Lock()
        self._answered = False  # has any call on this client been answered yet?

    @classmethod
    def from_context(
        cls,
        context: TalosContext,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> TalosClient:
        """A client for a loaded talosconfig context (its endpoints and credentials)."""
        try:
            ctx = client_context(context.ca, context.crt, context.key)
        except TLSConfigError as exc:
            raise CredentialsError(
                f"context {context.name!r}: {exc}",
                target=str(context.path),
                fix="regenerate the talosconfig with `talosctl config new`",
            ) from None
        return cls(ctx, context.endpoints, timeouts=timeouts, retry=retry)

    @classmethod
    def from_talosconfig(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        endpoints: Sequence[str] | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        env: Mapping[str, str] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> TalosClient:
        loaded = load_talosconfig(path, context=context, endpoints=endpoints, env=env)
        return cls.from_context(loaded, timeouts=timeouts, retry=retry)

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint calls currently go through."""
        return self._endpoints[self._current]

    async def __aenter__(self) -> TalosClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    # -- transport --

    async def _connected_channel(self, node: str | None, method: str) -> Channel:
        """The channel, connected within ``timeouts.connect``; tries endpoints in order."""
        async with self._lock:
            if self._channel is not None:
                try:
                    await asyncio.wait_for(self._channel.__connect__(), self.timeouts.connect)
                    return self._channel
                except (TimeoutError, OSError, ssl.SSLError):
                    self._channel.close()
                    self._channel = None
            first_error: ProviderError | None = None
            for step in range(len(self._endpoints)):
                index = (self._current + step) % len(self._endpoints)
                endpoint = self._endpoints[index]
                channel = Channel(endpoint.host, endpoint.port, ssl=self._ssl)
                try:
                    await asyncio.wait_for(channel.__connect__(), self.timeouts.connect)
                except (TimeoutError, OSError, ssl.SSLError) as exc:
                    channel.close()
                    first_error = first_error or _connect_error(exc, endpoint, node, method)
                    continue
                self._channel, self._current = channel, index
                return channel
            assert first_error is not None
            raise first_error from None

    def _metadata(self, node: str | None) -> builtins.list[tuple[str, str]]:
        return [("node", node)] if node else []

    async def _unary(
        self,
        node: str | None,
        method: str,
        pick: Callable[[Channel], Callable[..., Awaitable[Any]]],
        request: Any,
        *,
        metadata: builtins.list[tuple[str, str]] | None = None,
    ) -> Any:
        """One call within ``timeouts.call``; ``pick`` chooses the stub method on the channel.

        ``metadata`` replaces the ``node`` routing metadata (the one-to-many calls send
        ``nodes`` instead). Transient failures are retried (see the module docstring)."""
        if metadata is None:
            metadata = self._metadata(node)
        tries = 0
        while True:
            tries += 1
            try:
                return await self._unary_once(node, method, pick, request, metadata)
            except ProviderError as exc:
                if not transient(exc):
                    raise
                if tries >= self.retry.attempts:
                    raise gave_up(exc, tries) from None
            await asyncio.sleep(self.retry.delay(tries))

    async def _unary_once(
        self,
        node: str | None,
        method: str,
        pick: Callable[[Channel], Callable[..., Awaitable[Any]]],
        request: Any,
        metadata: builtins.list[tuple[str, str]],
    ) -> Any:
        call = pick(await self._connected_channel(node, method))
        try:
            reply = await call(request, metadata=metadata, timeout=self.timeouts.call)
        except (TimeoutError, GRPCError, StreamTerminatedError, OSError, ssl.SSLError) as e:
            raise self._failure(e, node, method, self.timeouts.call) from None
        self._answered = True
        return reply

    def _failure(
        self, exc: BaseException, node: str | None, method: str, timeout: float | None
    ) -> ProviderError:
        if isinstance(exc, GRPCError):
            self._answered = True
        elif not self._answered and isinstance(exc, StreamTerminatedError | ConnectionError):
            # With TLS 1.3 a server that rejects our client certificate says so only after
            # the client's side of the handshake is done: the first request sees a dead link.
            return TLSFailure(
                f"endpoint {self.endpoint} closed the connection right after the TLS handshake; "
                "it probably does not accept the talosconfig's client certificate (`crt`/`key` "
                "from another cluster?)",
                target=node,
                method=method,
            )
        return _call_error(exc, self.endpoint, node, method, timeout)

    async def _machine_call(self, node: str | None, name: str, request: Any) -> Any:
        method = _MACHINE + name
        reply = await self._unary(
            node, method, lambda ch: getattr(machine_grpc.MachineServiceStub(ch), name), request
        )
        return _single_item(reply, node, method)

    async def _machine_call_many(
        self, nodes: Iterable[str], name: str, request: Any, *, tries: int = 1
    ) -> dict[str, Any]:
        """``name`` for every distinct node in one one-to-many call: node -> reply item or the
        ProviderError for that node, in the order given.

        A failure of the whole call (endpoint down, permission denied) is every node's error.
        When apid refuses the ``nodes`` metadata (InvalidRequest, Unsupported), or a call for
        several nodes times out as a whole (apid waits for its slowest target, so one hung node
        would take the others down with it), each node is asked on its own instead. Nodes whose
        item is transient (apid could not reach them for a moment) are asked again, alone
        together, under the retry policy; ``tries`` counts the calls made so far.
        """
        targets = list(dict.fromkeys(nodes))
        if not targets:
            return {}
        method = _MACHINE + name
        try:
            reply = await self._unary(
                None,
                method,
                lambda ch: getattr(machine_grpc.MachineServiceStub(ch), name),
                request,
                metadata=[("nodes", n) for n in targets],
            )
        except ProviderError as exc:
            if isinstance(exc, InvalidRequest | Unsupported) or (
                isinstance(exc, Timeout) and len(targets) > 1
            ):
                items = await asyncio.gather(
                    *(settle(self._machine_call(n, name, request)) for n in targets)
                )
                return dict(zip(targets, items, strict=True))
            return {n: _for_node(exc, n) for n in targets}
        found: dict[str, Any] = {}
        wanted = set(targets)
        for item in reply.messages:
            meta = item.metadata
            host = meta.hostname
            if host in found or host not in wanted:
                continue
            has_status = meta.HasField("status")
            if meta.error or (has_status and meta.status.code):
                code = meta.status.code if has_status else 2  # UNKNOWN without a status
                text = (meta.status.message if has_status else "") or meta.error
                found[host] = _status_error(code, text, self.endpoint, host, method)
            else:
                found[host] = item
        results = {
            n: found[n]
            if n in found
            else ProtocolError(
                "the one-to-many reply holds no message for this node", target=n, method=method
            )
            for n in targets
        }
        again = [n for n, v in results.items() if isinstance(v, ProviderError) and transient(v)]
        if not again:
            return results
        if tries >= self.retry.attempts:
            results.update({n: gave_up(results[n], tries) for n in again})
            return results
        await asyncio.sleep(self.retry.delay(tries))
        results.update(await self._machine_call_many(again, name, request, tries=tries + 1))
        return results

    # -- COSI --

    async def get(self, node: str | None, namespace: str, rtype: str, rid: str) -> TalosResource:
        """COSI Get of one resource on ``node``."""
        method = f"{_STATE}Get {rtype}/{rid}"
        request = state_pb2.GetRequest(namespace=namespace, type=rtype, id=rid)
        reply = await self._unary(node, method, lambda ch: state_grpc.StateStub(ch).Get, request)
        return _resource(reply.resource, node, method)

    async def list(
        self, node: str | None, namespace: str, rtype: str
    ) -> builtins.list[TalosResource]:
        """COSI List of every resource of one type in ``namespace`` on ``node``."""
        method = f"{_STATE}List {rtype}"
        request = state_pb2.ListRequest(namespace=namespace, type=rtype)
        replies = await self._unary(node, method, lambda ch: state_grpc.StateStub(ch).List, request)
        return [_resource(r.resource, node, method) for r in replies]

    # -- machine service --

    async def version(self, node: str | None) -> VersionInfo:
        return _version_info(await self._machine_call(node, "Version", empty_pb2.Empty()))

    async def version_many(self, nodes: Iterable[str]) -> dict[str, VersionInfo | ProviderError]:
        """:meth:`version` of every node in one call (see :meth:`_machine_call_many`)."""
        items = await self._machine_call_many(nodes, "Version", empty_pb2.Empty())
        return {n: _map_ok(v, _version_info) for n, v in items.items()}

    async def kernel_hostname(self, node: str | None) -> str:
        """The kernel hostname (Hostname RPC)."""
        return (await self._machine_call(node, "Hostname", empty_pb2.Empty())).hostname

    async def service_list(self, node: str | None) -> builtins.list[ServiceStatus]:
        return _services(await self._machine_call(node, "ServiceList", empty_pb2.Empty()))

    async def service_list_many(
        self, nodes: Iterable[str]
    ) -> dict[str, builtins.list[ServiceStatus] | ProviderError]:
        """:meth:`service_list` of every node in one call (see :meth:`_machine_call_many`)."""
        items = await self._machine_call_many(nodes, "ServiceList", empty_pb2.Empty())
        return {n: _map_ok(v, _services) for n, v in items.items()}

    async def etcd_members(self, node: str | None) -> builtins.list[EtcdMemberInfo]:
        request = machine_pb2.EtcdMemberListRequest(query_local=False)
        return _etcd_members(await self._machine_call(node, "EtcdMemberList", request))

    async def etcd_members_many(
        self, nodes: Iterable[str]
    ) -> dict[str, builtins.list[EtcdMemberInfo] | ProviderError]:
        """:meth:`etcd_members` as each node sees them, in one call (workers answer
        Unsupported; see :meth:`_machine_call_many`)."""
        request = machine_pb2.EtcdMemberListRequest(query_local=False)
        items = await self._machine_call_many(nodes, "EtcdMemberList", request)
        return {n: _map_ok(v, _etcd_members) for n, v in items.items()}

    async def etcd_status(self, node: str | None) -> EtcdStatusInfo:
        status = (await self._machine_call(node, "EtcdStatus", empty_pb2.Empty())).member_status
        return EtcdStatusInfo(
            member_id=status.member_id,
            leader=status.leader,
            protocol_version=status.protocol_version,
            storage_version=status.storage_version,
            db_size=status.db_size,
            db_size_in_use=status.db_size_in_use,
            raft_index=status.raft_index,
            raft_term=status.raft_term,
            raft_applied_index=status.raft_applied_index,
            is_learner=status.is_learner,
            errors=tuple(status.errors),
        )

    async def apply_configuration(
        self,
        node: str,
        data: bytes,
        mode: ApplyMode = ApplyMode.AUTO,
        *,
        dry_run: bool = False,
        try_mode_timeout: float | None = None,
    ) -> ApplyResult:
        """Submit ``data`` (the whole config, byte for byte) to ``node``."""
        request = machine_pb2.ApplyConfigurationRequest(
            data=data,
            mode=machine_pb2.ApplyConfigurationRequest.Mode.ValueType(mode),
            dry_run=dry_run,
        )
        if try_mode_timeout is not None:
            request.try_mode_timeout.CopyFrom(_duration(try_mode_timeout))
        item = await self._machine_call(node, "ApplyConfiguration", request)
        return ApplyResult(
            node=node,
            mode=ApplyMode(item.mode),
            mode_details=item.mode_details,
            warnings=tuple(item.warnings),
        )

    async def health_check(
        self,
        node: str | None,
        *,
        control_plane_nodes: Sequence[str],
        worker_nodes: Sequence[str] = (),
        wait_timeout: float = 300.0,
        force_endpoint: str = "",
    ) -> AsyncIterator[str]:
        """Run Talos's server-side cluster health check on ``node``; yields progress lines.

        A failed check raises; the end of the stream means every check passed. Between two
        messages the server may wait up to ``wait_timeout``, so that bounds each wait. A
        transient failure before the first message starts the check again (it only reads);
        after that it raises, since the lines already yielded cannot be taken back.
        """
        tries = 0
        while True:
            tries += 1
            started = False
            try:
                async for line in self._health_check_once(
                    node, control_plane_nodes, worker_nodes, wait_timeout, force_endpoint
                ):
                    started = True
                    yield line
                return
            except ProviderError as exc:
                if started or not transient(exc):
                    raise
                if tries >= self.retry.attempts:
                    raise gave_up(exc, tries) from None
            await asyncio.sleep(self.retry.delay(tries))

    async def _health_check_once(
        self,
        node: str | None,
        control_plane_nodes: Sequence[str],
        worker_nodes: Sequence[str],
        wait_timeout: float,
        force_endpoint: str,
    ) -> AsyncIterator[str]:
        method = _HEALTH
        stub = cluster_grpc.ClusterServiceStub(await self._connected_channel(node, method))
        request = cluster_pb2.HealthCheckRequest(
            cluster_info=cluster_pb2.ClusterInfo(
                control_plane_nodes=list(control_plane_nodes),
                worker_nodes=list(worker_nodes),
                force_endpoint=force_endpoint,
            )
        )
        request.wait_timeout.CopyFrom(_duration(wait_timeout))
        gap = wait_timeout + (self.timeouts.call or 0.0)
        try:
            async with stub.HealthCheck.open(metadata=self._metadata(node)) as stream:
                await asyncio.wait_for(stream.send_message(request, end=True), gap)
                while True:
                    message = await asyncio.wait_for(stream.recv_message(), gap)
                    self._answered = True
                    if message is None:
                        return
                    if message.metadata.error:
                        raise ProtocolError(
                            f"health check failed: {message.metadata.error}",
                            target=node,
                            method=method,
                        )
                    yield message.message
        except ProviderError:
            raise
        except (TimeoutError, GRPCError, StreamTerminatedError, OSError, ssl.SSLError) as e:
            raise self._failure(e, node, method, gap) from None

    # -- read helpers (omnictl cluster import, Phase A) --

    async def machine_config(self, node: str) -> bytes:
        """The active machine configuration bytes, exactly as stored (needs ``os:admin``)."""
        res = await self.get(node, *MACHINE_CONFIG)
        if res.proto_spec:
            try:
                spec = config_pb2.MachineConfigSpec.FromString(res.proto_spec)
            except DecodeError:
                raise ProtocolError(
                    "machine config spec is not a MachineConfigSpec message",
                    target=node,
                    method=f"{_STATE}Get {MACHINE_CONFIG[1]}",
                ) from None
            return spec.yaml_marshalled
        # No protobuf spec: use the YAML spec, which since Talos 1.12 (marked by an
        # annotation) is a YAML block string holding the config rather than the config itself.
        if res.metadata.annotations.get(YAML_SPEC_ANNOTATION):
            try:
                inner = yaml.safe_load(res.yaml_spec)
            except yaml.YAMLError:
                inner = None
            if not isinstance(inner, str):
                raise ProtocolError(
                    "machine config YAML spec is not a string",
                    target=node,
                    method=f"{_STATE}Get {MACHINE_CONFIG[1]}",
                )
            return inner.encode("utf-8")
        return res.yaml_spec.encode("utf-8")

    async def machine_type(self, node: str) -> str:
        """``controlplane``, ``worker`` or ``init``."""
        res = await self.get(node, *MACHINE_TYPE)
        if isinstance(res.spec, str) and res.spec:
            return res.spec
        try:
            spec = config_pb2.MachineTypeSpec.FromString(res.proto_spec)
        except DecodeError:
            raise ProtocolError(
                "machine type spec is unreadable",
                target=node,
                method=f"{_STATE}Get {MACHINE_TYPE[1]}",
            ) from None
        names = {1: "init", 2: "controlplane", 3: "worker"}
        return names.get(spec.machine_type, "unknown")

    async def talos_version(self, node: str) -> str:
        """The tag from ``Versions.runtime.talos.dev`` (Talos >= 1.10; use version() before)."""
        return str(_field(await self.get(node, *VERSION), "version", node))

    async def extension_statuses(self, node: str) -> builtins.list[ExtensionStatus]:
        resources = await self.list(node, *EXTENSION_STATUSES)
        out = []
        for res in resources:
            spec = res.spec if isinstance(res.spec, dict) else {}
            meta = spec.get("metadata") or {}
            compat = ((meta.get("compatibility") or {}).get("talos") or {}).get("version", "")
            out.append(
                ExtensionStatus(
                    id=res.metadata.id,
                    image=str(spec.get("image") or ""),
                    name=str(meta.get("name") or ""),
                    version=str(meta.get("version") or ""),
                    author=str(meta.get("author") or ""),
                    description=str(meta.get("description") or ""),
                    talos_compatibility=str(compat or ""),
                    extra_info=str(meta.get("extraInfo") or ""),
                )
            )
        return out

    async def schematic(self, node: str) -> Schematic | None:
        """The Image Factory schematic the node booted from, or None (not a factory image)."""
        for ext in await self.extension_statuses(node):
            if ext.name == SCHEMATIC_EXTENSION:
                return Schematic(id=ext.version, author=ext.author, extra_info=ext.extra_info)
        return None

    async def hostname(self, node: str) -> str:
        """The node's hostname from ``HostnameStatuses.net.talos.dev/hostname``."""
        return str(_field(await self.get(node, *HOSTNAME_STATUS), "hostname", node))

    async def system_uuid(self, node: str) -> str:
        """The SMBIOS UUID (Omni's machine ID) from ``SystemInformations``."""
        return str(_field(await self.get(node, *SYSTEM_INFORMATION), "uuid", node))

    async def members(self, node: str | None) -> builtins.list[ClusterMember]:
        """Cluster discovery members as this node sees them (empty if discovery is off);
        ``None`` asks the endpoint itself (no ``node`` metadata), as talosctl does."""
        out = []
        for res in await self.list(node, *MEMBERS):
            spec = res.spec if isinstance(res.spec, dict) else {}
            cp = spec.get("controlPlane") or None
            out.append(
                ClusterMember(
                    id=res.metadata.id,
                    node_id=str(spec.get("nodeId") or ""),
                    hostname=str(spec.get("hostname") or ""),
                    addresses=tuple(str(a) for a in spec.get("addresses") or ()),
                    machine_type=str(spec.get("machineType") or ""),
                    operating_system=str(spec.get("operatingSystem") or ""),
                    control_plane_port=int(cp["port"]) if cp and cp.get("port") else None,
                )
            )
        return out

    async def cluster_info(self, node: str) -> ClusterIdentity:
        res = await self.get(node, *CLUSTER_INFO)
        return ClusterIdentity(
            cluster_id=str(_field(res, "clusterId", node)),
            cluster_name=str(_field(res, "clusterName", node)),
        )

    async def kubelet_image(self, node: str) -> str:
        return str(_field(await self.get(node, *KUBELET_CONFIG), "image", node))

    async def control_plane_images(self, node: str) -> ControlPlaneImages:
        """Images of the static control-plane pods (control-plane nodes only)."""
        # every call is awaited to its end before an error is raised, so none is left running
        # (and opening connections) after the caller moved on or closed the client
        results = await asyncio.gather(
            self.get(node, *APISERVER_CONFIG),
            self.get(node, *SCHEDULER_CONFIG),
            self.get(node, *CONTROLLER_MANAGER_CONFIG),
            return_exceptions=True,
        )
        resources = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            resources.append(result)
        api, sched, cm = resources
        return ControlPlaneImages(
            apiserver=str(_field(api, "image", node)),
            scheduler=str(_field(sched, "image", node)),
            controller_manager=str(_field(cm, "image", node)),
        )

    async def map_nodes(
        self,
        nodes: Iterable[str],
        fn: Callable[[str], Awaitable[T]],
        parallelism: int = 10,
    ) -> dict[str, T | ProviderError]:
        """:func:`map_nodes` (kept on the client for discoverability)."""
        return await map_nodes(nodes, fn, parallelism)


# ---- helpers ----


def _version_info(item: Any) -> VersionInfo:
    return VersionInfo(
        tag=item.version.tag,
        sha=item.version.sha,
        built=item.version.built,
        go_version=item.version.go_version,
        os=item.version.os,
        arch=item.version.arch,
        platform_name=item.platform.name,
        platform_mode=item.platform.mode,
        rbac=item.features.rbac if item.HasField("features") else None,
    )


def _services(item: Any) -> list[ServiceStatus]:
    return [
        ServiceStatus(
            id=s.id,
            state=s.state,
            healthy=None if s.health.unknown else s.health.healthy,
            last_message=s.health.last_message,
        )
        for s in item.services
    ]


def _etcd_members(item: Any) -> list[EtcdMemberInfo]:
    return [
        EtcdMemberInfo(
            id=m.id,
            hostname=m.hostname,
            peer_urls=tuple(m.peer_urls),
            client_urls=tuple(m.client_urls),
            is_learner=m.is_learner,
        )
        for m in item.members
    ]


def _map_ok(value: Any, fn: Callable[[Any], T]) -> T | ProviderError:
    return value if isinstance(value, ProviderError) else fn(value)


async def settle(aw: Awaitable[T]) -> T | ProviderError:
    """``aw``'s result, or the ProviderError it raised (any other exception propagates)."""
    try:
        return await aw
    except ProviderError as exc:
        return exc


def _for_node(exc: ProviderError, node: str) -> ProviderError:
    """``exc`` (a failure of a call for many nodes) as the error of one of them."""
    mine = copy.copy(exc)
    mine.target = node
    return mine


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(round(seconds * 1e9)))
    return d


def _single_item(reply: Any, node: str | None, method: str) -> Any:
    """The one reply item for ``node``; an item carrying ``metadata.error`` becomes an error."""
    if not reply.messages:
        raise ProtocolError("the reply holds no message", target=node, method=method)
    item = reply.messages[0]
    meta = item.metadata
    if meta.error:
        code = meta.status.code if meta.HasField("status") else 2
        raise from_grpc_status(code, meta.error, target=node, method=method)
    return item


def _resource(msg: resource_pb2.Resource, node: str | None, method: str) -> TalosResource:
    md = msg.metadata
    meta = ResourceMetadata(
        namespace=md.namespace,
        type=md.type,
        id=md.id,
        version=md.version,
        owner=md.owner,
        phase=md.phase,
        labels=dict(md.labels),
        annotations=dict(md.annotations),
        finalizers=tuple(md.finalizers),
    )
    text = msg.spec.yaml_spec
    spec: Any = None
    if text and md.type != MACHINE_CONFIG[1]:  # config bytes are read from proto_spec instead
        try:
            spec = yaml.load(text, Loader=_YAML_LOADER)
        except yaml.YAMLError:
            raise ProtocolError(
                f"resource {md.type}/{md.id} has an unreadable YAML spec",
                target=node,
                method=method,
            ) from None
    return TalosResource(metadata=meta, spec=spec, yaml_spec=text, proto_spec=msg.spec.proto_spec)


def _field(res: TalosResource, key: str, node: str) -> Any:
    if isinstance(res.spec, dict) and key in res.spec:
        return res.spec[key]
    raise ProtocolError(
        f"resource {res.metadata.type}/{res.metadata.id} has no `{key}` in its spec",
        target=node,
        method=f"{_STATE}Get {res.metadata.type}",
    )


def _connect_error(
    exc: BaseException, endpoint: Endpoint, node: str | None, method: str
) -> ProviderError:
    if isinstance(exc, TimeoutError):
        return Unreachable(
            f"endpoint {endpoint} did not accept a connection in time", target=node, method=method
        )
    mapped = from_exception(exc, target=node, method=method)
    if isinstance(mapped, TLSFailure):
        return TLSFailure(
            f"TLS with endpoint {endpoint} failed: {mapped.message}; check the talosconfig `ca` "
            "and that the endpoint belongs to this cluster",
            target=node,
            method=method,
        )
    return Unreachable(
        f"cannot reach endpoint {endpoint}: {mapped.message}", target=node, method=method
    )


def _status_error(
    code: int, text: str, endpoint: Endpoint, node: str | None, method: str
) -> ProviderError:
    """The error for a gRPC status apid answered for ``node``, whether it ended the call
    (one-to-one) or came as the node's item of a one-to-many reply."""
    if code == 14:  # UNAVAILABLE: apid could not reach the node behind the endpoint
        return Unreachable(
            f"node not reachable through endpoint {endpoint}: {text}",
            target=node,
            method=method,
            code=code,
        )
    if code == 7:
        return PermissionDenied(
            f"permission denied ({text}); the talosconfig's roles do not allow this call, "
            "an os:admin certificate is needed",
            target=node,
            method=method,
            code=code,
        )
    if code == 5:
        return NotFound(text or "not found", target=node, method=method, code=code)
    return from_grpc_status(code, text, target=node, method=method)


def _call_error(
    exc: BaseException, endpoint: Endpoint, node: str | None, method: str, timeout: float | None
) -> ProviderError:
    if isinstance(exc, TimeoutError):
        within = f" within {timeout:g}s" if timeout is not None else ""
        return Timeout(f"no answer{within}", target=node, method=method)
    if isinstance(exc, GRPCError):
        return _status_error(int(exc.status.value), exc.message or "", endpoint, node, method)
    if isinstance(exc, ssl.SSLError):
        return _connect_error(exc, endpoint, node, method)
    if isinstance(exc, StreamTerminatedError | OSError):
        return Unreachable(
            f"connection to endpoint {endpoint} was lost: {exc}", target=node, method=method
        )
    return from_exception(exc, target=node, method=method)
