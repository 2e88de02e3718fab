"""``omniport abort CLUSTER`` and ``omniport unlock CLUSTER``.

Abort follows Omni's own (``omnictl cluster import abort``): only a locked cluster that Omni
still marks ``tainted-by-importing`` may be aborted; its MachineSetNodes name the machines; the
Cluster is torn down (Omni removes its machine sets, nodes and patches and skips resetting the
machines, because the cluster is locked and tainted) and then every machine's Link. It also
does what omnictl leaves to the user: it removes the three join documents from each node, so
that no node registers again. Nodes are found by reading the machine UUID of every node the
spec lists.

Unlock removes ``cluster-locked`` and ``cluster-import-is-in-progress`` from the Cluster, as
``omnictl cluster unlock`` and the web UI do; Omni then starts pushing its rendered configs.
The plan's unlock preview (what those configs change on each node) is shown first.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omniport.planner.errors import OmniportError
from omniport.planner.execute.apply import (
    Confirm,
    Scrubber,
    StepRef,
    Ui,
    config_secrets,
    error_text,
    lock_scope,
)
from omniport.planner.execute.lock import ClusterLock
from omniport.planner.join import JOIN_KINDS, removal_documents
from omniport.planner.machineconfig import document as mcdoc
from omniport.planner.machineconfig.merge import strategic_merge
from omniport.planner.plan import Finding, Plan
from omniport.planner.planning import omni_client, talos_client
from omniport.planner.spec import Spec
from omniport.providers import omni as o
from omniport.providers.errors import ProviderError
from omniport.providers.talos import ApplyMode, TalosClient
from omniport.providers.timeouts import Timeouts


class AbortError(OmniportError):
    """Abort or unlock refused, or unfinished."""


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
    env = dict(os.environ if environ is None else environ)
    timeouts = Timeouts(wait_connected=spec.wait_timeout)
    talos = talos_client(spec, timeouts, env)
    omni = omni_client(spec, timeouts, env)
    lock = ClusterLock(lock_scope(omni.endpoint.url, cluster), "abort")
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
            by_uuid = await _uuids(talos, spec.talos.nodes)
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


# ---- unlock ---------------------------------------------------------------------------------


PREVIEW_CODES = ("UNLOCK_CONFIG_INVALID", "UNLOCK_PREVIEW", "DENYLISTED_VALUES")


def unlock_preview(plan: Plan) -> list[Finding]:
    """The findings that say what changes on the nodes when Omni takes over after unlock."""
    return [f for f in plan.findings if f.code in PREVIEW_CODES]


async def unlock_cluster(
    cluster: str,
    spec: Spec,
    *,
    ui: Ui,
    confirm: Confirm,
    auto_approve: bool,
    show: Callable[[dict[str, Any]], None],
    plan: Plan | None = None,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Unlock; returns False when the cluster was not locked (nothing changed)."""
    if plan is not None and plan.cluster.name != cluster:
        raise AbortError(
            f"the plan is for cluster {plan.cluster.name}, not {cluster}",
            "pass the plan of the cluster you unlock",
        )
    env = dict(os.environ if environ is None else environ)
    timeouts = Timeouts(wait_connected=spec.wait_timeout)
    omni = omni_client(spec, timeouts, env)
    lock = ClusterLock(lock_scope(omni.endpoint.url, cluster), "unlock")
    lock.acquire()
    try:
        async with omni:
            await omni.server_version()  # omnictl's API version check, before anything else
            found = await omni.find(o.CLUSTERS, cluster)
            if found is None:
                raise AbortError(f"Omni at {omni.endpoint.url} has no cluster {cluster}", None)
            machines = await omni.list(o.CLUSTER_MACHINES, labels={o.LABEL_CLUSTER: cluster})
            locked = o.ANNOTATION_CLUSTER_LOCKED in found.annotations
            show(
                {
                    "cluster": cluster,
                    "omni_url": omni.endpoint.url,
                    "locked": locked,
                    "importing": o.ANNOTATION_IMPORT_IN_PROGRESS in found.annotations,
                    "machines": len(machines),
                    "preview": None
                    if plan is None
                    else [
                        {
                            "code": f.code,
                            "node": f.node,
                            "message": f.message,
                            "details": list(f.details),
                        }
                        for f in unlock_preview(plan)
                    ],
                }
            )
            if not locked:
                ui.say(f"Cluster {cluster} is not locked; nothing to do.")
                return False
            if not auto_approve and not confirm(cluster):
                raise AbortError("Unlock cancelled.", None)
            step = StepRef(f"omni_cluster.{cluster}", "update", o.CLUSTERS, cluster)
            ui.start(step, "unlocking")
            t0 = time.monotonic()
            await omni.update_with_conflicts(
                o.CLUSTERS,
                cluster,
                lambda r: r.without_annotation(o.ANNOTATION_CLUSTER_LOCKED).without_annotation(
                    o.ANNOTATION_IMPORT_IN_PROGRESS
                ),
            )
            ui.done(step, time.monotonic() - t0, "unlocked")
            ui.summary(
                "unlock",
                f"Unlock complete! Omni now manages cluster {cluster} and pushes its rendered "
                f"configs to its {len(machines)} machine(s).",
                0,
                1,
                0,
            )
            return True
    finally:
        lock.release()


def spec_for(spec_path: str | None, plan_path: str | None) -> tuple[Spec, Plan | None]:
    """Access settings from ``--spec``, else from the spec recorded in ``--plan``."""
    from omniport.planner import planfile
    from omniport.planner.execute.apply import spec_from_data
    from omniport.planner.spec import load_spec

    plan = planfile.read(Path(plan_path)) if plan_path else None
    if spec_path:
        return load_spec(spec_path), plan
    if plan is not None and plan_path is not None:
        base = Path(plan_path).resolve().parent
        return spec_from_data(plan.spec, base, plan_path), plan
    raise AbortError(
        "this command needs access settings for Talos and Omni",
        "pass --spec SPEC (the import spec) or --plan PLAN",
    )
