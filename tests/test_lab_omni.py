"""The lab's Omni over the network: siderov1 authentication, roles, COSI semantics, validations.

Every test starts an ``OmniSim`` on loopback with a self-signed TLS certificate and talks to it
through gRPC with real siderov1 signatures; nothing of the server is mocked. The NodeGateway is
a small recording class: it is the seam to the Talos side, not part of the server under test.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from omniport.lab.faults import Faults, OmniFailure
from omniport.lab.omni import OmniSeed, OmniSim
from omniport.providers.codec import siderov1
from omniport.providers.errors import ProviderError
from omniport.providers.omni import OmniClient, TLSOptions, label_exists, label_in
from omniport.providers.omniconfig import parse_endpoint
from omniport.providers.wire.omni.specs import omni_pb2
from omniport.providers.wire.v1alpha1 import resource_pb2, state_grpc, state_pb2

P = "omni.sidero.dev/"
CLUSTERS = "Clusters.omni.sidero.dev"
TALOS = "1.11.5"
K8S = "1.34.1"


# ---- harness -------------------------------------------------------------------------------


def _tls() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab-omni")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


@dataclass
class Keys:
    cert: bytes
    key: bytes
    accounts: dict[str, siderov1.GeneratedServiceAccount]


@pytest.fixture(scope="module")
def keys() -> Keys:
    cert, key = _tls()
    now = time.time()
    accounts = {
        role: siderov1.generate_service_account(f"sa-{role.lower()}", now=now)
        for role in ("Admin", "Operator", "Reader", "InfraProvider", "None", "Unregistered")
    }
    return Keys(cert, key, accounts)


@dataclass
class Gateway:
    """The Talos side as Omni sees it: records pushed configs, can be told to fail."""

    pushed: dict[str, list[bytes]] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    resets: list[str] = field(default_factory=list)
    """Machines Omni reset (wiped), in order."""

    async def push_config(self, machine_uuid: str, config: bytes) -> None:
        if machine_uuid in self.fail:
            raise ConnectionError(f"node {machine_uuid} is unreachable")
        self.pushed.setdefault(machine_uuid, []).append(config)

    def node_config(self, machine_uuid: str) -> bytes:
        return (self.pushed.get(machine_uuid) or [b""])[-1]

    async def reset_machine(self, machine_uuid: str) -> None:
        if machine_uuid in self.fail:
            raise ConnectionError(f"node {machine_uuid} is unreachable")
        self.resets.append(machine_uuid)


class RawClient:
    """Signed COSI calls at the protocol level, for what OmniClient never sends on purpose
    (malformed resources, tampered signatures) or hides (the watch "ready" reply)."""

    def __init__(
        self, channel: Channel, key: siderov1.SigningKey | None, clock: Callable[[], float]
    ):
        self.stub = state_grpc.StateStub(channel)
        self.key = key
        self.clock = clock

    def md(self, method: str) -> list[tuple[str, str]] | None:
        if self.key is None:
            return None
        return siderov1.signed_metadata(
            f"/cosi.resource.State/{method}", self.key, now=self.clock()
        )

    async def get(self, type_: str, id_: str, ns: str = "default") -> resource_pb2.Resource:
        req = state_pb2.GetRequest(namespace=ns, type=type_, id=id_)
        return (await self.stub.Get(req, metadata=self.md("Get"))).resource

    async def list(self, type_: str, *terms: tuple[str, str], ns: str = "default") -> list[Any]:
        req = state_pb2.ListRequest(namespace=ns, type=type_)
        if terms:
            query = req.options.label_query.add()
            for key, value in terms:
                query.terms.add(key=key, op=resource_pb2.LabelTerm.EQUAL, value=[value])
        replies = await self.stub.List(req, metadata=self.md("List"))
        return [r.resource for r in replies]

    async def create(self, res: resource_pb2.Resource) -> resource_pb2.Resource:
        req = state_pb2.CreateRequest(resource=res)
        return (await self.stub.Create(req, metadata=self.md("Create"))).resource

    async def update(
        self, res: resource_pb2.Resource, expected_phase: str | None = None, owner: str = ""
    ) -> resource_pb2.Resource:
        req = state_pb2.UpdateRequest(new_resource=res)
        req.options.owner = owner
        if expected_phase is not None:
            req.options.expected_phase = expected_phase
        return (await self.stub.Update(req, metadata=self.md("Update"))).resource

    async def destroy(self, type_: str, id_: str) -> None:
        req = state_pb2.DestroyRequest(namespace="default", type=type_, id=id_)
        await self.stub.Destroy(req, metadata=self.md("Destroy"))

    async def teardown(self, type_: str, id_: str) -> bool:
        req = state_pb2.TeardownRequest(namespace="default", type=type_, id=id_)
        return (await self.stub.Teardown(req, metadata=self.md("Teardown"))).destroy_ready

    async def teardown_and_destroy(self, type_: str, id_: str) -> None:
        req = state_pb2.TeardownAndDestroyRequest(namespace="default", type=type_, id=id_)
        await self.stub.TeardownAndDestroy(req, metadata=self.md("TeardownAndDestroy"))

    def watch(self, req: state_pb2.WatchRequest) -> Any:
        return self.stub.Watch.open(metadata=self.md("Watch")), req


@dataclass
class Env:
    sim: OmniSim
    gateway: Gateway
    faults: Faults
    clients: dict[str, OmniClient]
    raw: RawClient
    keys: Keys

    def __getattr__(self, role: str) -> OmniClient:
        return self.clients[role]


def run(
    keys: Keys,
    scenario: Callable[[Env], Awaitable[None]],
    *,
    seed: OmniSeed | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    async def main() -> None:
        gateway, faults = Gateway(), Faults()
        sim = OmniSim(
            tls_cert=keys.cert,
            tls_key=keys.key,
            seed=seed or OmniSeed(join_token="lab-token"),
            gateway=gateway,
            faults=faults,
            clock=clock,
        )
        for role, account in keys.accounts.items():
            if role != "Unregistered":
                sim.register_public_key(account.public_key_armored, role, account.name)
        port = await sim.start()
        endpoint = parse_endpoint(f"https://127.0.0.1:{port}", where="test")
        ctx = ssl.create_default_context(cadata=keys.cert.decode())
        ctx.set_alpn_protocols(["h2"])
        channel = Channel("127.0.0.1", port, ssl=ctx)
        with tempfile.TemporaryDirectory() as tmp:
            pinned = Path(tmp) / "omni.crt"
            pinned.write_bytes(keys.cert)
            clients = {
                role.lower(): OmniClient(
                    endpoint,
                    siderov1.decode_service_account(account.env_value).key,
                    tls=TLSOptions(pinned_cert_file=pinned),
                )
                for role, account in keys.accounts.items()
            }
            operator = siderov1.decode_service_account(keys.accounts["Operator"].env_value).key
            raw = RawClient(channel, operator, time.time)
            try:
                await asyncio.wait_for(scenario(Env(sim, gateway, faults, clients, raw, keys)), 60)
            finally:
                for client in clients.values():
                    client.close()
                channel.close()
                await sim.stop()

    asyncio.run(main())


def resource(
    type_: str,
    id_: str,
    spec: Any,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    version: str = "undefined",
) -> resource_pb2.Resource:
    md = resource_pb2.Metadata(
        namespace="default",
        type=type_,
        id=id_,
        version=version,
        phase="running",
        labels=labels or {},
        annotations=annotations or {},
    )
    return resource_pb2.Resource(
        metadata=md, spec=resource_pb2.Spec(proto_spec=spec.SerializeToString())
    )


def cluster_spec(talos: str = TALOS, k8s: str = K8S) -> omni_pb2.ClusterSpec:
    return omni_pb2.ClusterSpec(talos_version=talos, kubernetes_version=k8s)


def cluster(name: str = "prod", talos: str = TALOS, k8s: str = K8S, **kw: Any) -> Any:
    """A Cluster as a raw protobuf resource (for the protocol-level client)."""
    return resource(CLUSTERS, name, cluster_spec(talos, k8s), **kw)


async def new_cluster(
    client: OmniClient, name: str = "prod", talos: str = TALOS, k8s: str = K8S, **kw: Any
) -> Any:
    return await client.create(CLUSTERS, name, cluster_spec(talos, k8s), **kw)


async def rejected(call: Awaitable[Any], status: Status, *fragments: str) -> str:
    """Await ``call``, which must fail with gRPC ``status``; its message must hold ``fragments``."""
    try:
        await call
    except ProviderError as exc:
        code, message = exc.code, exc.message
    except GRPCError as exc:
        code, message = int(exc.status.value), exc.message or ""
    else:
        pytest.fail(f"the call succeeded; expected {status.name}")
    assert code == status.value, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---- seed data -----------------------------------------------------------------------------


def test_seed_resources_are_served(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        token = await env.reader.get("DefaultJoinTokens.omni.sidero.dev", "default")
        assert token.spec.token_id == "lab-token"
        cfg = await env.reader.get("SiderolinkAPIConfigs.omni.sidero.dev", "siderolink-config")
        assert (cfg.spec.events_port, cfg.spec.logs_port) == (8090, 8092)
        assert cfg.spec.machine_api_advertised_url == "https://127.0.0.1:8090"
        assert cfg.owner == "SiderolinkAPIConfigController"
        version = await env.none.get("TalosVersions.omni.sidero.dev", TALOS)
        assert K8S in version.spec.compatible_kubernetes_versions
        features = await env.none.get("FeaturesConfigs.omni.sidero.dev", "features-config")
        assert features.spec.image_factory_base_url.startswith("https://")
        sysv = await env.none.get("SysVersions.system.sidero.dev", "current")
        assert sysv.namespace == "ephemeral" and sysv.spec.backend_version
        assert len(await env.none.list("TalosVersions.omni.sidero.dev")) > 10
        raw = await env.raw.get("TalosVersions.omni.sidero.dev", TALOS)
        assert "compatiblekubernetesversions:" in raw.spec.yaml_spec

    run(keys, scenario)


def test_connections_have_nagle_disabled(keys: Keys) -> None:
    """asyncio disables Nagle only on sockets created as IPPROTO_TCP; without it a reply sent
    in several TLS records waited ~40 ms for the client's delayed ACK (as no Go server does)."""

    async def scenario(env: Env) -> None:
        await env.reader.get("DefaultJoinTokens.omni.sidero.dev", "default")
        server = env.sim._server
        assert server is not None
        for listener in server._server.sockets:  # type: ignore[union-attr]
            assert listener.proto == socket.IPPROTO_TCP

    run(keys, scenario)


