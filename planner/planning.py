"""Planning: spec -> discovered facts -> findings + per-node patches -> Plan.

``discover`` is the only part that does I/O (read-only, through providers). ``compute`` is pure:
it turns facts into everything apply needs — the secrets bundle and exact patch texts (kept in
memory only) and the Plan that shows them redacted and hashed. Apply runs the same two steps
again and refuses unless the hashes and the fingerprint still match: the plan is the approval.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from omniport.planner import __version__
from omniport.planner.changes import NodeImport, plan_changes
from omniport.planner.checks import check, finding, resolve_versions
from omniport.planner.discover import (
    choose_factory,
    read_factory,
    read_members,
    read_nodes,
    read_omni,
    read_omni_settings,
    role_hints,
    run_health_check,
)
from omniport.planner.errors import OmniportError
from omniport.planner.facts import (
    ClusterFacts,
    FactoryFacts,
    HealthFacts,
    Member,
    NodeFacts,
    OmniFacts,
)
from omniport.planner.join import JOIN_KINDS, JoinOptions
from omniport.planner.machineconfig import document as mcdoc
from omniport.planner.machineconfig.diff import diff
from omniport.planner.machineconfig.generate import GenerateOptions, generate, import_baseline
from omniport.planner.machineconfig.merge import apply_patches
from omniport.planner.machineconfig.redact import redact
from omniport.planner.machineconfig.sanitize import sanitize
from omniport.planner.machineconfig.secrets import SecretsBundle, bundle_from_config
from omniport.planner.machineconfig.validate import ValidateError
from omniport.planner.machineconfig.verify import compare, pushed_config_verdict
from omniport.planner.plan import ClusterInfo, Finding, NodePlan, Patch, Plan
from omniport.planner.spec import Spec, canonical_json
from omniport.providers import omniconfig
from omniport.providers.codec.joinurl import api_url_problem
from omniport.providers.errors import ProviderError, TLSFailure
from omniport.providers.omni import OmniClient, TLSOptions, UnsupportedAPIVersion
from omniport.providers.talos import TalosClient
from omniport.providers.talosconfig import find_talosconfig
from omniport.providers.timeouts import Timeouts

OMNI_LB_ENDPOINT = "https://[fdae:41e4:649b:9303::1]:10000"
"""Stands in for the per-cluster load balancer endpoint Omni sets after unlock (the port is
chosen by Omni at runtime; the endpoint field is Omni-managed and never part of a patch)."""


class PlanningError(OmniportError):
    """The plan cannot be computed (not a finding: nothing to accept, something to fix first)."""


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


# --- discovery (I/O) -------------------------------------------------------------------------


def talos_client(
    spec: Spec, timeouts: Timeouts, env: Mapping[str, str] | None = None
) -> TalosClient:
    return TalosClient.from_talosconfig(
        spec.talos.talosconfig,
        context=spec.talos.context,
        endpoints=list(spec.talos.endpoints) or None,
        timeouts=timeouts,
        env=env,
    )


def omni_client(spec: Spec, timeouts: Timeouts, env: Mapping[str, str] | None = None) -> OmniClient:
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
    return OmniClient.from_settings(settings, tls=tls, timeouts=timeouts)


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
    omni = omni_client(spec, timeouts, env)
    try:
        return await _discover(spec, talos, omni, timeouts, health_check, env)
    finally:
        # Closing a TLS connection waits for the peer's close_notify; asyncio.run closes its
        # loop at once, and the half-closed sockets would then leak (ResourceWarning).
        await asyncio.sleep(TLS_CLOSE_GRACE)


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
        members_or_error, settings_or_error = await asyncio.gather(
            read_members(talos, spec.talos.nodes[0]),
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

        nodes = await read_nodes(talos, spec.talos.nodes, role_hints=role_hints(members))
        cluster_name = next(
            (n.cluster_name for n in nodes if n.role == "controlplane" and n.cluster_name), None
        )
        cps = [n.address for n in nodes if n.role == "controlplane" and n.error is None]
        workers = [n.address for n in nodes if n.role == "worker" and n.error is None]

        async def health() -> HealthFacts:
            if not (run_health and cps):
                return HealthFacts(ran=False)
            return await run_health_check(talos, cps[0], cps, workers, spec.health_check_timeout)

        cluster_talos = next(
            (n.talos_version for n in nodes if n.role == "controlplane" and n.talos_version),
            spec.versions.talos,
        )
        target = choose_factory(
            spec.image_factory.url, settings, cluster_talos, ca_file=spec.image_factory.ca_file
        )
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
        omni=cast(OmniFacts, omni_facts),
        factory=cast(FactoryFacts, factory_facts),
        health=cast(HealthFacts, health_facts),
    )


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


# --- computation (pure) ----------------------------------------------------------------------


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


def _secrets(facts: ClusterFacts) -> tuple[SecretsBundle | None, str | None]:
    for node in facts.control_planes:
        if node.config is None:
            continue
        try:
            config = mcdoc.parse(node.config, source=f"machine config of {node.address}")
            return bundle_from_config([d.data for d in config.documents]), None
        except OmniportError as err:
            return None, f"cannot rebuild the secrets bundle from {node.address}: {err}"
    return None, "no readable control-plane config to rebuild the secrets bundle from"


def _unlock_refusal(
    pushed: Sequence[mcdoc.Document], live: mcdoc.MachineConfig, talos_version: str
) -> list[str]:
    """Talos's errors on the config Omni pushes after unlock; none for versions without rules."""
    try:
        verdict = pushed_config_verdict(pushed, live, talos_version)
    except ValidateError:
        return []
    return [str(problem) for problem in verdict.errors]


