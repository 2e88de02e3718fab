"""A small real apid for tests: grpclib over Ed25519 mutual TLS on loopback.

It answers the Talos methods omniport uses for in-memory nodes, routed by the single-valued
``node`` metadata (or, for unary machine methods, one-to-many by the ``nodes`` metadata, as
apid does), and enforces Talos's role rules from the client certificate's ``O=``. It records
every call and the highest number of calls in flight at once, and can delay a node to provoke
timeouts. The embedded lab is the full simulator; this stays small on purpose.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from omniport.planner.machineconfig import pki
from omniport.providers.tls import server_context
from omniport.providers.wire.cluster import cluster_grpc, cluster_pb2
from omniport.providers.wire.common import common_pb2
from omniport.providers.wire.google.rpc import status_pb2
from omniport.providers.wire.machine import machine_grpc, machine_pb2
from omniport.providers.wire.resource.config import config_pb2
from omniport.providers.wire.v1alpha1 import resource_pb2, state_grpc, state_pb2

ADMIN, OPERATOR, READER = "os:admin", "os:operator", "os:reader"
READ_ROLES = frozenset({ADMIN, OPERATOR, READER})
ADMIN_ONLY = frozenset({ADMIN})
# Talos's `rules` for the methods served here; anything else is admin-only.
RULES: dict[str, frozenset[str]] = {
    "/machine.MachineService/Version": READ_ROLES,
    "/machine.MachineService/Hostname": READ_ROLES,
    "/machine.MachineService/ServiceList": READ_ROLES,
    "/machine.MachineService/EtcdMemberList": READ_ROLES | {"os:etcd:backup"},
    "/machine.MachineService/EtcdStatus": READ_ROLES | {"os:etcd:backup"},
    "/cluster.ClusterService/HealthCheck": READ_ROLES,
    "/cosi.resource.State/Get": READ_ROLES,
    "/cosi.resource.State/List": READ_ROLES,
    "/cosi.resource.State/Watch": READ_ROLES,
}
SENSITIVE_TYPES = frozenset({"MachineConfigs.config.talos.dev"})
# unary machine methods apid proxies one-to-many, with the reply class they answer with
ONE_TO_MANY: dict[str, type] = {
    "/machine.MachineService/Version": machine_pb2.VersionResponse,
    "/machine.MachineService/Hostname": machine_pb2.HostnameResponse,
    "/machine.MachineService/ServiceList": machine_pb2.ServiceListResponse,
    "/machine.MachineService/EtcdMemberList": machine_pb2.EtcdMemberListResponse,
    "/machine.MachineService/EtcdStatus": machine_pb2.EtcdStatusResponse,
}

Handler = Callable[[Stream, "FakeNode", tuple[str, ...]], Awaitable[None]]


@dataclass
class FakeResource:
    namespace: str
    type: str
    id: str
    yaml_spec: str
    proto_spec: bytes = b""
    annotations: dict[str, str] = field(default_factory=dict)

    def to_proto(self) -> resource_pb2.Resource:
        res = resource_pb2.Resource()
        md = res.metadata
        md.namespace, md.type, md.id = self.namespace, self.type, self.id
        md.version, md.phase = "1", "running"
        md.annotations.update(self.annotations)
        res.spec.yaml_spec = self.yaml_spec
        res.spec.proto_spec = self.proto_spec
        return res


@dataclass
class FakeNode:
    """One Talos node's state as the test needs it."""

    name: str
    hostname: str
    machine_type: str = "controlplane"
    version_tag: str = "v1.9.5"
    config: bytes = b"version: v1alpha1\nmachine:\n    type: controlplane\n"
    delay: float = 0.0
    resources: dict[tuple[str, str, str], FakeResource] = field(default_factory=dict)
    applied: list[machine_pb2.ApplyConfigurationRequest] = field(default_factory=list)
    health_messages: list[str] = field(default_factory=lambda: ["waiting for etcd", "all good"])
    health_error: str = ""
    missing_from_many: bool = False
    """Left out of one-to-many replies altogether (a proxy that lost the target's answer)."""

    def put(self, namespace: str, rtype: str, rid: str, spec: object, **kw: object) -> None:
        text = spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False)
        self.resources[(namespace, rtype, rid)] = FakeResource(
            namespace,
            rtype,
            rid,
            text,
            **kw,  # type: ignore[arg-type]
        )

    @classmethod
    def typical(
        cls,
        name: str,
        hostname: str,
        *,
        machine_type: str = "controlplane",
        uuid: str = "",
        schematic: str = "",
        cluster: str = "demo",
    ) -> FakeNode:
        node = cls(name=name, hostname=hostname, machine_type=machine_type)
        node.config = (
            f"version: v1alpha1\nmachine:\n    type: {machine_type}\n"
            f"    network:\n        hostname: {hostname}\ncluster:\n    clusterName: {cluster}\n"
        ).encode()
        node.refresh()
        node.put("runtime", "Versions.runtime.talos.dev", "version", {"version": "v1.9.5"})
        node.put("network", "HostnameStatuses.net.talos.dev", "hostname", {"hostname": hostname})
        node.put(
            "hardware",
            "SystemInformations.hardware.talos.dev",
            "systeminformation",
            {"manufacturer": "QEMU", "uuid": uuid or f"uuid-{hostname}"},
        )
        node.put(
            "cluster",
            "Infos.cluster.talos.dev",
            "current",
            {"clusterId": "cid-" + cluster, "clusterName": cluster},
        )
        node.put(
            "k8s",
            "KubeletConfigs.kubernetes.talos.dev",
            "kubelet",
            {"image": "ghcr.io/siderolabs/kubelet:v1.32.3", "clusterDNS": ["10.96.0.10"]},
        )
        for rid, kind, image in (
            ("kube-apiserver", "APIServerConfigs", "kube-apiserver"),
            ("kube-scheduler", "SchedulerConfigs", "kube-scheduler"),
            ("kube-controller-manager", "ControllerManagerConfigs", "kube-controller-manager"),
        ):
            node.put(
                "controlplane",
                f"{kind}.kubernetes.talos.dev",
                rid,
                {"image": f"registry.k8s.io/{image}:v1.32.3"},
            )
        node.put(
            "runtime",
            "ExtensionStatuses.runtime.talos.dev",
            "0",
            {
                "image": "qemu-guest-agent.sqsh",
                "metadata": {
                    "name": "qemu-guest-agent",
                    "version": "9.2.0",
                    "author": "Markus",
                    "description": "agent",
                    "compatibility": {"talos": {"version": ">= 1.0"}},
                },
            },
        )
        if schematic:
            node.put(
                "runtime",
                "ExtensionStatuses.runtime.talos.dev",
                "1",
                {
                    "image": "",
                    "metadata": {
                        "name": "schematic",
                        "version": schematic,
                        "author": "Image Factory (https://factory.talos.dev)",
                        "description": "schematic",
                        "compatibility": {"talos": {"version": ">= 1.0.0"}},
                        "extraInfo": "customization:\n    extraKernelArgs:\n        - quiet\n",
                    },
                },
            )
        return node

    def refresh(self) -> None:
        """Re-derive the config resources from ``config`` and ``machine_type``."""
        self.resources[("config", "MachineConfigs.config.talos.dev", "v1alpha1")] = FakeResource(
            "config",
            "MachineConfigs.config.talos.dev",
            "v1alpha1",
            yaml_spec=self.config.decode(),
            proto_spec=config_pb2.MachineConfigSpec(
                yaml_marshalled=self.config
            ).SerializeToString(),
        )
        self.put(
            "config", "MachineTypes.config.talos.dev", "machine-type", self.machine_type + "\n"
        )


