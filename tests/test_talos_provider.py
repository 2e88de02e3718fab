"""TalosClient against the lab's apid (run in this process) over Ed25519 mutual TLS on loopback.

The lab's apid is the Talos side of ``omniport lab``: its role rules, routing (``node``,
``nodes``), errors and faults are the real ones' (see lab/apid.py); its call log shows what the
client sent. Tests that set a fault clear it again (the ``world`` fixture is shared).
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest
import yaml
from google.protobuf import empty_pb2
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from omniport.planner.machineconfig import pki
from omniport.providers import talos as talos_provider
from omniport.providers.errors import (
    NotFound,
    PermissionDenied,
    ProtocolError,
    ProviderError,
    Timeout,
    TLSFailure,
    Unreachable,
    Unsupported,
)
from omniport.providers.retry import NO_RETRY, RetryPolicy
from omniport.providers.talos import ApplyMode, TalosClient, map_nodes
from omniport.providers.talosconfig import Endpoint
from omniport.providers.timeouts import Timeouts
from omniport.providers.tls import client_context
from omniport.providers.wire.machine import machine_grpc, machine_pb2
from tests.lab_inprocess import NOW, InProcessLab, start_world

MISSING = "127.9.9.9"  # no node behind the lab's apid has this address
VERSION = "/machine.MachineService/Version"


@pytest.fixture(scope="module")
def world(aio):
    started = start_world(aio, nodes=2, controlplanes=1)
    yield started
    aio(started.close())


@pytest.fixture(autouse=True)
def no_faults(world):
    yield
    world.lab.faults.clear()


def cp_and_worker(world: InProcessLab) -> tuple[str, str]:
    return world.controlplanes[0], world.workers[0]


def assert_user_error(err: ProviderError, node: str, method_part: str) -> None:
    text = str(err)
    assert node in text and method_part in text
    assert "\n" not in text and "Traceback" not in text
    # no chained low-level exception to print: raised directly or `from None`
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    assert err.target == node


async def settle(aw):
    try:
        return await aw
    except ProviderError as exc:
        return exc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ed25519_mtls_and_reads(aio, world) -> None:
    cp, worker = cp_and_worker(world)
    cp_node, worker_node = world.lab.by_address[cp], world.lab.by_address[worker]
    k8s = cp_node.kubernetes_version
    log_start = len(world.apid.log)

    async def go() -> None:
        async with world.client() as client:
            version = await client.version(cp)
            assert version.tag == cp_node.talos_version == "v1.11.5" and version.rbac is True
            assert await client.machine_type(cp) == "controlplane"
            assert await client.machine_type(worker) == "worker"
            assert await client.machine_config(worker) == worker_node.config
            assert await client.hostname(worker) == worker_node.hostname
            assert await client.kernel_hostname(cp) == cp_node.hostname
            assert await client.system_uuid(cp) == cp_node.machine_uuid
            assert await client.talos_version(cp) == "v1.11.5"
            assert (await client.cluster_info(cp)).cluster_name == world.lab.cluster_name
            images = await client.control_plane_images(cp)
            assert images.apiserver == f"registry.k8s.io/kube-apiserver:v{k8s}"
            assert images.controller_manager.endswith(f"kube-controller-manager:v{k8s}")
            assert (await client.kubelet_image(worker)).startswith("ghcr.io/siderolabs/")
            schematic = await client.schematic(cp)
            assert schematic is not None and schematic.id == cp_node.schematic_id
            assert "officialExtensions" in schematic.extra_info
            exts = await client.extension_statuses(worker)
            assert [(e.name, e.talos_compatibility) for e in exts] == [
                (e.name, ">= 1.0.0") for e in worker_node.extensions
            ]
            services = {s.id: s for s in await client.service_list(cp)}
            assert services["etcd"].healthy is True and services["trustd"].healthy is True
            world.lab.faults.unhealthy_services[cp] = {"trustd"}
            services = {s.id: s for s in await client.service_list(cp)}
            assert services["etcd"].healthy is True and services["trustd"].healthy is False
            members = await client.etcd_members(cp)
            assert [m.hostname for m in members] == [cp_node.hostname]
            status = await client.etcd_status(cp)
            assert status.leader == cp_node.etcd_member_id == status.member_id

    aio(go())
    log = world.apid.log[log_start:]
    # apid saw our admin role from the Ed25519 client certificate's O=
    assert {call.roles for call in log} == {frozenset({"os:admin"})}
    assert {call.targets for call in log} == {(cp,), (worker,)}


def test_unknown_service_health_is_none() -> None:
    """A service with no health check (or not started yet) reports ``unknown``: no verdict."""
    item = machine_pb2.ServiceList(
        services=[
            machine_pb2.ServiceInfo(id="etcd", health=machine_pb2.ServiceHealth(healthy=True)),
            machine_pb2.ServiceInfo(id="trustd", health=machine_pb2.ServiceHealth(unknown=True)),
        ]
    )
    assert [s.healthy for s in talos_provider._services(item)] == [True, None]


def test_members_and_missing_resource(aio, world) -> None:
    cp, worker = cp_and_worker(world)

    async def go() -> None:
        async with world.client() as client:
            members = {m.hostname: m for m in await client.members(cp)}
            member = members[world.lab.by_address[cp].hostname]
            assert member.control_plane_port == 6443 and member.addresses == (cp,)
            assert members[world.lab.by_address[worker].hostname].control_plane_port is None
            with pytest.raises(NotFound) as err:
                await client.get(cp, "runtime", "Versions.runtime.talos.dev", "no-such-id")
            assert_user_error(err.value, cp, "Versions.runtime.talos.dev")
            assert "doesn't exist" in str(err.value)

    aio(go())


def test_apply_configuration_and_health_check(aio, world) -> None:
    cp, worker = cp_and_worker(world)
    node = world.lab.by_address[worker]
    before = node.config
    new = before + b"# changed\n"

    async def go() -> None:
        async with world.client() as client:
            dry = await client.apply_configuration(worker, new, ApplyMode.AUTO, dry_run=True)
            assert dry.mode is ApplyMode.NO_REBOOT and dry.mode_details.startswith("Dry run")
            assert await client.machine_config(worker) == before
            result = await client.apply_configuration(
                worker, new, ApplyMode.TRY, try_mode_timeout=90.5
            )
            assert result.node == worker and result.mode is ApplyMode.TRY
            # the try timeout arrived whole (seconds and nanos): Talos echoes it back
            assert result.mode_details.endswith("automatically reverted back in 1m30.5s")
            assert await client.machine_config(worker) == new
            lines = [
                line
                async for line in client.health_check(
                    cp, control_plane_nodes=[cp], worker_nodes=[worker]
                )
            ]
            assert lines[0] == f'discovered nodes: ["{cp}" "{worker}"]'
            assert "waiting for etcd to be healthy: OK" in lines
            assert lines[-1].endswith(": OK")
            world.lab.faults.health_cancelled = True
            with pytest.raises(ProviderError, match="context canceled") as err:
                async for _ in client.health_check(cp, control_plane_nodes=[cp]):
                    pass
            assert_user_error(err.value, cp, "HealthCheck")
            world.lab.faults.health_cancelled = False
            world.lab.faults.unhealthy_services[cp] = {"etcd"}
            seen = []
            with pytest.raises(ProviderError, match="deadline exceeded") as err:
                async for line in client.health_check(
                    cp, control_plane_nodes=[cp], worker_nodes=[worker], wait_timeout=0.3
                ):
                    seen.append(line)
            assert_user_error(err.value, cp, "HealthCheck")
            assert (
                seen[-1] == f"waiting for etcd to be healthy: service 'etcd' is not healthy on {cp}"
            )
            await client.apply_configuration(worker, before, ApplyMode.NO_REBOOT)

    aio(go())


def test_fan_out_200_nodes_bounded(aio) -> None:
    big = start_world(aio, nodes=200, controlplanes=1)
    big.lab.faults.latency_ms = 10.0
    parallelism = 8

    async def go() -> dict:
        async with big.client() as client:
            return await client.map_nodes([*big.nodes, MISSING], client.hostname, parallelism)

    try:
        results = aio(go())
    finally:
        aio(big.close())
    assert list(results) == [*big.nodes, MISSING]
    assert [results[a] for a in big.nodes] == [n.hostname for n in big.lab.nodes]
    assert isinstance(results[MISSING], Unreachable)
    assert 1 < big.apid.max_in_flight <= parallelism


def test_map_nodes_propagates_bugs(aio) -> None:
    async def boom(node: str) -> str:
        raise KeyError(node)

    with pytest.raises(ExceptionGroup):
        aio(map_nodes(["a", "b"], boom, 2))
    with pytest.raises(ValueError):
        aio(map_nodes(["a"], boom, 0))


def test_timeout_names_node_and_method(aio, world) -> None:
    cp, worker = cp_and_worker(world)
    world.lab.faults.node_latency_ms[worker] = 2000.0

    async def go() -> None:
        async with world.client(timeouts=Timeouts(connect=5.0, call=0.3)) as client:
            with pytest.raises(Timeout) as err:
                await client.version(worker)
            assert_user_error(err.value, worker, VERSION)
            assert "0.3s" in str(err.value)
            # the channel is still good for other nodes
            assert (await client.version(cp)).tag == "v1.11.5"

    aio(go())


def test_unreachable_endpoint(aio, world) -> None:
    cert = world.cert()
    port = _free_port()

    async def go() -> None:
        ctx = client_context(world.ca.crt, cert.crt, cert.key)
        async with TalosClient(ctx, [Endpoint("127.0.0.1", port)]) as client:
            with pytest.raises(Unreachable) as err:
                await client.machine_config("10.5.0.2")
            assert_user_error(err.value, "10.5.0.2", "MachineConfigs.config.talos.dev")
            assert f"127.0.0.1:{port}" in str(err.value)

    aio(go())


def test_second_endpoint_used_when_first_is_down(aio, world) -> None:
    cp, _ = cp_and_worker(world)
    cert = world.cert()

    async def go() -> None:
        ctx = client_context(world.ca.crt, cert.crt, cert.key)
        endpoints = [Endpoint("127.0.0.1", _free_port()), Endpoint("127.0.0.1", world.port)]
        async with TalosClient(ctx, endpoints) as client:
            assert await client.hostname(cp) == world.lab.by_address[cp].hostname
            assert client.endpoint.port == world.port

    aio(go())


def test_tls_failure_wrong_ca(aio, world) -> None:
    cp, _ = cp_and_worker(world)
    other = pki.talos_os_ca(NOW)
    admin = world.cert()
    log_start = len(world.apid.log)

    async def go() -> None:
        ctx = client_context(other.crt, admin.crt, admin.key)
        async with TalosClient(ctx, [Endpoint("127.0.0.1", world.port)]) as client:
            with pytest.raises(TLSFailure) as err:
                await client.version(cp)
            assert_user_error(err.value, cp, "Version")
            assert "certificate" in str(err.value)
        # a client certificate from a foreign CA is refused by the server
        foreign = pki.admin_client_cert(other, NOW)
        ctx = client_context(world.ca.crt, foreign.crt, foreign.key)
        async with TalosClient(ctx, [Endpoint("127.0.0.1", world.port)]) as client:
            with pytest.raises(TLSFailure, match="client certificate") as err:
                await client.version(cp)
            assert_user_error(err.value, cp, "Version")

    aio(go())
    assert world.apid.log[log_start:] == []


def test_reader_role_is_denied_secrets_and_writes(aio, world) -> None:
    cp, worker = cp_and_worker(world)
    before = world.lab.by_address[worker].config

    async def go() -> None:
        async with world.client("os:reader") as client:
            assert (await client.version(cp)).tag == "v1.11.5"
            assert await client.hostname(cp) == world.lab.by_address[cp].hostname
            with pytest.raises(PermissionDenied) as err:
                await client.machine_config(cp)
            assert_user_error(err.value, cp, "MachineConfigs.config.talos.dev")
            assert "os:admin" in str(err.value)
            with pytest.raises(PermissionDenied) as err:
                await client.apply_configuration(worker, b"version: v1alpha1\n")
            assert_user_error(err.value, worker, "/machine.MachineService/Apply")

    aio(go())
    assert world.lab.by_address[worker].config == before


def test_node_not_found_and_worker_etcd(aio, world) -> None:
    _, worker = cp_and_worker(world)

    async def go() -> None:
        async with world.client() as client:
            with pytest.raises(Unreachable) as err:
                await client.version(MISSING)
            assert_user_error(err.value, MISSING, "Version")
            assert "not reachable through endpoint" in str(err.value)
            with pytest.raises(Unsupported) as err:
                await client.etcd_members(worker)
            assert_user_error(err.value, worker, "EtcdMemberList")

    aio(go())


def test_no_node_metadata_goes_to_local_node(aio, world) -> None:
    cp, _ = cp_and_worker(world)

    async def go() -> str:
        async with world.client() as client:
            return await client.kernel_hostname(None)

    assert aio(go()) == world.lab.by_address[cp].hostname  # the endpoint's own node
    assert world.apid.log[-1].targets == ()


def test_server_rejects_multi_valued_node(aio, world) -> None:
    cp, worker = cp_and_worker(world)
    cert = world.cert()

    async def go() -> None:
        ctx = client_context(world.ca.crt, cert.crt, cert.key)
        channel = Channel("127.0.0.1", world.port, ssl=ctx)
        try:
            stub = machine_grpc.MachineServiceStub(channel)
            with pytest.raises(GRPCError) as err:
                await stub.Hostname(empty_pb2.Empty(), metadata=[("node", cp), ("node", worker)])
            assert err.value.status is Status.INVALID_ARGUMENT
            assert err.value.message == "node metadata must be single-valued"
        finally:
            channel.close()

    aio(go())


def test_from_talosconfig_end_to_end(aio, world, tmp_path: Path) -> None:
    _, worker = cp_and_worker(world)
    admin = world.cert()
    path = tmp_path / "talosconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "context": "demo",
                "contexts": {
                    "demo": {
                        "endpoints": ["192.0.2.1"],  # overridden below
                        "ca": pki.b64(world.ca.crt),
                        "crt": admin.crt_b64,
                        "key": admin.key_b64,
                    }
                },
            }
        )
    )

    async def go() -> str:
        client = TalosClient.from_talosconfig(
            env={"TALOSCONFIG": str(path)}, endpoints=[f"127.0.0.1:{world.port}"]
        )
        async with client:
            return await client.hostname(worker)

    assert aio(go()) == world.lab.by_address[worker].hostname


@pytest.mark.parametrize("version", ["v1.11.5", "v1.12.0"], ids=["1.11 raw", "1.12 block string"])
def test_machine_config_from_yaml_spec_when_no_proto_spec(aio, version) -> None:
    """Talos <= 1.11 puts the config itself in yaml_spec; 1.12+ a block string + annotation.
    Read as the lab serves them, with the protobuf spec left out (a client that gets only the
    YAML spec must read the same bytes)."""
    started = start_world(
        aio, nodes=1, controlplanes=1, talos_version=version, initial_talos_version=version
    )
    address = started.nodes[0]

    async def go() -> tuple[bytes, bytes, str]:
        async with started.client() as client:
            with_proto = await client.machine_config(address)
            real_get = client.get

            async def yaml_only(*args, **kw):
                res = await real_get(*args, **kw)
                assert res.proto_spec  # the lab sends both, as Talos does
                return dataclasses.replace(res, proto_spec=b"")

            client.get = yaml_only
            annotated = (await yaml_only(address, *talos_provider.MACHINE_CONFIG)).metadata
            return with_proto, await client.machine_config(address), str(annotated.annotations)

    try:
        with_proto, from_yaml, annotations = aio(go())
    finally:
        aio(started.close())
    assert with_proto == started.lab.nodes[0].config == from_yaml
    assert ("talos.dev/yaml-spec" in annotations) is (version == "v1.12.0")


# ---- one-to-many machine calls (`nodes` metadata) ----


def test_many_calls_answer_per_node_with_the_one_to_one_errors(aio, world) -> None:
    """One call for three nodes: every node gets what its own call would give, errors
    included (same class, message, target and code), in the order asked."""
    cp, worker = cp_and_worker(world)
    nodes = [worker, MISSING, cp, worker]
    log_start = len(world.apid.log)

    async def go():
        # MISSING answers UNAVAILABLE, which a client retries: count calls without retries
        async with world.client(retry=NO_RETRY) as client:
            versions = await client.version_many(nodes)
            services = await client.service_list_many(nodes)
            members = await client.etcd_members_many(nodes)
            calls = len(world.apid.log) - log_start
            alone = {
                n: (
                    await settle(client.version(n)),
                    await settle(client.service_list(n)),
                    await settle(client.etcd_members(n)),
                )
                for n in dict.fromkeys(nodes)
            }
        return versions, services, members, calls, alone

    versions, services, members, calls, alone = aio(go())
    assert calls == 3
    assert world.apid.log[log_start].targets == (worker, MISSING, cp)
    for many in (versions, services, members):
        assert list(many) == [worker, MISSING, cp]
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
    assert isinstance(versions[MISSING], Unreachable)
    assert versions[MISSING].code == 14
    assert isinstance(members[worker], Unsupported)
    assert [m.hostname for m in members[cp]] == [world.lab.by_address[cp].hostname]


def test_many_call_failing_as_a_whole_fails_every_node(aio, world) -> None:
    """PermissionDenied for the call (a role that may not call Version) and an endpoint that is
    down are each node's error, naming that node."""
    cp, worker = cp_and_worker(world)
    backup = world.cert("os:etcd:backup")

    async def go(port: int):
        ctx = client_context(world.ca.crt, backup.crt, backup.key)
        async with TalosClient(ctx, [Endpoint("127.0.0.1", port)]) as client:
            if port != world.port:
                return await client.service_list_many([cp, worker])
            return await client.version_many([cp, worker]), await client.etcd_members_many([cp])

    denied, members = aio(go(world.port))
    assert [m.hostname for m in members[cp]] == [world.lab.by_address[cp].hostname]
    for node, err in denied.items():
        assert isinstance(err, PermissionDenied)
        assert_user_error(err, node, VERSION)
    down = aio(go(_free_port()))
    for node, err in down.items():
        assert isinstance(err, Unreachable) and err.code is None
        assert_user_error(err, node, "/machine.MachineService/ServiceList")
    assert denied[cp] is not denied[worker]