def _split_join_documents(
    config: mcdoc.MachineConfig,
) -> tuple[mcdoc.MachineConfig, tuple[mcdoc.Document, ...]]:
    """The config without the join documents (what the import carries over), and those."""

    def is_join(doc: mcdoc.Document) -> bool:
        return not doc.key.is_legacy and (doc.key.kind, doc.key.name or None) in JOIN_KINDS

    join = tuple(d for d in config.documents if is_join(d))
    if not join:
        return config, ()
    rest = tuple(d for d in config.documents if not is_join(d))
    return mcdoc.MachineConfig.from_documents(rest), join


def _join_target(join: tuple[mcdoc.Document, ...]) -> str:
    """``scheme://host[:port]/path`` the node's SideroLinkConfig dials ("" without one)."""
    link = next((d for d in join if d.key.kind == "SideroLinkConfig"), None)
    return _join_target_of_url(str((link.data if link else {}).get("apiUrl") or ""))


def _join_target_of_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else ""


def _one_line(doc: mcdoc.Document) -> str:
    """``Kind: key=value, …`` with secrets redacted (the join token rides in the URL)."""
    data = redact((doc,))[0].data
    return f"{doc.key.kind}: " + ", ".join(
        f"{k}={v}" for k, v in data.items() if k not in ("apiVersion", "kind")
    )