# ---- authentication ------------------------------------------------------------------------


def _tamper(md: list[tuple[str, str]], header: str, edit: Callable[[str], str]) -> list[Any]:
    return [(k, edit(v) if k == header else v) for k, v in md]


def test_signature_rejections(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        stub = env.raw.stub
        req = state_pb2.GetRequest(namespace="default", type=CLUSTERS, id="prod")
        key = siderov1.decode_service_account(keys.accounts["Operator"].env_value).key
        method = "/cosi.resource.State/Get"
        unauth = Status.UNAUTHENTICATED

        good = siderov1.signed_metadata(method, key, now=time.time())
        await rejected(stub.Get(req, metadata=good), Status.NOT_FOUND, "doesn't exist")

        tampered = _tamper(good, siderov1.PAYLOAD_HEADER, lambda v: v.replace("Get", "List"))
        await rejected(stub.Get(req, metadata=tampered), unauth, "invalid signature")

        wrong_method = siderov1.signed_metadata("/cosi.resource.State/List", key, now=time.time())
        await rejected(stub.Get(req, metadata=wrong_method), unauth, "invalid signature")

        for skew in (-400, 400):
            stale = siderov1.signed_metadata(method, key, now=time.time() + skew)
            await rejected(stub.Get(req, metadata=stale), unauth, "invalid signature")

        # an unknown key, through the real client: refused with a hint about the key and clock
        await rejected(env.unregistered.get(CLUSTERS, "prod"), unauth, "invalid signature")

        # a valid signature by another key under this key's fingerprint
        unknown = siderov1.decode_service_account(keys.accounts["Unregistered"].env_value).key
        foreign = dict(siderov1.signed_metadata(method, unknown, now=time.time()))
        foreign_sig = foreign[siderov1.SIGNATURE_HEADER].split(" ")[3]
        swapped = _tamper(
            good,
            siderov1.SIGNATURE_HEADER,
            lambda v: " ".join([*v.split(" ")[:3], foreign_sig]),
        )
        await rejected(stub.Get(req, metadata=swapped), unauth, "invalid signature")

        # a signed header that the payload does not carry
        extra = [*good, ("cluster", "prod")]
        await rejected(stub.Get(req, metadata=extra), unauth, "invalid signature")

        no_sig = env.raw.stub.Get(req)
        await rejected(no_sig, unauth, "unauthenticated: missing valid signature")
        versions = state_pb2.GetRequest(
            namespace="default", type="TalosVersions.omni.sidero.dev", id=TALOS
        )
        await rejected(env.raw.stub.Get(versions), unauth, "missing valid signature")

    run(keys, scenario)


# ---- authorization -------------------------------------------------------------------------


def test_roles_by_type_and_verb(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        denied = Status.PERMISSION_DENIED
        await rejected(
            new_cluster(env.reader),
            denied,
            "failed to validate: 1 error occurred:\n\t* rpc error: code = PermissionDenied "
            'desc = unauthorized: access denied: insufficient role: "Reader"',
        )
        await rejected(env.none.get(CLUSTERS, "prod"), denied, 'insufficient role: "None"')
        await rejected(env.infraprovider.list(CLUSTERS), denied, "insufficient role")
        assert await env.infraprovider.list("Machines.omni.sidero.dev") == []
        await rejected(env.none.list("Machines.omni.sidero.dev"), denied)
        await new_cluster(env.operator)
        assert (await env.reader.get(CLUSTERS, "prod")).id == "prod"

        secrets = "ImportedClusterSecrets.omni.sidero.dev"
        data = omni_pb2.ImportedClusterSecretsSpec(data="x")
        await rejected(env.reader.create(secrets, "other", data), denied, "insufficient role")
        await rejected(
            env.admin.get(secrets, "other"),
            denied,
            "only create and destroy access is permitted for imported cluster secrets",
        )
        await rejected(env.admin.list(secrets), denied, "only create and destroy")
        await rejected(
            env.admin.create("ClusterStatuses.omni.sidero.dev", "prod"),
            denied,
            "only read access is permitted",
        )
        await rejected(
            env.admin.create("Links.omni.sidero.dev", "u1"),
            denied,
            "only read and destroy access is permitted",
        )
        await rejected(
            env.admin.list("ClusterSecrets.omni.sidero.dev"), denied, "no access is permitted"
        )
        await rejected(env.admin.list("JoinTokens.omni.sidero.dev"), denied, "no access")
        version = await env.admin.get("TalosVersions.omni.sidero.dev", TALOS)
        await rejected(env.admin.update(version), denied, "only read access")

    run(keys, scenario)


# ---- COSI semantics ------------------------------------------------------------------------


def test_cosi_create_update_destroy_semantics(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        created = await new_cluster(op, labels={"team": "a"})
        assert (created.version, created.phase, created.owner) == ("1", "running", "")
        assert created.created is not None
        await rejected(
            new_cluster(op),
            Status.ALREADY_EXISTS,
            f"resource {CLUSTERS}(default/prod@undefined) already exists",
        )

        # Update replaces all metadata: labels not echoed are gone
        await env.sim.settle()
        cur = await op.get(CLUSTERS, "prod")
        v = int(cur.version)
        updated = await op.update(cur.replace(labels={}).with_annotation("note", "x"))
        assert updated.version == str(v + 1) and dict(updated.labels) == {}
        assert updated.finalizers == ("ClusterController",)
        await rejected(
            op.update(cur),
            Status.FAILED_PRECONDITION,
            f'resource {CLUSTERS}(default/prod@{v + 1}) update conflict: expected version "{v}", '
            f'actual version "{v + 1}"',
        )
        await rejected(
            op.update(updated, owner="SomeController"), Status.PERMISSION_DENIED, 'is owned by ""'
        )
        await rejected(
            op.update(updated, expected_phase="tearingDown"),
            Status.INVALID_ARGUMENT,
            "is not in phase tearingDown",
        )
        again = await op.update(updated)
        assert again.version == str(v + 2)
        # omnictl's UpdateWithConflicts: no RPC when nothing changes
        same = await op.update_with_conflicts(CLUSTERS, "prod", lambda r: r)
        assert same.version == again.version

        missing = (await op.get(CLUSTERS, "prod")).replace(id="ghost", version="1")
        await rejected(
            op.update(missing), Status.NOT_FOUND, f"{CLUSTERS}(default/ghost@1) doesn't exist"
        )
        await rejected(
            op.destroy(CLUSTERS, "ghost"), Status.NOT_FOUND, "(default/ghost@undefined) doesn't"
        )
        await rejected(op.teardown(CLUSTERS, "ghost"), Status.NOT_FOUND)
        await rejected(
            new_cluster(op, "empty", talos="", k8s=""),
            Status.INVALID_ARGUMENT,
            "invalid talos version",
        )

        # malformed input is UNKNOWN, as Omni answers it
        no_spec = cluster("bad")
        no_spec.ClearField("spec")
        await rejected(env.raw.create(no_spec), Status.UNKNOWN, "spec is missing")
        await rejected(
            env.raw.create(cluster("bad", version="")), Status.UNKNOWN, "error parsing version"
        )
        bad_phase = cluster("bad")
        bad_phase.metadata.phase = ""
        await rejected(env.raw.create(bad_phase), Status.UNKNOWN, "unknown phase")

        # the ClusterController holds a finalizer on a running cluster
        await rejected(
            op.destroy(CLUSTERS, "prod"),
            Status.FAILED_PRECONDITION,
            f"resource {CLUSTERS}(default/prod@",
            "has pending finalizers [ClusterController]",
        )
        assert await op.teardown(CLUSTERS, "prod") is False
        await op.wait_destroyed(CLUSTERS, "prod", timeout=10)

        # TeardownAndDestroy (not in OmniClient) blocks until the finalizers are gone
        await new_cluster(op, "second")
        await env.sim.settle()
        await env.raw.teardown_and_destroy(CLUSTERS, "second")
        assert await op.find(CLUSTERS, "second") is None

    run(keys, scenario)


def test_list_label_queries(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await new_cluster(op, "a", labels={"env": "prod"})
        await new_cluster(op, "b", labels={"env": "dev"})
        await new_cluster(op, "c")

        async def ids(**kw: Any) -> list[str]:
            return [r.id for r in await op.list(CLUSTERS, **kw)]

        assert await ids() == ["a", "b", "c"]
        assert await ids(labels={"env": "dev"}) == ["b"]
        assert await ids(labels=[label_exists("env")]) == ["a", "b"]
        assert await ids(labels=[label_in("env", ["prod", "dev"], invert=True)]) == ["c"]
        assert await ids(id_regexp="^[ab]$") == ["a", "b"]

    run(keys, scenario)


# ---- watch ---------------------------------------------------------------------------------


async def _next(stream: Any) -> state_pb2.WatchResponse:
    msg = await asyncio.wait_for(stream.recv_message(), 5)
    assert msg is not None
    return msg


def test_watch_single_resource(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        opened, req = env.raw.watch(
            state_pb2.WatchRequest(namespace="default", type=CLUSTERS, id="prod")
        )
        async with opened as stream:
            await stream.send_message(req, end=True)
            assert len((await _next(stream)).event) == 0  # "watch is ready"
            first = (await _next(stream)).event[0]
            assert first.event_type == state_pb2.DESTROYED
            assert (first.resource.metadata.id, first.resource.metadata.version) == (
                "prod",
                "undefined",
            )
            await new_cluster(op)
            created = (await _next(stream)).event[0]
            assert created.event_type == state_pb2.CREATED
            assert created.resource.metadata.version == "1"
            await new_cluster(op, "other")  # not watched
            await env.sim.settle()  # the ClusterController adds its finalizer
            updated = (await _next(stream)).event[0]
            assert updated.event_type == state_pb2.UPDATED
            assert updated.old.metadata.version == "1"
            assert list(updated.resource.metadata.finalizers) == ["ClusterController"]
            await stream.cancel()

        # through OmniClient: an existing resource starts with its current state
        async with op.watch(CLUSTERS, "other") as events:
            first_event = await anext(events)
            assert (first_event.kind, first_event.resource.id) == ("created", "other")
            await op.teardown(CLUSTERS, "other")
            kinds = []
            async for event in events:
                kinds.append(event.kind)
                if event.kind == "destroyed":
                    break
            assert kinds[0] == "updated" and kinds[-1] == "destroyed"

        bad = state_pb2.WatchRequest(namespace="default", type=CLUSTERS, id="x")
        bad.options.bootstrap_contents = True
        opened, req = env.raw.watch(bad)
        with pytest.raises(GRPCError) as info:
            async with opened as stream:
                await stream.send_message(req, end=True)
                await stream.recv_message()
        assert info.value.status is Status.UNIMPLEMENTED

    run(keys, scenario)


def test_watch_kind_with_bootstrap_and_labels(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await new_cluster(op, "a", labels={"env": "prod"})
        await new_cluster(op, "b")
        await env.sim.settle()
        async with op.watch(CLUSTERS, bootstrap=True, labels={"env": "prod"}) as events:
            boot = await anext(events)
            assert (boot.kind, boot.resource.id) == ("created", "a")
            assert (await anext(events)).kind == "bootstrapped"
            # b gains the label: for this watch it is created
            b = await op.get(CLUSTERS, "b")
            await op.update(b.with_label("env", "prod"))
            event = await anext(events)
            assert (event.kind, event.resource.id) == ("created", "b")
            # and losing it reads as destroyed
            b = await op.get(CLUSTERS, "b")
            await op.update(b.without_label("env"))
            event = await anext(events)
            assert (event.kind, event.resource.id) == ("destroyed", "b")

        # without api_version 1 there is no BOOTSTRAPPED marker
        req = state_pb2.WatchRequest(namespace="default", type=CLUSTERS)
        req.options.bootstrap_contents = True
        opened, req = env.raw.watch(req)
        async with opened as stream:
            await stream.send_message(req, end=True)
            assert len((await _next(stream)).event) == 0
            ids = [(await _next(stream)).event[0].resource.metadata.id for _ in range(2)]
            assert ids == ["a", "b"]
            await new_cluster(op, "c")
            event = (await _next(stream)).event[0]
            assert (event.event_type, event.resource.metadata.id) == (state_pb2.CREATED, "c")
            await stream.cancel()

    run(keys, scenario)


# ---- faults --------------------------------------------------------------------------------


def test_injected_omni_failures_and_latency(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        env.faults.omni_failures.append(OmniFailure("Create", CLUSTERS, code=14, message="boom"))
        await rejected(new_cluster(env.operator), Status.UNAVAILABLE, "boom")
        # other types and methods are unaffected
        await env.operator.get("TalosVersions.omni.sidero.dev", TALOS)
        env.faults.omni_failures[:] = [OmniFailure("Get", None, code=13, message="down")]
        await rejected(env.operator.get(CLUSTERS, "prod"), Status.INTERNAL, "down")
        env.faults.clear()
        env.faults.latency_ms = 150
        started = time.monotonic()
        await new_cluster(env.operator)
        assert time.monotonic() - started >= 0.15

    run(keys, scenario)


def test_sys_versions_api_version_is_checked_by_the_client(keys: Keys) -> None:
    from omniport.providers.omni import API_VERSION, UnsupportedAPIVersion

    async def supported(env: Env) -> None:
        found = await env.reader.server_version()
        assert (found.api_version, found.instance_name) == (API_VERSION, "lab")

    async def too_old(env: Env) -> None:
        with pytest.raises(UnsupportedAPIVersion, match="reports no API version"):
            await env.reader.server_version()

    run(keys, supported)
    run(keys, too_old, seed=OmniSeed(join_token="lab-token", backend_api_version=0))
