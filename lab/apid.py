"""The lab's apid: the Talos API for every simulated node behind one mTLS listener.

As a real apid does, it authenticates callers by client certificate (signed by the cluster's
Ed25519 OS CA; roles from the certificate's ``O=``), checks the method against Talos's role
rules, and routes by metadata:

* no ``node``/``nodes``: the endpoint's own node (the first control plane) answers;
* ``node`` (exactly one value): one-to-one, plain gRPC errors, reply metadata left empty;
* ``nodes`` (one or more): one-to-many for unary machine methods, each reply item stamped with
  the target as given, failed targets as metadata-only items; COSI refuses it (as 1.3-1.13 do).

Node addresses are routing keys only; the node state lives in :mod:`lab.world`, and the
resources in :mod:`lab.talos_resources`. Faults (unreachable, latency, apply failures) are read
from the lab's shared :class:`~lab.faults.Faults` on every call; latency is an asyncio sleep, so
calls are never serialized.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from omniport.lab import talos_resources as tr
from omniport.lab.faults import BLIP_MESSAGE
from omniport.lab.world import Code, Lab, Mode, NodeError, SimNode, dump_yaml
from omniport.planner.machineconfig import pki
from omniport.providers.tls import server_context
from omniport.providers.wire.cluster import cluster_pb2
from omniport.providers.wire.common import common_pb2
from omniport.providers.wire.google.rpc import status_pb2
from omniport.providers.wire.machine import machine_pb2
from omniport.providers.wire.v1alpha1 import resource_pb2, state_pb2

ADMIN = "os:admin"
OPERATOR = "os:operator"
READER = "os:reader"
ETCD_BACKUP = "os:etcd:backup"
IMPERSONATOR = "os:impersonator"

_READ = frozenset({ADMIN, OPERATOR, READER})
_ETCD_READ = _READ | {ETCD_BACKUP}

# Talos's apid/machined role rules for the methods served here; anything else is admin-only.
RULES: dict[str, frozenset[str]] = {
    "/machine.MachineService/Version": _READ,
    "/machine.MachineService/Hostname": _READ,
    "/machine.MachineService/ServiceList": _READ,
    "/machine.MachineService/EtcdMemberList": _ETCD_READ,
    "/machine.MachineService/EtcdStatus": _ETCD_READ,
    "/cluster.ClusterService/HealthCheck": _READ,
    "/cosi.resource.State/Get": _READ,
    "/cosi.resource.State/List": _READ,
    "/cosi.resource.State/Watch": _READ,
}
ADMIN_ONLY = frozenset({ADMIN})

NOT_AUTHORIZED = "not authorized"
APID_PORT = 50000

_GO_VERSION = "go1.24.6"


def _status(code: Code | int) -> Status:
    return Status(int(code))


def _fail(code: Code, message: str) -> GRPCError:
    return GRPCError(_status(code), message)


async def _request(stream: Stream) -> Any:
    """The request message of a call that takes one; a peer that ends its stream without
    sending it (grpclib's client refuses to) is answered with a status, not a handler crash."""
    request = await stream.recv_message()
    if request is None:
        raise GRPCError(Status.INTERNAL, "the call ended before its request message")
    return request


class StreamReset(Exception):  # noqa: N818 - a signal, not an error
    """A blip fault resets the call's stream instead of answering it."""


def _dial_error(address: str, why: str) -> NodeError:
    return NodeError(
        Code.UNAVAILABLE,
        f'connection error: desc = "transport: Error while dialing: dial tcp '
        f'{address}:{APID_PORT}: {why}"',
    )


def peer_roles(stream: Stream) -> set[str]:
    """The Talos roles of the caller: the verified client certificate's ``O=`` values.

    An ``os:impersonator`` (another apid proxying) passes the original caller's roles in the
    ``talos-role`` metadata instead.
    """
    cert = stream.peer.cert() or {}
    roles: set[str] = set()
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "organizationName":
                roles.add(value)
    if IMPERSONATOR in roles:
        forwarded = stream.metadata.getall("talos-role", []) if stream.metadata else []
        if forwarded:
            return {str(r) for r in forwarded}
    return roles


def server_tls(secrets_os: pki.CertAndKey, now: dt.datetime, hosts: list[str]) -> ssl.SSLContext:
    """apid's TLS: an Ed25519 server cert from the OS CA for ``hosts``, client certs required."""
    ips = [h for h in hosts if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", h)]
    names = [h for h in hosts if h not in ips]
    cert = pki.apid_server_cert(
        secrets_os,
        now,
        hostname=names[0] if names else "localhost",
        ip_addresses=ips,
        dns_names=names,
    )
    return server_context(cert.crt, cert.key, client_ca_pem=secrets_os.crt)


@dataclass(frozen=True)
class Call:
    """One call apid received (after the TLS handshake), as its routing metadata named it."""

    method: str
    targets: tuple[str, ...]
    """The ``node`` value, or the ``nodes`` values in order; empty for the endpoint's own node."""
    roles: frozenset[str]
    """The caller's roles (the client certificate's ``O=``, or what an impersonator forwards)."""


class Apid:
    """Every service apid serves, as grpclib handlers over the lab's nodes."""

    def __init__(
        self, lab: Lab, *, endpoint_hosts: tuple[str, ...] = ("127.0.0.1",), record: bool = False
    ) -> None:
        self.lab = lab
        self.versions = tr.Versions()
        self.renderer = tr.Renderer(lab)
        self.endpoint_hosts = endpoint_hosts
        self._server: Server | None = None
        self.calls = 0
        """Unary and COSI calls answered (what discovery's call budget counts)."""
        self.record = record
        self.log: list[Call] = []
        """Every call received, in order, when ``record`` (tests that run apid in-process)."""
        self.in_flight = 0
        self.max_in_flight = 0
        """The most calls that were being answered at once."""

    # -- server lifecycle --

    async def start(
        self, ssl_context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0
    ) -> int:
        self._server = Server([self])
        await self._server.start(host, port, ssl=ssl_context, reuse_address=True)
        listening = self._server._server
        assert isinstance(listening, asyncio.Server)  # start() made it with loop.create_server
        return int(listening.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _observed(
        self, method: str, handler: Callable[[Stream], Awaitable[None]]
    ) -> Callable[[Stream], Awaitable[None]]:
        """``handler`` with the call logged and counted while it runs."""

        async def observed(stream: Stream) -> None:
            if self.record:
                md = stream.metadata
                node = md.getall("node", []) if md is not None else []
                targets = node or (md.getall("nodes", []) if md is not None else [])
                roles = frozenset(peer_roles(stream))
                self.log.append(Call(method, tuple(map(str, targets)), roles))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await handler(stream)
            finally:
                self.in_flight -= 1

        return observed

    def __mapping__(self) -> dict[str, Handler]:
        m, c, s = machine_pb2, cluster_pb2, state_pb2
        empty = empty_pb2.Empty
        uu, us = Cardinality.UNARY_UNARY, Cardinality.UNARY_STREAM

        def machine(name: str, req: Any, resp: Any, card: Cardinality = uu) -> tuple[str, Handler]:
            method = f"/machine.MachineService/{name}"
            return method, Handler(self._observed(method, getattr(self, name)), card, req, resp)

        def state(name: str, req: Any, resp: Any, card: Cardinality = uu) -> tuple[str, Handler]:
            method = f"/cosi.resource.State/{name}"
            handler = self._observed(method, getattr(self, "cosi_" + name))
            return method, Handler(handler, card, req, resp)

        return dict(
            [
                machine(
                    "ApplyConfiguration", m.ApplyConfigurationRequest, m.ApplyConfigurationResponse
                ),
                machine("Bootstrap", m.BootstrapRequest, m.BootstrapResponse),
                machine("EtcdMemberList", m.EtcdMemberListRequest, m.EtcdMemberListResponse),
                machine("EtcdStatus", empty, m.EtcdStatusResponse),
                machine("Hostname", empty, m.HostnameResponse),
                machine("Kubeconfig", empty, common_pb2.Data, us),
                machine("ServiceList", empty, m.ServiceListResponse),
                machine("Version", empty, m.VersionResponse),
                (
                    "/cluster.ClusterService/HealthCheck",
                    Handler(
                        self._observed("/cluster.ClusterService/HealthCheck", self.HealthCheck),
                        us,
                        c.HealthCheckRequest,
                        c.HealthCheckProgress,
                    ),
                ),
                state("Get", s.GetRequest, s.GetResponse),
                state("List", s.ListRequest, s.ListResponse, us),
                state("Watch", s.WatchRequest, s.WatchResponse, us),
                state("Create", s.CreateRequest, s.CreateResponse),
                state("Update", s.UpdateRequest, s.UpdateResponse),
                state("Destroy", s.DestroyRequest, s.DestroyResponse),
                state("Teardown", s.TeardownRequest, s.TeardownResponse),
                state(
                    "TeardownAndDestroy", s.TeardownAndDestroyRequest, s.TeardownAndDestroyResponse
                ),
            ]
        )

    # -- authorization and routing --

    def _authorize(self, stream: Stream, method: str) -> set[str]:
        roles = peer_roles(stream)
        allowed = RULES.get(method, ADMIN_ONLY)
        if not roles & allowed:
            raise _fail(Code.PERMISSION_DENIED, NOT_AUTHORIZED)
        return roles

    def _targets(self, stream: Stream) -> tuple[bool, list[str]]:
        """``(one_to_many, targets)``; an empty target means the endpoint's own node."""
        md = stream.metadata
        if md is None or md.get("proxyfrom") is not None:
            return False, [""]
        node = md.getall("node", [])
        nodes = md.getall("nodes", [])
        if len(node) > 1:
            raise _fail(Code.INVALID_ARGUMENT, "node metadata must be single-valued")
        if node:
            return False, [str(node[0])]
        if nodes:
            if self.lab.faults.one_to_many_refused:
                raise _fail(Code.INVALID_ARGUMENT, "one-2-many proxying is not supported")
            return True, [str(n) for n in nodes]
        return False, [""]

    def _resolve(self, target: str) -> SimNode:
        if not target or target in self.endpoint_hosts or target == "localhost":
            return self.lab.local_node()
        node = self.lab.by_address.get(target)
        if node is None:
            raise _dial_error(target, "connect: no route to host")
        return node

    async def _reach(self, target: str, method: str = "", *, can_reset: bool = False) -> SimNode:
        """The node behind ``target`` after the faults had their say (latency, unreachable,
        blips of ``method``; ``can_reset``: the caller resets the stream on StreamReset)."""
        node = self._resolve(target)
        faults = self.lab.faults
        delay = faults.delay(node.address)
        if delay > 0:
            await asyncio.sleep(delay)
        if node.address in faults.unreachable:
            raise _dial_error(node.address, "i/o timeout")
        blip = faults.talos_blip(node.address, method)
        if blip is not None:
            if blip.reset and can_reset:
                raise StreamReset
            raise NodeError(Code.UNAVAILABLE, BLIP_MESSAGE.format(address=node.address))
        if node.rebooting:
            raise _dial_error(node.address, "connect: connection refused")
        if node.maintenance:
            raise NodeError(
                Code.UNAVAILABLE,
                'connection error: desc = "transport: authentication handshake failed: '
                'tls: failed to verify certificate: x509: certificate signed by unknown authority"',
            )
        return node

    async def _single(self, stream: Stream, method: str) -> tuple[SimNode, set[str]]:
        roles = self._authorize(stream, method)
        many, targets = self._targets(stream)
        if many:
            if method.startswith("/cosi."):
                raise _fail(
                    Code.INVALID_ARGUMENT, "one-2-many proxying is not supported for COSI methods"
                )
            if len(targets) != 1:
                raise _fail(
                    Code.INVALID_ARGUMENT, "one-2-many proxying is not supported for streaming"
                )
        try:
            return await self._reach(targets[0], method), roles
        except NodeError as err:
            raise _fail(err.code, err.message) from None

    async def _unary(
        self,
        stream: Stream,
        method: str,
        response_cls: type,
        answer: Callable[[SimNode, Any], Awaitable[list[Any]]],
    ) -> None:
        """A unary machine method, routed one-to-one or one-to-many."""
        self.calls += 1
        request = await _request(stream)
        self._authorize(stream, method)
        many, targets = self._targets(stream)
        if not many:
            try:
                node = await self._reach(targets[0], method, can_reset=True)
                items = await answer(node, request)
            except NodeError as err:
                raise _fail(err.code, err.message) from None
            except StreamReset:
                await stream.cancel()  # RST_STREAM: the client sees the call dropped
                return
            await stream.send_message(response_cls(messages=items))
            return
        reply = response_cls()

        async def one(target: str) -> tuple[str, list[Any] | NodeError]:
            try:
                node = await self._reach(target, method)
                return target, await answer(node, request)
            except NodeError as err:
                return target, err

        dropped = self.lab.faults.one_to_many_dropped
        for next_done in asyncio.as_completed([one(t) for t in targets]):
            target, result = await next_done
            if target in dropped:
                continue  # its answer came back empty: nothing for it, not even an error
            if isinstance(result, NodeError):
                item = reply.messages.add()
                item.metadata.hostname = target
                item.metadata.error = result.message
                item.metadata.status.CopyFrom(
                    status_pb2.Status(code=int(result.code), message=result.message)
                )
                continue
            for item in result:
                item.metadata.hostname = target
                reply.messages.append(item)
        await stream.send_message(reply)

    # -- machine.MachineService --

    async def Version(self, stream: Stream) -> None:
        async def answer(node: SimNode, _: Any) -> list[Any]:
            sha = hashlib.sha1(node.talos_version.encode()).hexdigest()[:8]
            return [
                machine_pb2.Version(
                    version=machine_pb2.VersionInfo(
                        tag=node.talos_version,
                        sha=sha,
                        built="",
                        go_version=_GO_VERSION,
                        os="linux",
                        arch="amd64",
                    ),
                    platform=machine_pb2.PlatformInfo(name="metal", mode="metal"),
                    features=machine_pb2.FeaturesInfo(rbac=True),
                )
            ]

        await self._unary(
            stream, "/machine.MachineService/Version", machine_pb2.VersionResponse, answer
        )

    async def Hostname(self, stream: Stream) -> None:
        async def answer(node: SimNode, _: Any) -> list[Any]:
            return [machine_pb2.Hostname(hostname=node.hostname)]

        await self._unary(
            stream, "/machine.MachineService/Hostname", machine_pb2.HostnameResponse, answer
        )

    async def ServiceList(self, stream: Stream) -> None:
        faults = self.lab.faults

        async def answer(node: SimNode, _: Any) -> list[Any]:
            started = _timestamp(node.boot_time)
            services = []
            for svc in node.services():
                info = machine_pb2.ServiceInfo(id=svc.id, state=svc.state)
                for state, msg in (
                    ("Preparing", "Running pre state"),
                    ("Waiting", "Waiting for service dependencies"),
                    (
                        "Running",
                        "Service started as goroutine"
                        if svc.id in ("apid", "machined")
                        else "Started task",
                    ),
                ):
                    info.events.events.add(msg=msg, state=state, ts=started)
                info.health.unknown = False
                info.health.healthy = svc.healthy and faults.service_healthy(node.address, svc.id)
                info.health.last_change.CopyFrom(started)
                services.append(info)
            return [machine_pb2.ServiceList(services=services)]

        await self._unary(
            stream, "/machine.MachineService/ServiceList", machine_pb2.ServiceListResponse, answer
        )

    def _require_controlplane(self, node: SimNode, api: str) -> None:
        if not node.is_controlplane:
            raise NodeError(Code.UNIMPLEMENTED, f"{api} is only available on control plane nodes")

    async def EtcdMemberList(self, stream: Stream) -> None:
        async def answer(node: SimNode, _: Any) -> list[Any]:
            self._require_controlplane(node, "member list")
            faults = self.lab.faults
            members = [
                machine_pb2.EtcdMember(
                    id=cp.etcd_member_id,
                    hostname=cp.hostname,
                    peer_urls=[f"https://{cp.address}:2380"],
                    client_urls=[f"https://{cp.address}:2379"],
                    is_learner=cp.address in faults.etcd_learners,
                )
                for cp in self.lab.controlplanes
            ]
            for hostname in sorted(faults.stale_etcd_members):
                members.append(
                    machine_pb2.EtcdMember(
                        id=int(hashlib.sha256(hostname.encode()).hexdigest()[:15], 16),
                        hostname=hostname,
                        peer_urls=[f"https://{hostname}:2380"],
                        client_urls=[f"https://{hostname}:2379"],
                    )
                )
            return [
                machine_pb2.EtcdMembers(
                    legacy_members=[m.hostname for m in members], members=members
                )
            ]

        await self._unary(
            stream,
            "/machine.MachineService/EtcdMemberList",
            machine_pb2.EtcdMemberListResponse,
            answer,
        )

    async def EtcdStatus(self, stream: Stream) -> None:
        async def answer(node: SimNode, _: Any) -> list[Any]:
            self._require_controlplane(node, "etcd status")
            leader = self.lab.controlplanes[0].etcd_member_id
            index = 100_000 + int(time.time() - self.lab.started) * 7
            status = machine_pb2.EtcdMemberStatus(
                protocol_version="3.5.0",
                db_size=24 * 1024 * 1024,
                db_size_in_use=9 * 1024 * 1024,
                leader=leader,
                raft_index=index,
                raft_term=4,
                raft_applied_index=index,
                is_learner=False,
                member_id=node.etcd_member_id,
                storage_version="3.5.0",
            )
            return [machine_pb2.EtcdStatus(member_status=status)]

        await self._unary(
            stream, "/machine.MachineService/EtcdStatus", machine_pb2.EtcdStatusResponse, answer
        )

    async def Bootstrap(self, stream: Stream) -> None:
        async def answer(node: SimNode, _: Any) -> list[Any]:
            if not node.is_controlplane:
                raise NodeError(
                    Code.FAILED_PRECONDITION,
                    "bootstrap can only be performed on a control plane node",
                )
            raise NodeError(Code.ALREADY_EXISTS, "etcd data directory is not empty")

        await self._unary(
            stream, "/machine.MachineService/Bootstrap", machine_pb2.BootstrapResponse, answer
        )

    async def ApplyConfiguration(self, stream: Stream) -> None:
        async def answer(node: SimNode, request: Any) -> list[Any]:
            failure = self.lab.faults.apply_should_fail(node.address)
            if failure is not None:
                raise NodeError(Code.INTERNAL, failure.message)
            try:
                mode = Mode(request.mode)
            except ValueError:
                raise NodeError(
                    Code.INVALID_ARGUMENT, f"incorrect mode '{request.mode}' specified"
                ) from None
            timeout = None
            if request.HasField("try_mode_timeout"):
                timeout = request.try_mode_timeout.ToNanoseconds() / 1e9
            result = await self.lab.apply_configuration(
                node, request.data, mode, dry_run=request.dry_run, try_timeout=timeout
            )
            return [
                machine_pb2.ApplyConfiguration(
                    warnings=list(result.warnings),
                    mode=int(result.mode),  # type: ignore[arg-type]
                    mode_details=result.details,
                )
            ]

        await self._unary(
            stream,
            "/machine.MachineService/ApplyConfiguration",
            machine_pb2.ApplyConfigurationResponse,
            answer,
        )

    async def Kubeconfig(self, stream: Stream) -> None:
        await stream.recv_message()
        node, _ = await self._single(stream, "/machine.MachineService/Kubeconfig")
        if not node.is_controlplane:
            raise _fail(Code.UNIMPLEMENTED, "kubeconfig is only available on control plane nodes")
        await stream.send_message(common_pb2.Data(bytes=self._kubeconfig(node)))

    def _kubeconfig(self, node: SimNode) -> bytes:
        cluster = (node.view.v1alpha1 or {}).get("cluster") or {}
        ca = cluster.get("ca") or {}
        name = node.view.cluster_name
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": self.lab.endpoint,
                        "certificate-authority-data": ca.get("crt", ""),
                    },
                }
            ],
            "users": [{"name": f"admin@{name}", "user": {}}],
            "contexts": [
                {
                    "name": f"admin@{name}",
                    "context": {"cluster": name, "namespace": "default", "user": f"admin@{name}"},
                }
            ],
            "current-context": f"admin@{name}",
        }
        return dump_yaml(doc).encode()

    # -- cluster.ClusterService --

    async def HealthCheck(self, stream: Stream) -> None:
        request = await _request(stream)
        node, _ = await self._single(stream, "/cluster.ClusterService/HealthCheck")
        timeout = 20 * 60.0
        if request.HasField("wait_timeout"):
            timeout = request.wait_timeout.ToNanoseconds() / 1e9 or timeout
        deadline = time.monotonic() + timeout
        info = request.cluster_info
        cps = list(info.control_plane_nodes)
        workers = list(info.worker_nodes)

        async def say(text: str) -> None:
            await stream.send_message(cluster_pb2.HealthCheckProgress(message=text))

        await say("discovered nodes: [" + " ".join(f'"{a}"' for a in cps + workers) + "]")
        for index, (title, check) in enumerate(self._health_checks(cps, workers)):
            if index and self.lab.faults.health_cancelled:
                raise _fail(Code.CANCELLED, "context canceled")
            await say(f"waiting for {title}: ...")
            while True:
                problem = check()
                if problem is None:
                    break
                if time.monotonic() >= deadline:
                    await say(f"waiting for {title}: {problem}")
                    raise _fail(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
                await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            await say(f"waiting for {title}: OK")

    def _health_checks(
        self, cps: list[str], workers: list[str]
    ) -> list[tuple[str, Callable[[], str | None]]]:
        lab = self.lab
        actual_cps = {n.address for n in lab.controlplanes}

        def etcd_members() -> str | None:
            extra = sorted(set(cps) - actual_cps)
            missing = sorted(actual_cps - set(cps))
            stale = sorted(lab.faults.stale_etcd_members)
            if extra:
                return f"etcd member list doesn't contain {', '.join(extra)}"
            if missing:
                return f"etcd members {', '.join(missing)} are not control plane nodes given"
            if stale:
                return f"etcd members {', '.join(stale)} are not control plane nodes"
            return None

        def healthy(service: str, nodes: list[str]) -> Callable[[], str | None]:
            def check() -> str | None:
                problem = reachable()
                if problem:
                    return problem
                bad = [a for a in nodes if not lab.faults.service_healthy(a, service)]
                return f"service {service!r} is not healthy on {', '.join(bad)}" if bad else None

            return check

        def reachable() -> str | None:
            down = []
            for address in [*cps, *workers]:
                node = lab.by_address.get(address)
                if (
                    node is None
                    or address in lab.faults.unreachable
                    or node.rebooting
                    or node.maintenance
                ):
                    down.append(address)
            if down:
                return "; ".join(
                    f"{a}: rpc error: code = Unavailable desc = connection refused" for a in down
                )
            return None

        def known() -> str | None:
            unknown = sorted({*cps, *workers} - set(lab.by_address))
            if unknown:
                return f"unexpected nodes with IPs {unknown!r}"
            expected = len(lab.nodes)
            given = len({*cps, *workers})
            if given != expected:
                return f"expected number of nodes {given}, got {expected}"
            return None

        def ok() -> str | None:
            return None

        def ready() -> str | None:
            problem = reachable()
            if problem:
                return problem
            names = sorted(
                lab.by_address[a].hostname
                for a in {*cps, *workers}
                if a in lab.faults.not_ready and a in lab.by_address
            )
            return f"some nodes are not ready: {names}" if names else None

        return [
            ("etcd to be healthy", healthy("etcd", cps)),
            ("etcd members to be consistent across nodes", etcd_members),
            ("etcd members to be control plane nodes", etcd_members),
            ("apid to be ready", reachable),
            ("all nodes memory sizes", ok),
            ("all nodes disk sizes", ok),
            ("no diagnostics", ok),
            ("kubelet to be healthy", healthy("kubelet", [*cps, *workers])),
            ("all nodes to finish boot sequence", reachable),
            ("all k8s nodes to report", known),
            ("all control plane static pods to be running", ok),
            ("all control plane components to be ready", ok),
            ("all k8s nodes to report ready", ready),
            ("kube-proxy to report ready", ok),
            ("coredns to report ready", ok),
            ("all k8s nodes to report schedulable", ok),
        ]

    # -- cosi.resource.State --

    def _access(
        self, node: SimNode, roles: set[str], namespace: str, rtype: str, write: bool = False
    ) -> tr.ResourceType:
        """Talos's access policy for COSI through the API, in its order of checks."""
        found = tr.definition(node, rtype)
        if found is None:
            raise _fail(Code.PERMISSION_DENIED, f'resource type "{rtype}" is not supported')
        if write and ADMIN not in roles:
            raise _fail(Code.PERMISSION_DENIED, "write access requires os:admin role")
        if found.sensitive_on(node) and ADMIN not in roles:
            raise _fail(Code.PERMISSION_DENIED, NOT_AUTHORIZED)
        if namespace not in tr.NAMESPACE_DESCRIPTIONS:
            raise _fail(Code.PERMISSION_DENIED, f'namespace "{namespace}" is not supported')
        return found

    def _items(self, node: SimNode, rtype: tr.ResourceType, namespace: str) -> list[tr.Item]:
        if namespace != rtype.namespace:
            return []
        return self.renderer.render(node, rtype)

    async def cosi_Get(self, stream: Stream) -> None:
        self.calls += 1
        request = await _request(stream)
        node, roles = await self._single(stream, "/cosi.resource.State/Get")
        rtype = self._access(node, roles, request.namespace, request.type)
        for item in self._items(node, rtype, request.namespace):
            if item.id == request.id:
                res = self.versions.to_proto(node, rtype, item)
                await stream.send_message(state_pb2.GetResponse(resource=res))
                return
        raise _fail(
            Code.NOT_FOUND,
            f"resource {request.type}({request.namespace}/{request.id}@undefined) doesn't exist",
        )

    async def cosi_List(self, stream: Stream) -> None:
        self.calls += 1
        request = await _request(stream)
        node, roles = await self._single(stream, "/cosi.resource.State/List")
        rtype = self._access(node, roles, request.namespace, request.type)
        match = _matcher(request.options.label_query, request.options.id_query.regexp)
        for item in self._items(node, rtype, request.namespace):
            if match(item):
                res = self.versions.to_proto(node, rtype, item)
                await stream.send_message(state_pb2.ListResponse(resource=res))

    async def cosi_Watch(self, stream: Stream) -> None:
        self.calls += 1
        request = await _request(stream)
        node, roles = await self._single(stream, "/cosi.resource.State/Watch")
        rtype = self._access(node, roles, request.namespace, request.type)
        options = request.options
        single = request.id if request.HasField("id") else None
        if single is not None and options.bootstrap_contents:
            raise _fail(
                Code.UNIMPLEMENTED, "bootstrap contents is not supported for single resource watch"
            )
        match = _matcher(options.label_query, options.id_query.regexp)
        modern = request.api_version >= 1

        def snapshot() -> dict[str, resource_pb2.Resource]:
            out = {}
            for item in self._items(node, rtype, request.namespace):
                if (single is None or item.id == single) and (single is not None or match(item)):
                    out[item.id] = self.versions.to_proto(node, rtype, item)
            return out

        await stream.send_message(state_pb2.WatchResponse())
        generation = node.generation
        current = snapshot()
        created, destroyed = state_pb2.CREATED, state_pb2.DESTROYED
        if single is not None:
            if single in current:
                await _send_events(stream, [(created, current[single], None)])
            else:
                missing = resource_pb2.Resource()
                md = missing.metadata
                md.namespace, md.type, md.id, md.version = (
                    request.namespace,
                    rtype.type,
                    single,
                    "undefined",
                )
                await _send_events(stream, [(destroyed, missing, None)])
        elif options.bootstrap_contents:
            events: list[_WatchEvent] = [(created, res, None) for res in current.values()]
            if modern:
                events.append((state_pb2.BOOTSTRAPPED, None, None))
            await _send_events(stream, events)
        while True:
            generation = await node.wait_changed(generation)
            latest = snapshot()
            events = []
            for rid, res in latest.items():
                old = current.get(rid)
                if old is None:
                    events.append((created, res, None))
                elif old.metadata.version != res.metadata.version:
                    events.append((state_pb2.UPDATED, res, old))
            for rid, old in current.items():
                if rid not in latest:
                    events.append((destroyed, old, None))
            current = latest
            if events:
                await _send_events(stream, events)

    async def _write(self, stream: Stream, method: str, namespace: str, rtype: str) -> None:
        self.calls += 1
        node, roles = await self._single(stream, method)
        self._access(node, roles, namespace, rtype, write=True)
        raise _fail(Code.PERMISSION_DENIED, "write access is not allowed")

    async def cosi_Create(self, stream: Stream) -> None:
        r = await _request(stream)
        md = r.resource.metadata
        await self._write(stream, "/cosi.resource.State/Create", md.namespace, md.type)

    async def cosi_Update(self, stream: Stream) -> None:
        r = await _request(stream)
        md = r.new_resource.metadata
        await self._write(stream, "/cosi.resource.State/Update", md.namespace, md.type)

    async def cosi_Destroy(self, stream: Stream) -> None:
        r = await _request(stream)
        await self._write(stream, "/cosi.resource.State/Destroy", r.namespace, r.type)

    async def cosi_Teardown(self, stream: Stream) -> None:
        r = await _request(stream)
        await self._write(stream, "/cosi.resource.State/Teardown", r.namespace, r.type)

    async def cosi_TeardownAndDestroy(self, stream: Stream) -> None:
        r = await _request(stream)
        await self._write(stream, "/cosi.resource.State/TeardownAndDestroy", r.namespace, r.type)


_WatchEvent = tuple[
    state_pb2.EventType.ValueType, resource_pb2.Resource | None, resource_pb2.Resource | None
]
"""A watch event to send: its kind, the resource, and the resource before (updates only)."""


async def _send_events(stream: Stream, events: list[_WatchEvent]) -> None:
    reply = state_pb2.WatchResponse()
    for kind, res, old in events:
        event = reply.event.add()
        event.event_type = kind
        if res is not None:
            event.resource.CopyFrom(res)
        if old is not None:
            event.old.CopyFrom(old)
    await stream.send_message(reply)


def _matcher(label_queries: Any, id_regexp: str) -> Callable[[tr.Item], bool]:
    pattern = re.compile(id_regexp) if id_regexp else None
    queries = list(label_queries)

    def term_ok(term: Any, labels: dict[str, str]) -> bool:
        op = term.op
        present = term.key in labels
        value = labels.get(term.key, "")
        if op == resource_pb2.LabelTerm.EXISTS:
            result = present
        elif op == resource_pb2.LabelTerm.NOT_EXISTS:
            result = not present
        elif op == resource_pb2.LabelTerm.EQUAL:
            result = present and value == (term.value[0] if term.value else "")
        elif op == resource_pb2.LabelTerm.IN:
            result = present and value in term.value
        else:
            result = present
        return result != term.invert

    def match(item: tr.Item) -> bool:
        if pattern is not None and not pattern.search(item.id):
            return False
        return all(all(term_ok(t, item.labels) for t in q.terms) for q in queries)

    return match


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts
