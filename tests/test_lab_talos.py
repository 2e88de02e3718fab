"""The lab's Talos side, read through the network only: apid over mTLS with TalosClient.

Everything here reads the shared session lab (1 control plane, 2 workers, Talos v1.11.5 on
configs first generated for v1.9.5) and changes nothing.
"""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from omniport.planner.machineconfig import pki
from omniport.providers.errors import (
    NotFound,
    PermissionDenied,
    TLSFailure,
    Unreachable,
    Unsupported,
)
from omniport.providers.talos import TalosClient
from omniport.providers.talosconfig import load_talosconfig
from omniport.providers.tls import client_context
from omniport.providers.wire.machine import machine_grpc
from omniport.providers.wire.resource.config import config_pb2
from omniport.providers.wire.v1alpha1 import state_grpc, state_pb2


def read(aio, lab, fn, role: str = "admin"):
    """Run ``fn(client)`` with a fresh client of ``role`` and return its result."""

    async def go():
        async with lab.client(role) as client:
            return await fn(client)

    return aio(go())


def raw_channel(lab, role: str = "admin") -> tuple[Channel, list]:
    ctx = load_talosconfig(lab.dir / ("talosconfig" if role == "admin" else f"talosconfig-{role}"))
    endpoint = ctx.endpoints[0]
    return Channel(endpoint.host, endpoint.port, ssl=client_context(ctx.ca, ctx.crt, ctx.key)), []


# ---- machine service ----


def test_version_of_every_node(aio, lab):
    async def fn(c):
        return [await c.version(n) for n in lab.nodes]

    versions = read(aio, lab, fn)
    assert {v.tag for v in versions} == {"v1.11.5"}
    assert all(v.platform_name == "metal" and v.rbac for v in versions)


def test_hostname_matches_hostname_status_and_lab_json(aio, lab):
    async def fn(c):
        return [(await c.kernel_hostname(n), await c.hostname(n)) for n in lab.nodes]

    pairs = read(aio, lab, fn)
    assert [a for a, _ in pairs] == [b for _, b in pairs]
    assert [a for a, _ in pairs] == [n["hostname"] for n in lab.info["nodes"]]


def test_service_list_per_role(aio, lab):
    async def fn(c):
        return await c.service_list(lab.controlplanes[0]), await c.service_list(lab.workers[0])

    cp, worker = read(aio, lab, fn)
    assert {"etcd", "trustd", "apid", "kubelet"} <= {s.id for s in cp}
    assert "etcd" not in {s.id for s in worker}
    assert all(s.state == "Running" and s.healthy for s in cp + worker)


def test_etcd_members_and_status_on_control_plane(aio, lab):
    async def fn(c):
        return await c.etcd_members(lab.controlplanes[0]), await c.etcd_status(lab.controlplanes[0])

    members, status = read(aio, lab, fn)
    assert [m.hostname for m in members] == [lab.info["nodes"][0]["hostname"]]
    assert members[0].peer_urls == (f"https://{lab.controlplanes[0]}:2380",)
    assert status.member_id == members[0].id


def test_etcd_on_worker_is_unimplemented_with_talos_text(aio, lab):
    async def fn(c):
        await c.etcd_members(lab.workers[0])

    with pytest.raises(Unsupported, match="member list is only available on control plane nodes"):
        read(aio, lab, fn)


def test_health_check_passes_with_the_real_topology(aio, lab):
    async def fn(c):
        return [
            line
            async for line in c.health_check(
                lab.controlplanes[0],
                control_plane_nodes=lab.controlplanes,
                worker_nodes=lab.workers,
                wait_timeout=5,
            )
        ]

    lines = read(aio, lab, fn)
    assert lines[0].startswith("discovered nodes: [")
    assert "waiting for etcd to be healthy: OK" in lines
    assert lines[-1] == "waiting for all k8s nodes to report schedulable: OK"


def test_health_check_fails_when_a_worker_is_called_a_control_plane(aio, lab):
    from omniport.providers.errors import ProviderError

    async def fn(c):
        return [
            line
            async for line in c.health_check(
                lab.controlplanes[0],
                control_plane_nodes=lab.nodes,
                worker_nodes=[],
                wait_timeout=0.3,
            )
        ]

    with pytest.raises(ProviderError, match="deadline exceeded"):
        read(aio, lab, fn)


# ---- COSI reads (the importer's Phase A) ----


