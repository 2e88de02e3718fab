"""Checks: facts + spec -> findings, the plan's only source of them. Pure; the codes, their
severities and fixes are the table in ``planner.finding_codes``.

Discovery findings (:func:`check`) come from the facts alone; machine-config findings
(:func:`config_findings`) from each node's outcome in :mod:`planner.nodeconfig`.
:func:`plan_findings` gives both, in the plan's order."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from omniport.planner.facts import ClusterFacts, NodeFacts
from omniport.planner.finding_codes import CHECKS, MIN_TALOS_VERSION
from omniport.planner.join import dial_target
from omniport.planner.nodeconfig import NodeConfig
from omniport.planner.plan import Finding, Severity
from omniport.planner.spec import Spec, version_tuple
from omniport.providers.codec.joinurl import api_url_problem


def finding(
    code: str,
    message: str,
    spec: Spec,
    *,
    node: str | None = None,
    details: tuple[str, ...] = (),
) -> Finding:
    check = CHECKS[code]
    accepted = (
        check.severity is Severity.ERROR
        and check.acceptable
        and (code in spec.accepted_findings or spec.force)
    )
    return Finding(
        code=code,
        severity=check.severity,
        message=message,
        fix=check.fix,
        node=node,
        accepted=accepted,
        details=details,
    )


ALREADY_IMPORTED = "ALREADY_IMPORTED"
"""The finding that replaces a plan's changes: the cluster is imported already."""

_TAG = re.compile(r":v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)(?:@sha256:[0-9a-f]+)?$")


def image_version(image: str | None) -> str | None:
    """``ghcr.io/siderolabs/kubelet:v1.34.1`` -> ``1.34.1``; None when there is no version tag."""
    if not image:
        return None
    match = _TAG.search(image)
    return match.group(1) if match else None


@dataclass(frozen=True)
class ResolvedVersions:
    talos: str | None
    kubernetes: str | None
    initial_talos: str | None
    initial_kubernetes: str | None


def resolve_versions(facts: ClusterFacts, spec: Spec) -> ResolvedVersions:
    """Current versions from the first control plane in spec order (as omnictl does)."""
    first = next(iter(facts.control_planes), None)
    talos = first.talos_version if first else None
    kube = image_version(first.kubelet_image) if first else None
    return ResolvedVersions(
        talos=talos,
        kubernetes=kube,
        initial_talos=spec.versions.initial_talos or talos,
        initial_kubernetes=spec.versions.initial_kubernetes or kube,
    )


def _node_findings(node: NodeFacts, spec: Spec) -> list[Finding]:
    out: list[Finding] = []
    if node.error is not None:
        code = (
            "NODE_UNREACHABLE"
            if node.error.kind in ("Unreachable", "Timeout")
            else (
                "TALOS_ROLE_INSUFFICIENT"
                if node.error.kind == "PermissionDenied"
                else "NODE_READ_FAILED"
            )
        )
        out.append(finding(code, node.error.message, spec, node=node.address))
        return out
    if node.config_error is not None:
        code = (
            "TALOS_ROLE_INSUFFICIENT"
            if node.config_error.kind == "PermissionDenied"
            else "NODE_READ_FAILED"
        )
        out.append(
            finding(
                code,
                f"cannot read the machine config: {node.config_error.message}",
                spec,
                node=node.address,
            )
        )
    if node.fact_mismatches:
        out.append(
            finding(
                "NODE_FACTS_DISAGREE",
                "the node's config and Talos's resources disagree; the plan uses what Talos "
                "reports, as Omni's importer does",
                spec,
                node=node.address,
                details=node.fact_mismatches,
            )
        )
    for service in node.services:
        if service.healthy is False or service.state in ("Failed",):
            out.append(
                finding(
                    "SERVICE_UNHEALTHY",
                    f"service {service.id} is {service.state}"
                    + (" and unhealthy" if service.healthy is False else ""),
                    spec,
                    node=node.address,
                )
            )
    if node.schematic_id is None:
        out.append(
            finding(
                "SCHEMATIC_MISSING",
                "no Image Factory schematic: Talos was not installed from an Image Factory image",
                spec,
                node=node.address,
            )
        )
    elif not node.schematic_yaml:
        out.append(
            finding(
                "SCHEMATIC_UNVERIFIABLE",
                f"schematic {node.schematic_id[:12]}… is present but its content is not, so it "
                "cannot be checked",
                spec,
                node=node.address,
            )
        )
    return out


