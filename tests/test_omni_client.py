"""OmniClient against a real grpclib COSI State server on loopback, over real TLS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from omniport.providers import omni
from omniport.providers.codec import siderov1
from omniport.providers.errors import (
    ConfigurationError,
    Conflict,
    NotFound,
    PermissionDenied,
    ProviderError,
    Timeout,
    TLSFailure,
    Unauthenticated,
    Unreachable,
)
from omniport.providers.omni import OmniClient, Resource, TLSOptions
from omniport.providers.omniconfig import parse_endpoint, resolve
from omniport.providers.timeouts import Timeouts
from omniport.providers.wire.omni.specs import omni_pb2, system_pb2
from omniport.providers.wire.v1alpha1 import resource_pb2, state_pb2
from omniport.providers.wire.v1alpha1.state_grpc import StateStub
from tests.support_omni.certs import TLSFiles, make_tls_files
from tests.support_omni.server import StateServer

FAST = Timeouts(connect=5.0, call=5.0)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def account() -> siderov1.GeneratedServiceAccount:
    return siderov1.generate_service_account("omniport-test", now=time.time() - 60)


@pytest.fixture(scope="module")
def key(account: siderov1.GeneratedServiceAccount) -> siderov1.SigningKey:
    return siderov1.decode_service_account(account.env_value).key


Body = Callable[[StateServer, OmniClient], Awaitable[None]]


def run(
    tls_files: TLSFiles,
    account: siderov1.GeneratedServiceAccount,
    key: siderov1.SigningKey,
    body: Body,
    *,
    tls: TLSOptions | None = None,
    plaintext: bool = False,
    clock: Callable[[], float] = time.time,
    timeouts: Timeouts = FAST,
) -> StateServer:
    """Start a server, run ``body`` with a client, always stop the server."""

    async def main() -> StateServer:
        server = StateServer()
        server.register_key(account.public_key())
        if plaintext:
            port = await server.start(cert=None, key=None)
            url = f"grpc://127.0.0.1:{port}"
        else:
            port = await server.start(cert=tls_files.server_cert, key=tls_files.server_key)
            url = f"https://127.0.0.1:{port}"
        try:
            endpoint = parse_endpoint(url, where="test")
            options = tls if tls is not None else TLSOptions(ca_file=tls_files.ca_cert)
            if plaintext:
                options = TLSOptions()
            async with OmniClient(
                endpoint, key, tls=options, timeouts=timeouts, clock=clock
            ) as client:
                await body(server, client)
        finally:
            await server.stop()
        return server

    return asyncio.run(main())


def cluster_spec(talos: str = "1.11.5", k8s: str = "1.34.1") -> omni_pb2.ClusterSpec:
    return omni_pb2.ClusterSpec(talos_version=talos, kubernetes_version=k8s)


# -- authentication ------------------------------------------------------------------------------


def test_signed_calls_are_accepted_and_identified(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        created = await client.create(omni.CLUSTERS, "c1", cluster_spec())
        got = await client.get(omni.CLUSTERS, "c1")
        assert got.spec == cluster_spec() and got.version == created.version == "1"

    server = run(tls_files, account, key, body)
    assert server.calls == [
        ("/cosi.resource.State/Create", "omniport-test"),
        ("/cosi.resource.State/Get", "omniport-test"),
    ]
    assert server.rejections == []


def test_one_signature_per_method_and_second_is_accepted_for_every_call(
    tls_files, account, key
) -> None:
    now = [time.time()]

    def signature(client: OmniClient, name: str) -> str:
        return dict(client._metadata(name))["x-sidero-signature"]

    async def body(server: StateServer, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        first = signature(client, "Get")
        for _ in range(3):
            await client.get(omni.CLUSTERS, "c1")
        assert signature(client, "Get") == first
        assert signature(client, "Create") != first  # the method is part of the payload
        now[0] += 1
        assert signature(client, "Get") != first  # so is the second
        await client.get(omni.CLUSTERS, "c1")

    server = run(tls_files, account, key, body, clock=lambda: now[0])
    assert len(server.calls) == 5 and server.rejections == []


def test_unregistered_key_is_unauthenticated(tls_files, account) -> None:
    stranger = siderov1.generate_service_account("stranger", now=time.time() - 60)
    stranger_key = siderov1.decode_service_account(stranger.env_value).key

    async def body(server: StateServer, client: OmniClient) -> None:
        with pytest.raises(Unauthenticated) as info:
            await client.get(omni.CLUSTERS, "c1")
        text = str(info.value)
        assert "Clusters.omni.sidero.dev(default/c1): invalid signature" in text
        assert "check the service account key" in text and "(cosi.resource.State/Get)" in text
        assert "\n" not in text
        assert server.rejections == [f"unknown key {stranger_key.fingerprint!r}"]
        with pytest.raises(Unauthenticated, match=r"Clusters.omni.sidero.dev\(default/\*\)"):
            async with client.watch(omni.CLUSTERS):
                pass

    run(tls_files, account, stranger_key, body)


def test_skewed_clock_is_unauthenticated(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        with pytest.raises(Unauthenticated):
            await client.list(omni.CLUSTERS)
        assert server.rejections == ["timestamp is outside of the allowed skew"]

    run(tls_files, account, key, body, clock=lambda: time.time() + 400)


def _raw_call(
    server: StateServer, tls_files: TLSFiles, metadata: list[tuple[str, str]]
) -> Awaitable[object]:
    async def call() -> object:
        ctx = omni.make_ssl_context(TLSOptions(ca_file=tls_files.ca_cert), target="test")
        channel = Channel("127.0.0.1", server.port, ssl=ctx)
        try:
            stub = StateStub(channel)
            request = state_pb2.GetRequest(namespace="default", type=omni.CLUSTERS, id="c1")
            return await stub.Get(request, metadata=metadata, timeout=5)
        finally:
            channel.close()

    return call()


@pytest.mark.parametrize(
    "case, reason",
    [
        ("tampered signature", "does not verify"),
        ("signed for another method", "payload method"),
        ("unsigned", "missing x-sidero-signature"),
    ],
)
def test_server_rejects_bad_signatures(tls_files, account, key, case, reason) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        method = "/cosi.resource.State/Get"
        if case == "signed for another method":
            method = "/cosi.resource.State/Destroy"
        md = siderov1.signed_metadata(method, key, now=time.time())
        if case == "tampered signature":
            head, sig = dict(md)["x-sidero-signature"].rsplit(" ", 1)
            i = len(sig) - 10  # inside the EdDSA signature value
            flipped = ("B" if sig[i] == "A" else "A").join((sig[:i], sig[i + 1 :]))
            md = [(k, f"{head} {flipped}" if k == "x-sidero-signature" else v) for k, v in md]
        if case == "unsigned":
            md = []
        with pytest.raises(GRPCError) as info:
            await _raw_call(server, tls_files, md)
        assert info.value.status == Status.UNAUTHENTICATED
        assert info.value.message == "invalid signature"
        assert reason in server.rejections[-1]
        # the same call, correctly signed, goes through
        good = siderov1.signed_metadata("/cosi.resource.State/Get", key, now=time.time())
        reply = await _raw_call(server, tls_files, good)
        assert reply.resource.metadata.id == "c1"

    run(tls_files, account, key, body)


def test_settings_from_environment_to_a_signed_call(tls_files, account) -> None:
    """OMNI_SERVICE_ACCOUNT_KEY + OMNI_ENDPOINT -> resolve -> OmniClient -> accepted call."""

    async def main() -> StateServer:
        server = StateServer()
        server.register_key(account.public_key())
        port = await server.start(cert=tls_files.server_cert, key=tls_files.server_key)
        env = {
            "OMNI_SERVICE_ACCOUNT_KEY": account.env_value,
            "OMNI_ENDPOINT": f"https://127.0.0.1:{port}",
        }
        try:
            settings = resolve(environ=env)
            tls = TLSOptions(ca_file=tls_files.ca_cert)
            async with OmniClient.from_settings(settings, tls=tls, timeouts=FAST) as client:
                await client.connect()
                assert await client.list(omni.CLUSTERS) == []
        finally:
            await server.stop()
        return server

    server = asyncio.run(main())
    assert server.calls == [("/cosi.resource.State/List", "omniport-test")]


# -- CRUD ----------------------------------------------------------------------------------------


def test_create_get_update_destroy(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        created = await client.create(
            omni.CLUSTERS,
            "c1",
            cluster_spec(),
            annotations={omni.ANNOTATION_CLUSTER_LOCKED: ""},
        )
        assert (created.version, created.phase, created.owner) == ("1", "running", "")
        assert created.created is not None and created.namespace == "default"
        stored = server.store[("default", omni.CLUSTERS, "c1")]
        assert stored.metadata.annotations[omni.ANNOTATION_CLUSTER_LOCKED] == ""

        with pytest.raises(Conflict) as exists:
            await client.create(omni.CLUSTERS, "c1", cluster_spec())
        assert exists.value.code == 6 and "already exists" in str(exists.value)

        with pytest.raises(NotFound) as missing:
            await client.get(omni.CLUSTERS, "nope")
        assert "Clusters.omni.sidero.dev(default/nope): resource " in str(missing.value)
        assert await client.find(omni.CLUSTERS, "nope") is None

        unlocked = await client.update(created.without_annotation(omni.ANNOTATION_CLUSTER_LOCKED))
        assert unlocked.version == "2" and unlocked.annotations == {}

        with pytest.raises(Conflict) as stale:
            await client.update(created)  # still version 1
        assert stale.value.code == 9 and "update conflict" in str(stale.value)

        await client.destroy(omni.CLUSTERS, "c1")
        assert await client.find(omni.CLUSTERS, "c1") is None
        with pytest.raises(NotFound):
            await client.destroy(omni.CLUSTERS, "c1")

    run(tls_files, account, key, body)


def test_empty_spec_and_other_namespaces(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        node = await client.create(
            omni.MACHINE_SET_NODES,
            "uuid-1",
            labels={omni.LABEL_CLUSTER: "c1", omni.LABEL_MACHINE_SET: "c1-workers"},
        )
        assert node.spec == omni_pb2.MachineSetNodeSpec() and node.spec_bytes == b""
        assert server.store[("default", omni.MACHINE_SET_NODES, "uuid-1")].HasField("spec")
        sysver = resource_pb2.Resource()
        sysver.metadata.namespace, sysver.metadata.type = "ephemeral", omni.SYS_VERSIONS
        sysver.metadata.id = "current"
        sysver.spec.proto_spec = system_pb2.SysVersionSpec(
            backend_version="1.5.0"
        ).SerializeToString()
        server.put(sysver)
        got = await client.get(omni.SYS_VERSIONS, "current")
        assert got.namespace == "ephemeral" and got.spec.backend_version == "1.5.0"

    run(tls_files, account, key, body)


def test_update_echoes_what_was_read(tls_files, account, key) -> None:
    """Finalizers, owner, labels and spec bytes (including fields our protos lack) survive an
    annotation-only update."""

    async def body(server: StateServer, client: OmniClient) -> None:
        res = resource_pb2.Resource()
        res.metadata.namespace, res.metadata.type, res.metadata.id = "default", omni.CLUSTERS, "c1"
        res.metadata.finalizers.extend(["ClusterController", "SecretsController"])
        res.metadata.labels["x"] = "y"
        unknown_field = b"\xa2\x06\x03abc"  # field 100, a string Omni knows and we do not
        res.spec.proto_spec = cluster_spec().SerializeToString() + unknown_field
        server.put(res)
        got = await client.get(omni.CLUSTERS, "c1")
        locked = await client.update(got.with_annotation(omni.ANNOTATION_CLUSTER_LOCKED))
        stored = server.store[("default", omni.CLUSTERS, "c1")]
        assert list(stored.metadata.finalizers) == ["ClusterController", "SecretsController"]
        assert dict(stored.metadata.labels) == {"x": "y"}
        assert stored.spec.proto_spec == res.spec.proto_spec
        assert (
            stored.metadata.created
            == server.store[("default", omni.CLUSTERS, "c1")].metadata.created
        )
        # a changed spec is re-serialized, and still keeps the unknown field
        spec = locked.spec_copy()
        spec.kubernetes_version = "1.34.2"
        await client.update(locked.replace(spec=spec))
        stored = server.store[("default", omni.CLUSTERS, "c1")]
        assert stored.spec.proto_spec.endswith(unknown_field)
        decoded = omni_pb2.ClusterSpec.FromString(stored.spec.proto_spec)
        assert decoded.kubernetes_version == "1.34.2"

    run(tls_files, account, key, body)


def test_wrong_owner_and_phase(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        res = resource_pb2.Resource()
        res.metadata.namespace, res.metadata.type = "default", omni.CLUSTER_STATUSES
        res.metadata.id, res.metadata.owner = "c1", "ClusterStatusController"
        res.spec.SetInParent()
        server.put(res)
        status = await client.get(omni.CLUSTER_STATUSES, "c1")
        with pytest.raises(PermissionDenied, match='is owned by "ClusterStatusController"'):
            await client.update(status.with_label("a"))
        await client.create(omni.CLUSTERS, "c2", cluster_spec())
        await client.teardown(omni.CLUSTERS, "c2")

    run(tls_files, account, key, body)


def test_modify_create_if_missing(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        first, created = await client.modify_create_if_missing(
            omni.MACHINE_SETS, "c1-workers", labels={omni.LABEL_CLUSTER: "c1"}
        )
        assert created and first.version == "1"
        again, created = await client.modify_create_if_missing(
            omni.MACHINE_SETS, "c1-workers", labels={"ignored": "yes"}
        )
        assert not created and again.labels == {omni.LABEL_CLUSTER: "c1"}

    server = run(tls_files, account, key, body)
    assert [m for m, _ in server.calls] == [
        "/cosi.resource.State/Get",
        "/cosi.resource.State/Create",
        "/cosi.resource.State/Get",
    ]


def test_update_with_conflicts_retries_and_skips_no_ops(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        attempts = []

        def lock(current: Resource) -> Resource:
            attempts.append(current.version)
            if len(attempts) == 1:  # someone else writes between our Get and Update
                other = resource_pb2.Resource()
                other.CopyFrom(server.store[("default", omni.CLUSTERS, "c1")])
                other.metadata.labels["touched"] = "yes"
                server.put(other)
            return current.with_annotation(omni.ANNOTATION_CLUSTER_LOCKED)

        locked = await client.update_with_conflicts(omni.CLUSTERS, "c1", lock)
        assert attempts == ["1", "2"]
        assert locked.version == "3" and locked.labels == {"touched": "yes"}
        assert omni.ANNOTATION_CLUSTER_LOCKED in locked.annotations

        before = len(server.calls)
        same = await client.update_with_conflicts(
            omni.CLUSTERS, "c1", lambda r: r.with_annotation(omni.ANNOTATION_CLUSTER_LOCKED)
        )
        assert same.version == "3"
        assert [m for m, _ in server.calls[before:]] == ["/cosi.resource.State/Get"]

        def always_lose(current: Resource) -> Resource:
            other = resource_pb2.Resource()
            other.CopyFrom(server.store[("default", omni.CLUSTERS, "c1")])
            server.put(other)
            return current.with_label("never")

        with pytest.raises(Conflict, match="update conflict"):
            await client.update_with_conflicts(omni.CLUSTERS, "c1", always_lose, attempts=3)

    run(tls_files, account, key, body)


# -- List ----------------------------------------------------------------------------------------


def test_list_label_queries(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        for cluster, role, ms in [
            ("a", omni.LABEL_ROLE_CONTROLPLANE, "a-control-planes"),
            ("a", omni.LABEL_ROLE_WORKER, "a-workers"),
            ("b", omni.LABEL_ROLE_CONTROLPLANE, "b-control-planes"),
        ]:
            await client.create(
                omni.MACHINE_SETS, ms, labels={omni.LABEL_CLUSTER: cluster, role: ""}
            )

        def ids(resources: list[Resource]) -> list[str]:
            return [r.id for r in resources]

        assert ids(await client.list(omni.MACHINE_SETS)) == [
            "a-control-planes",
            "a-workers",
            "b-control-planes",
        ]
        assert ids(await client.list(omni.MACHINE_SETS, labels={omni.LABEL_CLUSTER: "a"})) == [
            "a-control-planes",
            "a-workers",
        ]
        cp = await client.list(
            omni.MACHINE_SETS, labels=[omni.label_exists(omni.LABEL_ROLE_WORKER)]
        )
        assert ids(cp) == ["a-workers"]
        not_worker = await client.list(
            omni.MACHINE_SETS, labels=[omni.label_exists(omni.LABEL_ROLE_WORKER, invert=True)]
        )
        assert ids(not_worker) == ["a-control-planes", "b-control-planes"]
        both = await client.list(
            omni.MACHINE_SETS,
            labels=[
                omni.label_in(omni.LABEL_CLUSTER, ["b", "z"]),
                omni.label_exists(omni.LABEL_ROLE_CONTROLPLANE),
            ],
        )
        assert ids(both) == ["b-control-planes"]
        assert ids(await client.list(omni.MACHINE_SETS, id_regexp="-workers$")) == ["a-workers"]
        assert await client.list(omni.CLUSTERS) == []

    run(tls_files, account, key, body)


# -- Watch and Teardown --------------------------------------------------------------------------


def test_watch_type_with_bootstrap(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        await client.create(omni.CLUSTERS, "c2", cluster_spec())
        async with client.watch(omni.CLUSTERS, bootstrap=True) as events:
            seen = [await anext(events) for _ in range(3)]
            assert [(e.kind, e.resource and e.resource.id) for e in seen] == [
                ("created", "c1"),
                ("created", "c2"),
                ("bootstrapped", None),
            ]
            c3 = await client.create(omni.CLUSTERS, "c3", cluster_spec())
            await client.update(c3.with_label("x", "1"))
            await client.destroy(omni.CLUSTERS, "c3")
            later = [await asyncio.wait_for(anext(events), 5) for _ in range(3)]
        assert [(e.kind, e.resource.id, e.resource.version) for e in later] == [
            ("created", "c3", "1"),
            ("updated", "c3", "2"),
            ("destroyed", "c3", "2"),
        ]
        assert later[1].old is not None and later[1].old.version == "1"
        assert later[1].resource.spec == cluster_spec()
        await asyncio.sleep(0.05)
        assert server._watchers == []  # leaving the block closed the stream

    run(tls_files, account, key, body)


def test_teardown_watch_destroyed(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        cluster = await client.create(omni.CLUSTERS, "c1", cluster_spec())
        res = resource_pb2.Resource()
        res.CopyFrom(server.store[("default", omni.CLUSTERS, "c1")])
        res.metadata.finalizers.append("ClusterController")
        server.put(res)
        del cluster

        async with client.watch(omni.CLUSTERS, "c1") as events:
            first = await anext(events)
            assert first.kind == "created" and first.resource.finalizers == ("ClusterController",)
            assert await client.teardown(omni.CLUSTERS, "c1") is False
            assert await client.teardown(omni.CLUSTERS, "c1") is False  # idempotent
            update = await asyncio.wait_for(anext(events), 5)
            assert update.kind == "updated" and update.resource.phase == "tearingDown"
            with pytest.raises(Conflict, match=r"pending finalizers \[ClusterController\]"):
                await client.destroy(omni.CLUSTERS, "c1")
            server.remove_finalizer(omni.CLUSTERS, "c1", "ClusterController")
            await client.wait_destroyed(omni.CLUSTERS, "c1", timeout=5)
        assert await client.find(omni.CLUSTERS, "c1") is None
        # a single-resource watch on something absent starts with its tombstone
        async with client.watch(omni.CLUSTERS, "c1") as events:
            assert (await anext(events)).kind == "destroyed"
        with pytest.raises(Timeout, match=r"still exists after 0.2s"):
            await client.create(omni.CLUSTERS, "c9", cluster_spec())
            await client.wait_destroyed(omni.CLUSTERS, "c9", timeout=0.2)

    run(tls_files, account, key, body)


def test_teardown_falls_back_without_the_rpc(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        server.teardown_unimplemented = True
        await client.create(omni.LINKS, "uuid-1")
        assert await client.teardown(omni.LINKS, "uuid-1") is True
        await client.wait_destroyed(omni.LINKS, "uuid-1", timeout=5)

    server = run(tls_files, account, key, body)
    methods = [m.rsplit("/", 1)[1] for m, _ in server.calls]
    assert methods[:5] == ["Create", "Teardown", "Get", "Update", "Watch"]


# -- transport -----------------------------------------------------------------------------------


def test_untrusted_certificate_is_a_tls_failure(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        with pytest.raises(TLSFailure, match="certificate verification failed") as info:
            await client.get(omni.CLUSTERS, "c1")
        assert str(info.value).startswith(f"https://127.0.0.1:{server.port}: TLS")
        assert server.calls == []

    run(tls_files, account, key, body, tls=TLSOptions(ca_file=tls_files.other_ca_cert))


def test_pinned_server_certificate(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        assert await client.list(omni.CLUSTERS) == []

    run(tls_files, account, key, body, tls=TLSOptions(pinned_cert_file=tls_files.server_cert))


def test_pinning_another_certificate_fails(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        with pytest.raises(TLSFailure):
            await client.list(omni.CLUSTERS)

    run(tls_files, account, key, body, tls=TLSOptions(pinned_cert_file=tls_files.other_ca_cert))


def test_insecure_skip_verify_warns_and_connects(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        with pytest.warns(omni.InsecureTLSWarning, match="verification .* is OFF"):
            assert await client.list(omni.CLUSTERS) == []

    run(tls_files, account, key, body, tls=TLSOptions(insecure_skip_verify=True))


def test_plaintext_h2c(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        assert [r.id for r in await client.list(omni.CLUSTERS)] == ["c1"]

    run(tls_files, account, key, body, plaintext=True)


def test_tls_options_on_plaintext_url_are_refused(key, tls_files) -> None:
    endpoint = parse_endpoint("grpc://127.0.0.1:1", where="test")
    with pytest.raises(ConfigurationError, match="plaintext; use an https:// URL"):
        OmniClient(endpoint, key, tls=TLSOptions(ca_file=tls_files.ca_cert))


def test_bad_ca_file(key, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    options = TLSOptions(ca_file=tmp_path / "ca.pem")
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        omni.make_ssl_context(options, target="x")
    with pytest.raises(ConfigurationError, match="cannot read Omni CA bundle"):
        omni.make_ssl_context(TLSOptions(ca_file=tmp_path / "missing"), target="x")


def test_call_timeout(tls_files, account, key) -> None:
    async def body(server: StateServer, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        server.get_delay = 2.0
        started = time.monotonic()
        with pytest.raises(Timeout, match=r"Clusters.omni.sidero.dev\(default/c1\): no answer"):
            await client.get(omni.CLUSTERS, "c1")
        assert time.monotonic() - started < 1.5

    run(tls_files, account, key, body, timeouts=Timeouts(connect=5, call=0.3))


def test_unreachable(key) -> None:
    async def main() -> None:
        import socket

        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        endpoint = parse_endpoint(f"grpc://127.0.0.1:{port}", where="test")
        async with OmniClient(endpoint, key, timeouts=FAST) as client:
            with pytest.raises(Unreachable, match="connection refused") as info:
                await client.get(omni.CLUSTERS, "c1")
        assert isinstance(info.value, ProviderError)
        assert str(info.value) == (
            f"grpc://127.0.0.1:{port}: connection refused (cosi.resource.State/Get)"
        )

    asyncio.run(main())