class _Calls:
    """Shared call accounting: who called what, how many in flight."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str | None, tuple[str, ...]]] = []
        self.in_flight = 0
        self.max_in_flight = 0


class TalosTestServer:
    """Start with ``await server.start()``; ``server.port`` then holds the listening port."""

    def __init__(
        self,
        ca: pki.CertAndKey,
        nodes: Iterable[FakeNode],
        *,
        local: str | None = None,
        host: str = "127.0.0.1",
        now: dt.datetime | None = None,
        one_to_many: bool = True,
    ) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.local = local
        self.one_to_many = one_to_many
        """False: refuse the ``nodes`` metadata, as an apid that no longer proxies one-to-many."""
        self.host = host
        self.calls = _Calls()
        now = now or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        self.cert = pki.apid_server_cert(
            ca, now, hostname="apid-test", ip_addresses=[host], dns_names=["localhost"]
        )
        self._ssl = server_context(self.cert.crt, self.cert.key, client_ca_pem=ca.crt)
        self._server = Server([_Machine(self), _State(self), _Cluster(self)])
        self.port = 0

    async def start(self) -> int:
        await self._server.start(self.host, 0, ssl=self._ssl)
        self.port = self._server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def __aenter__(self) -> TalosTestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- request plumbing --

    async def enter(self, stream: Stream, method: str) -> FakeNode:
        """Authorize, route by `node`, count the call, apply the node's delay."""
        roles = _peer_roles(stream)
        nodes = stream.metadata.getall("node") if stream.metadata else []
        self.calls.log.append((method, nodes[0] if nodes else None, roles))
        if not set(roles) & RULES.get(method, ADMIN_ONLY):
            raise GRPCError(Status.PERMISSION_DENIED, "not authorized")
        if len(nodes) > 1:
            raise GRPCError(Status.INVALID_ARGUMENT, "node metadata must be single-valued")
        return self.node(nodes[0] if nodes else self.local)

    def node(self, name: str | None) -> FakeNode:
        node = self.nodes.get(name or "")
        if node is None:
            raise GRPCError(
                Status.UNAVAILABLE,
                f'connection error: desc = "transport: Error while dialing: dial tcp '
                f'{name}:50000: connect: no route to host"',
            )
        return node

    async def run(self, stream: Stream, method: str, handler: Handler) -> None:
        self.calls.in_flight += 1
        self.calls.max_in_flight = max(self.calls.max_in_flight, self.calls.in_flight)
        try:
            md = stream.metadata
            many = [str(n) for n in md.getall("nodes", [])] if md else []
            if many and not (md and md.getall("node", [])):
                await self._one_to_many(stream, method, handler, many)
                return
            node = await self.enter(stream, method)
            if node.delay:
                await asyncio.sleep(node.delay)
            await handler(stream, node, _peer_roles(stream))
        finally:
            self.calls.in_flight -= 1

    async def _one_to_many(
        self, stream: Stream, method: str, handler: Handler, targets: list[str]
    ) -> None:
        """apid's one-to-many proxying: every target answers (concurrently, after its delay),
        items are stamped with the target as given, a failed target is a metadata-only item."""
        roles = _peer_roles(stream)
        self.calls.log.append((method, ",".join(targets), roles))
        if not set(roles) & RULES.get(method, ADMIN_ONLY):
            raise GRPCError(Status.PERMISSION_DENIED, "not authorized")
        reply_cls = ONE_TO_MANY.get(method)
        if reply_cls is None or not self.one_to_many:
            raise GRPCError(
                Status.INVALID_ARGUMENT, "one-2-many proxying is not supported for this method"
            )
        request = await stream.recv_message()

        async def one(target: str) -> tuple[str, Any]:
            capture = _Captured(request)
            try:
                node = self.node(target)
                if node.delay:
                    await asyncio.sleep(node.delay)
                await handler(capture, node, roles)  # type: ignore[arg-type]
            except GRPCError as err:
                return target, err
            return target, capture.sent

        reply = reply_cls()
        for done in asyncio.as_completed([one(t) for t in targets]):
            target, result = await done
            if target in self.nodes and self.nodes[target].missing_from_many:
                continue
            if isinstance(result, GRPCError):
                item = reply.messages.add()
                item.metadata.hostname = target
                item.metadata.error = result.message or ""
                item.metadata.status.CopyFrom(
                    status_pb2.Status(code=int(result.status.value), message=result.message or "")
                )
                continue
            for sent in result:
                for item in sent.messages:
                    item.metadata.hostname = target
                    reply.messages.append(item)
        await stream.send_message(reply)