def _differ(values: Mapping[str, str | None]) -> str:
    return ", ".join(f"{v or '?'} ({k})" for k, v in values.items())


def check(facts: ClusterFacts, spec: Spec) -> list[Finding]:
    """All discovery findings for ``facts`` under ``spec`` (machine-config ones come later)."""
    out: list[Finding] = []
    readable = [n for n in facts.nodes if n.error is None]
    for node in facts.nodes:
        out += _node_findings(node, spec)

    if readable and not facts.control_planes:
        out.append(finding("NO_CONTROL_PLANE", "none of the given nodes is a control plane", spec))

    for what, path, mode in facts.exposed_key_files:
        out.append(
            finding(
                "KEY_FILE_EXPOSED",
                f"the {what} {path} holds a private key and is readable by others "
                f"(mode {mode:04o})",
                spec,
            )
        )

    # discovery membership versus the nodes given
    if facts.members_error is not None:
        out.append(
            finding(
                "MEMBERS_UNREADABLE",
                f"the discovery members could not be read, so the node list cannot be "
                f"confirmed: {facts.members_error}",
                spec,
            )
        )
    if facts.members is not None:
        if not facts.members:
            out.append(
                finding(
                    "DISCOVERY_DISABLED",
                    "Talos discovery lists no members, so the node list cannot be confirmed",
                    spec,
                )
            )
        else:
            listed = [n.address for n in facts.nodes]
            given = set(listed)
            known_addresses = {a for m in facts.members for a in m.addresses}
            missing = [m for m in facts.members if not given & set(m.addresses)]
            hostnames = {n.hostname for n in readable}
            missing = [m for m in missing if m.hostname not in hostnames]
            extra = [a for a in listed if a not in known_addresses]
            extra = [
                a
                for a in extra
                if facts.node(a).hostname not in {m.hostname for m in facts.members}
            ]
            if missing or extra or len(facts.members) != len(listed):
                parts = [
                    f"discovery has {len(facts.members)} member(s), the spec lists "
                    f"{len(listed)} node(s)"
                ]
                if missing:
                    parts.append(
                        "not in the spec: "
                        + ", ".join(f"{m.hostname} ({', '.join(m.addresses)})" for m in missing)
                    )
                if extra:
                    parts.append("not discovered: " + ", ".join(extra))
                out.append(finding("MEMBERS_MISMATCH", "; ".join(parts), spec))

    # one version across the cluster
    talos_versions = {n.address: n.talos_version for n in readable}
    if len(set(talos_versions.values())) > 1:
        out.append(
            finding(
                "TALOS_VERSIONS_DIFFER",
                "nodes run different Talos versions: " + _differ(talos_versions),
                spec,
            )
        )
    for label, attr, nodes in (
        ("kubelet", "kubelet_image", readable),
        ("kube-apiserver", "apiserver_image", facts.control_planes),
        ("kube-scheduler", "scheduler_image", facts.control_planes),
        ("kube-controller-manager", "controller_manager_image", facts.control_planes),
    ):
        images = {n.address: getattr(n, attr) for n in nodes if n.error is None}
        versions = {a: image_version(i) for a, i in images.items()}
        for address, image in images.items():
            if image is not None and versions[address] is None:
                out.append(
                    finding(
                        "IMAGE_VERSION_UNPARSEABLE",
                        f"cannot read a version from the {label} image {image!r}",
                        spec,
                        node=address,
                    )
                )
        present = {a: v for a, v in versions.items() if v}
        if len(set(present.values())) > 1:
            out.append(
                finding(
                    "KUBERNETES_VERSIONS_DIFFER",
                    f"{label} runs different versions: " + _differ(present),
                    spec,
                )
            )

    resolved = resolve_versions(facts, spec)
    out += _version_findings(facts, spec, resolved)
    out += _etcd_findings(facts, spec)
    out += _omni_findings(facts, spec)
    out += _factory_findings(facts, spec)
    if facts.health.skipped:
        out.append(
            finding(
                "HEALTH_CHECK_FAILED",
                f"the cluster health check was not run: {facts.health.skipped}",
                spec,
            )
        )
    if facts.health.ran and not facts.health.ok:
        out.append(
            finding(
                "HEALTH_CHECK_FAILED",
                f"the cluster health check failed: {facts.health.error or 'unknown error'}",
                spec,
                details=facts.health.messages[-5:],
            )
        )
    return out


