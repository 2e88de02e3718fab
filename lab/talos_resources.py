"""The COSI resources a simulated node exposes through apid, rendered from its state.

Resources are not stored: each Get/List/Watch renders them from the :class:`~lab.world.SimNode`
(its config bytes, identity and extensions) and the :class:`~lab.world.Lab` (for cluster-wide
ones such as discovery ``Members``), so 1000 nodes cost no more than their configs. A
:class:`Versions` book gives every rendered resource a version that grows only when its spec
changes, and creation/update times, as COSI's metadata has.

The catalog lists each type with its namespace, aliases, sensitivity and the Talos minor
versions that have it; ``ResourceDefinitions`` and ``Namespaces`` in ``meta`` are derived from
it, as talosctl needs them to resolve names.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from google.protobuf import timestamp_pb2

from omniport.lab import talos_specs as specs
from omniport.lab.world import (
    CONTROLPLANE,
    Lab,
    SimNode,
    dump_yaml,
    image_tag,
    minor_at_least,
    version_tuple,
)
from omniport.providers.codec.schematic import canonical_yaml, parse_schematic
from omniport.providers.wire.resource.config import config_pb2
from omniport.providers.wire.v1alpha1 import resource_pb2

YAML_SPEC_ANNOTATION = "talos.dev/yaml-spec"
SCHEMATIC_EXTENSION = "schematic"

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

MACHINE_CONFIGS = "MachineConfigs.config.talos.dev"
RESOURCE_DEFINITIONS = "ResourceDefinitions.meta.cosi.dev"
NAMESPACES = "Namespaces.meta.cosi.dev"

NAMESPACE_DESCRIPTIONS = {
    "meta": "Metadata namespace which contains resource and namespace definitions.",
    "config": "Talos node configuration.",
    "runtime": "Talos runtime resources.",
    "cluster": "Cluster configuration and discovery resources.",
    "k8s": "Kubernetes all node types resources.",
    "controlplane": "Kubernetes control plane resources.",
    "network": "Networking resources.",
    "hardware": "Hardware resources.",
    "secrets": "Resources with secret material.",
}


@dataclass(frozen=True)
class Item:
    """One rendered resource before versioning: id, YAML spec text, proto spec, metadata."""

    id: str
    yaml_spec: str
    proto_spec: bytes = b""
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


Render = Callable[[Lab, SimNode], list[Item]]


@dataclass(frozen=True)
class ResourceType:
    type: str
    namespace: str
    display: str
    render: Render
    aliases: tuple[str, ...] = ()
    sensitive: bool = False
    sensitive_since_minor: int | None = None
    """From this Talos 1.x minor on the type is sensitive (os:admin only); None: never."""
    since_minor: int = 0
    """First Talos 1.x minor that has the type (0: all we simulate)."""
    controlplane_only: bool = False
    cluster_wide: bool = False
    """Rendered from every node (discovery), so cached and versioned once for the cluster."""

    def present_on(self, node: SimNode) -> bool:
        return minor_at_least(node.talos_version, self.since_minor)

    def sensitive_on(self, node: SimNode) -> bool:
        since = self.sensitive_since_minor
        return self.sensitive or (since is not None and minor_at_least(node.talos_version, since))

    def definition(self, sensitive: bool | None = None) -> dict[str, Any]:
        """The ResourceDefinition spec talosctl reads to resolve names and print columns."""
        sensitive = self.sensitive if sensitive is None else sensitive
        plural = self.type.split(".", 1)[0]
        capitals = "".join(c for c in self.display if c.isupper()).lower()
        auto = [self.display.lower(), capitals, capitals + "s", plural.lower()]
        suffix = self.type.split(".", 1)[1] if "." in self.type else ""
        parts = suffix.split(".")
        auto += [plural.lower() + "." + ".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        all_aliases: list[str] = []
        for alias in [*self.aliases, *auto]:
            if alias and alias not in all_aliases:
                all_aliases.append(alias)
        return {
            "type": self.type,
            "displayType": self.display,
            "defaultNamespace": self.namespace,
            "aliases": list(self.aliases),
            "allAliases": all_aliases,
            "printColumns": [],
            "sensitivity": "sensitive" if sensitive else "non-sensitive",
        }


def _spec(obj: Any) -> str:
    return dump_yaml(obj)


def _one(rid: str, obj: Any, schema: specs.Schema, **kw: Any) -> list[Item]:
    return [_item(rid, obj, schema, **kw)]


def _item(rid: str, obj: Any, schema: specs.Schema, **kw: Any) -> Item:
    """A resource whose spec is sent both ways, as Talos does: YAML for talosctl, protobuf
    (``proto_spec``) for the typed Go client, which reads nothing else."""
    return Item(rid, _spec(obj), specs.encode(schema, obj), **kw)


# ---- renderers ----


def _machine_configs(lab: Lab, node: SimNode) -> list[Item]:
    out = []
    for rid, data in (("v1alpha1", node.config), ("persistent", node.persistent)):
        proto = config_pb2.MachineConfigSpec(yaml_marshalled=data).SerializeToString()
        text = data.decode("utf-8", errors="replace")
        if minor_at_least(node.talos_version, 12):
            # From 1.12 the YAML spec is the config as one string, flagged by an annotation.
            out.append(
                Item(rid, _block_string(text), proto, annotations={YAML_SPEC_ANNOTATION: "1"})
            )
        else:
            out.append(Item(rid, text, proto))
    return out


def _block_string(text: str) -> str:
    """``text`` as one YAML string, in literal block style when YAML allows it."""
    return yaml.dump(text, Dumper=_DUMPER, default_style="|", width=4096)


def _machine_type(lab: Lab, node: SimNode) -> list[Item]:
    kind = node.view.machine_type
    number = {"init": 1, "controlplane": 2, "worker": 3}.get(kind, 0)
    proto = config_pb2.MachineTypeSpec(machine_type=number).SerializeToString()  # type: ignore[arg-type]
    return [Item("machine-type", _spec(kind), proto)]


def _extension_statuses(lab: Lab, node: SimNode) -> list[Item]:
    out = []
    misreport = lab.faults.schematic_content.get(node.address)
    for index, ext in enumerate(node.extensions):
        meta: dict[str, Any] = {
            "name": ext.name,
            "version": ext.version,
            "author": ext.author,
            "description": ext.description,
            "compatibility": {"talos": {"version": ">= 1.0.0"}},
        }
        extra_info = ext.extra_info
        if ext.name == SCHEMATIC_EXTENSION and misreport == "missing":
            extra_info = ""
        elif ext.name == SCHEMATIC_EXTENSION and misreport == "edited" and extra_info:
            extra_info = edited_schematic(extra_info)
        if extra_info:
            meta["extraInfo"] = extra_info
        spec = {"image": ext.image, "metadata": meta}
        out.append(_item(str(index), spec, specs.EXTENSION_STATUS))
    return out


EDITED_KERNEL_ARG = "omniport.lab=edited"


@functools.lru_cache(maxsize=8)
def edited_schematic(text: str) -> str:
    """``text`` with one more kernel argument, still canonical: a schematic the factory would
    accept whose ID is not the one the image was built from (the ``edited`` schematic fault)."""
    parsed = parse_schematic(text)
    custom = parsed.customization
    args = (*custom.extra_kernel_args, EDITED_KERNEL_ARG)
    edited = replace(parsed, customization=replace(custom, extra_kernel_args=args))
    return canonical_yaml(edited)


_AUTHOR = re.compile(r"^(?P<flavor>.+?) \((?P<url>[^)]*)\)$")


def _image_factory_schematics(lab: Lab, node: SimNode) -> list[Item]:
    ext = next((e for e in node.extensions if e.name == SCHEMATIC_EXTENSION), None)
    if ext is None:
        return []
    match = _AUTHOR.match(ext.author)
    flavor, url = (match["flavor"], match["url"]) if match else (ext.author, "")
    spec = {"schematicId": ext.version, "flavor": flavor, "apiUrl": url}
    return _one("image-factory-schematic", spec, specs.IMAGE_FACTORY_SCHEMATIC)


def _versions(lab: Lab, node: SimNode) -> list[Item]:
    spec = {"version": node.talos_version}
    if minor_at_least(node.talos_version, 13):
        spec["name"] = "Talos"
    return _one("version", spec, specs.VERSION)


def _machine_statuses(lab: Lab, node: SimNode) -> list[Item]:
    spec = {"stage": "running", "status": {"ready": True, "unmetConditions": []}}
    return _one("machine", spec, specs.MACHINE_STATUS)


def _security_states(lab: Lab, node: SimNode) -> list[Item]:
    # Every field but secureBoot is omitempty: a plain machine shows only that one.
    return _one("securitystate", {"secureBoot": False}, specs.SECURITY_STATE)


def _member(node: SimNode) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeId": node.node_id,
        "addresses": [node.address],
        "hostname": node.hostname,
        "machineType": node.role,
        "operatingSystem": f"Talos ({node.talos_version})",
    }
    if node.role == CONTROLPLANE:
        spec["controlPlane"] = {"port": 6443}
    return spec


def _discovery_enabled(node: SimNode) -> bool:
    cluster = (node.view.v1alpha1 or {}).get("cluster") or {}
    discovery = cluster.get("discovery") if isinstance(cluster, dict) else None
    return not (isinstance(discovery, dict) and discovery.get("enabled") is False)


def _members(lab: Lab, node: SimNode) -> list[Item]:
    # Discovery is a cluster-wide setting; the first control plane's config stands for all.
    if not _discovery_enabled(lab.local_node()):
        return []
    return [_item(n.hostname, _member(n), specs.MEMBER) for n in lab.nodes]


def _identities(lab: Lab, node: SimNode) -> list[Item]:
    return _one("local", {"nodeId": node.node_id}, specs.IDENTITY)


def _infos(lab: Lab, node: SimNode) -> list[Item]:
    view = node.view
    spec = {"clusterId": view.cluster_id, "clusterName": view.cluster_name}
    return _one("current", spec, specs.INFO)


def _nodenames(lab: Lab, node: SimNode) -> list[Item]:
    spec = {"nodename": node.hostname, "hostnameVersion": "1", "skipNodeRegistration": False}
    return _one("nodename", spec, specs.NODENAME)


def _hostname_statuses(lab: Lab, node: SimNode) -> list[Item]:
    spec = {"hostname": node.hostname, "domainname": ""}
    return _one("hostname", spec, specs.HOSTNAME_STATUS)


def _system_informations(lab: Lab, node: SimNode) -> list[Item]:
    spec = {
        "manufacturer": "QEMU",
        "productName": "Standard PC (Q35 + ICH9, 2009)",
        "version": "pc-q35-8.2",
        "serialnumber": node.serial,
        "uuid": node.machine_uuid,
        "wakeUpType": "Power Switch",
    }
    return _one("systeminformation", spec, specs.system_information(_minor(node)))


def _service_cidrs(node: SimNode) -> list[str]:
    subnets = ((node.view.v1alpha1 or {}).get("cluster") or {}).get("network") or {}
    return list(subnets.get("serviceSubnets") or ["10.96.0.0/12"])


def _pod_cidrs(node: SimNode) -> list[str]:
    subnets = ((node.view.v1alpha1 or {}).get("cluster") or {}).get("network") or {}
    return list(subnets.get("podSubnets") or ["10.244.0.0/16"])


def _default_image(node: SimNode, repo: str) -> str:
    tag = image_tag(node.view.image("kubelet", "")) or "v" + (node.kubernetes_version or "0.0.0")
    return f"{repo}:{tag}"


def _minor(node: SimNode) -> int:
    return version_tuple(node.talos_version)[1]


def _extra_args(node: SimNode, component: str) -> dict[str, Any]:
    """A component's extra args as Talos's spec shows them: ``{flag: value}`` up to 1.12,
    ``{flag: {values: [...]}}`` from 1.13 (where a flag may repeat)."""
    args = node.view.extra_args(component)
    if _minor(node) < 13:
        return {k: str(v) for k, v in args.items()}
    return {k: {"values": specs.arg_values(v)} for k, v in args.items()}


def _schedule_on_controlplanes(node: SimNode) -> bool:
    cluster = (node.view.v1alpha1 or {}).get("cluster") or {}
    return bool(isinstance(cluster, dict) and cluster.get("allowSchedulingOnControlPlanes"))


def _kubelet_configs(lab: Lab, node: SimNode) -> list[Item]:
    view = node.view
    minor = _minor(node)
    configured = view.image("kubelet", _default_image(node, "ghcr.io/siderolabs/kubelet"))
    spec: dict[str, Any] = {
        "image": lab.faults.kubelet_images.get(node.address, configured),
        "clusterDNS": ["10.96.0.10"],
        "clusterDomain": "cluster.local",
    }
    # extraArgs, extraMounts and extraConfig are omitempty in Talos's spec.
    args = _extra_args(node, "kubelet")
    if args:
        spec["extraArgs"] = args
    spec |= {
        "cloudProviderExternal": False,
        "defaultRuntimeSeccompEnabled": True,
        "skipNodeRegistration": False,
        "staticPodListURL": "http://127.0.0.1:40000/static-pods",
        "disableManifestsDirectory": True,
        "enableFSQuotaMonitoring": True,
    }
    if minor < 14:
        spec["allowSchedulingOnControlPlane"] = _schedule_on_controlplanes(node)
    return _one("kubelet", spec, specs.kubelet_config(minor))


def _api_server_configs(lab: Lab, node: SimNode) -> list[Item]:
    view = node.view
    spec = {
        "image": view.image("apiServer", _default_image(node, "registry.k8s.io/kube-apiserver")),
        "cloudProvider": "",
        "controlPlaneEndpoint": lab.endpoint,
        "etcdServers": ["https://localhost:2379"],
        "localPort": 6443,
        "serviceCIDR": _service_cidrs(node),
        "extraArgs": _extra_args(node, "apiServer"),
        "extraVolumes": [],
        "environmentVariables": {},
    }
    if _minor(node) < 13:
        spec["podSecurityPolicyEnabled"] = False
    spec["advertisedAddress"] = "$(POD_IP)"
    spec["resources"] = {"requests": {}, "limits": {}}
    if _minor(node) >= 14:
        spec |= {"startupProbesEnabled": False, "useAuthenticationConfig": False}
    return _one("kube-apiserver", spec, specs.api_server_config(_minor(node)))


def _controller_manager_configs(lab: Lab, node: SimNode) -> list[Item]:
    view = node.view
    repo = "registry.k8s.io/kube-controller-manager"
    spec = {
        "enabled": True,
        "image": view.image("controllerManager", _default_image(node, repo)),
        "cloudProvider": "",
        "podCIDRs": _pod_cidrs(node),
        "serviceCIDRs": _service_cidrs(node),
        "extraArgs": _extra_args(node, "controllerManager"),
        "extraVolumes": [],
        "environmentVariables": {},
        "resources": {"requests": {}, "limits": {}},
    }
    if _minor(node) >= 14:
        # extraArgs became omitempty; the node CIDR mask sizes come from KubeNetworkConfig
        # (0 when it leaves them unset).
        if not spec["extraArgs"]:
            del spec["extraArgs"]
        spec |= {"nodeCIDRMaskSizeIPv4": 0, "nodeCIDRMaskSizeIPv6": 0}
    return _one("kube-controller-manager", spec, specs.controller_manager_config(_minor(node)))


def _scheduler_configs(lab: Lab, node: SimNode) -> list[Item]:
    view = node.view
    repo = "registry.k8s.io/kube-scheduler"
    spec = {
        "enabled": True,
        "image": view.image("scheduler", _default_image(node, repo)),
        "extraArgs": _extra_args(node, "scheduler"),
        "extraVolumes": [],
        "environmentVariables": {},
        "resources": {"requests": {}, "limits": {}},
        "config": {},
    }
    if _minor(node) >= 14 and not spec["extraArgs"]:
        del spec["extraArgs"]  # omitempty from 1.14
    return _one("kube-scheduler", spec, specs.scheduler_config(_minor(node)))


CATALOG: tuple[ResourceType, ...] = (
    ResourceType(MACHINE_CONFIGS, "config", "MachineConfig", _machine_configs, sensitive=True),
    ResourceType("MachineTypes.config.talos.dev", "config", "MachineType", _machine_type),
    ResourceType(
        "ExtensionStatuses.runtime.talos.dev",
        "runtime",
        "ExtensionStatus",
        _extension_statuses,
        aliases=("extensions",),
    ),
    ResourceType(
        "ImageFactorySchematics.runtime.talos.dev",
        "runtime",
        "ImageFactorySchematic",
        _image_factory_schematics,
        since_minor=14,
    ),
    ResourceType("Versions.runtime.talos.dev", "runtime", "Version", _versions, since_minor=10),
    ResourceType(
        "MachineStatuses.runtime.talos.dev", "runtime", "MachineStatus", _machine_statuses
    ),
    ResourceType("SecurityStates.talos.dev", "runtime", "SecurityState", _security_states),
    ResourceType("Members.cluster.talos.dev", "cluster", "Member", _members, cluster_wide=True),
    ResourceType("Identities.cluster.talos.dev", "cluster", "Identity", _identities),
    ResourceType("Infos.cluster.talos.dev", "cluster", "Info", _infos),
    ResourceType("Nodenames.kubernetes.talos.dev", "k8s", "Nodename", _nodenames),
    ResourceType("HostnameStatuses.net.talos.dev", "network", "HostnameStatus", _hostname_statuses),
    ResourceType(
        "SystemInformations.hardware.talos.dev",
        "hardware",
        "SystemInformation",
        _system_informations,
    ),
    ResourceType(
        "KubeletConfigs.kubernetes.talos.dev",
        "k8s",
        "KubeletConfig",
        _kubelet_configs,
        sensitive_since_minor=13,
    ),
    ResourceType(
        "APIServerConfigs.kubernetes.talos.dev",
        "controlplane",
        "APIServerConfig",
        _api_server_configs,
        controlplane_only=True,
        sensitive_since_minor=13,
    ),
    ResourceType(
        "ControllerManagerConfigs.kubernetes.talos.dev",
        "controlplane",
        "ControllerManagerConfig",
        _controller_manager_configs,
        controlplane_only=True,
    ),
    ResourceType(
        "SchedulerConfigs.kubernetes.talos.dev",
        "controlplane",
        "SchedulerConfig",
        _scheduler_configs,
        controlplane_only=True,
    ),
)


def _meta_types() -> tuple[ResourceType, ResourceType]:
    def definitions(lab: Lab, node: SimNode) -> list[Item]:
        return [
            Item(t.type.lower(), _spec(t.definition(t.sensitive_on(node))))
            for t in (*types_on(node, with_meta=False), *_META)
        ]

    def namespaces(lab: Lab, node: SimNode) -> list[Item]:
        return [Item(ns, _spec({"description": d})) for ns, d in NAMESPACE_DESCRIPTIONS.items()]

    return (
        ResourceType(RESOURCE_DEFINITIONS, "meta", "ResourceDefinition", definitions),
        ResourceType(NAMESPACES, "meta", "Namespace", namespaces),
    )


_META = _meta_types()
_BY_TYPE = {t.type.lower(): t for t in (*CATALOG, *_META)}


def types_on(node: SimNode, *, with_meta: bool = True) -> list[ResourceType]:
    """The resource types ``node``'s Talos version has (the meta ones included)."""
    found = [t for t in CATALOG if t.present_on(node)]
    return found + list(_META) if with_meta else found


