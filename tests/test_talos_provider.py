"""TalosClient against a real grpclib apid over Ed25519 mutual TLS on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from pathlib import Path

import pytest
import yaml
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from omniport.planner.machineconfig import pki
from omniport.providers.errors import (
    NotFound,
    PermissionDenied,
    ProviderError,
    Timeout,
    TLSFailure,
    Unreachable,
    Unsupported,
)
from omniport.providers.talos import ApplyMode, TalosClient, map_nodes
from omniport.providers.talosconfig import Endpoint
from omniport.providers.timeouts import Timeouts
from omniport.providers.tls import client_context
from omniport.providers.wire.machine import machine_grpc
from tests.support.talos_server import FakeNode, FakeResource, TalosTestServer

NOW = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
SCHEMATIC = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"


@pytest.fixture(scope="module")
def ca() -> pki.CertAndKey:
    return pki.talos_os_ca(NOW)


@pytest.fixture(scope="module")
def admin(ca) -> pki.CertAndKey:
    return pki.admin_client_cert(ca, NOW)


def cluster_nodes() -> list[FakeNode]:
    return [
        FakeNode.typical("10.5.0.2", "cp-1", uuid="u-cp-1", schematic=SCHEMATIC),
        FakeNode.typical("10.5.0.3", "worker-1", machine_type="worker", uuid="u-w-1"),
    ]


def make_client(ca_pem: bytes, cert: pki.CertAndKey, port: int, **kw) -> TalosClient:
    ctx = client_context(ca_pem, cert.crt, cert.key)
    return TalosClient(ctx, [Endpoint("127.0.0.1", port)], **kw)


def run(coro):
    return asyncio.run(coro)


def assert_user_error(err: ProviderError, node: str, method_part: str) -> None:
    text = str(err)
    assert node in text and method_part in text
    assert "\n" not in text and "Traceback" not in text
    # no chained low-level exception to print: raised directly or `from None`
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    assert err.target == node


def test_ed25519_mtls_and_reads(ca, admin) -> None:
    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            async with make_client(ca.crt, admin, server.port) as client:
                version = await client.version("10.5.0.2")
                assert version.tag == "v1.9.5" and version.rbac is True
                assert await client.machine_type("10.5.0.2") == "controlplane"
                assert await client.machine_type("10.5.0.3") == "worker"
                config = await client.machine_config("10.5.0.3")
                assert config == server.nodes["10.5.0.3"].config
                assert await client.hostname("10.5.0.3") == "worker-1"
                assert await client.kernel_hostname("10.5.0.2") == "cp-1"
                assert await client.system_uuid("10.5.0.2") == "u-cp-1"
                assert await client.talos_version("10.5.0.2") == "v1.9.5"
                assert (await client.cluster_info("10.5.0.2")).cluster_name == "demo"
                images = await client.control_plane_images("10.5.0.2")
                assert images.apiserver == "registry.k8s.io/kube-apiserver:v1.32.3"
                assert images.controller_manager.endswith("kube-controller-manager:v1.32.3")
                assert (await client.kubelet_image("10.5.0.3")).startswith("ghcr.io/siderolabs/")
                schematic = await client.schematic("10.5.0.2")
                assert schematic is not None and schematic.id == SCHEMATIC
                assert "extraKernelArgs" in schematic.extra_info
                assert await client.schematic("10.5.0.3") is None
                exts = await client.extension_statuses("10.5.0.3")
                assert [(e.name, e.talos_compatibility) for e in exts] == [
                    ("qemu-guest-agent", ">= 1.0")
                ]
                services = {s.id: s for s in await client.service_list("10.5.0.2")}
                assert services["etcd"].healthy is True and services["trustd"].healthy is None
                members = await client.etcd_members("10.5.0.2")
                assert [m.hostname for m in members] == ["cp-1"]
                assert (await client.etcd_status("10.5.0.2")).leader == 1000
            # the server saw our admin role from the Ed25519 client certificate's O=
            assert {roles for _, _, roles in server.calls.log} == {("os:admin",)}
            assert {node for _, node, _ in server.calls.log} == {"10.5.0.2", "10.5.0.3"}

    run(go())


def test_members_and_missing_resource(ca, admin) -> None:
    async def go() -> None:
        node = FakeNode.typical("10.5.0.2", "cp-1")
        node.put(
            "cluster",
            "Members.cluster.talos.dev",
            "cp-1",
            {
                "nodeId": "abc",
                "addresses": ["10.5.0.2"],
                "hostname": "cp-1",
                "machineType": "controlplane",
                "operatingSystem": "Talos (v1.9.5)",
                "controlPlane": {"port": 6443},
            },
        )
        del node.resources[("runtime", "Versions.runtime.talos.dev", "version")]
        async with TalosTestServer(ca, [node]) as server:
            async with make_client(ca.crt, admin, server.port) as client:
                [member] = await client.members("10.5.0.2")
                assert member.control_plane_port == 6443 and member.addresses == ("10.5.0.2",)
                with pytest.raises(NotFound) as err:
                    await client.talos_version("10.5.0.2")
                assert_user_error(err.value, "10.5.0.2", "Versions.runtime.talos.dev")
                assert "doesn't exist" in str(err.value)

    run(go())


def test_apply_configuration_and_health_check(ca, admin) -> None:
    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            async with make_client(ca.crt, admin, server.port) as client:
                new = b"version: v1alpha1\nmachine:\n    type: worker\n# changed\n"
                dry = await client.apply_configuration(
                    "10.5.0.3", new, ApplyMode.AUTO, dry_run=True
                )
                assert dry.mode is ApplyMode.NO_REBOOT and dry.mode_details.startswith("Dry run")
                assert await client.machine_config("10.5.0.3") != new
                result = await client.apply_configuration(
                    "10.5.0.3", new, ApplyMode.TRY, try_mode_timeout=90.5
                )
                assert result.node == "10.5.0.3" and result.mode is ApplyMode.TRY
                assert await client.machine_config("10.5.0.3") == new
                sent = server.nodes["10.5.0.3"].applied[-1]
                assert sent.data == new and sent.mode == 4
                assert sent.try_mode_timeout.seconds == 90 and sent.try_mode_timeout.nanos == 5e8
                lines = [
                    line
                    async for line in client.health_check(
                        "10.5.0.2", control_plane_nodes=["10.5.0.2"], worker_nodes=["10.5.0.3"]
                    )
                ]
                assert lines == ["waiting for etcd", "all good"]
                server.nodes["10.5.0.2"].health_error = "etcd is unhealthy"
                with pytest.raises(ProviderError, match="etcd is unhealthy") as err:
                    async for _ in client.health_check("10.5.0.2", control_plane_nodes=[]):
                        pass
                assert_user_error(err.value, "10.5.0.2", "HealthCheck")

    run(go())


def test_fan_out_200_nodes_bounded(ca, admin) -> None:
    nodes = [FakeNode.typical(f"10.6.{i // 250}.{i % 250}", f"n{i}") for i in range(200)]
    for node in nodes:
        node.delay = 0.01
    parallelism = 8

    async def go() -> None:
        async with TalosTestServer(ca, nodes) as server:
            async with make_client(ca.crt, admin, server.port) as client:
                names = [n.name for n in nodes] + ["10.9.9.9"]
                results = await client.map_nodes(names, client.hostname, parallelism)
            assert list(results) == names
            assert [results[n.name] for n in nodes] == [n.hostname for n in nodes]
            assert isinstance(results["10.9.9.9"], Unreachable)
            assert 1 < server.calls.max_in_flight <= parallelism

    run(go())


def test_map_nodes_propagates_bugs() -> None:
    async def boom(node: str) -> str:
        raise KeyError(node)

    with pytest.raises(ExceptionGroup):
        run(map_nodes(["a", "b"], boom, 2))
    with pytest.raises(ValueError):
        run(map_nodes(["a"], boom, 0))


def test_timeout_names_node_and_method(ca, admin) -> None:
    async def go() -> None:
        slow = FakeNode.typical("10.5.0.9", "slow")
        slow.delay = 2.0
        async with TalosTestServer(ca, [slow, *cluster_nodes()]) as server:
            timeouts = Timeouts(connect=5.0, call=0.3)
            async with make_client(ca.crt, admin, server.port, timeouts=timeouts) as client:
                with pytest.raises(Timeout) as err:
                    await client.version("10.5.0.9")
                assert_user_error(err.value, "10.5.0.9", "/machine.MachineService/Version")
                assert "0.3s" in str(err.value)
                # the channel is still good for other nodes
                assert (await client.version("10.5.0.2")).tag == "v1.9.5"

    run(go())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint(ca, admin) -> None:
    async def go() -> None:
        port = _free_port()
        async with make_client(ca.crt, admin, port) as client:
            with pytest.raises(Unreachable) as err:
                await client.machine_config("10.5.0.2")
            assert_user_error(err.value, "10.5.0.2", "MachineConfigs.config.talos.dev")
            assert f"127.0.0.1:{port}" in str(err.value)

    run(go())


def test_second_endpoint_used_when_first_is_down(ca, admin) -> None:
    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            ctx = client_context(ca.crt, admin.crt, admin.key)
            endpoints = [Endpoint("127.0.0.1", _free_port()), Endpoint("127.0.0.1", server.port)]
            async with TalosClient(ctx, endpoints) as client:
                assert await client.hostname("10.5.0.2") == "cp-1"
                assert client.endpoint.port == server.port

    run(go())


def test_tls_failure_wrong_ca(ca, admin) -> None:
    other = pki.talos_os_ca(NOW)

    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            async with make_client(other.crt, admin, server.port) as client:
                with pytest.raises(TLSFailure) as err:
                    await client.version("10.5.0.2")
                assert_user_error(err.value, "10.5.0.2", "Version")
                assert "certificate" in str(err.value)
            # a client certificate from a foreign CA is refused by the server
            foreign = pki.admin_client_cert(other, NOW)
            async with make_client(ca.crt, foreign, server.port) as client:
                with pytest.raises(TLSFailure, match="client certificate") as err:
                    await client.version("10.5.0.2")
                assert_user_error(err.value, "10.5.0.2", "Version")
            assert server.calls.log == []

    run(go())


def test_reader_role_is_denied_secrets_and_writes(ca) -> None:
    reader = pki.admin_client_cert(ca, NOW, roles=["os:reader"])

    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            async with make_client(ca.crt, reader, server.port) as client:
                assert (await client.version("10.5.0.2")).tag == "v1.9.5"
                assert await client.hostname("10.5.0.2") == "cp-1"
                with pytest.raises(PermissionDenied) as err:
                    await client.machine_config("10.5.0.2")
                assert_user_error(err.value, "10.5.0.2", "MachineConfigs.config.talos.dev")
                assert "os:admin" in str(err.value)
                with pytest.raises(PermissionDenied) as err:
                    await client.apply_configuration("10.5.0.3", b"version: v1alpha1\n")
                assert_user_error(err.value, "10.5.0.3", "/machine.MachineService/Apply")
            assert server.nodes["10.5.0.3"].applied == []

    run(go())


def test_node_not_found_and_worker_etcd(ca, admin) -> None:
    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            async with make_client(ca.crt, admin, server.port) as client:
                with pytest.raises(Unreachable) as err:
                    await client.version("10.99.0.1")
                assert_user_error(err.value, "10.99.0.1", "Version")
                assert "not reachable through endpoint" in str(err.value)
                with pytest.raises(Unsupported) as err:
                    await client.etcd_members("10.5.0.3")
                assert_user_error(err.value, "10.5.0.3", "EtcdMemberList")

    run(go())


def test_no_node_metadata_goes_to_local_node(ca, admin) -> None:
    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes(), local="10.5.0.2") as server:
            async with make_client(ca.crt, admin, server.port) as client:
                assert await client.kernel_hostname(None) == "cp-1"
            assert server.calls.log[-1][1] is None

    run(go())


def test_server_rejects_multi_valued_node(ca, admin) -> None:
    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            ctx = client_context(ca.crt, admin.crt, admin.key)
            channel = Channel("127.0.0.1", server.port, ssl=ctx)
            try:
                stub = machine_grpc.MachineServiceStub(channel)
                from google.protobuf import empty_pb2

                with pytest.raises(GRPCError) as err:
                    await stub.Hostname(
                        empty_pb2.Empty(), metadata=[("node", "10.5.0.2"), ("node", "10.5.0.3")]
                    )
                assert err.value.status is Status.INVALID_ARGUMENT
                assert err.value.message == "node metadata must be single-valued"
            finally:
                channel.close()

    run(go())


def test_from_talosconfig_end_to_end(tmp_path: Path, ca, admin) -> None:
    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            path = tmp_path / "talosconfig"
            path.write_text(
                yaml.safe_dump(
                    {
                        "context": "demo",
                        "contexts": {
                            "demo": {
                                "endpoints": ["192.0.2.1"],  # overridden below
                                "ca": ca.crt_b64,
                                "crt": admin.crt_b64,
                                "key": admin.key_b64,
                            }
                        },
                    }
                )
            )
            client = TalosClient.from_talosconfig(
                env={"TALOSCONFIG": str(path)}, endpoints=[f"127.0.0.1:{server.port}"]
            )
            async with client:
                assert await client.hostname("10.5.0.3") == "worker-1"

    run(go())


def test_machine_config_from_yaml_spec_when_no_proto_spec(ca, admin) -> None:
    """Talos <= 1.11 puts the config itself in yaml_spec; 1.12+ a block string + annotation."""
    config = "version: v1alpha1\nmachine:\n    type: worker\n---\napiVersion: v1alpha1\n"
    key = ("config", "MachineConfigs.config.talos.dev", "v1alpha1")
    old, new = FakeNode.typical("10.7.0.1", "old"), FakeNode.typical("10.7.0.2", "new")
    old.resources[key] = FakeResource(*key, yaml_spec=config)
    new.resources[key] = FakeResource(
        *key,
        yaml_spec=yaml.safe_dump(config, default_style="|"),
        annotations={"talos.dev/yaml-spec": "1"},
    )

    async def go() -> None:
        async with TalosTestServer(ca, [old, new]) as server:
            async with make_client(ca.crt, admin, server.port) as client:
                assert await client.machine_config("10.7.0.1") == config.encode()
                assert await client.machine_config("10.7.0.2") == config.encode()

    run(go())


# ---- one-to-many machine calls (`nodes` metadata) ----


def test_many_calls_answer_per_node_with_the_one_to_one_errors(ca, admin) -> None:
    """One call for three nodes: every node gets what its own call would give, errors
    included (same class, message, target and code), in the order asked."""

    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            async with make_client(ca.crt, admin, server.port) as client:
                nodes = ["10.5.0.3", "10.99.0.1", "10.5.0.2", "10.5.0.3"]
                versions = await client.version_many(nodes)
                services = await client.service_list_many(nodes)
                members = await client.etcd_members_many(nodes)
                calls = len(server.calls.log)
                alone = {
                    n: (
                        await settle(client.version(n)),
                        await settle(client.service_list(n)),
                        await settle(client.etcd_members(n)),
                    )
                    for n in dict.fromkeys(nodes)
                }
            assert calls == 3
            assert server.calls.log[0][1] == "10.5.0.3,10.99.0.1,10.5.0.2"
            for many in (versions, services, members):
                assert list(many) == ["10.5.0.3", "10.99.0.1", "10.5.0.2"]
            for node, (version, service, member) in alone.items():
                for got, want in ((versions, version), (services, service), (members, member)):
                    if isinstance(want, ProviderError):
                        assert type(got[node]) is type(want)
                        assert (str(got[node]), got[node].target, got[node].code) == (
                            str(want),
                            want.target,
                            want.code,
                        )
                    else:
                        assert got[node] == want
            assert isinstance(versions["10.99.0.1"], Unreachable)
            assert versions["10.99.0.1"].code == 14
            assert isinstance(members["10.5.0.3"], Unsupported)
            assert [m.hostname for m in members["10.5.0.2"]] == ["cp-1"]

    run(go())


async def settle(aw):
    try:
        return await aw
    except ProviderError as exc:
        return exc


def test_many_call_failing_as_a_whole_fails_every_node(ca) -> None:
    """PermissionDenied for the call (a role that may not call Version) and an endpoint that is
    down are each node's error, naming that node."""
    backup = pki.admin_client_cert(ca, NOW, roles=["os:etcd:backup"])

    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            async with make_client(ca.crt, backup, server.port) as client:
                denied = await client.version_many(["10.5.0.2", "10.5.0.3"])
                members = await client.etcd_members_many(["10.5.0.2"])
        assert [m.hostname for m in members["10.5.0.2"]] == ["cp-1"]
        for node, err in denied.items():
            assert isinstance(err, PermissionDenied)
            assert_user_error(err, node, "/machine.MachineService/Version")
        async with make_client(ca.crt, backup, _free_port()) as client:
            down = await client.service_list_many(["10.5.0.2", "10.5.0.3"])
        for node, err in down.items():
            assert isinstance(err, Unreachable) and err.code is None
            assert_user_error(err, node, "/machine.MachineService/ServiceList")
        assert denied["10.5.0.2"] is not denied["10.5.0.3"]

    run(go())


