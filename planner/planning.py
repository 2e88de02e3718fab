"""Planning: discovered facts -> findings + per-node patches -> Plan.

Discovery (:mod:`planner.discover`) is the only part that does I/O. ``compute`` is pure and a
composition of the stages: versions and secrets from the facts, each node's machine-config
work (:mod:`planner.nodeconfig`), the findings (:mod:`planner.checks`, their one source), the
ordered changes (:mod:`planner.changes`), the Plan. It keeps in memory what apply needs and
the plan must not hold (the secrets bundle and exact patch texts) and shows them in the Plan
redacted and hashed. Apply runs discovery and ``compute`` again and refuses unless the hashes
and the fingerprint still match: the plan is the approval.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from omniport.planner import __version__, planfile, speclocation
from omniport.planner.changes import NodeImport, plan_changes
from omniport.planner.checks import (
    ALREADY_IMPORTED,
    ResolvedVersions,
    plan_findings,
    resolve_versions,
)
from omniport.planner.discover import discover
from omniport.planner.errors import PlanningError
from omniport.planner.facts import ClusterFacts, FactoryFacts, NodeFacts, OmniFacts
from omniport.planner.join import JoinOptions
from omniport.planner.machineconfig import document as mcdoc
from omniport.planner.machineconfig.secrets import SecretsBundle
from omniport.planner.nodeconfig import ImportBase, NodeConfig, node_configs, rebuild_secrets
from omniport.planner.plan import Change, ClusterInfo, NodePlan, Patch, Plan
from omniport.planner.spec import Spec, canonical_json
from omniport.providers.codec.joinurl import api_url_problem
from omniport.providers.timeouts import Timeouts

__all__ = [
    "Computed",
    "NodeWork",
    "PlanningError",
    "compute",
    "fingerprint",
    "join_options",
    "make_plan",
    "registrable_schematics",
    "sha256",
]


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass(frozen=True)
class NodeWork:
    """One node's import material; ``patch_texts`` hold secrets and never leave memory."""

    facts: NodeFacts
    patch_texts: tuple[tuple[str, str], ...]  # (patch id, exact text)
    patch_redacted: tuple[str, ...]
    removed: tuple[str, ...]
    live: mcdoc.MachineConfig | None = field(default=None, repr=False, compare=False)
    """``facts.config`` parsed (when it parsed), so apply need not parse it again."""
    replaced: tuple[str, ...] = ()
    """Join documents of an earlier import that the join overwrites (redacted, one per line)."""


@dataclass(frozen=True)
class Computed:
    plan: Plan
    facts: ClusterFacts
    nodes: tuple[NodeWork, ...]
    secrets_yaml: str = field(repr=False)
    join: JoinOptions | None = field(default=None, repr=False)


def compute(
    spec: Spec, facts: ClusterFacts, *, now: datetime | None = None, compare_results: bool = True
) -> Computed:
    """Findings, per-node patches and the Plan, from facts alone.

    ``compare_results=False`` skips the two per-node comparisons (the round trip's residue and
    the unlock preview), about 40 % of the work. Apply's re-check uses it: a node whose config
    changed since the plan makes the plan stale anyway, and for an unchanged config both
    comparisons give what the plan already holds (whose blocking findings apply refused)."""
    now = now or datetime.now(UTC)
    versions = resolve_versions(facts, spec)
    cluster_name = _cluster_name(facts)
    bundle, secrets_problem = rebuild_secrets(facts)
    base = _import_base(cluster_name, bundle, versions)
    configs = node_configs(facts.nodes, base, compare_results=compare_results)
    findings = plan_findings(facts, spec, configs, secrets_problem)
    works = tuple(_work(node, config) for node, config in zip(facts.nodes, configs, strict=True))
    join = join_options(facts.omni)
    secrets_yaml = bundle.to_yaml() if bundle else ""
    changes = _changes(facts, works, join, cluster_name, versions)
    done = [f for f in findings if f.code == ALREADY_IMPORTED]
    if done:
        # After a successful apply a plan would show the same import again (as "to add") with
        # errors: it is the import that happened. The plan says so, and only that.
        findings, changes = done, []
    plan = Plan(
        tool_version=__version__,
        created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        spec=spec.normalized,
        spec_sha256=spec.sha256,
        cluster=_cluster_info(facts, cluster_name, versions),
        nodes=tuple(_node_plan(w) for w in works),
        findings=tuple(findings),
        changes=tuple(changes),
        secrets_sha256=sha256(secrets_yaml),
        fingerprint=fingerprint(spec, facts),
        nodes_source=facts.nodes_source,
    )
    return Computed(plan=plan, facts=facts, nodes=works, secrets_yaml=secrets_yaml, join=join)


def _cluster_name(facts: ClusterFacts) -> str | None:
    return next((n.cluster_name for n in facts.control_planes if n.cluster_name), None)


def _import_base(
    cluster_name: str | None, bundle: SecretsBundle | None, versions: ResolvedVersions
) -> ImportBase | None:
    """What the patches are computed against, or None when something it needs is unknown."""
    if not (bundle and cluster_name and versions.initial_talos and versions.initial_kubernetes):
        return None
    return ImportBase(
        cluster_name=cluster_name,
        secrets=bundle,
        initial_talos=versions.initial_talos,
        initial_kubernetes=versions.initial_kubernetes,
        talos=versions.talos,
        kubernetes=versions.kubernetes,
    )


def _work(node: NodeFacts, config: NodeConfig) -> NodeWork:
    return NodeWork(
        node,
        config.patch_texts,
        config.patch_redacted,
        config.removed,
        config.parsed,
        config.replaced,
    )