def test_machine_config_is_exact_bytes_with_raw_yaml_spec_before_1_12(aio, lab):
    node = lab.workers[0]

    async def fn(c):
        return await c.machine_config(node), await c.get(node, *MC)

    data, res = read(aio, lab, fn)
    status = {n["address"]: n for n in lab.status()["nodes"]}
    import hashlib

    assert hashlib.sha256(data).hexdigest() == status[node]["config_sha256"]
    assert config_pb2.MachineConfigSpec.FromString(res.proto_spec).yaml_marshalled == data
    assert res.yaml_spec == data.decode()  # 1.11: the YAML spec is the raw config
    assert res.metadata.annotations == {}
    assert res.metadata.phase == "running" and int(res.metadata.version) >= 1


MC = ("config", "MachineConfigs.config.talos.dev", "v1alpha1")


def test_persistent_machine_config_equals_active(aio, lab):
    async def fn(c):
        return (
            await c.get(lab.workers[0], "config", MC[1], "persistent"),
            await c.machine_config(lab.workers[0]),
        )

    persistent, active = read(aio, lab, fn)
    assert config_pb2.MachineConfigSpec.FromString(persistent.proto_spec).yaml_marshalled == active


def test_machine_type_per_role(aio, lab):
    async def fn(c):
        return [await c.machine_type(n) for n in lab.nodes]

    assert read(aio, lab, fn) == ["controlplane", "worker", "worker"]


def test_phase_a_reads_for_every_node(aio, lab):
    """Every resource `omnictl cluster import` reads, on every node."""

    async def fn(c):
        out = []
        for n in lab.nodes:
            out.append(
                (
                    await c.talos_version(n),
                    await c.kubelet_image(n),
                    await c.system_uuid(n),
                    await c.schematic(n),
                    await c.cluster_info(n),
                )
            )
        return out

    reads = read(aio, lab, fn)
    by_address = {n["address"]: n for n in lab.info["nodes"]}
    for address, (version, kubelet, uuid, schematic, info) in zip(lab.nodes, reads, strict=True):
        assert version == "v1.11.5"
        assert kubelet == "ghcr.io/siderolabs/kubelet:v1.34.1"
        assert uuid == by_address[address]["machine_id"]
        assert schematic is not None and schematic.id == lab.info["schematic_id"]
        assert schematic.author.startswith("Image Factory (")
        assert "officialExtensions" in schematic.extra_info
        assert info.cluster_name == "lab" and info.cluster_id


def test_control_plane_images_and_absence_on_workers(aio, lab):
    async def fn(c):
        images = await c.control_plane_images(lab.controlplanes[0])
        try:
            await c.get(lab.workers[0], *APISERVER)
        except NotFound as err:
            return images, err
        return images, None

    images, err = read(aio, lab, fn)
    assert images.apiserver == "registry.k8s.io/kube-apiserver:v1.34.1"
    assert images.scheduler.endswith(":v1.34.1") and images.controller_manager.endswith(":v1.34.1")
    assert err is not None and "doesn't exist" in err.message


APISERVER = ("controlplane", "APIServerConfigs.kubernetes.talos.dev", "kube-apiserver")


def test_discovery_members_list_every_node(aio, lab):
    async def fn(c):
        return await c.members(lab.workers[1])

    members = read(aio, lab, fn)
    assert sorted(a for m in members for a in m.addresses) == sorted(lab.nodes)
    cps = [m for m in members if m.machine_type == "controlplane"]
    assert len(cps) == 1 and cps[0].control_plane_port == 6443
    assert all(m.operating_system == "Talos (v1.11.5)" for m in members)


def test_extension_statuses_carry_the_schematic(aio, lab):
    async def fn(c):
        return await c.extension_statuses(lab.nodes[0])

    exts = read(aio, lab, fn)
    schematic = [e for e in exts if e.name == "schematic"]
    assert len(schematic) == 1 and len(schematic[0].version) == 64
    assert schematic[0].talos_compatibility == ">= 1.0.0"
    assert any(e.name == "iscsi-tools" for e in exts)


