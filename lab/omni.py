"""The lab's Omni: ``cosi.resource.State`` over TLS with siderov1 signatures (omni-wire.md §2-3).

``OmniSim`` serves Omni's COSI State service on loopback with real TLS and grpclib: every call is
checked like Omni's interceptor does (siderov1 signature, ±5 min skew, registered key and its
role), authorized by type and verb, validated (including the cluster lock rules), then applied
to an in-memory COSI store (``lab/omni_store.py``) that the controllers of
``lab/omni_controllers.py`` react to. The Talos side of the lab tells it when a node joins or
leaves (``on_node_joined``/``on_node_left``), and it reaches nodes only through ``NodeGateway``.

Faults (``lab/faults.py``): every call first sleeps ``faults.delay()``, then fails with the
configured code if ``faults.omni_failure(method, type)`` matches.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import os
import secrets
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from omniport.lab.faults import Faults
from omniport.lab.grpc_compression import CompressingServer
from omniport.lab.omni_access import ANONYMOUS, Caller, Role
from omniport.lab.omni_controllers import (
    ConfigApplyController,
    Context,
    MachineStatusController,
    NodeGateway,
    NodeInfo,
    RenderRequest,
)
from omniport.lab.omni_patchdata import PatchData
from omniport.lab.omni_render import (
    JoinOptions,
    config_patch_problems,
    release_of,
    render_machine_config,
    secrets_bundle_problem,
)
from omniport.lab.omni_runtime import Runtime
from omniport.lab.omni_service import StateService
from omniport.lab.omni_signatures import VerifiedCalls
from omniport.lab.omni_store import Resource, Store
from omniport.lab.omni_types import (
    CLUSTER_SECRETS,
    JOIN_TOKEN_USAGES,
    PENDING_MACHINES,
    TYPES,
    ClusterSecretsData,
    JoinTokenUsageData,
    PendingMachineData,
)
from omniport.lab.omni_validate import Checks, Validator
from omniport.providers.codec import siderov1
from omniport.providers.codec.omni_names import (
    DEFAULT_JOIN_TOKENS,
    DEFAULT_NAMESPACE,
    EPHEMERAL_NAMESPACE,
    FEATURES_CONFIGS,
    IMAGE_FACTORY_AUTH_ID,
    IMAGE_FACTORY_AUTHS,
    LINKS,
    PHASE_RUNNING,
    SIDEROLINK_API_CONFIGS,
    SYS_VERSIONS,
    TALOS_VERSIONS,
    VIRTUAL_NAMESPACE,
)
from omniport.providers.wire.omni.specs import omni_pb2, siderolink_pb2, system_pb2, virtual_pb2

__all__ = [
    "DEFAULT_OMNI_VERSION",
    "NodeGateway",
    "OmniSeed",
    "OmniSim",
    "Role",
    "default_talos_versions",
]

DEFAULT_OMNI_VERSION = "1.11.0-alpha.0"
"""Omni's main branch as the references read it (after v1.10.4): every denylist rule applies."""

log = logging.getLogger("lab.omni")


def default_talos_versions() -> dict[str, list[str]]:
    """Talos versions the lab's Omni knows, each with its compatible Kubernetes versions."""
    k8s = {
        "1.9": ["1.27.16", "1.28.15", "1.29.15", "1.30.14", "1.31.13", "1.32.9"],
        "1.10": ["1.28.15", "1.29.15", "1.30.14", "1.31.13", "1.32.9", "1.33.5"],
        "1.11": ["1.29.15", "1.30.14", "1.31.13", "1.32.9", "1.33.5", "1.34.1"],
        "1.12": ["1.30.14", "1.31.13", "1.32.9", "1.33.5", "1.34.1", "1.35.0"],
    }
    patches = {"1.9": 6, "1.10": 7, "1.11": 5, "1.12": 0}
    out: dict[str, list[str]] = {}
    for minor, last in patches.items():
        for patch in range(last + 1):
            out[f"{minor}.{patch}"] = list(k8s[minor])
    return out