def test_node_missing_from_the_reply_is_a_protocol_error(aio, world) -> None:
    cp, worker = cp_and_worker(world)
    world.lab.faults.one_to_many_dropped.add(worker)

    async def go():
        async with world.client() as client:
            return await client.version_many([cp, worker])

    versions = aio(go())
    assert versions[cp].tag == "v1.11.5"
    assert isinstance(versions[worker], ProtocolError)
    assert_user_error(versions[worker], worker, "Version")
    assert "no message for this node" in str(versions[worker])


def test_many_call_falls_back_to_one_call_per_node(aio, world) -> None:
    """An apid that refuses `nodes`, and a call held up by one hung node until it times out:
    each node is then asked on its own, so only the hung node fails."""
    cp, worker = cp_and_worker(world)
    faults = world.lab.faults

    async def refused_go():
        async with world.client() as client:
            return await client.version_many([cp, worker])

    faults.one_to_many_refused = True
    log_start = len(world.apid.log)
    refused = aio(refused_go())
    refused_log = [c.targets for c in world.apid.log[log_start:]]
    faults.one_to_many_refused = False
    assert {n: v.tag for n, v in refused.items()} == {cp: "v1.11.5", worker: "v1.11.5"}
    assert refused_log[0] == (cp, worker) and sorted(refused_log[1:]) == sorted([(cp,), (worker,)])

    hung_address = MISSING
    # a hung node: one that answers after the call's timeout (the worker, slowed down)
    faults.node_latency_ms[worker] = 2000.0
    log_start = len(world.apid.log)

    async def hung_go():
        timeouts = Timeouts(connect=5.0, call=0.3)
        async with world.client(timeouts=timeouts, retry=NO_RETRY) as client:
            return await client.version_many([cp, worker, hung_address])

    hung = aio(hung_go())
    log = [c.targets for c in world.apid.log[log_start:]]
    assert hung[cp].tag == "v1.11.5"
    assert isinstance(hung[worker], Timeout)
    assert_user_error(hung[worker], worker, VERSION)
    assert isinstance(hung[hung_address], Unreachable)
    assert log[0] == (cp, worker, hung_address)
    assert sorted(log[1:]) == sorted([(cp,), (worker,), (hung_address,)])


