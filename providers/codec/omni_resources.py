"""The resource types Omni serves: each one's namespace and the protobuf message of its spec.

Pure data over :mod:`providers.codec.omni_names`. The client decodes specs with it and the lab's
Omni adds its access classes and owners to it (``lab.omni_types``), so a type's namespace and
spec message are stated once for both sides.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from omniport.providers.codec import omni_names as n
from omniport.providers.wire.omni.specs import omni_pb2, siderolink_pb2, system_pb2, virtual_pb2

__all__ = ["RESOURCE_TYPES", "ResourceType"]


@dataclass(frozen=True)
class ResourceType:
    """An Omni resource type: its namespace and the protobuf message of its spec."""

    type: str
    namespace: str
    spec: builtins.type[Message]  # builtins: the field above shadows ``type`` here


RESOURCE_TYPES: Mapping[str, ResourceType] = {
    rt.type: rt
    for rt in (
        ResourceType(
            n.IMPORTED_CLUSTER_SECRETS, n.DEFAULT_NAMESPACE, omni_pb2.ImportedClusterSecretsSpec
        ),
        ResourceType(n.CLUSTERS, n.DEFAULT_NAMESPACE, omni_pb2.ClusterSpec),
        ResourceType(n.MACHINE_SETS, n.DEFAULT_NAMESPACE, omni_pb2.MachineSetSpec),
        ResourceType(n.MACHINE_SET_NODES, n.DEFAULT_NAMESPACE, omni_pb2.MachineSetNodeSpec),
        ResourceType(n.CONFIG_PATCHES, n.DEFAULT_NAMESPACE, omni_pb2.ConfigPatchSpec),
        ResourceType(n.CLUSTER_STATUSES, n.DEFAULT_NAMESPACE, omni_pb2.ClusterStatusSpec),
        ResourceType(n.CLUSTER_MACHINES, n.DEFAULT_NAMESPACE, omni_pb2.ClusterMachineSpec),
        ResourceType(n.LINKS, n.DEFAULT_NAMESPACE, siderolink_pb2.SiderolinkSpec),
        ResourceType(n.MACHINES, n.DEFAULT_NAMESPACE, omni_pb2.MachineSpec),
        ResourceType(n.MACHINE_STATUSES, n.DEFAULT_NAMESPACE, omni_pb2.MachineStatusSpec),
        ResourceType(
            n.DEFAULT_JOIN_TOKENS, n.DEFAULT_NAMESPACE, siderolink_pb2.DefaultJoinTokenSpec
        ),
        ResourceType(
            n.SIDEROLINK_API_CONFIGS, n.DEFAULT_NAMESPACE, siderolink_pb2.SiderolinkAPIConfigSpec
        ),
        ResourceType(n.TALOS_VERSIONS, n.DEFAULT_NAMESPACE, omni_pb2.TalosVersionSpec),
        ResourceType(n.FEATURES_CONFIGS, n.DEFAULT_NAMESPACE, omni_pb2.FeaturesConfigSpec),
        ResourceType(n.SYS_VERSIONS, n.EPHEMERAL_NAMESPACE, system_pb2.SysVersionSpec),
        ResourceType(n.NOTIFICATIONS, n.EPHEMERAL_NAMESPACE, omni_pb2.NotificationSpec),
        ResourceType(n.IMAGE_FACTORY_AUTHS, n.VIRTUAL_NAMESPACE, virtual_pb2.ImageFactoryAuthSpec),
    )
}
"""Every type Omni's API serves, by type name."""