@dataclass
class OmniSeed:
    """What the lab's Omni starts with (omni-wire.md §5.6) and how it advertises itself."""

    talos_versions: dict[str, list[str]] = field(default_factory=default_talos_versions)
    join_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    machine_api_url: str = "https://127.0.0.1:8090"
    """``SiderolinkAPIConfig.machine_api_advertised_url`` (the base of ``apiUrl``)."""
    wireguard_endpoint: str = "127.0.0.1:50180"
    events_port: int = 8090
    logs_port: int = 8092
    image_factory_base_url: str = "https://factory.talos.dev"
    secondary_image_factory_base_url: str = ""
    image_factory_urls: dict[str, str] = field(default_factory=dict)
    """Talos version -> the factory its ``TalosVersion`` records (``image_factory_url``)."""
    image_factory_auth: tuple[str, str] | None = None
    """(username, password) of an Enterprise factory: Omni then marks its factory Enterprise
    and serves ``ImageFactoryAuths/image-factory-auth`` in namespace ``virtual``."""
    siderolink_host: str = "fdae:41e4:649b:9303::1"
    load_balancer_port_base: int = 10000
    backend_version: str = DEFAULT_OMNI_VERSION
    """The Omni release the lab answers as (SysVersions); its config-patch denylist follows it."""
    instance_name: str = "lab"
    backend_api_version: int = 1
    """SysVersions' API version (Omni's clients refuse any other than theirs; 0 = too old)."""
    cluster_import_enabled: bool = True
    zstd_dictionary: bytes | None = None
    """Omni's zstd dictionary 1, to read compressed config patches (see lab/omni_patchdata.py)."""
    join_seconds: float = 0.1
    """How long a first join stays a PendingMachine before its Link exists (Omni hands the
    machine a node unique token over SideroLink and the machine provisions again)."""


@dataclass(frozen=True)
class _Key:
    public: siderov1.PublicKey
    role: Role
    identity: str


# ---- the simulator -------------------------------------------------------------------------