class _Captured:
    """The stream a handler sees for one target of a one-to-many call."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.sent: list[Any] = []

    async def recv_message(self) -> Any:
        return self.request

    async def send_message(self, message: Any, **_: Any) -> None:
        self.sent.append(message)


def _peer_roles(stream: Stream) -> tuple[str, ...]:
    cert = stream.peer.cert() or {}
    return tuple(
        value for rdn in cert.get("subject", ()) for key, value in rdn if key == "organizationName"
    )


class _Machine(machine_grpc.MachineServiceBase):
    def __init__(self, server: TalosTestServer) -> None:
        self.s = server

    async def Version(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            await stream.recv_message()
            item = machine_pb2.Version(
                version=machine_pb2.VersionInfo(tag=node.version_tag, arch="amd64", os="linux"),
                platform=machine_pb2.PlatformInfo(name="metal", mode="metal"),
                features=machine_pb2.FeaturesInfo(rbac=True),
            )
            await stream.send_message(machine_pb2.VersionResponse(messages=[item]))

        await self.s.run(stream, "/machine.MachineService/Version", handle)

    async def Hostname(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            await stream.recv_message()
            item = machine_pb2.Hostname(hostname=node.hostname)
            await stream.send_message(machine_pb2.HostnameResponse(messages=[item]))

        await self.s.run(stream, "/machine.MachineService/Hostname", handle)

    async def ServiceList(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            await stream.recv_message()
            services = [
                machine_pb2.ServiceInfo(
                    id=sid, state="Running", health=machine_pb2.ServiceHealth(healthy=True)
                )
                for sid in ("apid", "etcd", "kubelet", "machined")
            ]
            services.append(
                machine_pb2.ServiceInfo(
                    id="trustd", state="Waiting", health=machine_pb2.ServiceHealth(unknown=True)
                )
            )
            item = machine_pb2.ServiceList(services=services)
            await stream.send_message(machine_pb2.ServiceListResponse(messages=[item]))

        await self.s.run(stream, "/machine.MachineService/ServiceList", handle)

    async def EtcdMemberList(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            await stream.recv_message()
            if node.machine_type == "worker":
                raise GRPCError(
                    Status.UNIMPLEMENTED, "etcd members are only available on control plane nodes"
                )
            members = [
                machine_pb2.EtcdMember(
                    id=1000 + i,
                    hostname=n.hostname,
                    peer_urls=[f"https://{n.name}:2380"],
                    client_urls=[f"https://{n.name}:2379"],
                )
                for i, n in enumerate(self.s.nodes.values())
                if n.machine_type == "controlplane"
            ]
            item = machine_pb2.EtcdMembers(members=members)
            await stream.send_message(machine_pb2.EtcdMemberListResponse(messages=[item]))

        await self.s.run(stream, "/machine.MachineService/EtcdMemberList", handle)

    async def EtcdStatus(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            await stream.recv_message()
            status = machine_pb2.EtcdMemberStatus(
                member_id=1000, leader=1000, protocol_version="3.5.0", db_size=4096, raft_term=2
            )
            item = machine_pb2.EtcdStatus(member_status=status)
            await stream.send_message(machine_pb2.EtcdStatusResponse(messages=[item]))

        await self.s.run(stream, "/machine.MachineService/EtcdStatus", handle)

    async def ApplyConfiguration(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            request = await stream.recv_message()
            assert request is not None
            node.applied.append(request)
            mode = request.mode
            if mode == machine_pb2.ApplyConfigurationRequest.AUTO:
                mode = machine_pb2.ApplyConfigurationRequest.NO_REBOOT
            if request.dry_run:
                details = (
                    "Dry run summary:\n"
                    "Applied configuration without a reboot (skipped in dry-run).\n"
                )
            else:
                details = "Applied configuration without a reboot"
                node.config = request.data
                node.refresh()
            item = machine_pb2.ApplyConfiguration(mode=mode, mode_details=details)
            await stream.send_message(machine_pb2.ApplyConfigurationResponse(messages=[item]))

        await self.s.run(stream, "/machine.MachineService/ApplyConfiguration", handle)

    async def Bootstrap(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            await stream.recv_message()
            await stream.send_message(
                machine_pb2.BootstrapResponse(messages=[machine_pb2.Bootstrap()])
            )

        await self.s.run(stream, "/machine.MachineService/Bootstrap", handle)

    async def Kubeconfig(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            await stream.recv_message()
            await stream.send_message(common_pb2.Data(bytes=b"kubeconfig"))

        await self.s.run(stream, "/machine.MachineService/Kubeconfig", handle)


class _State(state_grpc.StateBase):
    def __init__(self, server: TalosTestServer) -> None:
        self.s = server

    async def Get(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            request = await stream.recv_message()
            assert request is not None
            if request.type in SENSITIVE_TYPES and ADMIN not in roles:
                raise GRPCError(Status.PERMISSION_DENIED, "not authorized")
            res = node.resources.get((request.namespace, request.type, request.id))
            if res is None:
                raise GRPCError(
                    Status.NOT_FOUND,
                    f"resource {request.type}({request.namespace}/{request.id}@undefined) "
                    "doesn't exist",
                )
            await stream.send_message(state_pb2.GetResponse(resource=res.to_proto()))

        await self.s.run(stream, "/cosi.resource.State/Get", handle)

    async def List(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            request = await stream.recv_message()
            assert request is not None
            if request.type in SENSITIVE_TYPES and ADMIN not in roles:
                raise GRPCError(Status.PERMISSION_DENIED, "not authorized")
            for (ns, rtype, _), res in sorted(node.resources.items()):
                if ns == request.namespace and rtype == request.type:
                    await stream.send_message(state_pb2.ListResponse(resource=res.to_proto()))

        await self.s.run(stream, "/cosi.resource.State/List", handle)

    async def Watch(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            await stream.recv_message()
            await stream.send_message(state_pb2.WatchResponse())

        await self.s.run(stream, "/cosi.resource.State/Watch", handle)

    async def _read_only(self, stream: Stream, method: str) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            await stream.recv_message()
            raise GRPCError(Status.PERMISSION_DENIED, "write access is not allowed")

        await self.s.run(stream, method, handle)

    async def Create(self, stream: Stream) -> None:
        await self._read_only(stream, "/cosi.resource.State/Create")

    async def Update(self, stream: Stream) -> None:
        await self._read_only(stream, "/cosi.resource.State/Update")

    async def Destroy(self, stream: Stream) -> None:
        await self._read_only(stream, "/cosi.resource.State/Destroy")

    async def Teardown(self, stream: Stream) -> None:
        await self._read_only(stream, "/cosi.resource.State/Teardown")

    async def TeardownAndDestroy(self, stream: Stream) -> None:
        await self._read_only(stream, "/cosi.resource.State/TeardownAndDestroy")


class _Cluster(cluster_grpc.ClusterServiceBase):
    def __init__(self, server: TalosTestServer) -> None:
        self.s = server

    async def HealthCheck(self, stream: Stream) -> None:
        async def handle(stream: Stream, node: FakeNode, roles: tuple[str, ...]) -> None:
            request = await stream.recv_message()
            assert request is not None
            for line in node.health_messages:
                await stream.send_message(cluster_pb2.HealthCheckProgress(message=line))
            if node.health_error:
                await stream.send_message(
                    cluster_pb2.HealthCheckProgress(
                        metadata=common_pb2.Metadata(error=node.health_error)
                    )
                )

        await self.s.run(stream, "/cluster.ClusterService/HealthCheck", handle)


__all__ = ["FakeNode", "FakeResource", "TalosTestServer"]
