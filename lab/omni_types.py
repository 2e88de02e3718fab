"""Which Omni resource types the lab knows, their specs, owners and API access class.

One table (``TYPES``) drives the wire adapter (spec decoding, YAML rendering), authorization and
the controllers, so a type's facts live in one place. Internal types (ClusterSecrets and the
controllers' bookkeeping) exist only in the store: like Omni, the API gives no access to them.
"""

from __future__ import annotations

import base64
import builtins
from dataclasses import dataclass
from enum import Enum
from typing import Any

import yaml
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from omniport.providers.codec.omni_names import (
    CLUSTER_MACHINES,
    CLUSTER_STATUSES,
    CLUSTERS,
    CONFIG_PATCHES,
    DEFAULT_JOIN_TOKENS,
    DEFAULT_NAMESPACE,
    EPHEMERAL_NAMESPACE,
    FEATURES_CONFIGS,
    IMAGE_FACTORY_AUTHS,
    IMPORTED_CLUSTER_SECRETS,
    LINKS,
    MACHINE_SET_NODES,
    MACHINE_SETS,
    MACHINE_STATUSES,
    MACHINES,
    NOTIFICATIONS,
    SIDEROLINK_API_CONFIGS,
    SYS_VERSIONS,
    TALOS_VERSIONS,
)
from omniport.providers.codec.omni_resources import RESOURCE_TYPES

# internal: never served (the names Omni serves are in providers.codec.omni_names)
CLUSTER_SECRETS = "ClusterSecrets.omni.sidero.dev"
JOIN_TOKEN_USAGES = "JoinTokenUsages.omni.sidero.dev"
LOAD_BALANCER_CONFIGS = "LoadBalancerConfigs.omni.sidero.dev"
CLUSTER_MACHINE_CONFIG_STATUSES = "ClusterMachineConfigStatuses.omni.sidero.dev"
PENDING_MACHINES = "PendingMachines.omni.sidero.dev"
CLUSTER_BOOTSTRAP_STATUSES = "ClusterBootstrapStatuses.omni.sidero.dev"


class Access(Enum):
    """Authorization class of a type (omni-wire.md §3.5)."""

    USER_MANAGED = "user-managed"  # Reader reads, Operator writes
    READ_ONLY = "read-only"  # controller-owned: Reader reads, nobody writes
    INFRA_READ = "infra-read"  # InfraProvider or better reads, nobody writes
    SIGNATURE_READ = "signature-read"  # any valid signature reads, nobody writes
    CREATE_DESTROY = "create-destroy"  # Operator creates and destroys, nobody reads
    READ_DESTROY = "read-destroy"  # Reader reads, Operator destroys/tears down
    NONE = "none"  # internal bookkeeping: no access is permitted


@dataclass(frozen=True)
class TypeInfo:
    type: str
    namespace: str
    spec: builtins.type[Message] | None  # builtins: the field above shadows ``type`` here
    access: Access
    owner: str = ""
    """The controller that owns resources of this type ("" for user-managed)."""
    cluster_scoped: bool = False
    """The cluster ID is the resource ID, or its ``cluster`` label (for per-cluster checks)."""


def _served(type_: str, access: Access, owner: str = "", cluster_scoped: bool = False) -> TypeInfo:
    """A type Omni's API serves: its namespace and spec message as the client knows them."""
    known = RESOURCE_TYPES[type_]
    return TypeInfo(type_, known.namespace, known.spec, access, owner, cluster_scoped)


def _internal(type_: str, owner: str, cluster_scoped: bool = False) -> TypeInfo:
    """Controller bookkeeping: in the store only, its spec a lab dataclass."""
    return TypeInfo(type_, DEFAULT_NAMESPACE, None, Access.NONE, owner, cluster_scoped)


TYPES: dict[str, TypeInfo] = {
    t.type: t
    for t in [
        _served(IMPORTED_CLUSTER_SECRETS, Access.CREATE_DESTROY),
        _served(CLUSTERS, Access.USER_MANAGED, cluster_scoped=True),
        _served(MACHINE_SETS, Access.USER_MANAGED, cluster_scoped=True),
        _served(MACHINE_SET_NODES, Access.USER_MANAGED, cluster_scoped=True),
        _served(CONFIG_PATCHES, Access.USER_MANAGED, cluster_scoped=True),
        _served(CLUSTER_STATUSES, Access.READ_ONLY, "ClusterStatusController", True),
        _served(CLUSTER_MACHINES, Access.READ_ONLY, "MachineSetStatusController", True),
        _served(LINKS, Access.READ_DESTROY),
        _served(MACHINES, Access.INFRA_READ, "MachineController"),
        _served(MACHINE_STATUSES, Access.READ_ONLY, "MachineStatusController"),
        _served(DEFAULT_JOIN_TOKENS, Access.USER_MANAGED),
        _served(SIDEROLINK_API_CONFIGS, Access.INFRA_READ, "SiderolinkAPIConfigController"),
        _served(TALOS_VERSIONS, Access.SIGNATURE_READ, "VersionsController"),
        _served(FEATURES_CONFIGS, Access.SIGNATURE_READ),
        _served(SYS_VERSIONS, Access.SIGNATURE_READ),
        # none are seeded: omnictl lists them at start-up and prints each
        _served(NOTIFICATIONS, Access.READ_ONLY, "NotificationController"),
        # computed on read in Omni; seeded only when the lab's factory wants credentials
        _served(IMAGE_FACTORY_AUTHS, Access.READ_ONLY),
        _internal(CLUSTER_SECRETS, "SecretsController", True),
        _internal(JOIN_TOKEN_USAGES, "JoinTokenUsageController"),
        _internal(LOAD_BALANCER_CONFIGS, "LoadBalancerController", True),
        _internal(CLUSTER_MACHINE_CONFIG_STATUSES, "ClusterMachineConfigStatusController", True),
        # a machine that dialled in and waits for its node unique token: ID = its WireGuard key
        TypeInfo(PENDING_MACHINES, EPHEMERAL_NAMESPACE, None, Access.NONE),
        _internal(CLUSTER_BOOTSTRAP_STATUSES, "ClusterBootstrapStatusController", True),
    ]
}

