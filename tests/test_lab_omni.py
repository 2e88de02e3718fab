"""The lab's Omni over the network: siderov1 authentication, roles, COSI semantics, validations.

Every test starts an ``OmniSim`` on loopback with a self-signed TLS certificate and talks to it
through gRPC with real siderov1 signatures; nothing of the server is mocked. The NodeGateway is
a small recording class: it is the seam to the Talos side, not part of the server under test.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
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

from lab.faults import Faults, OmniFailure
from lab.omni import OmniSeed, OmniSim
from providers.codec import siderov1
from providers.wire.omni.specs import omni_pb2, siderolink_pb2, system_pb2
from providers.wire.v1alpha1 import resource_pb2, state_grpc, state_pb2

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "talos-fixtures"
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

    async def push_config(self, machine_uuid: str, config: bytes) -> None:
        if machine_uuid in self.fail:
            raise ConnectionError(f"node {machine_uuid} is unreachable")
        self.pushed.setdefault(machine_uuid, []).append(config)

    def node_config(self, machine_uuid: str) -> bytes:
        return (self.pushed.get(machine_uuid) or [b""])[-1]


class Client:
    """A signed COSI client for one identity."""

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
    clients: dict[str, Client]
    keys: Keys

    def __getattr__(self, role: str) -> Client:
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
        ctx = ssl.create_default_context(cadata=keys.cert.decode())
        ctx.set_alpn_protocols(["h2"])
        channel = Channel("127.0.0.1", port, ssl=ctx)
        clients = {
            role.lower(): Client(
                channel, siderov1.decode_service_account(account.env_value).key, time.time
            )
            for role, account in keys.accounts.items()
        }
        clients["anonymous"] = Client(channel, None, time.time)
        try:
            await asyncio.wait_for(scenario(Env(sim, gateway, faults, clients, keys)), 60)
        finally:
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


def cluster(name: str = "prod", talos: str = TALOS, k8s: str = K8S, **kw: Any) -> Any:
    return resource(
        CLUSTERS, name, omni_pb2.ClusterSpec(talos_version=talos, kubernetes_version=k8s), **kw
    )


async def rejected(call: Awaitable[Any], status: Status, *fragments: str) -> str:
    with pytest.raises(GRPCError) as info:
        await call
    assert info.value.status is status, info.value.message
    for fragment in fragments:
        assert fragment in (info.value.message or ""), info.value.message
    return info.value.message or ""


# ---- seed data -----------------------------------------------------------------------------


def test_seed_resources_are_served(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        token = await env.reader.get("DefaultJoinTokens.omni.sidero.dev", "default")
        assert siderolink_pb2.DefaultJoinTokenSpec.FromString(token.spec.proto_spec).token_id == (
            "lab-token"
        )
        cfg = await env.reader.get("SiderolinkAPIConfigs.omni.sidero.dev", "siderolink-config")
        api = siderolink_pb2.SiderolinkAPIConfigSpec.FromString(cfg.spec.proto_spec)
        assert (api.events_port, api.logs_port) == (8090, 8092)
        assert cfg.metadata.owner == "SiderolinkAPIConfigController"
        version = await env.none.get("TalosVersions.omni.sidero.dev", TALOS)
        spec = omni_pb2.TalosVersionSpec.FromString(version.spec.proto_spec)
        assert K8S in spec.compatible_kubernetes_versions
        assert "compatiblekubernetesversions:" in version.spec.yaml_spec
        features = await env.none.get("FeaturesConfigs.omni.sidero.dev", "features-config")
        assert omni_pb2.FeaturesConfigSpec.FromString(
            features.spec.proto_spec
        ).image_factory_base_url.startswith("https://")
        sysv = await env.none.get("SysVersions.system.sidero.dev", "current", ns="ephemeral")
        assert system_pb2.SysVersionSpec.FromString(sysv.spec.proto_spec).backend_version
        assert len(await env.none.list("TalosVersions.omni.sidero.dev")) > 10

    run(keys, scenario)


# ---- authentication ------------------------------------------------------------------------


def _tamper(md: list[tuple[str, str]], header: str, edit: Callable[[str], str]) -> list[Any]:
    return [(k, edit(v) if k == header else v) for k, v in md]


def test_signature_rejections(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        stub = env.operator.stub
        req = state_pb2.GetRequest(namespace="default", type=CLUSTERS, id="prod")
        key = siderov1.decode_service_account(keys.accounts["Operator"].env_value).key
        method = "/cosi.resource.State/Get"

        good = siderov1.signed_metadata(method, key, now=time.time())
        await rejected(stub.Get(req, metadata=good), Status.NOT_FOUND, "doesn't exist")

        tampered = _tamper(good, siderov1.PAYLOAD_HEADER, lambda v: v.replace("Get", "List"))
        await rejected(
            stub.Get(req, metadata=tampered), Status.UNAUTHENTICATED, "invalid signature"
        )

        wrong_method = siderov1.signed_metadata("/cosi.resource.State/List", key, now=time.time())
        await rejected(stub.Get(req, metadata=wrong_method), Status.UNAUTHENTICATED)

        for skew in (-400, 400):
            stale = siderov1.signed_metadata(method, key, now=time.time() + skew)
            await rejected(
                stub.Get(req, metadata=stale), Status.UNAUTHENTICATED, "invalid signature"
            )

        unknown = siderov1.decode_service_account(keys.accounts["Unregistered"].env_value).key
        signed = siderov1.signed_metadata(method, unknown, now=time.time())
        await rejected(stub.Get(req, metadata=signed), Status.UNAUTHENTICATED, "invalid signature")

        other_sig = siderov1.signed_metadata(method, unknown, now=time.time())
        mixed = _tamper(
            good,
            siderov1.SIGNATURE_HEADER,
            lambda v: " ".join(
                v.split(" ")[:3] + [dict(other_sig)[siderov1.SIGNATURE_HEADER].split(" ")[3]]
            ),
        )
        await rejected(stub.Get(req, metadata=mixed), Status.UNAUTHENTICATED)

        # extra signed header that the payload does not list
        await rejected(stub.Get(req, metadata=[*good, ("cluster", "prod")]), Status.UNAUTHENTICATED)

        await rejected(
            env.anonymous.get(CLUSTERS, "prod"),
            Status.UNAUTHENTICATED,
            "missing valid signature",
        )
        await rejected(
            env.anonymous.get("TalosVersions.omni.sidero.dev", TALOS), Status.UNAUTHENTICATED
        )

    run(keys, scenario)


# ---- authorization -------------------------------------------------------------------------


def test_roles_by_type_and_verb(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        await rejected(
            env.reader.create(cluster()),
            Status.PERMISSION_DENIED,
            "failed to validate: 1 error occurred:\n\t* rpc error: code = PermissionDenied desc = "
            'unauthorized: access denied: insufficient role: "Reader"',
        )
        await rejected(env.none.get(CLUSTERS, "prod"), Status.PERMISSION_DENIED, '"None"')
        await rejected(
            env.infraprovider.list(CLUSTERS), Status.PERMISSION_DENIED, "insufficient role"
        )
        assert await env.infraprovider.list("Machines.omni.sidero.dev") == []
        await rejected(env.none.list("Machines.omni.sidero.dev"), Status.PERMISSION_DENIED)
        await env.operator.create(cluster())
        assert (await env.reader.get(CLUSTERS, "prod")).metadata.id == "prod"

        secrets = resource(
            "ImportedClusterSecrets.omni.sidero.dev",
            "other",
            omni_pb2.ImportedClusterSecretsSpec(data="x"),
        )
        await rejected(env.reader.create(secrets), Status.PERMISSION_DENIED, "insufficient role")
        await rejected(
            env.admin.get("ImportedClusterSecrets.omni.sidero.dev", "other"),
            Status.PERMISSION_DENIED,
            "only create and destroy access is permitted for imported cluster secrets",
        )
        await rejected(
            env.admin.list("ImportedClusterSecrets.omni.sidero.dev"), Status.PERMISSION_DENIED
        )
        status = resource("ClusterStatuses.omni.sidero.dev", "prod", omni_pb2.ClusterStatusSpec())
        await rejected(
            env.admin.create(status), Status.PERMISSION_DENIED, "only read access is permitted"
        )
        link = resource("Links.omni.sidero.dev", "u1", siderolink_pb2.SiderolinkSpec())
        await rejected(
            env.admin.create(link),
            Status.PERMISSION_DENIED,
            "only read and destroy access is permitted",
        )
        await rejected(
            env.admin.get("ClusterSecrets.omni.sidero.dev", "prod"),
            Status.PERMISSION_DENIED,
            "no access is permitted",
        )
        await rejected(env.admin.list("JoinTokens.omni.sidero.dev"), Status.PERMISSION_DENIED)
        version = await env.admin.get("TalosVersions.omni.sidero.dev", TALOS)
        await rejected(env.admin.update(version), Status.PERMISSION_DENIED, "only read access")

    run(keys, scenario)


# ---- COSI semantics ------------------------------------------------------------------------


def test_cosi_create_update_destroy_semantics(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        created = await op.create(cluster(labels={"team": "a"}))
        md = created.metadata
        assert (md.version, md.phase, md.owner) == ("1", "running", "")
        assert md.HasField("created")
        await rejected(
            op.create(cluster()),
            Status.ALREADY_EXISTS,
            f"resource {CLUSTERS}(default/prod@undefined) already exists",
        )

        # Update replaces all metadata: labels not echoed are gone
        await env.sim.settle()
        cur = await op.get(CLUSTERS, "prod")
        v = int(cur.metadata.version)
        cur.metadata.labels.clear()
        cur.metadata.annotations["note"] = "x"
        updated = await op.update(cur)
        assert updated.metadata.version == str(v + 1) and dict(updated.metadata.labels) == {}
        assert list(updated.metadata.finalizers) == ["ClusterController"]
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
        again = await op.update(updated, expected_phase="running")
        assert again.metadata.version == str(v + 2)

        missing = cluster("ghost", version="1")
        await rejected(
            op.update(missing), Status.NOT_FOUND, f"{CLUSTERS}(default/ghost@1) doesn't exist"
        )
        await rejected(op.destroy(CLUSTERS, "ghost"), Status.NOT_FOUND, "@undefined) doesn't exist")
        await rejected(op.teardown(CLUSTERS, "ghost"), Status.NOT_FOUND)

        # malformed input is UNKNOWN, as Omni answers it
        no_spec = cluster("bad")
        no_spec.ClearField("spec")
        await rejected(op.create(no_spec), Status.UNKNOWN, "spec is missing")
        await rejected(
            op.create(cluster("bad", version="")), Status.UNKNOWN, "error parsing version"
        )
        bad_phase = cluster("bad")
        bad_phase.metadata.phase = ""
        await rejected(op.create(bad_phase), Status.UNKNOWN, "unknown phase")
        empty_spec = resource(CLUSTERS, "empty", omni_pb2.ClusterSpec())
        await rejected(op.create(empty_spec), Status.INVALID_ARGUMENT, "invalid talos version")

        await env.sim.settle()
        # the ClusterController holds a finalizer on a running cluster
        await rejected(
            op.destroy(CLUSTERS, "prod"),
            Status.FAILED_PRECONDITION,
            f"resource {CLUSTERS}(default/prod@",
            "has pending finalizers [ClusterController]",
        )
        assert await op.teardown(CLUSTERS, "prod") is False
        await env.sim.settle()
        await rejected(op.get(CLUSTERS, "prod"), Status.NOT_FOUND)

        # TeardownAndDestroy blocks until the finalizers are gone, then destroys
        await op.create(cluster("second"))
        await env.sim.settle()
        await op.teardown_and_destroy(CLUSTERS, "second")
        await rejected(op.get(CLUSTERS, "second"), Status.NOT_FOUND)

    run(keys, scenario)


def test_list_label_queries(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await op.create(cluster("a", labels={"env": "prod"}))
        await op.create(cluster("b", labels={"env": "dev"}))
        await op.create(cluster("c"))
        assert [r.metadata.id for r in await op.list(CLUSTERS)] == ["a", "b", "c"]
        assert [r.metadata.id for r in await op.list(CLUSTERS, ("env", "dev"))] == ["b"]
        req = state_pb2.ListRequest(namespace="default", type=CLUSTERS)
        req.options.label_query.add().terms.add(key="env", op=resource_pb2.LabelTerm.EXISTS)
        replies = await op.stub.List(req, metadata=op.md("List"))
        assert [r.resource.metadata.id for r in replies] == ["a", "b"]
        req = state_pb2.ListRequest(namespace="default", type=CLUSTERS)
        req.options.label_query.add().terms.add(
            key="env", op=resource_pb2.LabelTerm.IN, value=["prod", "dev"], invert=True
        )
        replies = await op.stub.List(req, metadata=op.md("List"))
        assert [r.resource.metadata.id for r in replies] == ["c"]
        req = state_pb2.ListRequest(namespace="default", type=CLUSTERS)
        req.options.id_query.regexp = "^[ab]$"
        replies = await op.stub.List(req, metadata=op.md("List"))
        assert [r.resource.metadata.id for r in replies] == ["a", "b"]

    run(keys, scenario)


# ---- watch ---------------------------------------------------------------------------------


async def _next(stream: Any) -> state_pb2.WatchResponse:
    msg = await asyncio.wait_for(stream.recv_message(), 5)
    assert msg is not None
    return msg


def test_watch_single_resource(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        opened, req = op.watch(
            state_pb2.WatchRequest(namespace="default", type=CLUSTERS, id="prod")
        )
        async with opened as stream:
            await stream.send_message(req, end=True)
            assert len((await _next(stream)).event) == 0  # "watch is ready"
            first = (await _next(stream)).event[0]
            assert first.event_type == state_pb2.DESTROYED
            assert first.resource.metadata.id == "prod"
            assert first.resource.metadata.version == "undefined"
            await op.create(cluster())
            created = (await _next(stream)).event[0]
            assert created.event_type == state_pb2.CREATED
            assert created.resource.metadata.version == "1"
            await op.create(cluster("other"))  # not watched
            await env.sim.settle()  # the ClusterController adds its finalizer
            updated = (await _next(stream)).event[0]
            assert updated.event_type == state_pb2.UPDATED
            assert updated.old.metadata.version == "1"
            assert list(updated.resource.metadata.finalizers) == ["ClusterController"]
            await op.teardown(CLUSTERS, "prod")
            kinds = []
            while not kinds or kinds[-1] != state_pb2.DESTROYED:
                kinds.append((await _next(stream)).event[0].event_type)
            assert kinds[-1] == state_pb2.DESTROYED
            await stream.cancel()

        # an existing resource starts with CREATED (its current state)
        opened, req = op.watch(
            state_pb2.WatchRequest(namespace="default", type=CLUSTERS, id="other")
        )
        async with opened as stream:
            await stream.send_message(req, end=True)
            assert len((await _next(stream)).event) == 0
            current = (await _next(stream)).event[0]
            assert (
                current.event_type == state_pb2.CREATED and current.resource.metadata.id == "other"
            )
            await stream.cancel()

        bad = state_pb2.WatchRequest(namespace="default", type=CLUSTERS, id="x")
        bad.options.bootstrap_contents = True
        opened, req = op.watch(bad)
        with pytest.raises(GRPCError) as info:
            async with opened as stream:
                await stream.send_message(req, end=True)
                await stream.recv_message()
        assert info.value.status is Status.UNIMPLEMENTED

    run(keys, scenario)


def test_watch_kind_with_bootstrap_and_labels(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await op.create(cluster("a", labels={"env": "prod"}))
        await op.create(cluster("b"))
        req = state_pb2.WatchRequest(namespace="default", type=CLUSTERS, api_version=1)
        req.options.bootstrap_contents = True
        req.options.label_query.add().terms.add(
            key="env", op=resource_pb2.LabelTerm.EQUAL, value=["prod"]
        )
        opened, req = op.watch(req)
        async with opened as stream:
            await stream.send_message(req, end=True)
            assert len((await _next(stream)).event) == 0
            boot = (await _next(stream)).event[0]
            assert boot.event_type == state_pb2.CREATED and boot.resource.metadata.id == "a"
            assert (await _next(stream)).event[0].event_type == state_pb2.BOOTSTRAPPED
            # b gains the label: for this watch it is created
            b = await op.get(CLUSTERS, "b")
            b.metadata.labels["env"] = "prod"
            await op.update(b)
            event = (await _next(stream)).event[0]
            while event.resource.metadata.id != "b":  # skip finalizer updates of a
                event = (await _next(stream)).event[0]
            assert event.event_type == state_pb2.CREATED
            await stream.cancel()

        # without api_version 1 there is no BOOTSTRAPPED marker
        req = state_pb2.WatchRequest(namespace="default", type=CLUSTERS)
        req.options.bootstrap_contents = True
        opened, req = op.watch(req)
        async with opened as stream:
            await stream.send_message(req, end=True)
            assert len((await _next(stream)).event) == 0
            ids = [(await _next(stream)).event[0].resource.metadata.id for _ in range(2)]
            assert ids == ["a", "b"]
            await op.create(cluster("c"))
            event = (await _next(stream)).event[0]
            while event.resource.metadata.id != "c":
                event = (await _next(stream)).event[0]
            assert event.event_type == state_pb2.CREATED
            await stream.cancel()

    run(keys, scenario)


# ---- faults --------------------------------------------------------------------------------


def test_injected_omni_failures_and_latency(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        env.faults.omni_failures.append(OmniFailure("Create", CLUSTERS, code=14, message="boom"))
        await rejected(env.operator.create(cluster()), Status.UNAVAILABLE, "boom")
        # other types and methods are unaffected
        await env.operator.get("TalosVersions.omni.sidero.dev", TALOS)
        env.faults.omni_failures[:] = [OmniFailure("Get", None, code=13, message="down")]
        await rejected(env.operator.get(CLUSTERS, "prod"), Status.INTERNAL, "down")
        env.faults.clear()
        env.faults.latency_ms = 150
        started = time.monotonic()
        await env.operator.create(cluster())
        assert time.monotonic() - started >= 0.15

    run(keys, scenario)
