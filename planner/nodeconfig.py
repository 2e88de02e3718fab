"""Per-node machine-config work for a plan: the patches that carry each node's config into Omni,
and what comparing them with the live config shows.

Pure, from discovered facts. Each node's live config is parsed and split from join documents
left by an earlier import (Omni's, replaced at connect, never imported), diffed against the
import baseline (:func:`planner.machineconfig.verify.node_patches`), and, for the unlock
preview, the patches are laid on what Omni renders for the current versions. This module only
computes outcomes; :mod:`planner.checks` turns them into findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from omniport.planner.errors import OmniportError
from omniport.planner.facts import ClusterFacts, NodeFacts
from omniport.planner.join import JOIN_KINDS, dial_target
from omniport.planner.machineconfig import document as mcdoc
from omniport.planner.machineconfig.generate import GenerateOptions, generate, import_baseline
from omniport.planner.machineconfig.merge import apply_patches
from omniport.planner.machineconfig.redact import redact
from omniport.planner.machineconfig.secrets import SecretsBundle, bundle_from_config
from omniport.planner.machineconfig.validate import ValidateError
from omniport.planner.machineconfig.verify import (
    Mismatch,
    compare,
    node_patches,
    pushed_config_verdict,
)

OMNI_LB_ENDPOINT = "https://[fdae:41e4:649b:9303::1]:10000"
"""Stands in for the per-cluster load balancer endpoint Omni sets after unlock (the port is
chosen by Omni at runtime; the endpoint field is Omni-managed and never part of a patch)."""


@dataclass(frozen=True)
class ImportBase:
    """What every node's patches are computed against: the import baseline is generated for
    the initial versions, Omni's render after unlock for the current ones (when known)."""

    cluster_name: str
    secrets: SecretsBundle = field(repr=False)
    initial_talos: str
    initial_kubernetes: str
    talos: str | None
    kubernetes: str | None


@dataclass(frozen=True)
class NodeConfig:
    """One node's outcome; every field is empty for a node whose config was not read.

    ``patch_texts`` hold secrets and never leave memory. ``parse_error`` is set when the config
    was read but does not parse; ``replaced`` are the join documents of an earlier import
    (redacted, one per line) and ``join_target`` the Omni they dial. ``residue``, ``refusal``
    and ``preview`` are filled only when the comparisons ran."""

    parsed: mcdoc.MachineConfig | None = field(default=None, repr=False)
    parse_error: str | None = None
    replaced: tuple[str, ...] = ()
    join_target: str = ""
    patch_texts: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    patch_redacted: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    residue: tuple[Mismatch, ...] = ()
    """Fields baseline plus patches fail to reproduce."""
    refusal: tuple[str, ...] = ()
    """Talos's errors on the config Omni pushes after unlock."""
    preview: tuple[Mismatch, ...] = ()
    """Fields where the config Omni pushes after unlock differs from the live one."""


def rebuild_secrets(facts: ClusterFacts) -> tuple[SecretsBundle | None, str | None]:
    """The cluster's secrets bundle from the first readable control-plane config, or why not."""
    for node in facts.control_planes:
        if node.config is None:
            continue
        try:
            config = mcdoc.parse(node.config, source=f"machine config of {node.address}")
            return bundle_from_config([d.data for d in config.documents]), None
        except OmniportError as err:
            return None, f"cannot rebuild the secrets bundle from {node.address}: {err}"
    return None, "no readable control-plane config to rebuild the secrets bundle from"


def node_configs(
    nodes: Sequence[NodeFacts], base: ImportBase | None, *, compare_results: bool = True
) -> tuple[NodeConfig, ...]:
    """Every node's outcome, in the order given. Without ``base`` (no secrets, cluster name
    or versions) configs are only parsed. ``compare_results=False`` skips the residue check
    and the unlock preview. Baselines and renders are generated once per role."""
    baselines: dict[str, tuple[mcdoc.Document, ...]] = {}
    renders: dict[str, tuple[mcdoc.Document, ...]] = {}

    def baseline(role: str, base: ImportBase) -> tuple[mcdoc.Document, ...]:
        if role not in baselines:
            baselines[role] = tuple(
                import_baseline(
                    role,  # type: ignore[arg-type]
                    talos_version=base.initial_talos,
                    kubernetes_version=base.initial_kubernetes,
                    cluster_name=base.cluster_name,
                    secrets=base.secrets,
                )
            )
        return baselines[role]

    def render(
        role: str, base: ImportBase, talos: str, kubernetes: str
    ) -> tuple[mcdoc.Document, ...]:
        # what Omni renders after unlock: its base for the CURRENT versions (+ the patches)
        if role not in renders:
            renders[role] = tuple(
                generate(
                    role,  # type: ignore[arg-type]
                    contract=talos,
                    cluster_name=base.cluster_name,
                    endpoint=OMNI_LB_ENDPOINT,
                    kubernetes_version=kubernetes,
                    secrets=base.secrets,
                    options=GenerateOptions(install_image="", skip_unattended_install=True),
                )
            )
        return renders[role]

    out: list[NodeConfig] = []
    for node in nodes:
        if node.error is not None or node.config is None or node.role is None:
            out.append(NodeConfig())
            continue
        try:
            parsed = mcdoc.parse(node.config, source=f"machine config of {node.address}")
        except OmniportError as err:
            out.append(NodeConfig(parse_error=str(err)))
            continue
        # join documents are Omni's (replaced at connect), never part of the imported patches
        live, leftover = split_join_documents(parsed)
        replaced = tuple(_one_line(d) for d in leftover)
        target = _join_target(leftover) if leftover else ""
        if base is None:
            out.append(NodeConfig(parsed, replaced=replaced, join_target=target))
            continue
        role_baseline = baseline(node.role, base)
        result = node_patches(role_baseline, live, check=compare_results)
        refusal: list[str] = []
        preview: list[Mismatch] = []
        if compare_results and base.talos and base.kubernetes:
            pushed = apply_patches(
                render(node.role, base, base.talos, base.kubernetes), result.patches
            )
            preview = compare(live, pushed, managed_documents=True)
            refusal = _unlock_refusal(pushed, live, base.talos)
        out.append(
            NodeConfig(
                parsed,
                replaced=replaced,
                join_target=target,
                patch_texts=tuple(
                    (f"{number * 10}-{node.machine_uuid}", mcdoc.emit(docs))
                    for number, docs in zip(result.passes, result.patches, strict=True)
                ),
                patch_redacted=tuple(mcdoc.emit(redact(docs)) for docs in result.patches),
                removed=tuple(
                    f"{r.document}: {r.path}" if r.path else r.document for r in result.removed
                ),
                residue=result.mismatches,
                refusal=tuple(refusal),
                preview=tuple(preview),
            )
        )
    return tuple(out)


def _unlock_refusal(
    pushed: Sequence[mcdoc.Document], live: mcdoc.MachineConfig, talos_version: str
) -> list[str]:
    """Talos's errors on the config Omni pushes after unlock; none for versions without rules."""
    try:
        verdict = pushed_config_verdict(pushed, live, talos_version)
    except ValidateError:
        return []
    return [str(problem) for problem in verdict.errors]


def split_join_documents(
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
    return dial_target(str((link.data if link else {}).get("apiUrl") or ""))


def _one_line(doc: mcdoc.Document) -> str:
    """``Kind: key=value, …`` with secrets redacted (the join token rides in the URL)."""
    data = redact((doc,))[0].data
    return f"{doc.key.kind}: " + ", ".join(
        f"{k}={v}" for k, v in data.items() if k not in ("apiVersion", "kind")
    )
