"""``omniport abort CLUSTER``: undo an import that Omni still marks as in progress.

Abort follows Omni's own (``omnictl cluster import abort``): only a locked cluster that Omni
still marks ``tainted-by-importing`` may be aborted; its MachineSetNodes name the machines; the
Cluster is torn down (Omni removes its machine sets, nodes and patches and skips resetting the
machines, because the cluster is locked and tainted) and then every machine's Link. It also
does what omnictl leaves to the user: it removes the three join documents from each node, so
that no node registers again. Nodes are found by reading the machine UUID of every node the
spec lists.

It needs no journal or rollback file, so it runs on the session kernel alone, not on rollback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omniport.planner.discover import node_addresses, read_members
from omniport.planner.errors import OmniportError
from omniport.planner.execute.errors import AbortError
from omniport.planner.execute.secrets import Scrubber, config_secrets
from omniport.planner.execute.session import Access, Confirm, StepRef, Ui, cluster_lock, error_text
from omniport.planner.join import JOIN_KINDS, removal_documents
from omniport.planner.machineconfig import document as mcdoc
from omniport.planner.machineconfig.merge import strategic_merge
from omniport.planner.spec import Spec
from omniport.providers import omni as o
from omniport.providers.errors import ProviderError
from omniport.providers.talos import ApplyMode, TalosClient


def has_join_documents(config: bytes) -> bool:
    parsed = mcdoc.parse(config, source="machine config")
    keys = {(d.key.kind, d.key.name or None) for d in parsed.documents if not d.key.is_legacy}
    return bool(keys & JOIN_KINDS)


async def remove_join_documents(talos: TalosClient, address: str) -> bool:
    """Delete the three join documents from a node's config; False if it had none."""
    live = await talos.machine_config(address)
    if not has_join_documents(live):
        return False
    cleaned = strategic_merge(mcdoc.parse(live, source=address), removal_documents())
    await talos.apply_configuration(address, mcdoc.emit(cleaned).encode(), ApplyMode.AUTO)
    if has_join_documents(await talos.machine_config(address)):
        raise AbortError(
            f"node {address} still holds join documents after the removal",
            "check the node and run abort again",
        )
    return True


@dataclass
class AbortPlan:
    """What abort will do; the dict form feeds ``render.render_abort``."""

    cluster: str
    omni_url: str
    machines: list[str]
    nodes: dict[str, str]  # machine UUID -> node address (those the spec lists)
    unmatched: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "omni_url": self.omni_url,
            "machines": list(self.machines),
            "nodes": dict(self.nodes),
            "unmatched": list(self.unmatched),
        }


async def _uuids(talos: TalosClient, addresses: tuple[str, ...]) -> dict[str, str]:
    async def one(address: str) -> tuple[str, str | None]:
        try:
            return address, await talos.system_uuid(address)
        except ProviderError:
            return address, None

    found = await asyncio.gather(*(one(a) for a in addresses))
    return {uuid: address for address, uuid in found if uuid}


