"""Discovery: read the live cluster, Omni and the Image Factory — strictly read-only.

:func:`discover` is the entry point: it builds the clients from the spec, reads everything and
returns :class:`~planner.facts.ClusterFacts`; the plan stage computes from those facts alone
and never calls a provider itself.

Nodes are read in batches of ``parallelism``, and each batch costs one round trip: the machine
service answers for the whole batch in one call per method (Version, ServiceList, and
EtcdMemberList for the nodes that may be control planes: apid proxies one-to-many), while the
COSI reads (hostname, SMBIOS UUID, machine config, extensions, machine type, kubelet config;
apid never proxies COSI one-to-many) are issued per node, all at once, and for the nodes
discovery calls control planes also their control-plane configs and cluster info. Facts come
from the resources Omni's importer reads; what the config states (:mod:`planner.configfacts`)
is the cross-check, and a disagreement is reported (``NodeFacts.fact_mismatches``). A control
plane that discovery did not name as one costs a second round trip for its control-plane reads.
That is about 6 calls per worker and 10 per control plane.

EtcdMemberList is skipped for nodes that Talos discovery reported as workers, and issued
speculatively (ignored on workers) for the others. A node discovery called a worker that turns
out to be a control plane gets its etcd members in a second round trip. Either way the facts are
the same as reading every resource.

Provider errors become ``ReadError`` facts, never exceptions: one unreachable node is a
finding, not a crash.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from omniport.planner import progress
from omniport.planner.configfacts import NOTHING, StatedFacts, stated_facts
from omniport.planner.errors import PlanningError
from omniport.planner.facts import (
    ClusterFacts,
    EtcdMember,
    FactoryFacts,
    HealthFacts,
    Member,
    NodeFacts,
    OmniFacts,
    ReadError,
    SchematicCheck,
    Service,
)
from omniport.planner.spec import Spec
from omniport.providers import omniconfig
from omniport.providers.codec.omni_names import (
    ANNOTATION_CLUSTER_LOCKED,
    ANNOTATION_IMPORT_IN_PROGRESS,
    CLUSTERS,
    DEFAULT_JOIN_TOKENS,
    FEATURES_CONFIGS,
    IMAGE_FACTORY_AUTH_ID,
    IMAGE_FACTORY_AUTHS,
    LINKS,
    SIDEROLINK_API_CONFIGS,
    TALOS_VERSIONS,
)
from omniport.providers.errors import ProviderError, TLSFailure, Unreachable
from omniport.providers.factory import AsyncFactoryClient, SchematicStatus
from omniport.providers.omni import OmniClient, TLSOptions, UnsupportedAPIVersion
from omniport.providers.talos import ControlPlaneImages, TalosClient, settle
from omniport.providers.talosconfig import find_talosconfig
from omniport.providers.timeouts import Timeouts

DEFAULT_PARALLELISM = 50
"""Nodes read at once (one batch). A batch costs three one-to-many machine calls and four COSI
calls per node, so 50 nodes keep ~200 calls in flight on one HTTP/2 connection."""


def critical_path_round_trips(nodes: int, parallelism: int = DEFAULT_PARALLELISM) -> int:
    """Round trips a plan waits for, at least, with ``nodes`` nodes (what latency multiplies).

    :func:`discover` first reads the discovery member list (one round trip,
    alongside Omni's settings): it proves the Talos endpoint answers and says which nodes are
    workers. Then it reads the nodes in batches of ``parallelism``, each batch one concurrent
    burst of calls (one round trip): ``ceil(nodes / parallelism)`` round trips. Then one more
    round trip runs the health check, the Omni cluster lookup and the Image Factory checks
    together. Not counted: connection setup, and the second round trip of a batch holding a
    node whose config does not state its machine type, images or cluster name (or could not be
    read), or that discovery misreported as a worker.
    """
    return 1 + -(-nodes // parallelism) + 1


def read_error(exc: ProviderError) -> ReadError:
    return ReadError(kind=type(exc).__name__, message=str(exc))


async def _gather(calls: Mapping[Any, Awaitable[Any]]) -> dict[Any, Any]:
    """Run ``calls`` concurrently; each value is a result or the ProviderError it raised."""
    values = await asyncio.gather(*(settle(c) for c in calls.values()))
    return dict(zip(calls, values, strict=True))


def _strip_v(tag: str) -> str:
    return tag[1:] if tag.startswith("v") else tag


# --- Talos nodes -----------------------------------------------------------------------------

_ESSENTIAL = ("version", "type", "hostname", "uuid")
_CONTROL_PLANE_ONLY = ("cp_images", "cluster", "etcd")
"""Reads only control planes answer (workers reply NotFound/Unimplemented)."""


async def _cluster_name(client: TalosClient, address: str) -> str:
    return (await client.cluster_info(address)).cluster_name


# Per-node reads by fact key; "version", "services" and "etcd" go one-to-many instead.
_NODE_CALLS: dict[str, Callable[[TalosClient, str], Awaitable[Any]]] = {
    "hostname": TalosClient.hostname,
    "uuid": TalosClient.system_uuid,
    "config": TalosClient.machine_config,
    "extensions": TalosClient.extension_statuses,
    "type": TalosClient.machine_type,
    "kubelet": TalosClient.kubelet_image,
    "cp_images": TalosClient.control_plane_images,
    "cluster": _cluster_name,
}
_FIRST_ROUND = ("hostname", "uuid", "config", "extensions", "type", "kubelet")


@dataclass
class _NodeRead:
    """What is known about one node so far: fact key -> value or the ProviderError read."""

    address: str
    hint: str | None
    values: dict[str, Any] = field(default_factory=dict)
    asked: set[str] = field(default_factory=set)
    stated: dict[str, Any] = field(default_factory=dict)
    """What the config states for the facts read from resources (the cross-check)."""

    def failed(self, key: str) -> bool:
        return isinstance(self.values.get(key), ProviderError)

    def take_config(self) -> None:
        """Note what the config states, once it is read (see planner.configfacts)."""
        config = self.values.get("config")
        stated = NOTHING if not isinstance(config, bytes) else stated_facts(config)
        self.stated = {k: v for k, v in _stated_values(stated).items() if v is not None}

    def value(self, key: str) -> Any:
        """The resource's value, else (unreadable) what the config states, else None."""
        value = self.values.get(key)
        if value is None or isinstance(value, ProviderError):
            return self.stated.get(key)
        return value

    def missing(self) -> list[str]:
        """Reads still needed, given what is known (never one already asked)."""
        if self.failed("version") or any(self.failed(k) for k in ("hostname", "uuid")):
            return []  # the node is unreadable: nothing else matters
        machine_type = self.value("type")
        wanted = (
            list(_CONTROL_PLANE_ONLY)
            if machine_type and _role(machine_type) == "controlplane"
            else []
        )
        return [k for k in wanted if k not in self.values and k not in self.asked]

    def mismatches(self) -> tuple[str, ...]:
        """Where the config states one value and Talos's resource reports another."""
        out = []
        for key, (field_name, resource) in _CROSS_CHECKED.items():
            stated, read = self.stated.get(key), self.values.get(key)
            if stated is None or read is None or isinstance(read, ProviderError):
                continue
            if key == "cp_images":
                for part, name in _CP_PARTS:
                    a, b = getattr(stated, part), getattr(read, part)
                    if a != b:
                        out.append(f"cluster.{name}.image is {a}, {resource} reports {b}")
            elif stated != read:
                out.append(f"{field_name} is {stated}, {resource} reports {read}")
        return tuple(out)

    def facts(self) -> NodeFacts:
        values = self.values
        for key in _ESSENTIAL:
            if isinstance(values[key], ProviderError) and self.value(key) is None:
                return NodeFacts(address=self.address, error=read_error(values[key]))
        role = _role(self.value("type"))

        def ok(key: str) -> Any:
            return self.value(key)

        config_error = None
        if isinstance(values["config"], ProviderError):
            config_error = read_error(values["config"])
        extensions = ok("extensions") or []
        schematic = next((e for e in extensions if e.name == "schematic"), None)
        is_cp = role == "controlplane"
        cp_images = ok("cp_images") if is_cp else None
        etcd = ok("etcd") if is_cp else None
        return NodeFacts(
            address=self.address,
            role=role,
            talos_version=_strip_v(values["version"].tag),
            hostname=values["hostname"],
            machine_uuid=values["uuid"],
            config=ok("config"),
            config_error=config_error,
            schematic_id=schematic.version if schematic else None,
            schematic_yaml=(schematic.extra_info or None) if schematic else None,
            extensions=tuple(e.name for e in extensions if e.name != "schematic"),
            kubelet_image=ok("kubelet"),
            apiserver_image=cp_images.apiserver if cp_images else None,
            scheduler_image=cp_images.scheduler if cp_images else None,
            controller_manager_image=cp_images.controller_manager if cp_images else None,
            services=tuple(Service(s.id, s.state, s.healthy) for s in ok("services") or ()),
            etcd_members=tuple(
                EtcdMember(m.id, m.hostname, tuple(m.peer_urls), m.is_learner) for m in etcd or ()
            ),
            cluster_name=ok("cluster") if is_cp else None,
            fact_mismatches=self.mismatches(),
        )


_CROSS_CHECKED = {
    "type": ("machine.type", "MachineTypes"),
    "kubelet": ("machine.kubelet.image", "KubeletConfigs"),
    "cp_images": ("cluster.*.image", "the control-plane configs"),
    "cluster": ("cluster.clusterName", "Infos"),
}
_CP_PARTS = (
    ("apiserver", "apiServer"),
    ("scheduler", "scheduler"),
    ("controller_manager", "controllerManager"),
)


def _role(machine_type: str) -> str:
    return "controlplane" if machine_type in ("controlplane", "init") else "worker"


def _stated_values(stated: StatedFacts) -> dict[str, Any]:
    api, sched, cm = stated.apiserver_image, stated.scheduler_image, stated.controller_manager_image
    return {
        "type": stated.machine_type,
        "kubelet": stated.kubelet_image,
        "cp_images": ControlPlaneImages(api, sched, cm) if api and sched and cm else None,
        "cluster": stated.cluster_name,
    }


async def read_batch(
    client: TalosClient, addresses: Sequence[str], role_hints: Mapping[str, str] | None = None
) -> dict[str, NodeFacts]:
    """Every fact about each of ``addresses`` (distinct), in one round trip when their configs
    state what they can (see the module docstring); ``role_hints`` maps an address to the
    machine type Talos discovery reported for it ("worker" skips the etcd read)."""
    hints: Mapping[str, str] = role_hints if role_hints is not None else {}
    nodes = {a: _NodeRead(a, hints.get(a)) for a in dict.fromkeys(addresses)}
    first = True
    while True:
        calls: dict[tuple[str, str], Awaitable[Any]] = {}
        if first:
            batch = list(nodes)
            calls["*", "version"] = client.version_many(batch)
            calls["*", "services"] = client.service_list_many(batch)
            maybe_cp = [a for a, n in nodes.items() if n.hint != "worker"]
            if maybe_cp:
                calls["*", "etcd"] = client.etcd_members_many(maybe_cp)
                for a in maybe_cp:
                    nodes[a].asked.add("etcd")
            for a, node in nodes.items():
                first_round: tuple[str, ...] = _FIRST_ROUND
                if node.hint in ("controlplane", "init"):  # discovery says so: no second trip
                    first_round += ("cp_images", "cluster")
                node.asked.update(("version", "services", *first_round))
                for key in first_round:
                    calls[a, key] = _NODE_CALLS[key](client, a)
        else:
            etcd = []
            for a, node in nodes.items():
                for key in node.missing():
                    node.asked.add(key)
                    if key == "etcd":
                        etcd.append(a)
                    else:
                        calls[a, key] = _NODE_CALLS[key](client, a)
            if etcd:
                calls["*", "etcd"] = client.etcd_members_many(etcd)
        if not calls:
            break
        for (address, key), value in (await _gather(calls)).items():
            if address != "*":
                nodes[address].values[key] = value
                continue
            per_node = value if isinstance(value, dict) else dict.fromkeys(nodes, value)
            for a, item in per_node.items():
                if key in nodes[a].asked:
                    nodes[a].values[key] = item
        if first:
            for node in nodes.values():
                node.take_config()
            first = False
    return {a: n.facts() for a, n in nodes.items()}


async def read_node(client: TalosClient, address: str, role_hint: str | None = None) -> NodeFacts:
    """Every fact about one node (:func:`read_batch` of one)."""
    hints = {address: role_hint} if role_hint else {}
    return (await read_batch(client, [address], hints))[address]


async def read_nodes(
    client: TalosClient,
    addresses: Sequence[str],
    parallelism: int = DEFAULT_PARALLELISM,
    role_hints: Mapping[str, str] | None = None,
) -> tuple[NodeFacts, ...]:
    """Read every distinct node, ``parallelism`` at a time (one :func:`read_batch` each);
    ``role_hints`` maps addresses to the machine type discovery reports."""
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    order = list(dict.fromkeys(addresses))
    facts: dict[str, NodeFacts] = {}
    batches = range(0, len(order), parallelism)
    with progress.waiting("discovery", f"reading {len(order)} node(s)", total=len(order)) as wait:
        for number, start in enumerate(batches, 1):
            batch = order[start : start + parallelism]
            if len(batches) > 1:
                wait.update(detail=f"(batch {number} of {len(batches)})")
            facts.update(await read_batch(client, batch, role_hints))
            wait.update(done=len(facts))
    return tuple(facts[a] for a in order)


def role_hints(members: tuple[Member, ...] | None) -> dict[str, str]:
    """Address -> machine type, from the discovery members (empty when there are none)."""
    return {a: m.machine_type for m in members or () for a in m.addresses if m.machine_type}


def endpoint_failure(exc: ProviderError) -> bool:
    """True when nothing could be talked to at the endpoint (connection refused, TLS refused),
    as opposed to an endpoint that answered with an error (those carry a status code)."""
    return isinstance(exc, Unreachable | TLSFailure) and exc.code is None


async def read_members(
    client: TalosClient, node: str | None
) -> tuple[tuple[Member, ...] | None, str | None]:
    """Discovery members seen from ``node`` (None: the endpoint itself answers, as talosctl
    does without ``--nodes``), or None and why they could not be read.

    Omni's importer fails when it cannot list them; here that is a finding (MEMBERS_UNREADABLE)
    so the rest of the plan still shows. Raises the ProviderError when the endpoint itself
    cannot be reached (see :func:`endpoint_failure`), to tell a dead endpoint from a dead node.
    """
    try:
        members = await client.members(node)
    except ProviderError as exc:
        if endpoint_failure(exc):
            raise
        return None, f"{node or 'the Talos endpoint'}: {exc.message}"
    return tuple(Member(m.id, m.hostname, m.addresses, m.machine_type) for m in members), None


async def run_health_check(
    client: TalosClient,
    node: str | None,
    control_planes: list[str],
    workers: list[str],
    timeout: float,
) -> HealthFacts:
    if node is None:
        return HealthFacts(ran=False)
    messages: list[str] = []
    # the check streams what it waits for ("waiting for etcd to be healthy: ..."): said again
    # while it waits, so a check that waits minutes is never silent
    what = f"running the cluster health check (timeout {timeout:g}s)"
    try:
        with progress.waiting("health-check", what) as wait:
            async for line in client.health_check(
                node,
                control_plane_nodes=control_planes,
                worker_nodes=workers,
                wait_timeout=timeout,
            ):
                messages.append(line)
                wait.update(detail=f"({line})")
    except ProviderError as exc:
        return HealthFacts(ran=True, ok=False, messages=tuple(messages), error=exc.message)
    return HealthFacts(ran=True, ok=True, messages=tuple(messages))


# --- Omni ------------------------------------------------------------------------------------


async def read_omni_settings(omni: Any) -> dict[str, Any]:
    """Omni's settings the import needs, read concurrently (Get/List only): each value is the
    resource(s) or the ProviderError Omni answered with.

    Raises the ProviderError when Omni cannot be reached at all (see :func:`endpoint_failure`).
    """
    values = await _gather(
        {
            "token": omni.get(DEFAULT_JOIN_TOKENS, "default"),
            "siderolink": omni.get(SIDEROLINK_API_CONFIGS, "siderolink-config"),
            "features": omni.get(FEATURES_CONFIGS, "features-config"),
            "versions": omni.list(TALOS_VERSIONS),
            "links": omni.list(LINKS),
            # Omni's credentials for an Enterprise factory (a virtual resource); None if absent
            "factory_auth": omni.find(IMAGE_FACTORY_AUTHS, IMAGE_FACTORY_AUTH_ID),
            "server": omni.server_version(),
        }
    )
    for key in ("token", "siderolink", "versions", "server"):
        if isinstance(values[key], ProviderError) and endpoint_failure(values[key]):
            raise values[key]
    if isinstance(values["server"], UnsupportedAPIVersion):
        raise values["server"]  # omnictl stops here too: nothing else Omni said can be trusted
    return values


async def read_omni(
    omni: Any, url: str, cluster_name: str | None, settings: dict[str, Any] | None = None
) -> OmniFacts:
    """Everything the import needs from Omni: its settings (read now unless given, from
    :func:`read_omni_settings`) and the cluster named ``cluster_name``, if Omni has one.

    Errors Omni answers with become ``OmniFacts.error``; when Omni cannot be reached at all
    the ProviderError is raised (see :func:`endpoint_failure`).
    """
    if settings is None:
        settings = await read_omni_settings(omni)
    values = dict(settings)
    values["cluster"] = await settle(omni.find(CLUSTERS, cluster_name)) if cluster_name else None
    if isinstance(values["cluster"], ProviderError) and endpoint_failure(values["cluster"]):
        raise values["cluster"]
    for key in ("token", "siderolink", "versions", "server"):
        if isinstance(values[key], ProviderError):
            return OmniFacts(url=url, error=read_error(values[key]))
    features = values["features"]
    cluster = values.get("cluster")
    if isinstance(cluster, ProviderError):
        return OmniFacts(url=url, error=read_error(cluster))
    links = values["links"] if not isinstance(values["links"], ProviderError) else []
    siderolink = values["siderolink"].spec
    versions = {
        r.spec.version or r.id: tuple(r.spec.compatible_kubernetes_versions)
        for r in values["versions"]
    }
    resource_versions = {
        f"{DEFAULT_JOIN_TOKENS}/default": values["token"].version,
        f"{SIDEROLINK_API_CONFIGS}/siderolink-config": values["siderolink"].version,
    }
    if cluster is not None:
        resource_versions[f"{CLUSTERS}/{cluster.id}"] = cluster.version
    annotations = cluster.annotations if cluster is not None else {}
    return OmniFacts(
        url=url,
        cluster_exists=cluster is not None,
        cluster_import_in_progress=ANNOTATION_IMPORT_IN_PROGRESS in annotations,
        cluster_locked=ANNOTATION_CLUSTER_LOCKED in annotations,
        talos_versions=versions,
        machine_api_url=siderolink.machine_api_advertised_url,
        events_port=int(siderolink.events_port),
        logs_port=int(siderolink.logs_port),
        join_token=values["token"].spec.token_id,
        factory_url=(
            features.spec.image_factory_base_url or None
            if not isinstance(features, ProviderError)
            else None
        ),
        machines={link.id: bool(link.spec.connected) for link in links},
        resource_versions=resource_versions,
    )


# --- Image Factory ---------------------------------------------------------------------------

DEFAULT_FACTORY_HINT = (
    "set imageFactory.url in the spec, or give Omni an Image Factory "
    "(its --image-factory-address; the default is https://factory.talos.dev)"
)


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{parts.port or 443}"


def choose_factory(
    spec_url: str | None,
    settings: Mapping[str, Any],
    talos_version: str | None,
    *,
    ca_file: Any = None,
) -> FactoryFacts:
    """The factory an import registers schematics with, chosen as Omni chooses it (pure).

    ``imageFactory.url`` in the spec wins; else the factory Omni's ``TalosVersion`` of the
    cluster's Talos version records; else Omni's primary one (``FeaturesConfig``). Omni's
    secondary factory is kept beside it. Omni's ``ImageFactoryAuth`` credentials are used
    when Omni calls its factory Enterprise, and only with a factory Omni names (never sent to
    another host a spec points at). No URL is a fact with its reason, not a silent skip.
    """
    features = settings.get("features")
    versions = settings.get("versions")
    auth = settings.get("factory_auth")
    feats = None if isinstance(features, ProviderError) or features is None else features.spec
    primary = (feats.image_factory_base_url or "").strip() if feats is not None else ""
    secondary = (feats.secondary_image_factory_base_url or "").strip() if feats else ""
    recorded = ""
    if talos_version and not isinstance(versions, ProviderError):
        wanted = _strip_v(talos_version)
        for r in versions or ():
            if r.id == wanted and (r.spec.image_factory_url or "").strip():
                recorded = r.spec.image_factory_url.strip()
    url, source = "", ""
    for candidate, origin in ((spec_url, "spec"), (recorded, "talos-version"), (primary, "omni")):
        if candidate and candidate.strip():
            url, source = candidate.strip(), origin
            break
    ca = str(ca_file) if ca_file is not None else None
    if not url:
        if isinstance(features, ProviderError):
            missing = f"Omni's FeaturesConfig could not be read ({features.message})"
        else:
            missing = "Omni's FeaturesConfig has an empty image_factory_base_url"
            if talos_version:
                missing += f" and its TalosVersion {_strip_v(talos_version)} records no factory"
        return FactoryFacts(url=None, missing=missing, secondary_url=secondary or None, ca_file=ca)
    credentials: tuple[str, str] | None = None
    omni_named = {_origin(u) for u in (primary, recorded, secondary) if u}
    if (
        feats is not None
        and feats.is_enterprise_image_factory
        and auth is not None
        and not isinstance(auth, ProviderError)
        and auth.spec.username
        and auth.spec.password
        and _origin(url) in omni_named
    ):
        credentials = (auth.spec.username, auth.spec.password)
    return FactoryFacts(
        url=url,
        source=source,
        secondary_url=secondary if secondary and secondary != url else None,
        credentials=credentials,
        ca_file=ca,
    )


def factory_client(target: FactoryFacts, url: str | None = None, timeouts: Any = None) -> Any:
    """An asyncio factory client for ``url`` (default: the chosen one), with Omni's
    credentials when they belong to it."""
    base = url or target.url or ""
    kwargs: dict[str, Any] = {"base_url": base}
    if target.ca_file is not None:
        kwargs["ca_file"] = target.ca_file
    if timeouts is not None:
        kwargs["timeouts"] = timeouts
    if target.credentials is not None and base == target.url:
        kwargs["username"], kwargs["password"] = target.credentials
    return AsyncFactoryClient(**kwargs)


async def read_factory(
    target: FactoryFacts, nodes: tuple[NodeFacts, ...], *, timeouts: Any = None
) -> FactoryFacts:
    """Check every node's schematic against the chosen factory: offline ID + GET, never POST.

    The factory's answer beats the offline ID (see ``FactoryClient.check_schematic``). A
    schematic the chosen factory does not know is looked up on Omni's secondary factory."""
    if not target.url:
        return target
    to_check = [n for n in nodes if n.error is None and n.schematic_id and n.schematic_yaml]
    if not to_check:
        return target
    try:
        client = factory_client(target, timeouts=timeouts)
        secondary = (
            factory_client(target, target.secondary_url, timeouts) if target.secondary_url else None
        )
    except (ProviderError, ValueError, OSError) as exc:
        return replace(target, error=ReadError(type(exc).__name__, str(exc)))
    checks: list[SchematicCheck] = []
    seen: dict[tuple[str, str], tuple[Any, str | None]] = {}
    for node in to_check:
        key = (node.schematic_id or "", node.schematic_yaml or "")
        if key not in seen:
            try:
                result = await client.check_schematic(*key)
                where = target.url if result.known_to_factory else None
                if result.status is SchematicStatus.UNKNOWN_TO_FACTORY and secondary is not None:
                    other = await secondary.check_schematic(*key)
                    if other.known_to_factory:
                        where = target.secondary_url
            except ProviderError as exc:
                return replace(target, error=read_error(exc))
            seen[key] = (result, where)
        result, where = seen[key]
        checks.append(
            SchematicCheck(
                node=node.address,
                schematic_id=node.schematic_id or "",
                # an unreadable extraInfo counts as a mismatch ("" never equals an ID)
                offline_id=result.computed_id
                if result.status is not SchematicStatus.MISMATCH
                else (result.computed_id or ""),
                known_to_factory=result.known_to_factory,
                known_at=where,
                note=result.detail if result.offline_id else "",
                schematic_yaml=node.schematic_yaml,
            )
        )
    return replace(target, checks=tuple(checks))


# --- the whole discovery --------------------------------------------------------------------


def talos_client(
    spec: Spec, timeouts: Timeouts, env: Mapping[str, str] | None = None
) -> TalosClient:
    """The Talos client the spec names (talosconfig, context, endpoints); apply uses it too."""
    return TalosClient.from_talosconfig(
        spec.talos.talosconfig,
        context=spec.talos.context,
        endpoints=list(spec.talos.endpoints) or None,
        timeouts=timeouts,
        env=env,
    )


def omni_client(
    spec: Spec,
    timeouts: Timeouts,
    env: Mapping[str, str] | None = None,
    *,
    warn_insecure: bool = True,
) -> OmniClient:
    """The Omni client the spec names (omniconfig, context, URL, key, TLS); apply uses it too.

    ``warn_insecure=False`` when the caller reports ``omni.insecureSkipTLSVerify`` itself
    (discovery: the finding OMNI_TLS_UNVERIFIED)."""
    settings = omniconfig.resolve(
        omniconfig=spec.omni.omniconfig,
        context=spec.omni.context,
        endpoint=spec.omni.url,
        service_account_key_file=spec.omni.service_account_key_file,
        environ=env,
    )
    tls = TLSOptions(
        ca_file=spec.omni.ca_file, insecure_skip_verify=spec.omni.insecure_skip_tls_verify
    )
    return OmniClient.from_settings(
        settings, tls=tls, timeouts=timeouts, warn_insecure=warn_insecure
    )


async def discover(
    spec: Spec,
    *,
    timeouts: Timeouts | None = None,
    env: Mapping[str, str] | None = None,
    health_check: bool | None = None,
) -> ClusterFacts:
    """Read Talos, Omni and the Image Factory. Changes nothing anywhere.

    First the discovery member list and Omni's settings, together: they prove both endpoints
    answer, and the members say which nodes are workers. Then the nodes. Then the health
    check, the Omni cluster lookup and the factory checks, together (see
    ``planner.discover.critical_path_round_trips`` for what that costs in round trips).

    Nothing in flight is ever cancelled: a connection attempt cancelled at the wrong moment
    leaks its socket (asyncio), so an endpoint nobody can reach is found before the fan-out.
    """
    timeouts = timeouts or Timeouts()
    env = dict(os.environ if env is None else env)
    talos = talos_client(spec, timeouts, env)
    omni = omni_client(spec, timeouts, env, warn_insecure=False)  # checks: OMNI_TLS_UNVERIFIED
    try:
        return await _discover(spec, talos, omni, timeouts, health_check, env)
    finally:
        # Closing a TLS connection waits for the peer's close_notify; asyncio.run closes its
        # loop at once, and the half-closed sockets would then leak (ResourceWarning).
        await asyncio.sleep(TLS_CLOSE_GRACE)


TLS_CLOSE_GRACE = 0.1
"""Seconds the loop keeps serving after the clients close, so their TLS close completes."""


async def _discover(
    spec: Spec,
    talos: TalosClient,
    omni: OmniClient,
    timeouts: Timeouts,
    health_check: bool | None,
    env: Mapping[str, str] | None = None,
) -> ClusterFacts:
    run_health = spec.health_check if health_check is None else health_check
    async with talos, omni:
        with progress.waiting("discovery", "reading the cluster's members and Omni's settings"):
            members_or_error, settings_or_error = await asyncio.gather(
                read_members(talos, spec.talos.nodes[0] if spec.talos.nodes else None),
                read_omni_settings(omni),
                return_exceptions=True,
            )
        if isinstance(members_or_error, ProviderError):
            raise _talos_unreachable(members_or_error, spec)
        if isinstance(settings_or_error, UnsupportedAPIVersion):
            raise PlanningError(
                f"Omni at {omni.endpoint.url}: {settings_or_error.message}",
                "omniport checks Omni's API version as omnictl does; point omni.url at a "
                "supported Omni",
            )
        if isinstance(settings_or_error, ProviderError):
            raise _omni_unreachable(settings_or_error, omni.endpoint.url, spec)
        for value in (members_or_error, settings_or_error):
            if isinstance(value, BaseException):
                raise value
        members, members_error = cast(
            tuple[tuple[Member, ...] | None, str | None], members_or_error
        )
        settings = cast(dict[str, Any], settings_or_error)

        addresses, nodes_source = node_addresses(spec, members, members_error)
        nodes = await read_nodes(talos, addresses, role_hints=role_hints(members))
        cluster_name = next(
            (n.cluster_name for n in nodes if n.role == "controlplane" and n.cluster_name), None
        )
        cps = [n.address for n in nodes if n.role == "controlplane" and n.error is None]
        workers = [n.address for n in nodes if n.role == "worker" and n.error is None]

        async def health() -> HealthFacts:
            if not (run_health and cps):
                return HealthFacts(ran=False)
            down = [n.address for n in nodes if n.error and n.error.kind == "Unreachable"]
            if down:
                # Talos's check polls every condition (node count, apid, kubelet, Ready) until
                # its timeout: with a node it cannot reach it could only wait all of it.
                return HealthFacts(
                    ran=False,
                    ok=False,
                    skipped=f"{', '.join(down)} cannot be reached, and the check would wait its "
                    f"whole timeout ({spec.health_check_timeout:g}s) for "
                    + ("it" if len(down) == 1 else "them"),
                )
            return await run_health_check(talos, cps[0], cps, workers, spec.health_check_timeout)

        cluster_talos = next(
            (n.talos_version for n in nodes if n.role == "controlplane" and n.talos_version),
            spec.versions.talos,
        )
        target = choose_factory(
            spec.image_factory.url, settings, cluster_talos, ca_file=spec.image_factory.ca_file
        )
        with progress.waiting("discovery", "reading Omni's cluster and the Image Factory"):
            health_facts, omni_facts, factory_facts = await asyncio.gather(
                health(),
                read_omni(omni, omni.endpoint.url, cluster_name, settings),
                read_factory(target, nodes, timeouts=timeouts),
                return_exceptions=True,
            )
        for value in (health_facts, omni_facts, factory_facts):
            if isinstance(value, ProviderError):  # Omni went away after its settings were read
                raise _omni_unreachable(value, omni.endpoint.url, spec)
            if isinstance(value, BaseException):
                raise value
    return ClusterFacts(
        nodes=nodes,
        members=members,
        members_error=members_error,
        exposed_key_files=exposed_key_files(spec, env),
        nodes_source=nodes_source,
        omni=cast(OmniFacts, omni_facts),
        factory=cast(FactoryFacts, factory_facts),
        health=cast(HealthFacts, health_facts),
    )


def node_addresses(
    spec: Spec, members: tuple[Member, ...] | None, members_error: str | None
) -> tuple[tuple[str, ...], str]:
    """The nodes to read and where they came from: the spec's talos.nodes (``spec``), else
    the first address of every discovery member (``discovery``), as omni#1301 asks: users
    should not have to list nodes by hand. No members to take them from is a PlanningError."""
    if spec.talos.nodes:
        return spec.talos.nodes, "spec"
    fix = f"list the cluster's node addresses under talos.nodes in {spec.path}"
    if members is None:
        raise PlanningError(
            "the spec lists no talos.nodes and the Talos discovery members could not be read "
            f"to find them ({members_error})",
            fix,
        )
    addresses = tuple(dict.fromkeys(m.addresses[0] for m in members if m.addresses))
    if not addresses:
        raise PlanningError(
            "the spec lists no talos.nodes and Talos discovery lists no members with an "
            "address (cluster discovery is disabled), so there are no nodes to read",
            fix + ", or enable cluster discovery (cluster.discovery.enabled)",
        )
    return addresses, "discovery"


def exposed_key_files(
    spec: Spec, env: Mapping[str, str] | None = None
) -> tuple[tuple[str, str, int], ...]:
    """The talosconfig and service-account key file when group or others may read them.

    Both hold private keys (the talosconfig an os:admin client key); ssh refuses keys that
    are not owner-only, and a plan says so, as a warning."""
    candidates: list[tuple[str, Path | None]] = [
        ("service account key file", spec.omni.service_account_key_file)
    ]
    try:
        candidates.insert(0, ("talosconfig", find_talosconfig(spec.talos.talosconfig, env)))
    except ProviderError:
        pass  # reported where the talosconfig is read
    out = []
    for what, path in candidates:
        if path is None:
            continue
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue
        if mode & 0o077:
            out.append((what, str(path), mode))
    return tuple(out)


def _talos_unreachable(exc: ProviderError, spec: Spec) -> PlanningError:
    """Nothing could be talked to at the Talos endpoint: a mistake in the spec or talosconfig,
    and a plan of it would say nothing (nodes behind a reachable endpoint are findings)."""
    fix = (
        f"use this cluster's talosconfig (talos.talosconfig and talos.context in {spec.path})"
        if isinstance(exc, TLSFailure)
        else f"check talos.endpoints in {spec.path} (or the talosconfig context's endpoints) "
        "and that apid listens there"
    )
    return PlanningError(
        f"cannot reach the Talos API, so there is nothing to plan: {exc.message}", fix
    )


def _omni_unreachable(exc: ProviderError, url: str, spec: Spec) -> PlanningError:
    return PlanningError(
        f"cannot reach Omni at {url}: {exc.message}",
        f"check omni.url in {spec.path} (or the omniconfig context's url)",
    )