@pytest.mark.parametrize(
    ("namespace", "rtype", "rid", "key"),
    [
        ("runtime", "Versions.runtime.talos.dev", "version", "version"),
        ("runtime", "MachineStatuses.runtime.talos.dev", "machine", "stage"),
        ("runtime", "SecurityStates.talos.dev", "securitystate", "secureBoot"),
        ("cluster", "Identities.cluster.talos.dev", "local", "nodeId"),
        ("cluster", "Infos.cluster.talos.dev", "current", "clusterName"),
        ("k8s", "Nodenames.kubernetes.talos.dev", "nodename", "nodename"),
        ("network", "HostnameStatuses.net.talos.dev", "hostname", "hostname"),
        ("hardware", "SystemInformations.hardware.talos.dev", "systeminformation", "uuid"),
        ("k8s", "KubeletConfigs.kubernetes.talos.dev", "kubelet", "image"),
        ("controlplane", "APIServerConfigs.kubernetes.talos.dev", "kube-apiserver", "image"),
        (
            "controlplane",
            "ControllerManagerConfigs.kubernetes.talos.dev",
            "kube-controller-manager",
            "image",
        ),
        ("controlplane", "SchedulerConfigs.kubernetes.talos.dev", "kube-scheduler", "image"),
    ],
    ids=lambda v: v if "." not in str(v) else str(v).split(".")[0],
)
def test_every_simulated_resource_reads(aio, lab, namespace, rtype, rid, key):
    async def fn(c):
        return await c.get(lab.controlplanes[0], namespace, rtype, rid), await c.list(
            lab.controlplanes[0], namespace, rtype
        )

    res, listed = read(aio, lab, fn)
    assert res.metadata.type == rtype and res.metadata.id == rid
    assert key in res.spec
    assert [r.metadata.id for r in listed] == [rid]


def test_resource_definitions_and_namespaces_in_meta(aio, lab):
    async def fn(c):
        node = lab.nodes[0]
        return (
            await c.list(node, "meta", "ResourceDefinitions.meta.cosi.dev"),
            await c.list(node, "meta", "Namespaces.meta.cosi.dev"),
        )

    rds, namespaces = read(aio, lab, fn)
    by_id = {r.metadata.id: r.spec for r in rds}
    mc = by_id["machineconfigs.config.talos.dev"]
    assert mc["sensitivity"] == "sensitive" and mc["defaultNamespace"] == "config"
    assert {"machineconfig", "mc", "mcs", "machineconfigs.config"} <= set(mc["allAliases"])
    assert "extensions" in by_id["extensionstatuses.runtime.talos.dev"]["aliases"]
    assert "imagefactoryschematics.runtime.talos.dev" not in by_id  # 1.14+ only
    assert {"config", "runtime", "cluster", "k8s", "network", "hardware", "meta"} <= {
        r.metadata.id for r in namespaces
    }


def test_get_missing_resource_is_not_found_with_cosi_text(aio, lab):
    async def fn(c):
        await c.get(lab.nodes[0], "config", MC[1], "nope")

    with pytest.raises(NotFound, match=r"MachineConfigs.config.talos.dev\(config/nope@undefined\)"):
        read(aio, lab, fn)


def test_unknown_type_and_namespace_are_refused_as_talos_does(aio, lab):
    async def unknown_type(c):
        await c.get(lab.nodes[0], "config", "Frobs.talos.dev", "x")

    async def unknown_namespace(c):
        await c.get(lab.nodes[0], "nowhere", "MachineTypes.config.talos.dev", "machine-type")

    with pytest.raises(PermissionDenied, match='resource type "Frobs.talos.dev" is not supported'):
        read(aio, lab, unknown_type)
    with pytest.raises(PermissionDenied, match='namespace "nowhere" is not supported'):
        read(aio, lab, unknown_namespace)


# ---- RBAC and mTLS ----


@pytest.mark.parametrize("role", ["reader", "operator"])
def test_non_admin_cannot_read_machine_config(aio, lab, role):
    async def fn(c):
        await c.machine_config(lab.nodes[0])

    with pytest.raises(PermissionDenied, match="not authorized"):
        read(aio, lab, fn, role)


@pytest.mark.parametrize("role", ["reader", "operator"])
def test_non_admin_reads_non_sensitive_resources_and_version(aio, lab, role):
    async def fn(c):
        return await c.hostname(lab.nodes[1]), (await c.version(lab.nodes[1])).tag

    assert read(aio, lab, fn, role)[1] == "v1.11.5"


def test_reader_cannot_apply_configuration(aio, lab):
    async def fn(c):
        await c.apply_configuration(lab.nodes[1], b"version: v1alpha1\n")

    with pytest.raises(PermissionDenied, match="not authorized"):
        read(aio, lab, fn, "reader")


