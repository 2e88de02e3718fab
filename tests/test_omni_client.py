"""OmniClient against the lab's Omni (run in this process) on loopback, over real TLS.

The lab's Omni (lab/omni.py) checks siderov1 signatures, roles and Omni's validations, keeps
resources in a COSI store and runs Omni's controllers; tests play a controller by writing to
that store directly, and read its record of verified calls and refused signatures.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from omniport.lab.faults import Faults, OmniFailure
from omniport.lab.omni import OmniSeed, OmniSim, Role
from omniport.lab.omni_store import Resource as StoredResource
from omniport.lab.world import Lab
from omniport.planner.machineconfig import pki
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
    Unsupported,
)
from omniport.providers.omni import OmniClient, Resource, TLSOptions
from omniport.providers.omniconfig import parse_endpoint, resolve
from omniport.providers.timeouts import Timeouts
from omniport.providers.wire.omni.specs import omni_pb2, system_pb2
from omniport.providers.wire.v1alpha1 import state_pb2
from omniport.providers.wire.v1alpha1.state_grpc import StateStub

FAST = Timeouts(connect=5.0, call=5.0)
IDENTITY = "omniport-test"


@dataclass(frozen=True)
class TLSFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path
    """A CA that signed nothing this server uses."""


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """The lab's web TLS: an ECDSA CA and a server certificate for 127.0.0.1 (lab/server.py)."""
    directory = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca = pki.new_ca(now, organizations=["omniport lab"], algorithm=pki.KeyAlgorithm.ECDSA_P256)
    other = pki.new_ca(now, organizations=["other"], algorithm=pki.KeyAlgorithm.ECDSA_P256)
    web = pki.issue(
        ca,
        now - dt.timedelta(minutes=5),
        validity=dt.timedelta(days=1),
        common_name="omniport lab",
        ip_addresses=["127.0.0.1"],
        dns_names=["localhost"],
        server_auth=True,
    )
    files = TLSFiles(
        directory / "ca.crt",
        directory / "server.crt",
        directory / "server.key",
        directory / "other-ca.crt",
    )
    files.ca_cert.write_bytes(ca.crt)
    files.server_cert.write_bytes(web.crt)
    files.server_key.write_bytes(web.key)
    files.other_ca_cert.write_bytes(other.crt)
    return files


@pytest.fixture(scope="module")
def account() -> siderov1.GeneratedServiceAccount:
    return siderov1.generate_service_account(IDENTITY, now=time.time() - 60)


@pytest.fixture(scope="module")
def key(account: siderov1.GeneratedServiceAccount) -> siderov1.SigningKey:
    return siderov1.decode_service_account(account.env_value).key


def start_omni(tls_files: TLSFiles | None, account: siderov1.GeneratedServiceAccount) -> OmniSim:
    """The lab's Omni with no nodes behind it (an empty lab is its gateway), recording calls;
    plaintext (h2c) when ``tls_files`` is None."""
    tls = (
        (tls_files.server_cert.read_bytes(), tls_files.server_key.read_bytes())
        if tls_files is not None
        else (None, None)
    )
    faults = Faults()
    sim = OmniSim(
        tls_cert=tls[0],
        tls_key=tls[1],
        seed=OmniSeed(join_token="lab-token"),
        gateway=Lab([], cluster_name="lab", faults=faults),
        faults=faults,
    )
    sim.record = True
    sim.register_public_key(account.public_key_armored, Role.ADMIN, account.name)
    return sim


Body = Callable[[OmniSim, OmniClient], Awaitable[None]]


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
) -> OmniSim:
    """Start the lab's Omni, run ``body`` with a client, always stop the server."""

    async def main() -> OmniSim:
        sim = start_omni(None if plaintext else tls_files, account)
        port = await sim.start()
        url = f"grpc://127.0.0.1:{port}" if plaintext else f"https://127.0.0.1:{port}"
        try:
            endpoint = parse_endpoint(url, where="test")
            options = tls if tls is not None else TLSOptions(ca_file=tls_files.ca_cert)
            if plaintext:
                options = TLSOptions()
            async with OmniClient(
                endpoint, key, tls=options, timeouts=timeouts, clock=clock
            ) as client:
                await body(sim, client)
        finally:
            await sim.stop()
        return sim

    return asyncio.run(main())