def _minor(version: str | None) -> tuple[int, int] | None:
    """``(major, minor)`` of a Talos version (``v1.11.5`` or ``1.11.5``), None if unreadable."""
    try:
        return version_tuple(version)[:2] if version else None
    except ValueError:
        return None


def _version_findings(facts: ClusterFacts, spec: Spec, v: ResolvedVersions) -> list[Finding]:
    out: list[Finding] = []
    if v.talos and spec.versions.talos and v.talos != spec.versions.talos:
        out.append(
            finding(
                "TALOS_VERSION_ASSERTION",
                f"the spec expects Talos {spec.versions.talos}, the cluster runs {v.talos}",
                spec,
            )
        )
    if v.kubernetes and spec.versions.kubernetes and v.kubernetes != spec.versions.kubernetes:
        out.append(
            finding(
                "KUBERNETES_VERSION_ASSERTION",
                f"the spec expects Kubernetes {spec.versions.kubernetes}, the cluster runs "
                f"{v.kubernetes}",
                spec,
            )
        )
    for name, initial, current in (
        ("Talos", v.initial_talos, v.talos),
        ("Kubernetes", v.initial_kubernetes, v.kubernetes),
    ):
        if initial and current and version_tuple(initial) > version_tuple(current):
            out.append(
                finding(
                    "INITIAL_VERSION_NEWER",
                    f"initial {name} version {initial} is newer than the running {current}",
                    spec,
                )
            )
    cluster_minor = _minor(v.talos)
    for node in facts.nodes:
        minor = _minor(node.talos_version) if node.error is None else None
        if cluster_minor and minor and minor > cluster_minor:
            # Omni's MachineSetNode validation (version_compat.go): a machine may not join a
            # cluster of an older minor, since that would downgrade it
            out.append(
                finding(
                    "MACHINE_NEWER_THAN_CLUSTER",
                    f"{node.address} runs Talos {node.talos_version}, a newer minor than the "
                    f"cluster's {v.talos} (its first control plane's): Omni refuses to add a "
                    "machine it would have to downgrade",
                    spec,
                    node=node.address,
                )
            )
    if v.talos and version_tuple(v.talos) <= version_tuple(MIN_TALOS_VERSION):
        out.append(
            finding(
                "TALOS_BELOW_MINIMUM",
                f"Talos {v.talos} is not newer than {MIN_TALOS_VERSION}, the minimum Omni imports",
                spec,
            )
        )
    if v.talos and facts.omni.error is None:
        compatible = facts.omni.talos_versions.get(v.talos)
        if compatible is None:
            out.append(
                finding(
                    "TALOS_VERSION_UNKNOWN_TO_OMNI",
                    f"Omni does not know Talos {v.talos}",
                    spec,
                )
            )
        elif v.kubernetes and v.kubernetes not in compatible:
            out.append(
                finding(
                    "KUBERNETES_INCOMPATIBLE",
                    f"Omni does not pair Talos {v.talos} with Kubernetes {v.kubernetes}",
                    spec,
                )
            )
    return out