def test_node_missing_from_the_reply_is_a_protocol_error(ca, admin) -> None:
    from omniport.providers.errors import ProtocolError

    nodes = cluster_nodes()
    nodes[1].missing_from_many = True

    async def go() -> None:
        async with TalosTestServer(ca, nodes) as server:
            async with make_client(ca.crt, admin, server.port) as client:
                return await client.version_many(["10.5.0.2", "10.5.0.3"])

    versions = run(go())
    assert versions["10.5.0.2"].tag == "v1.9.5"
    assert isinstance(versions["10.5.0.3"], ProtocolError)
    assert_user_error(versions["10.5.0.3"], "10.5.0.3", "Version")
    assert "no message for this node" in str(versions["10.5.0.3"])


def test_many_call_falls_back_to_one_call_per_node(ca, admin) -> None:
    """An apid that refuses `nodes`, and a call held up by one hung node until it times out:
    each node is then asked on its own, so only the hung node fails."""
    slow = FakeNode.typical("10.5.0.9", "slow")
    slow.delay = 2.0

    async def go() -> tuple[dict, dict, list]:
        async with TalosTestServer(ca, cluster_nodes(), one_to_many=False) as server:
            async with make_client(ca.crt, admin, server.port) as client:
                refused = await client.version_many(["10.5.0.2", "10.5.0.3"])
        async with TalosTestServer(ca, [slow, *cluster_nodes()]) as server:
            timeouts = Timeouts(connect=5.0, call=0.3)
            async with make_client(ca.crt, admin, server.port, timeouts=timeouts) as client:
                hung = await client.version_many(["10.5.0.2", "10.5.0.9", "10.5.0.3"])
            return refused, hung, [node for _, node, _ in server.calls.log]

    refused, hung, log = run(go())
    assert {n: v.tag for n, v in refused.items()} == {"10.5.0.2": "v1.9.5", "10.5.0.3": "v1.9.5"}
    assert hung["10.5.0.2"].tag == hung["10.5.0.3"].tag == "v1.9.5"
    assert isinstance(hung["10.5.0.9"], Timeout)
    assert_user_error(hung["10.5.0.9"], "10.5.0.9", "/machine.MachineService/Version")
    assert log[0] == "10.5.0.2,10.5.0.9,10.5.0.3"
    assert sorted(log[1:]) == ["10.5.0.2", "10.5.0.3", "10.5.0.9"]


def test_many_calls_with_no_node_make_no_call(ca, admin) -> None:
    async def go() -> None:
        async with TalosTestServer(ca, cluster_nodes()) as server:
            async with make_client(ca.crt, admin, server.port) as client:
                assert await client.version_many([]) == {}
                assert await client.etcd_members_many(()) == {}
            assert server.calls.log == []

    run(go())