def join_options(omni: OmniFacts) -> JoinOptions | None:
    """What the nodes join Omni with; None when Omni was not read or its API URL is unusable."""
    if omni.error is not None or api_url_problem(omni.machine_api_url or ""):
        return None
    return JoinOptions(
        machine_api_url=omni.machine_api_url or "",
        join_token=omni.join_token or "",
        events_port=omni.events_port or 0,
        logs_port=omni.logs_port or 0,
    )


def registrable_schematics(factory: FactoryFacts) -> dict[str, str]:
    """Node address -> the schematic ID apply registers with the factory: every node whose
    schematic content was checked against a reachable factory and hashes to its ID."""
    if not factory.url or factory.error is not None:
        return {}
    return {
        c.node: c.schematic_id
        for c in factory.checks
        if c.error is None and c.schematic_yaml and c.offline_id == c.schematic_id
    }


def _changes(
    facts: ClusterFacts,
    works: Sequence[NodeWork],
    join: JoinOptions | None,
    cluster_name: str | None,
    versions: ResolvedVersions,
) -> list[Change]:
    """The ordered changes; none without a cluster name or a way for nodes to join."""
    if not (join and cluster_name):
        return []
    registrable = registrable_schematics(facts.factory)
    node_imports = [
        NodeImport(
            w.facts.address,
            w.facts.machine_uuid or "",
            w.facts.role or "worker",
            tuple(
                (pid, red) for (pid, _), red in zip(w.patch_texts, w.patch_redacted, strict=True)
            ),
            w.replaced,
            registrable.get(w.facts.address),
        )
        for w in works
        if w.facts.error is None and w.facts.machine_uuid
    ]
    return plan_changes(
        cluster_name,
        versions.talos or "",
        versions.kubernetes or "",
        node_imports,
        join,
        facts.factory.url,
    )


def _cluster_info(
    facts: ClusterFacts, cluster_name: str | None, versions: ResolvedVersions
) -> ClusterInfo:
    return ClusterInfo(
        name=cluster_name or "(unknown)",
        talos_version=versions.talos or "",
        kubernetes_version=versions.kubernetes or "",
        initial_talos_version=versions.initial_talos or "",
        initial_kubernetes_version=versions.initial_kubernetes or "",
        omni_url=facts.omni.url,
        factory_url=facts.factory.url,
    )


def _node_plan(w: NodeWork) -> NodePlan:
    return NodePlan(
        address=w.facts.address,
        hostname=w.facts.hostname or "",
        machine_uuid=w.facts.machine_uuid or "",
        role=w.facts.role or "worker",
        talos_version=w.facts.talos_version or "",
        schematic_id=w.facts.schematic_id,
        config_sha256=sha256(w.facts.config) if w.facts.config is not None else "0" * 64,
        patches=tuple(
            Patch(pid, sha256(text), red)
            for (pid, text), red in zip(w.patch_texts, w.patch_redacted, strict=True)
        ),
        removed=w.removed,
    )


def fingerprint(spec: Spec, facts: ClusterFacts) -> str:
    """sha256 over everything discovered that the plan depends on (not health messages)."""
    omni = facts.omni
    data: dict[str, Any] = {
        "spec": spec.sha256,
        "nodes": [
            {
                "address": n.address,
                "error": n.error.kind if n.error else None,
                "role": n.role,
                "talos": n.talos_version,
                "hostname": n.hostname,
                "uuid": n.machine_uuid,
                "config": sha256(n.config) if n.config is not None else None,
                "schematic": n.schematic_id,
                "images": [
                    n.kubelet_image,
                    n.apiserver_image,
                    n.scheduler_image,
                    n.controller_manager_image,
                ],
            }
            for n in facts.nodes
        ],
        "members": sorted([m.id, m.hostname, sorted(m.addresses)] for m in (facts.members or ()))
        if facts.members is not None
        else None,
        "omni": {
            "error": omni.error.kind if omni.error else None,
            "cluster_exists": omni.cluster_exists,
            "versions": {k: list(v) for k, v in sorted(omni.talos_versions.items())},
            "api": omni.machine_api_url,
            "ports": [omni.events_port, omni.logs_port],
            "token": sha256(omni.join_token) if omni.join_token else None,
            "machines": {
                n.machine_uuid: omni.machines.get(n.machine_uuid)
                for n in facts.nodes
                if n.machine_uuid
            },
        },
        "factory": facts.factory.url,
    }
    return sha256(canonical_json(data))


async def make_plan(
    spec: Spec, *, timeouts: Timeouts | None = None, env: Mapping[str, str] | None = None
) -> Computed:
    """Discover, compute, record where the spec is and seal the plan (``planfile.sealed``);
    refuses when no node at all could be read."""
    facts = await discover(spec, timeouts=timeouts, env=env)
    errors = [n.error for n in facts.nodes if n.error is not None]
    if facts.nodes and len(errors) == len(facts.nodes):
        # Nothing was read: a plan would be all guesses (roles, "no patch"), so there is none.
        raise PlanningError(
            f"cannot read any of the {len(errors)} node(s), so there is nothing to plan: "
            f"{errors[0].message}",
            "check talos.endpoints and the talosconfig context, then run `omniport plan` again",
        )
    computed = compute(spec, facts)
    located = replace(computed.plan, spec_location=speclocation.locate(spec.path))
    return replace(computed, plan=planfile.sealed(located, computed.secrets_yaml))


def summary_json(plan: Plan) -> str:  # pragma: no cover - debugging aid
    return json.dumps({"fingerprint": plan.fingerprint, "nodes": len(plan.nodes)})