def test_many_calls_retry_only_the_nodes_that_blipped(aio, world) -> None:
    """A blip on one node of a one-to-many read: that node alone is asked again (issue 15
    item 8), and every node gets its answer."""
    from omniport.lab.faults import TalosBlip

    cp, worker = cp_and_worker(world)
    world.lab.faults.add_talos_blip(TalosBlip(remaining=2, node=worker, method="Version"))
    log_start = len(world.apid.log)

    async def go():
        policy = RetryPolicy(attempts=3, base_delay=0.01, cap=0.01)
        async with world.client(retry=policy) as client:
            return await client.version_many([cp, worker])

    versions = aio(go())
    assert {n: v.tag for n, v in versions.items()} == {cp: "v1.11.5", worker: "v1.11.5"}
    log = [c.targets for c in world.apid.log[log_start:]]
    assert log == [(cp, worker), (worker,), (worker,)]
    assert world.lab.faults.talos_blips == []


def test_one_call_gives_up_after_its_budget_with_one_sentence(aio, world) -> None:
    from omniport.lab.faults import TalosBlip

    _, worker = cp_and_worker(world)
    world.lab.faults.add_talos_blip(TalosBlip(remaining=5, node=worker))

    async def go():
        async with world.client(retry=RetryPolicy(attempts=3, base_delay=0.0, cap=0.0)) as c:
            return await settle(c.hostname(worker))

    failed = aio(go())
    world.lab.faults.clear_talos_blips()
    assert isinstance(failed, Unreachable) and failed.code == 14
    assert "connection reset by peer" in str(failed) and "gave up after 3 tries" in str(failed)
    assert "\n" not in str(failed)


def test_many_calls_with_no_node_make_no_call(aio, world) -> None:
    log_start = len(world.apid.log)

    async def go() -> None:
        async with world.client() as client:
            assert await client.version_many([]) == {}
            assert await client.etcd_members_many(()) == {}

    aio(go())
    assert world.apid.log[log_start:] == []