def _etcd_findings(facts: ClusterFacts, spec: Spec) -> list[Finding]:
    out: list[Finding] = []
    cps = [n for n in facts.control_planes if n.error is None]
    if not cps:
        return out
    members = {m.hostname: m for n in cps for m in n.etcd_members}
    cp_hosts = {n.hostname for n in cps if n.hostname}
    if members:
        stale = sorted(set(members) - cp_hosts)
        absent = sorted(cp_hosts - set(members))
        if stale or absent:
            parts = []
            if stale:
                parts.append("etcd members that are not given control planes: " + ", ".join(stale))
            if absent:
                parts.append("control planes without an etcd member: " + ", ".join(absent))
            out.append(finding("ETCD_MEMBERS_MISMATCH", "; ".join(parts), spec))
        for m in members.values():
            if m.is_learner:
                out.append(finding("ETCD_LEARNER", f"etcd member {m.hostname} is a learner", spec))
    return out


def _omni_findings(facts: ClusterFacts, spec: Spec) -> list[Finding]:
    omni = facts.omni
    out: list[Finding] = []
    if spec.omni.insecure_skip_tls_verify:
        out.append(
            finding(
                "OMNI_TLS_UNVERIFIED",
                f"TLS certificate verification for Omni at {omni.url or 'its URL'} is off "
                "(omni.insecureSkipTLSVerify): anyone on the network path can impersonate Omni "
                "and receive the cluster's secrets",
                spec,
            )
        )
    if omni.error is not None:
        out.append(finding("OMNI_UNREACHABLE", omni.error.message, spec))
        return out
    problem = api_url_problem(omni.machine_api_url or "")
    if problem:
        out.append(
            finding(
                "SIDEROLINK_URL_INVALID",
                f"Omni advertises a SideroLink API URL that nodes cannot join with: {problem}",
                spec,
            )
        )
    name = next((n.cluster_name for n in facts.control_planes if n.cluster_name), None)
    readable = [n for n in facts.nodes if n.error is None and n.machine_uuid]
    if (
        omni.cluster_exists
        and readable
        and all(omni.machines.get(n.machine_uuid or "") for n in readable)
    ):
        # A finished import (or a cluster Omni manages already): every node is connected to
        # this Omni, which holds the cluster. Nothing to import; the other findings and the
        # changes would only describe the import that already happened (see planning).
        out.append(
            finding(
                ALREADY_IMPORTED,
                f"cluster {name!r} is already imported into Omni at {omni.url}: Omni has the "
                f"cluster and all {len(readable)} of its node(s) are connected to it, so there "
                "is nothing to import",
                spec,
            )
        )
        return out
    if omni.cluster_exists:
        if omni.cluster_import_in_progress:
            out.append(
                finding(
                    "CLUSTER_IMPORT_IN_PROGRESS",
                    f"Omni already has cluster {name!r} with an import in progress",
                    spec,
                )
            )
        else:
            out.append(finding("CLUSTER_EXISTS", f"Omni already has a cluster {name!r}", spec))
    for node in facts.nodes:
        if node.machine_uuid and node.machine_uuid in omni.machines:
            state = "connected" if omni.machines[node.machine_uuid] else "registered"
            out.append(
                finding(
                    "MACHINE_KNOWN_TO_OMNI",
                    f"machine {node.machine_uuid} is already {state} in Omni",
                    spec,
                    node=node.address,
                )
            )
    return out


def _factory_findings(facts: ClusterFacts, spec: Spec) -> list[Finding]:
    factory = facts.factory
    out: list[Finding] = []
    if factory.url is None:
        with_schematic = [n.address for n in facts.nodes if n.error is None and n.schematic_id]
        if with_schematic:
            out.append(
                finding(
                    "FACTORY_URL_MISSING",
                    f"no Image Factory to register the nodes' schematics with: "
                    f"{factory.missing or 'no URL'}, and the spec names none",
                    spec,
                )
            )
        return out
    if factory.error is not None:
        out.append(finding("FACTORY_UNREACHABLE", factory.error.message, spec))
        return out
    for c in factory.checks:
        if c.error is not None:
            out.append(finding("FACTORY_UNREACHABLE", c.error.message, spec, node=c.node))
        elif c.offline_id is not None and c.offline_id != c.schematic_id:
            out.append(
                finding(
                    "SCHEMATIC_MISMATCH",
                    f"the node reports schematic {c.schematic_id[:12]}…, its content hashes to "
                    f"{c.offline_id[:12]}…",
                    spec,
                    node=c.node,
                )
            )
        elif c.known_to_factory is False:
            out.append(
                finding(
                    "SCHEMATIC_UNKNOWN_TO_FACTORY",
                    f"the factory at {factory.url} does not know schematic {c.schematic_id[:12]}…"
                    + (
                        f" (Omni's secondary factory at {c.known_at} does)"
                        if c.known_at and c.known_at != factory.url
                        else ""
                    )
                    + "; apply registers it there",
                    spec,
                    node=c.node,
                )
            )
    return out


