"""Operations: spec + facts + per-node patches -> the ordered changes of an import.

Order is the apply order of DESIGN.md, after registering each node's schematic with the Image
Factory (``POST /schematics``, as Omni's importer does before it changes anything; idempotent,
nothing to undo): ImportedClusterSecrets, Cluster, MachineSets, MachineSetNodes, ConfigPatches,
then connecting each node. Every after-state is redacted: the
plan shows *that* secrets are sent, never what they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from omniport.planner.join import SENSITIVE, JoinOptions, join_documents
from omniport.planner.plan import Action, Change
from omniport.providers.codec import omni_names as o

OWNER_ANNOTATION = "omniport.dev/import"
"""Marks every Omni resource an import created, so rollback deletes only those."""

PATCH_NAME = "User defined patch"
PATCH_DESCRIPTION = "Config patch imported from existing Talos node"

SCHEMATIC_TYPE = "Schematics.factory.talos.dev"
"""The resource type of a schematic registration (the Image Factory's ``/schematics``)."""


@dataclass(frozen=True)
class NodeImport:
    """What the changes need to know about one node."""

    address: str
    machine_uuid: str
    role: str  # controlplane | worker
    patches: tuple[tuple[str, str], ...]  # (patch id, redacted text), at most two
    replaced: tuple[str, ...] = ()
    """Join documents of an earlier import the node still holds (redacted, one line each):
    the join overwrites them, and rollback restores them with the backup."""
    schematic_id: str | None = None
    """The schematic apply registers for this node (None: nothing to register)."""


def _display_url(url: str) -> str:
    """``url`` without userinfo (credentials never reach a plan)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def machine_set_id(cluster: str, role: str) -> str:
    return f"{cluster}-control-planes" if role == "controlplane" else f"{cluster}-workers"


def role_label(role: str) -> str:
    return o.LABEL_ROLE_CONTROLPLANE if role == "controlplane" else o.LABEL_ROLE_WORKER


def plan_changes(
    cluster: str,
    talos_version: str,
    kubernetes_version: str,
    nodes: Sequence[NodeImport],
    join: JoinOptions,
    factory_url: str | None = None,
) -> list[Change]:
    changes: list[Change] = [
        Change(
            address=f"image_factory_schematic.{node.address}",
            action=Action.CREATE,
            resource_type=SCHEMATIC_TYPE,
            resource_id=node.schematic_id,
            after={"factory": _display_url(factory_url), "schematic_id": node.schematic_id},
            node=node.address,
        )
        for node in nodes
        if node.schematic_id and factory_url
    ]
    changes += [
        Change(
            address=f"omni_imported_cluster_secrets.{cluster}",
            action=Action.CREATE,
            resource_type=o.IMPORTED_CLUSTER_SECRETS,
            resource_id=cluster,
            # Omni lets no client read these: an orphan of a crashed import cannot be seen
            # before apply, which replaces it as Omni's importer does
            after={"data": SENSITIVE, "if_present": "replaced (an orphan of a crashed import)"},
        ),
        Change(
            address=f"omni_cluster.{cluster}",
            action=Action.CREATE,
            resource_type=o.CLUSTERS,
            resource_id=cluster,
            after={
                "talos_version": talos_version,
                "kubernetes_version": kubernetes_version,
                "annotations": [o.ANNOTATION_CLUSTER_LOCKED, o.ANNOTATION_IMPORT_IN_PROGRESS],
            },
        ),
    ]
    for role in ("controlplane", "worker"):
        changes.append(
            Change(
                address=f"omni_machine_set.{machine_set_id(cluster, role)}",
                action=Action.CREATE,
                resource_type=o.MACHINE_SETS,
                resource_id=machine_set_id(cluster, role),
                after={"labels": {o.LABEL_CLUSTER: cluster, role_label(role): ""}},
            )
        )
    for node in nodes:
        for patch_id, redacted in node.patches:
            changes.append(
                Change(
                    address=f"omni_config_patch.{patch_id}",
                    action=Action.CREATE,
                    resource_type=o.CONFIG_PATCHES,
                    resource_id=patch_id,
                    after={
                        "labels": {
                            o.LABEL_CLUSTER: cluster,
                            o.LABEL_CLUSTER_MACHINE: node.machine_uuid,
                        },
                        "data": redacted,
                    },
                    node=node.address,
                )
            )
    shown = join_documents(join, redact=True)
    summary = "\n".join(
        f"{d['kind']}: "
        + ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("apiVersion", "kind"))
        for d in shown
    )
    for node in nodes:
        after = {"documents_added": summary + "\n"}
        if node.replaced:
            after["documents_replaced"] = "\n".join(node.replaced) + "\n"
        changes.append(
            Change(
                address=f"talos_join.{node.address}",
                action=Action.UPDATE,
                resource_type="MachineConfigs.config.talos.dev",
                resource_id=node.address,
                after=after,
                node=node.address,
            )
        )
    # after the joins: Omni checks a MachineSetNode against its machine (Talos version,
    # allocation) when it is created, and its abort tears down the Link of every one
    for node in nodes:
        changes.append(
            Change(
                address=f"omni_machine_set_node.{node.machine_uuid}",
                action=Action.CREATE,
                resource_type=o.MACHINE_SET_NODES,
                resource_id=node.machine_uuid,
                after={
                    "labels": {
                        o.LABEL_CLUSTER: cluster,
                        role_label(node.role): "",
                        o.LABEL_MACHINE_SET: machine_set_id(cluster, node.role),
                    }
                },
                node=node.address,
            )
        )
    return changes
