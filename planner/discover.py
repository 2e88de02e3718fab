"""Discovery: read the live cluster, Omni and the Image Factory — strictly read-only.

Per node, every read is issued at once (calls that only control planes answer are issued
speculatively and ignored on workers), so discovery costs one round trip per node, and nodes are
read with bounded parallelism. Provider errors become ``ReadError`` facts, never exceptions:
one unreachable node is a finding, not a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from planner.facts import (
    EtcdMember,
    HealthFacts,
    Member,
    NodeFacts,
    ReadError,
    Service,
)
from providers.errors import PermissionDenied, ProviderError, Unsupported
from providers.talos import TalosClient, map_nodes

T = TypeVar("T")

DEFAULT_PARALLELISM = 50


def read_error(exc: ProviderError) -> ReadError:
    return ReadError(kind=type(exc).__name__, message=str(exc))


async def _settle(aw: Awaitable[T]) -> T | ProviderError:
    try:
        return await aw
    except ProviderError as exc:
        return exc


def _strip_v(tag: str) -> str:
    return tag[1:] if tag.startswith("v") else tag


async def read_node(client: TalosClient, address: str) -> NodeFacts:
    """Every fact about one node, in one concurrent burst of calls."""
    calls: dict[str, Awaitable[Any]] = {
        "version": client.version(address),
        "type": client.machine_type(address),
        "hostname": client.hostname(address),
        "uuid": client.system_uuid(address),
        "config": client.machine_config(address),
        "extensions": client.extension_statuses(address),
        "kubelet": client.kubelet_image(address),
        "services": client.service_list(address),
        # control planes only; workers answer NotFound/Unimplemented, which is ignored below
        "cp_images": client.control_plane_images(address),
        "etcd": client.etcd_members(address),
        "cluster": client.cluster_info(address),
    }
    values = dict(
        zip(calls, await asyncio.gather(*(_settle(c) for c in calls.values())), strict=True)
    )
    essential = ("version", "type", "hostname", "uuid")
    for key in essential:
        if isinstance(values[key], ProviderError):
            return NodeFacts(address=address, error=read_error(values[key]))
    role = "controlplane" if values["type"] in ("controlplane", "init") else "worker"

    def ok(key: str) -> Any:
        value = values[key]
        return None if isinstance(value, ProviderError) else value

    config_error = None
    if isinstance(values["config"], ProviderError):
        config_error = read_error(values["config"])
    extensions = ok("extensions") or []
    schematic = next((e for e in extensions if e.name == "schematic"), None)
    cp_images = ok("cp_images") if role == "controlplane" else None
    etcd = ok("etcd") if role == "controlplane" else None
    cluster = ok("cluster")
    return NodeFacts(
        address=address,
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
        cluster_name=cluster.cluster_name if cluster else None,
    )


async def read_nodes(
    client: TalosClient, addresses: tuple[str, ...], parallelism: int = DEFAULT_PARALLELISM
) -> tuple[NodeFacts, ...]:
    results = await map_nodes(addresses, lambda a: read_node(client, a), parallelism)
    return tuple(
        r if isinstance(r, NodeFacts) else NodeFacts(address=a, error=read_error(r))
        for a, r in results.items()
    )


async def read_members(client: TalosClient, node: str | None) -> tuple[Member, ...] | None:
    """Discovery members seen from ``node``; None when they cannot be read."""
    if node is None:
        return None
    try:
        members = await client.members(node)
    except (PermissionDenied, Unsupported):
        return None
    except ProviderError:
        return None
    return tuple(Member(m.id, m.hostname, m.addresses, m.machine_type) for m in members)


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
    try:
        async for line in client.health_check(
            node, control_plane_nodes=control_planes, worker_nodes=workers, wait_timeout=timeout
        ):
            messages.append(line)
    except ProviderError as exc:
        return HealthFacts(ran=True, ok=False, messages=tuple(messages), error=exc.message)
    return HealthFacts(ran=True, ok=True, messages=tuple(messages))