class OmniSim:
    """An Omni instance for the lab: COSI over TLS, roles, validations and controllers."""

    def __init__(
        self,
        *,
        tls_cert: bytes | None,
        tls_key: bytes | None,
        seed: OmniSeed | None = None,
        gateway: NodeGateway,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed or OmniSeed()
        self.faults = faults or Faults()
        self.gateway = gateway
        self.clock = clock
        self.store = Store(clock)
        self.nodes: dict[str, NodeInfo] = {}
        self._keys: dict[str, _Key] = {}
        self._verified = VerifiedCalls()
        self.record = False
        """Keep ``calls`` and ``rejections`` (tests that run this Omni in their process)."""
        self.calls: list[tuple[str, str]] = []
        """(method, identity) of every call whose signature verified."""
        self.rejections: list[str] = []
        """Why each refused signature was refused, as Omni logs it."""
        # No certificate: plaintext HTTP/2 (h2c), as Omni behind a TLS-terminating proxy.
        self._tls = self._ssl_context(tls_cert, tls_key) if tls_cert and tls_key else None
        self.patch_data = PatchData(self.seed.zstd_dictionary)
        self.validator = Validator(
            self.store,
            Checks(
                config_patch=functools.partial(
                    config_patch_problems, release=release_of(self.seed.backend_version)
                ),
                secrets_bundle=secrets_bundle_problem,
                cluster_import_enabled=self.seed.cluster_import_enabled,
                patch_data=self.patch_data,
            ),
        )
        self.join = JoinOptions(
            api_url=self.seed.machine_api_url,
            join_token=self.seed.join_token,
            listen_host=self.seed.siderolink_host,
            events_port=self.seed.events_port,
            logs_port=self.seed.logs_port,
        )
        self._ctx = Context(
            store=self.store,
            nodes=self.nodes,
            gateway=gateway,
            render=self.render,
            siderolink_host=self.seed.siderolink_host,
            load_balancer_port_base=self.seed.load_balancer_port_base,
            patch_text=self.patch_data.text,
            system_patches=lambda: self.faults.system_patches,
        )
        self.runtime = Runtime(self._ctx)
        self._server: CompressingServer | None = None
        self.port: int | None = None
        self._joins: dict[str, tuple[asyncio.Task[None], str]] = {}
        """Machine UUID -> its join still pending, and the node's address (for faults)."""
        self._seed_resources()

    # ---- lifecycle ---------------------------------------------------------------------------

    @staticmethod
    def _ssl_context(cert: bytes, key: bytes) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.set_alpn_protocols(["h2"])
        with tempfile.TemporaryDirectory(prefix="omni-tls-") as tmp:
            cert_path, key_path = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
            with open(cert_path, "wb") as fh:
                fh.write(cert)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
            ctx.load_cert_chain(cert_path, key_path)
        return ctx

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on ``host:port`` (0 picks a free port); returns the port."""
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they
        # are TCP, and without it Nagle holds a reply's second TLS record until the client's
        # delayed ACK (~40 ms per call that answers in several records). Omni's Go server
        # disables Nagle too.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.port = sock.getsockname()[1]
        self.runtime.start()
        self._server = CompressingServer([StateService(self)])
        await self._server.start(sock=sock, ssl=self._tls)
        return self.port

    async def stop(self) -> None:
        for task, _ in self._joins.values():
            task.cancel()
        self._joins.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.runtime.stop()

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until pending joins (but stalled ones) are done and the controllers are idle."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while moving := [
            task
            for task, address in self._joins.values()
            if not task.done() and self.faults.join_faults.get(address) != "stalled"
        ]:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"{len(moving)} join(s) still pending after {timeout:g}s")
            await asyncio.wait(moving, timeout=left)
        await self.runtime.settle(max(0.0, deadline - loop.time()))

    # ---- authentication --------------------------------------------------------------------

    def register_public_key(self, armored_public_key: str, role: Role | str, identity: str) -> str:
        """Register a confirmed key for ``identity`` with ``role``; returns its fingerprint."""
        key = siderov1.PublicKey.from_armored(armored_public_key)
        role = role if isinstance(role, Role) else Role.parse(role)
        self._keys[key.fingerprint] = _Key(key, role, identity)
        return key.fingerprint

    def authenticate(self, metadata: Any, method: str) -> Caller:
        """Omni's signature interceptor: no signature at all is anonymous, a bad one is refused."""
        if not metadata or siderov1.SIGNATURE_HEADER not in metadata:
            return ANONYMOUS
        try:
            call = self._verified.verify(
                metadata,
                method,
                {fp: k.public for fp, k in self._keys.items()},
                self.clock(),
            )
        except siderov1.SignatureRejected as exc:
            log.info("rejected signature on %s: %s", method, exc.reason)
            if self.record:
                self.rejections.append(exc.reason)
            raise GRPCError(Status.UNAUTHENTICATED, "invalid signature") from None
        if self.record:
            self.calls.append((method, call.identity))
        return Caller(identity=call.identity, role=self._keys[call.fingerprint].role)

    # ---- seed ------------------------------------------------------------------------------

    def _seed_resources(self) -> None:
        seed = self.seed

        def put(ns: str, type_: str, id_: str, spec: Any) -> None:
            self.store.create(Resource(ns, type_, id_, spec), owner=TYPES[type_].owner)

        put(
            DEFAULT_NAMESPACE,
            DEFAULT_JOIN_TOKENS,
            "default",
            siderolink_pb2.DefaultJoinTokenSpec(token_id=seed.join_token),
        )
        put(
            DEFAULT_NAMESPACE,
            SIDEROLINK_API_CONFIGS,
            "siderolink-config",
            siderolink_pb2.SiderolinkAPIConfigSpec(
                machine_api_advertised_url=seed.machine_api_url,
                wireguard_advertised_endpoint=seed.wireguard_endpoint,
                events_port=seed.events_port,
                logs_port=seed.logs_port,
            ),
        )
        versions = sorted(seed.talos_versions, key=_version_key)
        for version in versions:
            put(
                DEFAULT_NAMESPACE,
                TALOS_VERSIONS,
                version,
                omni_pb2.TalosVersionSpec(
                    version=version,
                    compatible_kubernetes_versions=seed.talos_versions[version],
                    upgradable_talos_versions=[
                        v for v in versions if _version_key(v) > _version_key(version)
                    ],
                    image_factory_url=seed.image_factory_urls.get(version, ""),
                ),
            )
        put(
            DEFAULT_NAMESPACE,
            FEATURES_CONFIGS,
            "features-config",
            omni_pb2.FeaturesConfigSpec(
                image_factory_base_url=seed.image_factory_base_url,
                is_enterprise_image_factory=seed.image_factory_auth is not None,
                secondary_image_factory_base_url=seed.secondary_image_factory_base_url,
            ),
        )
        if seed.image_factory_auth is not None:
            username, password = seed.image_factory_auth
            put(
                VIRTUAL_NAMESPACE,
                IMAGE_FACTORY_AUTHS,
                IMAGE_FACTORY_AUTH_ID,
                virtual_pb2.ImageFactoryAuthSpec(username=username, password=password),
            )
        put(
            EPHEMERAL_NAMESPACE,
            SYS_VERSIONS,
            "current",
            system_pb2.SysVersionSpec(
                backend_version=seed.backend_version,
                instance_name=seed.instance_name,
                backend_api_version=seed.backend_api_version,
            ),
        )

    # ---- the Talos side's seam -------------------------------------------------------------

    async def on_node_joined(
        self,
        *,
        machine_uuid: str,
        address: str,
        hostname: str,
        talos_version: str,
        role: str,
        schematic_id: str | None,
        api_url: str,
    ) -> bool:
        """A node applied SideroLinkConfig and dialled in: its Link, then Machine and status.

        Returns False, registering nothing, when ``api_url`` does not reach this Omni with its
        join token (real Talos dials the URL's host and sends the ``jointoken`` query value,
        and Omni refuses a wrong token, so such a node never appears), or when a ``refused``
        join fault holds for the node. A first join is accepted but pending: the Link appears
        only after ``OmniSeed.join_seconds`` (see ``_first_join``); a machine Omni already
        knows reconnects at once.
        """
        if not self._accepts(api_url) or self.faults.join_faults.get(address) == "refused":
            return False
        known = self.nodes.get(machine_uuid)
        self.nodes[machine_uuid] = NodeInfo(
            machine_uuid=machine_uuid,
            address=address,
            hostname=hostname,
            talos_version=talos_version,
            role=role,
            schematic_id=schematic_id,
            connected=True,
            initial_talos_version=known.initial_talos_version if known else talos_version,
        )
        if self.store.get(DEFAULT_NAMESPACE, LINKS, machine_uuid) is not None:
            self._establish(machine_uuid, address)  # a known machine reconnects at once
        elif machine_uuid not in self._joins:
            task = asyncio.get_running_loop().create_task(
                self._first_join(machine_uuid, address), name=f"omni-join-{machine_uuid}"
            )
            self._joins[machine_uuid] = (task, address)
        return True

    async def _first_join(self, machine_uuid: str, address: str) -> None:
        """A first join: a PendingMachine until Omni has given the machine its node unique
        token (``join_seconds``, or as long as a ``stalled`` join fault holds), then the Link."""
        key = _link_spec(machine_uuid, address, connected=False).node_public_key
        pending = Resource(
            EPHEMERAL_NAMESPACE, PENDING_MACHINES, key, PendingMachineData(machine_uuid, address)
        )
        if self.store.peek(EPHEMERAL_NAMESPACE, PENDING_MACHINES, key) is None:
            self.store.create(pending)
        try:
            await asyncio.sleep(self.seed.join_seconds)
            while self.faults.join_faults.get(address) == "stalled":
                await asyncio.sleep(max(self.seed.join_seconds, 0.05))
        finally:
            if self._joins.get(machine_uuid, (None, ""))[0] is asyncio.current_task():
                del self._joins[machine_uuid]
            if self.store.peek(EPHEMERAL_NAMESPACE, PENDING_MACHINES, key) is not None:
                self.store.destroy(EPHEMERAL_NAMESPACE, PENDING_MACHINES, key)
        node = self.nodes.get(machine_uuid)
        if node is not None and node.connected:
            self._establish(machine_uuid, address)

    def _establish(self, machine_uuid: str, address: str) -> None:
        """The machine provisioned with its unique token: its Link (connected), token usage,
        and the MachineStatus controller's turn."""
        spec = _link_spec(machine_uuid, address, connected=True)
        link = self.store.get(DEFAULT_NAMESPACE, LINKS, machine_uuid)
        if link is None:
            self.store.create(Resource(DEFAULT_NAMESPACE, LINKS, machine_uuid, spec))
        elif link.phase == PHASE_RUNNING and link.spec != spec:
            link.spec = spec
            self.store.update(link)
        if self.store.peek(DEFAULT_NAMESPACE, JOIN_TOKEN_USAGES, machine_uuid) is None:
            self.store.create(
                Resource(
                    DEFAULT_NAMESPACE,
                    JOIN_TOKEN_USAGES,
                    machine_uuid,
                    JoinTokenUsageData(self.seed.join_token),
                ),
                owner=TYPES[JOIN_TOKEN_USAGES].owner,
            )
        self.runtime.enqueue(MachineStatusController, machine_uuid)

    def connected(self, machine_uuid: str) -> bool:
        """Whether the machine's Link exists and is up (a pending join is not connected)."""
        link = self.store.peek(DEFAULT_NAMESPACE, LINKS, machine_uuid)
        return link is not None and link.phase == PHASE_RUNNING and bool(link.spec.connected)

    def _accepts(self, api_url: str) -> bool:
        """``api_url`` names the advertised machine API endpoint and carries the join token."""
        got, want = urlsplit(api_url), urlsplit(self.seed.machine_api_url)
        tokens = parse_qs(got.query, keep_blank_values=True).get("jointoken", [])
        return (got.scheme, got.netloc, got.path) == (
            want.scheme,
            want.netloc,
            want.path,
        ) and tokens == [self.seed.join_token]

    async def on_node_left(self, machine_uuid: str) -> None:
        """A node dropped its SideroLinkConfig: its Link (and so its Machine) disconnects."""
        joining = self._joins.pop(machine_uuid, None)
        if joining is not None:
            joining[0].cancel()  # its PendingMachine goes with it
        node = self.nodes.get(machine_uuid)
        if node is not None:
            node.connected = False
        link = self.store.get(DEFAULT_NAMESPACE, LINKS, machine_uuid)
        if link is not None and link.spec.connected:
            link.spec.connected = False
            self.store.update(link)
        self.runtime.enqueue(MachineStatusController, machine_uuid)

    # ---- config rendering ------------------------------------------------------------------

    def render(self, request: RenderRequest) -> bytes:
        """The full config Omni pushes to a machine after unlock (one function: the seam)."""
        return render_machine_config(request, self.join)

    def rendered_config(self, machine_uuid: str) -> bytes | None:
        """What Omni would push to ``machine_uuid`` now (None if it cannot render yet)."""
        controller = self.runtime.controller(ConfigApplyController)
        assert isinstance(controller, ConfigApplyController)
        request = controller.request_for(machine_uuid)
        return self.render(request) if request is not None else None

    # ---- lab status and admin ----------------------------------------------------------------

    def resources(self) -> list[dict[str, Any]]:
        """Every stored resource as a summary for ``lab status`` (no spec, so no secret)."""
        out = []
        for res in sorted(self.store.all(), key=lambda r: (r.namespace, r.type, r.id)):
            out.append(
                {
                    "namespace": res.namespace,
                    "type": res.type,
                    "id": res.id,
                    "version": res.version,
                    "owner": res.owner,
                    "phase": res.phase,
                    "finalizers": list(res.finalizers),
                    "labels": dict(res.labels),
                    "annotations": dict(res.annotations),
                }
            )
        return out

    def mark_ca_rotated(
        self, cluster_id: str, *, talos: bool = True, kubernetes: bool = True
    ) -> None:
        """Record CA rotations on the cluster's secrets (Omni's ``secret rotate`` outcome)."""
        secrets_res = self.store.get(DEFAULT_NAMESPACE, CLUSTER_SECRETS, cluster_id)
        if secrets_res is None:
            raise KeyError(f"cluster {cluster_id!r} has no ClusterSecrets")
        data: ClusterSecretsData = secrets_res.spec
        secrets_res.spec = replace(
            data,
            talos_ca_rotated=data.talos_ca_rotated or talos,
            kubernetes_ca_rotated=data.kubernetes_ca_rotated or kubernetes,
        )
        self.store.update(secrets_res, owner=secrets_res.owner)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def _link_spec(
    machine_uuid: str, address: str, *, connected: bool
) -> siderolink_pb2.SiderolinkSpec:
    """A Link for a node: a stable SideroLink address and WireGuard key derived from its UUID."""
    digest = hashlib.sha256(machine_uuid.encode()).digest()
    groups = [f"{int.from_bytes(digest[i : i + 2], 'big'):x}" for i in range(0, 8, 2)]
    subnet = "fdae:41e4:649b:9303:" + ":".join(groups) + "/64"
    return siderolink_pb2.SiderolinkSpec(
        node_subnet=subnet,
        node_public_key=base64.b64encode(digest).decode(),
        last_endpoint=f"{address}:51820",
        connected=connected,
        remote_addr=f"{address}:51820",
    )