def cluster_spec(talos: str = "1.11.5", k8s: str = "1.34.1") -> omni_pb2.ClusterSpec:
    return omni_pb2.ClusterSpec(talos_version=talos, kubernetes_version=k8s)


C1 = {omni.LABEL_CLUSTER: "c1"}


def patch_spec(value: str = "2") -> omni_pb2.ConfigPatchSpec:
    """A config patch: a resource that no controller of Omni's holds or changes."""
    return omni_pb2.ConfigPatchSpec(
        data=f"machine:\n  kubelet:\n    extraArgs:\n      v: '{value}'\n"
    )


def stored(sim: OmniSim, type_: str, id_: str, ns: str = "default") -> StoredResource:
    res = sim.store.peek(ns, type_, id_)
    assert res is not None, f"{type_}({ns}/{id_}) is not stored"
    return res


def methods(sim: OmniSim) -> list[str]:
    return [m.rsplit("/", 1)[1] for m, _ in sim.calls]


# -- authentication ------------------------------------------------------------------------------


def test_signed_calls_are_accepted_and_identified(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        created = await client.create(omni.CLUSTERS, "c1", cluster_spec())
        got = await client.get(omni.CLUSTERS, "c1")
        assert got.spec == cluster_spec() and created.version == "1"
        assert got.version == str(stored(sim, omni.CLUSTERS, "c1").version)

    sim = run(tls_files, account, key, body)
    assert sim.calls == [
        ("/cosi.resource.State/Create", IDENTITY),
        ("/cosi.resource.State/Get", IDENTITY),
    ]
    assert sim.rejections == []


def test_one_signature_per_method_and_second_is_accepted_for_every_call(
    tls_files, account, key
) -> None:
    now = [time.time()]

    def signature(client: OmniClient, name: str) -> str:
        return dict(client._metadata(name))["x-sidero-signature"]

    async def body(sim: OmniSim, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        first = signature(client, "Get")
        for _ in range(3):
            await client.get(omni.CLUSTERS, "c1")
        assert signature(client, "Get") == first
        assert signature(client, "Create") != first  # the method is part of the payload
        now[0] += 1
        assert signature(client, "Get") != first  # so is the second
        await client.get(omni.CLUSTERS, "c1")

    sim = run(tls_files, account, key, body, clock=lambda: now[0])
    assert len(sim.calls) == 5 and sim.rejections == []


def test_unregistered_key_is_unauthenticated(tls_files, account) -> None:
    stranger = siderov1.generate_service_account("stranger", now=time.time() - 60)
    stranger_key = siderov1.decode_service_account(stranger.env_value).key

    async def body(sim: OmniSim, client: OmniClient) -> None:
        with pytest.raises(Unauthenticated) as info:
            await client.get(omni.CLUSTERS, "c1")
        text = str(info.value)
        assert "Clusters.omni.sidero.dev(default/c1): invalid signature" in text
        assert "check the service account key" in text and "(cosi.resource.State/Get)" in text
        assert "\n" not in text
        assert sim.rejections == [f"unknown key {stranger_key.fingerprint!r}"]
        with pytest.raises(Unauthenticated, match=r"Clusters.omni.sidero.dev\(default/\*\)"):
            async with client.watch(omni.CLUSTERS):
                pass

    sim = run(tls_files, account, stranger_key, body)
    assert sim.calls == []


def test_skewed_clock_is_unauthenticated(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        with pytest.raises(Unauthenticated):
            await client.list(omni.CLUSTERS)
        assert sim.rejections == ["timestamp is outside of the allowed skew"]

    run(tls_files, account, key, body, clock=lambda: time.time() + 400)


def _raw_call(
    sim: OmniSim, tls_files: TLSFiles, metadata: list[tuple[str, str]]
) -> Awaitable[object]:
    async def call() -> object:
        ctx = omni.make_ssl_context(TLSOptions(ca_file=tls_files.ca_cert), target="test")
        channel = Channel("127.0.0.1", sim.port, ssl=ctx)
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
        ("unsigned", None),
    ],
)
def test_server_rejects_bad_signatures(tls_files, account, key, case, reason) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
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
            await _raw_call(sim, tls_files, md)
        assert info.value.status == Status.UNAUTHENTICATED
        if reason is None:
            # no signature at all is an anonymous caller, whom Omni's authorization refuses
            assert "missing valid signature" in info.value.message
            assert sim.rejections == []
        else:
            assert info.value.message == "invalid signature"
            assert reason in sim.rejections[-1]
        # the same call, correctly signed, goes through
        good = siderov1.signed_metadata("/cosi.resource.State/Get", key, now=time.time())
        reply = await _raw_call(sim, tls_files, good)
        assert reply.resource.metadata.id == "c1"

    run(tls_files, account, key, body)


def test_settings_from_environment_to_a_signed_call(tls_files, account) -> None:
    """OMNI_SERVICE_ACCOUNT_KEY + OMNI_ENDPOINT -> resolve -> OmniClient -> accepted call."""

    async def main() -> OmniSim:
        sim = start_omni(tls_files, account)
        port = await sim.start()
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
            await sim.stop()
        return sim

    sim = asyncio.run(main())
    assert sim.calls == [("/cosi.resource.State/List", IDENTITY)]


# -- CRUD ----------------------------------------------------------------------------------------


def test_create_get_update_destroy(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        created = await client.create(
            omni.CLUSTERS,
            "c1",
            cluster_spec(),
            annotations={omni.ANNOTATION_CLUSTER_LOCKED: ""},
        )
        assert (created.version, created.phase, created.owner) == ("1", "running", "")
        assert created.created is not None and created.namespace == "default"
        assert stored(sim, omni.CLUSTERS, "c1").annotations[omni.ANNOTATION_CLUSTER_LOCKED] == ""

        with pytest.raises(Conflict) as exists:
            await client.create(omni.CLUSTERS, "c1", cluster_spec())
        assert exists.value.code == 6 and "already exists" in str(exists.value)

        with pytest.raises(NotFound) as missing:
            await client.get(omni.CLUSTERS, "nope")
        assert "Clusters.omni.sidero.dev(default/nope): resource " in str(missing.value)
        assert await client.find(omni.CLUSTERS, "nope") is None

        await sim.settle()
        current = await client.get(omni.CLUSTERS, "c1")
        unlocked = await client.update(current.without_annotation(omni.ANNOTATION_CLUSTER_LOCKED))
        assert int(unlocked.version) == int(current.version) + 1 and unlocked.annotations == {}

        with pytest.raises(Conflict) as stale:
            await client.update(created)  # still version 1
        assert stale.value.code == 9 and "update conflict" in str(stale.value)

        # a resource no controller holds is destroyed at once
        await client.create(omni.CONFIG_PATCHES, "400-c1", patch_spec(), labels=C1)
        await client.destroy(omni.CONFIG_PATCHES, "400-c1")
        assert await client.find(omni.CONFIG_PATCHES, "400-c1") is None
        with pytest.raises(NotFound):
            await client.destroy(omni.CONFIG_PATCHES, "400-c1")
        # a Cluster goes through its teardown (its controllers' finalizers) before it is gone
        await client.teardown(omni.CLUSTERS, "c1")
        await client.wait_destroyed(omni.CLUSTERS, "c1", timeout=5)
        assert await client.find(omni.CLUSTERS, "c1") is None
        with pytest.raises(NotFound):
            await client.destroy(omni.CLUSTERS, "c1")

    run(tls_files, account, key, body)


def test_empty_spec_and_other_namespaces(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        machine_set = await client.create(
            omni.MACHINE_SETS, "c1-workers", labels={**C1, omni.LABEL_ROLE_WORKER: ""}
        )
        assert machine_set.spec == omni_pb2.MachineSetSpec() and machine_set.spec_bytes == b""
        # Omni refuses a resource without a spec: the client sent an empty one
        assert stored(sim, omni.MACHINE_SETS, "c1-workers").spec == omni_pb2.MachineSetSpec()
        got = await client.get(omni.SYS_VERSIONS, "current")
        assert got.namespace == "ephemeral"
        assert got.spec.backend_version == sim.seed.backend_version
        assert isinstance(got.spec, system_pb2.SysVersionSpec)

    run(tls_files, account, key, body)


def test_update_echoes_what_was_read(tls_files, account, key) -> None:
    """Finalizers, owner, labels and spec bytes (including fields our protos lack) survive an
    annotation-only update."""

    async def body(sim: OmniSim, client: OmniClient) -> None:
        unknown_field = b"\xa2\x06\x03abc"  # field 100, a string Omni knows and we do not
        spec_bytes = patch_spec().SerializeToString() + unknown_field
        sim.store.create(
            StoredResource(
                "default",
                omni.CONFIG_PATCHES,
                "400-c1",
                spec=omni_pb2.ConfigPatchSpec.FromString(spec_bytes),
                finalizers=["ClusterController", "SecretsController"],
                labels={**C1, "x": "y"},
            )
        )
        got = await client.get(omni.CONFIG_PATCHES, "400-c1")
        marked = await client.update(got.with_annotation("omniport.test/echo"))
        res = stored(sim, omni.CONFIG_PATCHES, "400-c1")
        assert res.finalizers == ["ClusterController", "SecretsController"]
        assert res.labels == {**C1, "x": "y"} and res.owner == ""
        assert res.annotations == {"omniport.test/echo": ""}
        assert res.spec.SerializeToString() == spec_bytes
        assert res.created == sim.store.peek(*res.key).created and res.version == 2
        # a changed spec is re-serialized, and still keeps the unknown field
        spec = marked.spec_copy()
        spec.data = patch_spec("3").data
        await client.update(marked.replace(spec=spec))
        res = stored(sim, omni.CONFIG_PATCHES, "400-c1")
        assert res.spec.SerializeToString().endswith(unknown_field)
        assert res.spec.data == patch_spec("3").data

    run(tls_files, account, key, body)


def test_wrong_owner_and_phase(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        # a resource a controller owns: COSI refuses a write from anyone else
        sim.store.create(
            StoredResource("default", omni.CONFIG_PATCHES, "400-c1", spec=patch_spec(), labels=C1),
            owner="ClusterStatusController",
        )
        owned = await client.get(omni.CONFIG_PATCHES, "400-c1")
        assert owned.owner == "ClusterStatusController"
        with pytest.raises(PermissionDenied, match='is owned by "ClusterStatusController"'):
            await client.update(owned.with_label("a"))
        # a type only Omni writes: its authorization refuses before COSI is asked
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        await sim.settle()
        status = await client.get(omni.CLUSTER_STATUSES, "c1")
        with pytest.raises(PermissionDenied, match="only read access is permitted"):
            await client.update(status.with_label("a"))
        await client.create(omni.CLUSTERS, "c2", cluster_spec())
        await client.teardown(omni.CLUSTERS, "c2")

    run(tls_files, account, key, body)


def test_modify_create_if_missing(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        labels = {**C1, omni.LABEL_ROLE_WORKER: ""}
        first, created = await client.modify_create_if_missing(
            omni.MACHINE_SETS, "c1-workers", labels=labels
        )
        assert created and first.version == "1"
        again, created = await client.modify_create_if_missing(
            omni.MACHINE_SETS, "c1-workers", labels={"ignored": "yes"}
        )
        assert not created and again.labels == labels

    sim = run(tls_files, account, key, body)
    assert methods(sim) == ["Create", "Get", "Create", "Get"]


def test_update_with_conflicts_retries_and_skips_no_ops(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        await client.create(omni.CONFIG_PATCHES, "400-c1", patch_spec(), labels=C1)
        attempts = []

        def touch() -> None:
            """Another writer (a controller, another client) changes the resource."""
            other = sim.store.get("default", omni.CONFIG_PATCHES, "400-c1")
            other.labels["touched"] = "yes"
            sim.store.update(other)

        def lock(current: Resource) -> Resource:
            attempts.append(current.version)
            if len(attempts) == 1:  # someone else writes between our Get and Update
                touch()
            return current.with_annotation(omni.ANNOTATION_CLUSTER_LOCKED)

        locked = await client.update_with_conflicts(omni.CONFIG_PATCHES, "400-c1", lock)
        assert attempts == ["1", "2"]
        assert locked.version == "3" and locked.labels == {**C1, "touched": "yes"}
        assert omni.ANNOTATION_CLUSTER_LOCKED in locked.annotations

        before = len(sim.calls)
        same = await client.update_with_conflicts(
            omni.CONFIG_PATCHES,
            "400-c1",
            lambda r: r.with_annotation(omni.ANNOTATION_CLUSTER_LOCKED),
        )
        assert same.version == "3"
        assert [m for m, _ in sim.calls[before:]] == ["/cosi.resource.State/Get"]

        def always_lose(current: Resource) -> Resource:
            touch()
            return current.with_label("never")

        with pytest.raises(Conflict, match="update conflict"):
            await client.update_with_conflicts(
                omni.CONFIG_PATCHES, "400-c1", always_lose, attempts=3
            )

    run(tls_files, account, key, body)


# -- List ----------------------------------------------------------------------------------------


def test_list_label_queries(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        assert await client.list(omni.CLUSTERS) == []
        for name in ("a", "b"):
            await client.create(omni.CLUSTERS, name, cluster_spec())
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
        assert await client.list(omni.MACHINE_SET_NODES) == []

    run(tls_files, account, key, body)


# -- Watch and Teardown --------------------------------------------------------------------------


def test_watch_type_with_bootstrap(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        await client.create(omni.CONFIG_PATCHES, "401-c1", patch_spec(), labels=C1)
        await client.create(omni.CONFIG_PATCHES, "402-c1", patch_spec(), labels=C1)
        listeners = len(sim.store._listeners)
        async with client.watch(omni.CONFIG_PATCHES, bootstrap=True) as events:
            seen = [await anext(events) for _ in range(3)]
            assert [e.kind for e in seen] == ["created", "created", "bootstrapped"]
            assert [e.resource.id for e in seen[:2]] == ["401-c1", "402-c1"]
            third = await client.create(omni.CONFIG_PATCHES, "403-c1", patch_spec(), labels=C1)
            await client.update(third.with_label("x", "1"))
            await client.destroy(omni.CONFIG_PATCHES, "403-c1")
            later = [await asyncio.wait_for(anext(events), 5) for _ in range(3)]
        assert [(e.kind, e.resource.id, e.resource.version) for e in later] == [
            ("created", "403-c1", "1"),
            ("updated", "403-c1", "2"),
            ("destroyed", "403-c1", "2"),
        ]
        assert later[1].old is not None and later[1].old.version == "1"
        assert later[1].resource.spec == patch_spec()
        await asyncio.sleep(0.05)
        assert len(sim.store._listeners) == listeners  # leaving the block closed the stream

    run(tls_files, account, key, body)


def test_teardown_watch_destroyed(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        await sim.settle()  # Omni's controllers put their finalizers on it
        finalizers = stored(sim, omni.CLUSTERS, "c1").finalizers
        assert "ClusterController" in finalizers

        async with client.watch(omni.CLUSTERS, "c1") as events:
            first = await anext(events)
            assert first.kind == "created" and first.resource.finalizers == tuple(finalizers)
            # a controller of ours holds it too (its finalizer stops the teardown)
            sim.store.add_finalizer("default", omni.CLUSTERS, "c1", "omniport.test")
            assert (await anext(events)).kind == "updated"
            assert await client.teardown(omni.CLUSTERS, "c1") is False
            assert await client.teardown(omni.CLUSTERS, "c1") is False  # idempotent
            update = await asyncio.wait_for(anext(events), 5)
            assert update.kind == "updated" and update.resource.phase == "tearingDown"
            with pytest.raises(Conflict, match=r"pending finalizers \[.*omniport.test"):
                await client.destroy(omni.CLUSTERS, "c1")
            await sim.settle()  # Omni's controllers let go; ours still holds it
            assert stored(sim, omni.CLUSTERS, "c1").finalizers == ["omniport.test"]
            sim.store.remove_finalizer("default", omni.CLUSTERS, "c1", "omniport.test")
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
    """A server without the Teardown RPC (COSI runtime before 1.16): Get + Update(phase)."""
    missing = OmniFailure(
        method="Teardown",
        code=12,
        message="unknown method Teardown for service cosi.resource.State",
    )

    async def body(sim: OmniSim, client: OmniClient) -> None:
        sim.faults.omni_failures.append(missing)
        await client.create(omni.CONFIG_PATCHES, "400-c1", patch_spec(), labels=C1)
        assert await client.teardown(omni.CONFIG_PATCHES, "400-c1") is True
        await client.wait_destroyed(omni.CONFIG_PATCHES, "400-c1", timeout=5)

    sim = run(tls_files, account, key, body)
    # the Teardown call was refused before any signature check, so it is not in the record
    assert missing.hits == 1
    assert methods(sim)[:4] == ["Create", "Get", "Update", "Watch"]


def test_teardown_rpc_unimplemented_is_unsupported(tls_files, account, key) -> None:
    """What the fallback keys on: the refused RPC is Unsupported to the raw caller."""

    async def body(sim: OmniSim, client: OmniClient) -> None:
        sim.faults.omni_failures.append(OmniFailure(method="Teardown", code=12))
        with pytest.raises(Unsupported):
            await client._unary(
                "Teardown",
                state_pb2.TeardownRequest(namespace="default", type=omni.CLUSTERS, id="c1"),
                None,
            )

    run(tls_files, account, key, body)


# -- transport -----------------------------------------------------------------------------------


def test_untrusted_certificate_is_a_tls_failure(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        with pytest.raises(TLSFailure, match="certificate verification failed") as info:
            await client.get(omni.CLUSTERS, "c1")
        assert str(info.value).startswith(f"https://127.0.0.1:{sim.port}: TLS")
        assert sim.calls == []

    run(tls_files, account, key, body, tls=TLSOptions(ca_file=tls_files.other_ca_cert))


def test_pinned_server_certificate(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        assert await client.list(omni.CLUSTERS) == []

    run(tls_files, account, key, body, tls=TLSOptions(pinned_cert_file=tls_files.server_cert))


def test_pinning_another_certificate_fails(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        with pytest.raises(TLSFailure):
            await client.list(omni.CLUSTERS)

    run(tls_files, account, key, body, tls=TLSOptions(pinned_cert_file=tls_files.other_ca_cert))


def test_insecure_skip_verify_warns_and_connects(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        with pytest.warns(omni.InsecureTLSWarning, match="verification .* is OFF"):
            assert await client.list(omni.CLUSTERS) == []

    run(tls_files, account, key, body, tls=TLSOptions(insecure_skip_verify=True))


def test_plaintext_h2c(tls_files, account, key) -> None:
    async def body(sim: OmniSim, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        assert [r.id for r in await client.list(omni.CLUSTERS)] == ["c1"]

    sim = run(tls_files, account, key, body, plaintext=True)
    assert methods(sim) == ["Create", "List"]


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
    async def body(sim: OmniSim, client: OmniClient) -> None:
        await client.create(omni.CLUSTERS, "c1", cluster_spec())
        sim.faults.latency_ms = 2000.0  # the lab's latency fault: every call answers late
        started = time.monotonic()
        with pytest.raises(Timeout, match=r"Clusters.omni.sidero.dev\(default/c1\): no answer"):
            await client.get(omni.CLUSTERS, "c1")
        assert time.monotonic() - started < 1.5

    run(tls_files, account, key, body, timeouts=Timeouts(connect=5, call=0.3))


def test_unreachable(key) -> None:
    async def main() -> None:
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        endpoint = parse_endpoint(f"grpc://127.0.0.1:{port}", where="test")
        async with OmniClient(endpoint, key, timeouts=FAST) as client:
            with pytest.raises(Unreachable, match="connection refused") as info:
                await client.get(omni.CLUSTERS, "c1")
        assert isinstance(info.value, ProviderError)
        assert str(info.value) == (
            f"grpc://127.0.0.1:{port}: connection refused (gave up after 4 tries) "
            "(cosi.resource.State/Get)"
        )

    asyncio.run(main())