async def abort_import(
    cluster: str,
    spec: Spec,
    *,
    ui: Ui,
    confirm: Confirm,
    auto_approve: bool,
    show: Callable[[AbortPlan], None],
    environ: Mapping[str, str] | None = None,
) -> AbortPlan:
    access = Access.of(spec, environ)
    talos = access.talos()
    omni = access.omni()
    lock = cluster_lock(omni.endpoint.url, cluster, "abort")
    lock.acquire()
    try:
        async with talos, omni:
            await omni.server_version()  # omnictl's API version check, before anything else
            found = await omni.find(o.CLUSTERS, cluster)
            if found is None:
                raise AbortError(
                    f"Omni at {omni.endpoint.url} has no cluster {cluster}",
                    "check the name (it may already have been aborted or rolled back)",
                )
            status = await omni.find(o.CLUSTER_STATUSES, cluster)
            if status is None or o.LABEL_TAINTED_BY_IMPORTING not in status.labels:
                raise AbortError(
                    f"cluster {cluster} is not tainted as importing, so it cannot be aborted "
                    "(its CAs were rotated, or it was never imported)",
                    "manage or delete it in Omni instead",
                )
            if o.ANNOTATION_CLUSTER_LOCKED not in found.annotations:
                raise AbortError(
                    f"cluster {cluster} is not locked, so it cannot be aborted (Omni resets the "
                    "machines of an unlocked cluster it deletes)",
                    f"lock it first (`omnictl cluster lock {cluster}`), then abort",
                )
            nodes = await omni.list(o.MACHINE_SET_NODES, labels={o.LABEL_CLUSTER: cluster})
            machines = sorted(n.id for n in nodes)
            addresses = spec.talos.nodes
            if not addresses:  # the spec lists none: the nodes Talos discovery lists, as plan
                addresses, _ = node_addresses(spec, *await read_members(talos, None))
            by_uuid = await _uuids(talos, addresses)
            plan = AbortPlan(
                cluster=cluster,
                omni_url=omni.endpoint.url,
                machines=machines,
                nodes={u: by_uuid[u] for u in machines if u in by_uuid},
                unmatched=[u for u in machines if u not in by_uuid],
            )
            show(plan)
            if not auto_approve and not confirm(cluster):
                raise AbortError("Abort cancelled.", None)
            scrub = Scrubber()
            step = StepRef(f"omni_cluster.{cluster}", "delete", o.CLUSTERS, cluster)
            ui.start(step)
            t0 = time.monotonic()
            await omni.teardown(o.CLUSTERS, cluster)
            await omni.wait_destroyed(o.CLUSTERS, cluster, timeout=spec.wait_timeout)
            ui.done(step, time.monotonic() - t0, "destroyed")
            failures: list[str] = []
            gate = asyncio.Semaphore(spec.parallelism)

            async def clean(uuid: str, address: str) -> None:
                node_step = StepRef(f"talos_join.{address}", "update", "MachineConfigs", address)
                async with gate:
                    ui.start(node_step, "removing the join documents")
                    started = time.monotonic()
                    try:
                        live = await talos.machine_config(address)
                        scrub.add(config_secrets(live))
                        removed = await remove_join_documents(talos, address)
                    except (ProviderError, OmniportError) as exc:
                        message = scrub(error_text(exc))
                        failures.append(f"{address}: {message}")
                        ui.failed(node_step, message, time.monotonic() - started)
                        return
                    note = "join documents removed" if removed else "held no join documents"
                    ui.done(node_step, time.monotonic() - started, note)

            await asyncio.gather(*(clean(u, a) for u, a in plan.nodes.items()))
            for uuid in machines:
                if uuid in plan.nodes and any(
                    f.startswith(plan.nodes[uuid] + ":") for f in failures
                ):
                    continue  # its node still joins: removing the Link would only re-register it
                link_step = StepRef(f"omni_link.{uuid}", "delete", o.LINKS, uuid)
                ui.say(f"removing link for machine {uuid} from Omni")
                ui.start(link_step)
                started = time.monotonic()
                try:
                    if await omni.find(o.LINKS, uuid) is not None:
                        await omni.teardown(o.LINKS, uuid)
                        await omni.wait_destroyed(o.LINKS, uuid, timeout=spec.wait_timeout)
                except ProviderError as exc:
                    failures.append(f"Link {uuid}: {scrub(error_text(exc))}")
                    ui.failed(link_step, scrub(error_text(exc)), time.monotonic() - started)
                    continue
                ui.done(link_step, time.monotonic() - started, "destroyed")
            if failures:
                raise AbortError(
                    f"the cluster was removed from Omni, but {len(failures)} node(s) or Link(s) "
                    f"were not cleaned: {failures[0]}",
                    "once the nodes are reachable, run `omniport rollback` with the apply's "
                    "rollback file, or remove their SideroLinkConfig, EventSinkConfig and "
                    "KmsgLogConfig omni-kmsg documents by hand",
                )
            ui.summary(
                "abort",
                f"import operation was aborted successfully for cluster {cluster}",
                0,
                len(plan.nodes),
                1 + len(machines),
            )
            return plan
    finally:
        lock.release()