@pytest.mark.parametrize(
    ("role", "text"),
    [("admin", "write access is not allowed"), ("reader", "not authorized")],
)
def test_cosi_writes_are_denied(aio, lab, role, text):
    async def go():
        channel, _ = raw_channel(lab, role)
        try:
            stub = state_grpc.StateStub(channel)
            request = state_pb2.DestroyRequest(
                namespace="config", type="MachineTypes.config.talos.dev", id="machine-type"
            )
            await stub.Destroy(request, metadata=[("node", lab.nodes[0])])
        finally:
            channel.close()

    with pytest.raises(GRPCError) as err:
        aio(go())
    assert err.value.status is Status.PERMISSION_DENIED
    assert err.value.message == text


def test_client_certificate_from_another_ca_is_rejected(aio, lab, tmp_path):
    now = dt.datetime.now(dt.UTC)
    stranger = pki.talos_os_ca(now)
    cert = pki.admin_client_cert(stranger, now)
    ctx = load_talosconfig(lab.talosconfig)

    async def go():
        client = TalosClient(client_context(ctx.ca, cert.crt, cert.key), ctx.endpoints)
        async with client:
            await client.version(lab.nodes[0])

    with pytest.raises((TLSFailure, Unreachable)):
        aio(go())


# ---- routing ----


def test_unknown_node_is_unavailable(aio, lab):
    async def fn(c):
        await c.version("127.9.9.9")

    with pytest.raises(Unreachable, match="127.9.9.9"):
        read(aio, lab, fn)


def test_no_node_metadata_answers_from_the_endpoint_node(aio, lab):
    async def fn(c):
        return await c.kernel_hostname(None)

    assert read(aio, lab, fn) == lab.info["nodes"][0]["hostname"]


def test_node_metadata_must_be_single_valued(aio, lab):
    async def go():
        channel, _ = raw_channel(lab)
        try:
            stub = machine_grpc.MachineServiceStub(channel)
            from google.protobuf import empty_pb2

            await stub.Version(
                empty_pb2.Empty(), metadata=[("node", lab.nodes[0]), ("node", lab.nodes[1])]
            )
        finally:
            channel.close()

    with pytest.raises(GRPCError, match="node metadata must be single-valued"):
        aio(go())


def test_nodes_metadata_fans_out_with_per_target_metadata(aio, lab):
    from google.protobuf import empty_pb2

    targets = [*lab.nodes, "127.9.9.9"]

    async def go():
        channel, _ = raw_channel(lab)
        try:
            stub = machine_grpc.MachineServiceStub(channel)
            return await stub.Hostname(empty_pb2.Empty(), metadata=[("nodes", t) for t in targets])
        finally:
            channel.close()

    reply = aio(go())
    by_target = {m.metadata.hostname: m for m in reply.messages}
    assert set(by_target) == set(targets)
    assert by_target["127.9.9.9"].metadata.error
    assert by_target["127.9.9.9"].metadata.status.code == Status.UNAVAILABLE.value
    assert by_target[lab.nodes[0]].hostname == lab.info["nodes"][0]["hostname"]


def test_nodes_metadata_is_refused_for_cosi(aio, lab):
    async def go():
        channel, _ = raw_channel(lab)
        try:
            stub = state_grpc.StateStub(channel)
            request = state_pb2.GetRequest(
                namespace="config", type="MachineTypes.config.talos.dev", id="machine-type"
            )
            await stub.Get(request, metadata=[("nodes", lab.nodes[0])])
        finally:
            channel.close()

    with pytest.raises(GRPCError, match="one-2-many proxying is not supported for COSI methods"):
        aio(go())


# ---- Watch ----


def test_watch_bootstraps_then_reports_bootstrapped(aio, lab):
    async def go():
        channel, _ = raw_channel(lab)
        try:
            stub = state_grpc.StateStub(channel)
            request = state_pb2.WatchRequest(
                namespace="network",
                type="HostnameStatuses.net.talos.dev",
                options=state_pb2.WatchOptions(bootstrap_contents=True),
                api_version=1,
            )
            async with stub.Watch.open(metadata=[("node", lab.nodes[1])]) as stream:
                await stream.send_message(request, end=True)
                first = await stream.recv_message()
                second = await stream.recv_message()
                await stream.cancel()
                return first, second
        finally:
            channel.close()

    first, second = aio(go())
    assert len(first.event) == 0  # the "watch is ready" message
    kinds = [e.event_type for e in second.event]
    assert kinds == [state_pb2.CREATED, state_pb2.BOOTSTRAPPED]
    spec = yaml.safe_load(second.event[0].resource.spec.yaml_spec)
    assert spec["hostname"] == lab.info["nodes"][1]["hostname"]
