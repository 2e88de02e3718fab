"""Where Talos's typed merge departs from "maps merge, lists append", by document kind and path.

Talos merges typed Go structs; these tables carry the few struct-level rules that plain YAML
data cannot show: ``merge:"replace"`` fields, lists merged by an identity key, ``extraArgs``
maps copied key by key, and URL fields merged component by component. Paths name mapping keys;
``"[]"`` stands for "any element of the list".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omniport.planner.machineconfig.document import LEGACY_VERSION, DocumentKey, scalar_text

Path = tuple[str, ...]


@dataclass(frozen=True)
class Replace:
    """The patch value replaces the old one whole, unless the patch value is empty."""


@dataclass(frozen=True)
class Args:
    """``extraArgs``: each patch key overwrites the old value as is (``""`` and lists too)."""


@dataclass(frozen=True)
class Url:
    """A URL field: non-empty scheme, host, path, query and fragment of the patch win."""


@dataclass(frozen=True)
class Identity:
    """A list whose elements with the same identity merge (or are replaced) instead of append."""

    identify: Callable[[dict[str, Any]], Any]
    replace: bool = False


@dataclass(frozen=True)
class Opaque:
    """A value Talos holds in a type its ``$patch: delete`` cannot walk into (a PEM pair).

    Deleting the whole value works; deleting a key inside it fails in Talos ("lookup
    failed"), so the engine refuses it too, and the differ replaces such a value whole.
    """


@dataclass(frozen=True)
class Pointer:
    """A number Talos holds behind a pointer: a patch's ``0`` overwrites (merged through it)."""


Rule = Replace | Args | Url | Identity | Opaque | Pointer


def _field(name: str, *, optional: bool = False) -> Callable[[dict[str, Any]], Any]:
    def identify(item: dict[str, Any]) -> Any:
        value = item.get(name)
        if optional and value in (None, ""):
            return None
        return scalar_text(value if value is not None else "")

    return identify


def _vlan_id(item: dict[str, Any]) -> Any:
    return scalar_text(item.get("vlanId") or 0)


def _device(item: dict[str, Any]) -> Any:
    # An interface is matched by name; without one, by an equal device selector.
    if item.get("interface"):
        return ("interface", scalar_text(item["interface"]))
    if item.get("deviceSelector"):
        return ("deviceSelector", json.dumps(item["deviceSelector"], sort_keys=True))
    return None


_REPLACE = Replace()
_ARGS = Args()
_URL = Url()
_OPAQUE = Opaque()
_POINTER = Pointer()

_LEGACY_RULES: dict[Path, Rule] = {
    ("cluster", "network", "podSubnets"): _REPLACE,
    ("cluster", "network", "serviceSubnets"): _REPLACE,
    ("cluster", "apiServer", "auditPolicy"): _REPLACE,
    # x509 PEM types: their fields carry no YAML names, so Talos's delete cannot find them.
    ("machine", "ca"): _OPAQUE,
    ("cluster", "ca"): _OPAQUE,
    ("cluster", "aggregatorCA"): _OPAQUE,
    ("cluster", "serviceAccount"): _OPAQUE,
    ("cluster", "etcd", "ca"): _OPAQUE,
    ("cluster", "controlPlane", "endpoint"): _URL,
    ("machine", "logging", "destinations", "[]", "endpoint"): _URL,
    ("machine", "network", "interfaces"): Identity(_device),
    ("machine", "network", "interfaces", "[]", "vlans"): Identity(_vlan_id),
    ("cluster", "apiServer", "admissionControl"): Identity(_field("name")),
    ("machine", "kubelet", "extraArgs"): _ARGS,
    ("cluster", "apiServer", "extraArgs"): _ARGS,
    ("cluster", "controllerManager", "extraArgs"): _ARGS,
    ("cluster", "proxy", "extraArgs"): _ARGS,
    ("cluster", "scheduler", "extraArgs"): _ARGS,
    ("cluster", "etcd", "extraArgs"): _ARGS,
    ("machine", "network", "kubespan", "mtu"): _POINTER,
}

_BOND_POINTERS = (
    "miimon",
    "updelay",
    "downdelay",
    "arpInterval",
    "resendIGMP",
    "minLinks",
    "lpInterval",
    "packetsPerSlave",
    "peerNotifDelay",
)
_ETHERNET_POINTERS = [
    ("rings", name)
    for name in ("rx", "tx", "rx-mini", "rx-jumbo", "rx-buf-len", "cqe-size", "tx-push-buf-len")
] + [("channels", name) for name in ("rx", "tx", "other", "combined")]

_KIND_RULES: dict[str, dict[Path, Rule]] = {
    "KubeNetworkConfig": {("podSubnets",): _REPLACE, ("serviceSubnets",): _REPLACE},
    "KubeAuditPolicyConfig": {("configuration",): _REPLACE},
    "KubeAuthenticationConfig": {("configuration",): _REPLACE},
    "KubeCredentialProviderConfig": {("configuration",): _REPLACE},
    "KubeStaticPodConfig": {("pod",): _REPLACE},
    "CRIBaseRuntimeSpecConfig": {("overrides",): _REPLACE},
    "BGPInstanceConfig": {
        ("advertise",): _REPLACE,
        ("importRoutes",): _REPLACE,
        ("neighbors",): _REPLACE,
    },
    "NetworkRuleConfig": {("ingress",): _REPLACE, ("portSelector", "ports"): _REPLACE},
    "ExtensionServiceConfig": {("configFiles",): Identity(_field("mountPath"))},
    "ImageVerificationConfig": {("rules",): Identity(_field("image"), replace=True)},
    "KubeAPIServerConfig": {("extraArgs",): _ARGS, ("apiPort",): _POINTER},
    "KubeSpanConfig": {("mtu",): _POINTER},
    "ZswapConfig": {("maxPoolPercent",): _POINTER},
    "BondConfig": {(name,): _POINTER for name in _BOND_POINTERS},
    "EthernetConfig": {path: _POINTER for path in _ETHERNET_POINTERS},
    "KubeControllerManagerConfig": {("extraArgs",): _ARGS},
    "KubeletConfig": {("extraArgs",): _ARGS},
    "KubeProxyConfig": {("extraArgs",): _ARGS},
    "KubeSchedulerConfig": {("extraArgs",): _ARGS},
    "SideroLinkConfig": {("apiUrl",): _URL},
    "KmsgLogConfig": {("url",): _URL},
    "DiscoveryServiceConfig": {("endpoint",): _URL},
    "KubeClusterConfig": {("endpoint",): _URL},
    "KubeExternalManifestConfig": {("url",): _URL},
    "KubeServiceAccountConfig": {("issuer", "issuerURL"): _URL},
}

_NONE: dict[Path, Rule] = {}


def rules_for(key: DocumentKey) -> dict[Path, Rule]:
    """The special merge rules of one document kind (empty for plain kinds)."""
    if key.kind == LEGACY_VERSION and not key.api_version:
        return _LEGACY_RULES
    return _KIND_RULES.get(key.kind, _NONE)