def definition(node: SimNode, rtype: str) -> ResourceType | None:
    """The ResourceDefinition for ``rtype`` on ``node``, matched as Talos does (lower-cased)."""
    found = _BY_TYPE.get(rtype.lower())
    return found if found is not None and found.present_on(node) else None


class Renderer:
    """Renders resources, caching each (node, type) until the node changes.

    Cluster-wide types (discovery ``Members``) are cached once for the lab until any node
    changes, so listing members on 1000 nodes does not render 1000 x 1000 specs.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._node_cache: dict[tuple[str, str], tuple[int, list[Item]]] = {}
        self._lab_cache: dict[str, tuple[int, list[Item]]] = {}

    def render(self, node: SimNode, rtype: ResourceType) -> list[Item]:
        if rtype.controlplane_only and node.role != CONTROLPLANE:
            return []
        if rtype.cluster_wide:
            stamp = sum(n.generation for n in self.lab.nodes)
            cached = self._lab_cache.get(rtype.type)
            if cached is None or cached[0] != stamp:
                cached = self._lab_cache[rtype.type] = (stamp, rtype.render(self.lab, node))
            return cached[1]
        key = (node.address, rtype.type)
        found = self._node_cache.get(key)
        if found is None or found[0] != node.generation:
            found = self._node_cache[key] = (node.generation, rtype.render(self.lab, node))
        return found[1]


# ---- versions and the wire form ----


@dataclass
class _Entry:
    digest: bytes
    version: int
    created: float
    updated: float


class Versions:
    """Per-node book of resource versions: a resource's version grows when its spec changes."""

    def __init__(self) -> None:
        self._book: dict[tuple[str, str, str, str], _Entry] = {}

    def stamp(self, node: SimNode, rtype: ResourceType, item: Item) -> _Entry:
        scope = "" if rtype.cluster_wide else node.address
        key = (scope, rtype.type, item.id, rtype.namespace)
        digest = hashlib.blake2b(
            item.yaml_spec.encode() + b"\0" + item.proto_spec + repr(item.annotations).encode(),
            digest_size=16,
        ).digest()
        now = time.time()
        entry = self._book.get(key)
        if entry is None:
            entry = self._book[key] = _Entry(digest, 1, now, now)
        elif entry.digest != digest:
            entry.digest, entry.version, entry.updated = digest, entry.version + 1, now
        return entry

    def to_proto(self, node: SimNode, rtype: ResourceType, item: Item) -> resource_pb2.Resource:
        entry = self.stamp(node, rtype, item)
        res = resource_pb2.Resource()
        md = res.metadata
        md.namespace, md.type, md.id = rtype.namespace, rtype.type, item.id
        md.version, md.phase = str(entry.version), "running"
        md.created.CopyFrom(_ts(entry.created))
        md.updated.CopyFrom(_ts(entry.updated))
        md.labels.update(item.labels)
        md.annotations.update(item.annotations)
        res.spec.yaml_spec = item.yaml_spec
        if item.proto_spec:
            res.spec.proto_spec = item.proto_spec
        return res


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def all_namespaces() -> Iterable[str]:
    return NAMESPACE_DESCRIPTIONS.keys()