def plan_findings(
    facts: ClusterFacts,
    spec: Spec,
    configs: Sequence[NodeConfig],
    secrets_problem: str | None,
) -> list[Finding]:
    """Every finding of a plan, in plan order: discovery first (:func:`check`), then the
    machine-config ones node by node, then a secrets bundle that could not be rebuilt."""
    return check(facts, spec) + config_findings(facts, spec, configs, secrets_problem)


def config_findings(
    facts: ClusterFacts,
    spec: Spec,
    configs: Sequence[NodeConfig],
    secrets_problem: str | None,
) -> list[Finding]:
    """Findings from each node's machine-config outcome (``configs`` follows ``facts.nodes``)."""
    out: list[Finding] = []
    ours = dial_target(facts.omni.machine_api_url or "")
    talos = resolve_versions(facts, spec).talos
    for node, config in zip(facts.nodes, configs, strict=True):
        out += _config_findings(node.address, config, ours, talos, spec)
    if secrets_problem and any(n.error is None for n in facts.nodes):
        out.append(finding("NODE_READ_FAILED", secrets_problem, spec))
    return out


def _config_findings(
    address: str, config: NodeConfig, ours: str, talos: str | None, spec: Spec
) -> list[Finding]:
    if config.parse_error is not None:
        return [finding("NODE_READ_FAILED", config.parse_error, spec, node=address)]
    out: list[Finding] = []
    if config.replaced:
        target = config.join_target
        if target and target == ours:
            out.append(
                finding(
                    "LEFTOVER_JOIN_DOCUMENTS",
                    "the node still holds join documents for this Omni from an earlier "
                    "import (omnictl cluster import abort leaves them): apply replaces them, "
                    "rollback restores them",
                    spec,
                    node=address,
                    details=config.replaced,
                )
            )
        else:
            out.append(
                finding(
                    "NODE_ALREADY_CONNECTED",
                    "the node's config already holds join documents for another Omni"
                    + (f" ({target})" if target else ""),
                    spec,
                    node=address,
                    details=config.replaced,
                )
            )
    if config.residue:
        out.append(
            finding(
                "CONFIG_RESIDUE",
                f"{len(config.residue)} field(s) would differ from the live config after import",
                spec,
                node=address,
                details=tuple(str(m) for m in config.residue[:20]),
            )
        )
    if config.removed:
        out.append(
            finding(
                "DENYLISTED_VALUES",
                f"Omni strips {len(config.removed)} value(s) from this node's patches and "
                "manages them itself",
                spec,
                node=address,
                details=config.removed[:20],
            )
        )
    if config.refusal:
        out.append(
            finding(
                "UNLOCK_CONFIG_INVALID",
                f"Talos {talos} would refuse the config Omni pushes after unlock: "
                f"{len(config.refusal)} error(s)",
                spec,
                node=address,
                details=config.refusal[:20],
            )
        )
    if config.preview:
        out.append(
            finding(
                "UNLOCK_PREVIEW",
                f"after unlock Omni pushes a config that differs in {len(config.preview)} "
                "field(s), and points cluster.controlPlane.endpoint at its load balancer",
                spec,
                node=address,
                details=tuple(str(m) for m in config.preview[:20]),
            )
        )
    return out