USER_MANAGED_DESTROYABLE = frozenset(
    {CLUSTERS, MACHINE_SETS, MACHINE_SET_NODES, CONFIG_PATCHES, DEFAULT_JOIN_TOKENS, LINKS}
)
"""Types the generic destroy controller removes once torn down and free of finalizers."""


# ---- internal specs -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterSecretsData:
    """Omni's ClusterSecrets: the bundle the cluster's configs are rendered with."""

    data: str
    imported: bool = False
    talos_ca_rotated: bool = False
    kubernetes_ca_rotated: bool = False


@dataclass(frozen=True)
class PendingMachineData:
    """A join in progress: which machine dialled in, from where."""

    machine_uuid: str
    address: str


@dataclass(frozen=True)
class ClusterBootstrapData:
    bootstrapped: bool = False


@dataclass(frozen=True)
class JoinTokenUsageData:
    token_id: str


@dataclass(frozen=True)
class LoadBalancerData:
    """Where Omni's per-cluster Kubernetes API load balancer listens over SideroLink."""

    bind_port: int
    siderolink_endpoint: str


@dataclass(frozen=True)
class ConfigStatusData:
    """What the config controller last pushed to a machine, or why it failed."""

    config_sha256: str = ""
    last_error: str = ""
    attempts: int = 0


# ---- YAML rendering (informational yaml_spec) ---------------------------------------------


def spec_to_plain(msg: Message) -> dict[str, Any]:
    """The spec as go-yaml renders Omni's Go structs: every field, names lowercased."""
    out: dict[str, Any] = {}
    for fd in msg.DESCRIPTOR.fields:
        key = fd.name.replace("_", "").lower()
        value = getattr(msg, fd.name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            out[key] = {
                k: _plain(fd.message_type.fields_by_name["value"].type, v) for k, v in value.items()
            } or None
        elif fd.is_repeated:
            out[key] = [_plain(fd.type, v) for v in value] or None
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            out[key] = spec_to_plain(value) if msg.HasField(fd.name) else None
        else:
            out[key] = _plain(fd.type, value)
    return out


def _plain(field_type: int, value: Any) -> Any:
    """One value of a field whose ``FieldDescriptor.type`` is ``field_type``."""
    if field_type == FieldDescriptor.TYPE_MESSAGE:
        return spec_to_plain(value)
    if field_type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if field_type == FieldDescriptor.TYPE_ENUM:
        return int(value)
    return value


_C_DUMPER: Any = getattr(yaml, "CSafeDumper", None)
_YAML_CACHE_SIZE = 16384
_yaml_cache: dict[tuple[str, bytes], str] = {}
_has_maps: dict[str, bool] = {}


def emits_alike(value: Any) -> bool:
    """True when libyaml's emitter writes ``value`` exactly as PyYAML's pure-Python one does.

    The two differ only in how they fold long double-quoted scalars (strings with line breaks,
    tabs, control or non-ASCII characters); strings of printable ASCII are never double-quoted,
    so a value made of those, numbers, booleans and nulls comes out byte for byte the same.
    """
    if isinstance(value, str):
        return value.isascii() and value.isprintable()
    if isinstance(value, dict):
        return all(emits_alike(k) and emits_alike(v) for k, v in value.items())
    if isinstance(value, list):
        return all(emits_alike(v) for v in value)
    return True


def _dump(plain: dict[str, Any]) -> str:
    dumper = _C_DUMPER if _C_DUMPER is not None and emits_alike(plain) else yaml.SafeDumper
    return yaml.dump(plain, Dumper=dumper, sort_keys=False)


def _with_maps(descriptor: Any, seen: frozenset[str] = frozenset()) -> bool:
    for fd in descriptor.fields:
        sub = fd.message_type
        if sub is None or sub.full_name in seen:
            continue
        if sub.GetOptions().map_entry or _with_maps(sub, seen | {descriptor.full_name}):
            return True
    return False


def spec_yaml(msg: Message, serialized: bytes | None = None) -> str:
    """The informational ``yaml_spec`` of a spec, as PyYAML's ``safe_dump`` writes it.

    Pass the spec's serialized bytes to reuse the text of an identical spec rendered before
    (Lists send the same specs again and again). Specs with maps are never cached: equal bytes
    do not promise the same map iteration order.
    """
    name = msg.DESCRIPTOR.full_name
    if serialized is None:
        return _dump(spec_to_plain(msg))
    maps = _has_maps.get(name)
    if maps is None:
        maps = _has_maps[name] = _with_maps(msg.DESCRIPTOR)
    if maps:
        return _dump(spec_to_plain(msg))
    key = (name, serialized)
    text = _yaml_cache.get(key)
    if text is None:
        text = _dump(spec_to_plain(msg))
        if len(_yaml_cache) >= _YAML_CACHE_SIZE:
            del _yaml_cache[next(iter(_yaml_cache))]
        _yaml_cache[key] = text
    return text