def compute(
    spec: Spec, facts: ClusterFacts, *, now: datetime | None = None, compare_results: bool = True
) -> Computed:
    """Findings, per-node patches and the Plan, from facts alone.

    ``compare_results=False`` skips the two per-node comparisons (the round trip's residue and
    the unlock preview), about 40 % of the work. Apply's re-check uses it: a node whose config
    changed since the plan makes the plan stale anyway, and for an unchanged config both
    comparisons give what the plan already holds (whose blocking findings apply refused)."""
    now = now or datetime.now(UTC)
    findings: list[Finding] = check(facts, spec)
    versions = resolve_versions(facts, spec)
    cluster_name = next((n.cluster_name for n in facts.control_planes if n.cluster_name), None)
    bundle, secrets_problem = _secrets(facts)
    works: list[NodeWork] = []
    baselines: dict[str, tuple[mcdoc.Document, ...]] = {}
    renders: dict[str, tuple[mcdoc.Document, ...]] = {}
    can_compute = bool(
        bundle and cluster_name and versions.initial_talos and versions.initial_kubernetes
    )
    for node in facts.nodes:
        if node.error is not None or node.config is None or node.role is None:
            works.append(NodeWork(node, (), (), ()))
            continue
        try:
            parsed = mcdoc.parse(node.config, source=f"machine config of {node.address}")
        except OmniportError as err:
            findings.append(finding("NODE_READ_FAILED", str(err), spec, node=node.address))
            works.append(NodeWork(node, (), (), ()))
            continue
        # join documents are Omni's (replaced at connect), never part of the imported patches
        live, leftover = _split_join_documents(parsed)
        replaced = tuple(_one_line(d) for d in leftover)
        if leftover:
            target = _join_target(leftover)
            ours = _join_target_of_url(facts.omni.machine_api_url or "")
            if target and target == ours:
                findings.append(
                    finding(
                        "LEFTOVER_JOIN_DOCUMENTS",
                        "the node still holds join documents for this Omni from an earlier "
                        "import (omnictl cluster import abort leaves them): apply replaces them, "
                        "rollback restores them",
                        spec,
                        node=node.address,
                        details=replaced,
                    )
                )
            else:
                findings.append(
                    finding(
                        "NODE_ALREADY_CONNECTED",
                        "the node's config already holds join documents for another Omni"
                        + (f" ({target})" if target else ""),
                        spec,
                        node=node.address,
                        details=replaced,
                    )
                )
        if not can_compute:
            works.append(NodeWork(node, (), (), (), parsed, replaced))
            continue
        assert bundle is not None and cluster_name is not None
        role = node.role
        if role not in baselines:
            baselines[role] = tuple(
                import_baseline(
                    role,  # type: ignore[arg-type]
                    talos_version=versions.initial_talos or "",
                    kubernetes_version=versions.initial_kubernetes or "",
                    cluster_name=cluster_name,
                    secrets=bundle,
                )
            )
        baseline = baselines[role]
        texts: list[tuple[str, str]] = []
        redacted: list[str] = []
        removed: list[str] = []
        kept: list[tuple[mcdoc.Document, ...]] = []
        for ordinal, patch in zip(("10", "20"), diff(baseline, live), strict=False):
            cleaned = sanitize(patch)
            removed += [
                f"{r.document}: {r.path}" if r.path else r.document for r in cleaned.removed
            ]
            if cleaned.empty:
                continue
            kept.append(cleaned.documents)
            texts.append((f"{ordinal}-{node.machine_uuid}", mcdoc.emit(cleaned.documents)))
            redacted.append(mcdoc.emit(redact(cleaned.documents)))
        residue = compare(live, apply_patches(baseline, kept)) if compare_results else []
        if residue:
            findings.append(
                finding(
                    "CONFIG_RESIDUE",
                    f"{len(residue)} field(s) would differ from the live config after import",
                    spec,
                    node=node.address,
                    details=tuple(str(m) for m in residue[:20]),
                )
            )
        if removed:
            findings.append(
                finding(
                    "DENYLISTED_VALUES",
                    f"Omni strips {len(removed)} value(s) from this node's patches and manages "
                    "them itself",
                    spec,
                    node=node.address,
                    details=tuple(removed[:20]),
                )
            )
        # what Omni renders after unlock: its base for the CURRENT versions + the patches
        if compare_results and versions.talos and versions.kubernetes:
            if role not in renders:
                renders[role] = tuple(
                    generate(
                        role,  # type: ignore[arg-type]
                        contract=versions.talos,
                        cluster_name=cluster_name,
                        endpoint=OMNI_LB_ENDPOINT,
                        kubernetes_version=versions.kubernetes,
                        secrets=bundle,
                        options=GenerateOptions(install_image="", skip_unattended_install=True),
                    )
                )
            pushed = apply_patches(renders[role], kept)
            preview = compare(live, pushed, managed_documents=True)
            refusal = _unlock_refusal(pushed, live, versions.talos)
            if refusal:
                findings.append(
                    finding(
                        "UNLOCK_CONFIG_INVALID",
                        f"Talos {versions.talos} would refuse the config Omni pushes after "
                        f"unlock: {len(refusal)} error(s)",
                        spec,
                        node=node.address,
                        details=tuple(refusal[:20]),
                    )
                )
            if preview:
                findings.append(
                    finding(
                        "UNLOCK_PREVIEW",
                        f"after unlock Omni pushes a config that differs in {len(preview)} "
                        "field(s), and points cluster.controlPlane.endpoint at its load balancer",
                        spec,
                        node=node.address,
                        details=tuple(str(m) for m in preview[:20]),
                    )
                )
        works.append(
            NodeWork(node, tuple(texts), tuple(redacted), tuple(removed), parsed, replaced)
        )

    if secrets_problem and any(n.error is None for n in facts.nodes):
        findings.append(finding("NODE_READ_FAILED", secrets_problem, spec))

    omni = facts.omni
    join = (
        JoinOptions(
            machine_api_url=omni.machine_api_url or "",
            join_token=omni.join_token or "",
            events_port=omni.events_port or 0,
            logs_port=omni.logs_port or 0,
        )
        if omni.error is None and not api_url_problem(omni.machine_api_url or "")
        else None
    )
    secrets_yaml = bundle.to_yaml() if bundle else ""
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
    changes = (
        plan_changes(
            cluster_name or "",
            versions.talos or "",
            versions.kubernetes or "",
            node_imports,
            join,
            facts.factory.url,
        )
        if join and cluster_name
        else []
    )
    plan = Plan(
        tool_version=__version__,
        created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        spec=spec.normalized,
        spec_sha256=spec.sha256,
        cluster=ClusterInfo(
            name=cluster_name or "(unknown)",
            talos_version=versions.talos or "",
            kubernetes_version=versions.kubernetes or "",
            initial_talos_version=versions.initial_talos or "",
            initial_kubernetes_version=versions.initial_kubernetes or "",
            omni_url=omni.url,
            factory_url=facts.factory.url,
        ),
        nodes=tuple(
            NodePlan(
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
            for w in works
        ),
        findings=tuple(findings),
        changes=tuple(changes),
        secrets_sha256=sha256(secrets_yaml),
        fingerprint=fingerprint(spec, facts),
    )
    return Computed(
        plan=plan, facts=facts, nodes=tuple(works), secrets_yaml=secrets_yaml, join=join
    )


async def make_plan(
    spec: Spec, *, timeouts: Timeouts | None = None, env: Mapping[str, str] | None = None
) -> Computed:
    facts = await discover(spec, timeouts=timeouts, env=env)
    errors = [n.error for n in facts.nodes if n.error is not None]
    if facts.nodes and len(errors) == len(facts.nodes):
        # Nothing was read: a plan would be all guesses (roles, "no patch"), so there is none.
        raise PlanningError(
            f"cannot read any of the {len(errors)} node(s), so there is nothing to plan: "
            f"{errors[0].message}",
            "check talos.endpoints and the talosconfig context, then run `omniport plan` again",
        )
    return compute(spec, facts)


def summary_json(plan: Plan) -> str:  # pragma: no cover - debugging aid
    return json.dumps({"fingerprint": plan.fingerprint, "nodes": len(plan.nodes)})
