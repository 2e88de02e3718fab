"""``omniport unlock CLUSTER``: hand an imported cluster over to Omni.

Unlock removes ``cluster-locked`` and ``cluster-import-is-in-progress`` from the Cluster, as
``omnictl cluster unlock`` and the web UI do; Omni then starts pushing its rendered configs.
The plan's unlock preview (what those configs change on each node) is shown first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from omniport.planner.execute.errors import AbortError
from omniport.planner.execute.session import Access, Confirm, StepRef, Ui, cluster_lock
from omniport.planner.plan import Finding, Plan
from omniport.planner.spec import Spec
from omniport.providers import omni as o

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
    access = Access.of(spec, environ)
    omni = access.omni()
    lock = cluster_lock(omni.endpoint.url, cluster, "unlock", access.env)
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
