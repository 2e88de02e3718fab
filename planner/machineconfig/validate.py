"""Talos's own validation of a machine config, for a given Talos version.

``talosctl validate`` and a node's ``ApplyConfiguration`` load a config (rejecting duplicate and
conflicting documents) and then run its ``Validate(mode)``: the v1alpha1 document's rules, each
document's own rules, the cross-checks between new-style documents and the v1alpha1 fields they
replace, and (from 1.14) rules over the whole set of documents. A config that fails is refused:
omni#3424 is a Talos 1.14 node refusing what Omni pushed after unlock, because the imported patch
kept v1alpha1 ``cluster.aggregatorCA`` and ``cluster.controlPlane`` next to Omni's 1.14 documents
(``KubeAggregatorCAConfig``, ``KubeClusterConfig``). The plan runs this validator on the config
Omni will push so that the refusal is a finding, not a surprise after unlock.

The rules are those of machinery 1.9 to 1.14 in client context (``Validate``, not the runtime
checks that need a live node), checked case by case against machinery itself in
``tests/interop/test_validate.py``. Each error is one broken rule; ``where`` is the document
(``v1alpha1``, a kind or ``kind/name``, ``config`` for whole-config rules) and ``path`` the field.

Covered:

- loading: duplicate v1alpha1 documents, duplicate ``kind/name``, conflicting document kinds,
  and kinds or fields newer than the version (1.14's Kube*, Discovery* and UnattendedInstall
  documents; ``machine.install.grubUseUKICmdline`` before 1.12);
- v1alpha1 (all versions): machine/cluster present, control-plane endpoint (required up to 1.13;
  from 1.14 only when ``cluster.controlPlane`` is present) and its URL, install disk in metal
  mode (required up to 1.13; from 1.14 only when ``machine.install`` is present), machine type,
  Talos and Kubernetes CAs per machine type, CNI, DNS domain, etcd (CA, subnets; control planes
  only), inline manifests, discovery service, external cloud provider, network interfaces
  (interface/selector, bond/bridge, addresses, routes, VLANs, VIP on workers), kubelet node-IP
  subnets and protected fields, KubeSpan filters and MTU, disk encryption key slots, duplicate
  extensions, logging destinations, Kubernetes Talos API access, host DNS, ``persist``, node
  label/taint keys, and from 1.14 the Kubernetes image versions Talos 1.14 supports;
- conflicts between new-style documents and v1alpha1 fields (1.12: Resolver, TimeSync,
  Hostname, Volume; 1.13: + KubeSpan; 1.14: + every Kube* document, UnattendedInstall,
  Discovery*, CRI ones), and 1.14's whole-config rules (Kubernetes CA needs a cluster name and
  endpoint, control-plane-only documents on workers, etcd encryption on control planes,
  discovery identity, KubeSpan needs discovery, container-mode host DNS);
- the own rules of the documents the engine generates: KubeClusterConfig, KubeServiceAccount,
  KubeAPIServerCA/KubeAggregatorCA, KubeNetwork (CIDRs, counts), Kubelet/KubeAPIServer/
  KubeControllerManager/KubeScheduler/KubeProxy (image), KubePrism, KubeEtcdEncryption,
  KubeAuthorizer, KubeAdmissionControl, KubeFlannelCNI, Hostname, DiscoveryService/Identity,
  UnattendedInstall.

Not covered (an unchecked part never produces an error here): the schema itself (unknown fields
and wrong types are load errors in Talos; the engine does not carry Talos's schema beyond the
version table above); other unknown document kinds; the own rules of documents the engine does
not generate (network link documents, volumes beyond their header, extension services, CRI,
registries, ...); bond option names and mode-dependent bond options; wireguard keys; CEL disk
selectors; certificate and key parsing (only presence and PEM headers are checked); null
registry entries (1.9-1.13); API server argument, authorization and resource rules; base
runtime spec overrides; label, annotation and taint values beyond the taint effect; resolver
protocols beyond the host DNS rule; the exact wording of Talos's messages. Warnings are
reported but not compared with Talos's.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from omniport.planner.machineconfig.contracts import parse_contract
from omniport.planner.machineconfig.document import (
    ConfigError,
    Document,
    MachineConfig,
    as_documents,
)
from omniport.planner.machineconfig.document import parse as parse_config

MODES = ("metal", "cloud", "container")
OLDEST_MINOR = 9
NEWEST_MINOR = 14

# Talos minor -> supported Kubernetes versions [min, max) (machinery's compatibility tables).
KUBERNETES_RANGE: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    9: ((1, 27, 0), (1, 32, 99)),
    10: ((1, 28, 0), (1, 33, 99)),
    11: ((1, 29, 0), (1, 34, 99)),
    12: ((1, 30, 0), (1, 35, 99)),
    13: ((1, 31, 0), (1, 36, 99)),
    14: ((1, 32, 0), (1, 37, 99)),
}

# Kinds that may only appear on control planes (1.14).
CONTROLPLANE_ONLY = frozenset(
    {
        "KubeAPIServerConfig",
        "KubeAdmissionControlConfig",
        "KubeAggregatorCAConfig",
        "KubeAuditPolicyConfig",
        "KubeAuthenticationConfig",
        "KubeAuthorizerConfig",
        "KubeControllerManagerConfig",
        "KubeCoreDNSConfig",
        "KubeEtcdEncryptionConfig",
        "KubeFlannelCNIConfig",
        "KubeProxyConfig",
        "KubeSchedulerConfig",
        "KubeServiceAccountConfig",
    }
)

# Document kinds that conflict with each other at load time (same name), from 1.12.
_LINK_KINDS = (
    "LinkConfig",
    "BondConfig",
    "BridgeConfig",
    "VLANConfig",
    "WireguardConfig",
    "DummyLinkConfig",
    "VethConfig",
    "VRFConfig",
)
CONFLICTING_KINDS: dict[str, tuple[str, ...]] = {
    **{kind: tuple(k for k in _LINK_KINDS if k != kind) for kind in _LINK_KINDS},
    "Layer2VIPConfig": ("HCloudVIPConfig",),
    "HCloudVIPConfig": ("Layer2VIPConfig",),
    "UserVolumeConfig": ("ExistingVolumeConfig",),
    "ExistingVolumeConfig": ("UserVolumeConfig",),
}

# Fields and kinds newer than some minors: an older Talos does not decode them at all.
LEGACY_FIELDS_SINCE: dict[str, int] = {"machine.install.grubUseUKICmdline": 12}
KINDS_SINCE: dict[str, int] = {
    kind: 14
    for kind in (
        *CONTROLPLANE_ONLY,
        "KubeClusterConfig",
        "KubeNodeConfig",
        "KubeletConfig",
        "KubeNetworkConfig",
        "KubeAPIServerCAConfig",
        "KubePrismConfig",
        "KubeTalosAPIAccessConfig",
        "KubeCredentialProviderConfig",
        "DiscoveryServiceConfig",
        "DiscoveryIdentityConfig",
        "UnattendedInstallConfig",
    )
}

_ROLES = frozenset({"os:admin", "os:operator", "os:reader", "os:etcd:backup", "os:impersonator"})
_SORT_ALGORITHMS = frozenset({"v1", "v2"})
_PROTECTED_KUBELET_FIELDS = (
    "authentication",
    "authorization",
    "cgroupRoot",
    "rotateCertificates",
    "staticPodPath",
    "staticPodURLs",
)
_DNS_NAME = re.compile(
    r"^([a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})*[._]?$"
)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?$")
_TAINT_EFFECTS = frozenset({"NoSchedule", "PreferNoSchedule", "NoExecute"})


@dataclass(frozen=True)
class Problem:
    """One broken rule: in which document (``where``), at which field, and what is wrong."""

    where: str
    path: str
    message: str

    def __str__(self) -> str:
        at = f"{self.where}: {self.path}" if self.path else self.where
        return f"{at}: {self.message}"


@dataclass(frozen=True)
class Verdict:
    """Talos's verdict on a config: refused when there is any error."""

    talos_version: str
    mode: str
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]

    @property
    def valid(self) -> bool:
        return not self.errors


class ValidateError(ConfigError):
    """A request the validator cannot answer (unsupported version or mode)."""


def talos_minor(talos_version: str) -> int:
    """The Talos 1.x minor this validator knows, from ``v1.14.1``, ``1.14`` or a contract."""
    contract = parse_contract(talos_version)
    if contract.major != 1 or not OLDEST_MINOR <= contract.minor <= NEWEST_MINOR:
        raise ValidateError(
            f"Talos {talos_version} has no validation rules here",
            f"pass a Talos version from 1.{OLDEST_MINOR} to 1.{NEWEST_MINOR}",
        )
    return contract.minor


def validate_bytes(
    raw: bytes | str, talos_version: str, *, mode: str = "metal", strict: bool = False
) -> Verdict:
    """Load ``raw`` as Talos does, then validate; a config that does not load is one error."""
    minor = talos_minor(talos_version)
    try:
        config = parse_config(raw)
    except ConfigError as err:
        return Verdict(f"1.{minor}", mode, (Problem("config", "", err.args[0]),), ())
    return validate(config, talos_version, mode=mode, strict=strict)


def validate(
    config: MachineConfig | Iterable[Document | Mapping[str, Any]],
    talos_version: str,
    *,
    mode: str = "metal",
    strict: bool = False,
) -> Verdict:
    """Talos's ``Validate(mode)`` for ``talos_version`` on parsed documents."""
    minor = talos_minor(talos_version)
    if mode not in MODES:
        raise ValidateError(f"unknown validation mode {mode!r}", f"use one of {', '.join(MODES)}")
    run = _Run(minor, mode, as_documents(config))
    if run.load():
        run.v1alpha1_rules()
        run.document_rules()
        run.conflict_rules()
        run.container_rules()
    if strict:
        # Talos's strict mode lives in the v1alpha1 document's Validate: other documents'
        # warnings stay warnings
        run.errors += [
            Problem(w.where, w.path, f"warning: {w.message}")
            for w in run.warnings
            if w.where == "v1alpha1"
        ]
        run.warnings = [w for w in run.warnings if w.where != "v1alpha1"]
    return Verdict(f"1.{minor}", mode, tuple(run.errors), tuple(run.warnings))


# ---- helpers ------------------------------------------------------------------------------


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _present(data: Any, path: str) -> bool:
    """A field Go would decode into a non-nil pointer: the key is there and not null."""
    *parents, last = path.split(".")
    for part in parents:
        if not isinstance(data, dict):
            return False
        data = data.get(part)
    return isinstance(data, dict) and data.get(last) is not None


def endpoint_problem(url: str) -> str | None:
    """Why ``url`` is not an endpoint URI Talos accepts (Go's url.Parse + siderolabs/net)."""
    if any(ch in url for ch in " \t\r\n\x7f") or any(ord(ch) < 0x20 for ch in url):
        return "invalid control character in URL"
    scheme_match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)
    if scheme_match is None:
        first = url.split("/", 1)[0]
        if ":" in first:
            return "first path segment in URL cannot contain colon"
        return "hostname must not be blank"
    rest = url[scheme_match.end() :]
    if not rest.startswith("//"):
        return "hostname must not be blank"
    authority = rest[2:].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = authority.rsplit("@", 1)[-1]
    if host.count(":") > 2 and ("[" not in host or "]" not in host):
        return "IPv6 addresses MUST be enclosed by square brackets"
    if host.startswith("["):
        close = host.find("]")
        if close < 0:
            return "missing ']' in host"
        hostname, port_part = host[1:close], host[close + 1 :]
        if port_part and not port_part.startswith(":"):
            return "invalid port after host"
        port = port_part[1:] if port_part else ""
    else:
        hostname, _, port = host.partition(":")
        if host.count(":") > 1:
            return "invalid port after host"
    if port and not port.isdigit():
        return f"invalid port {':' + port!r} after host"
    if not hostname:
        return "hostname must not be blank"
    if port:
        if not 1 <= int(port) <= 65535:
            return "port number must be between 1 and 65535"
    return None


def _subnet_ok(text: Any) -> bool:
    """siderolabs/net ParseSubnetOrAddress: a CIDR or a bare address."""
    if not isinstance(text, str):
        return False
    return _prefix_ok(text) or _addr_ok(text)


def _addr_ok(text: str) -> bool:
    if "%" in text or text != text.strip():
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _prefix_ok(text: str) -> bool:
    """Go's netip.ParsePrefix: address/bits, bits in range, host bits allowed."""
    addr, sep, bits = text.partition("/")
    if not sep or not bits.isdigit() or (len(bits) > 1 and bits[0] == "0") or not _addr_ok(addr):
        return False
    return int(bits) <= (32 if ":" not in addr else 128)


def _cidr_or_ip_ok(text: Any) -> bool:
    """Talos's address check for interfaces: a CIDR, or a bare IP."""
    return isinstance(text, str) and (_prefix_ok(text) or _addr_ok(text))


def _dns_name_ok(name: str) -> bool:
    if not name or len(name) - name.count(".") > 255:
        return False
    return _DNS_NAME.match(name) is not None


def _image_version(image: Any) -> tuple[int, int, int] | str:
    """The Kubernetes version in an image reference, or why there is none."""
    ref = image if isinstance(image, str) else ""
    index = ref.rfind(":v")
    if index < 0:
        return f"invalid image reference: {ref!r}"
    part = ref[index + 2 :].split("@", 1)[0]
    found = _SEMVER.match(part)
    if found is None:
        return f"cannot parse version {part!r}"
    major, minor, patch = (int(g) if g else 0 for g in found.groups())
    return (major, minor, patch)


def _pem_ok(value: Any, kind: str) -> bool:
    if not isinstance(value, str):
        return False
    return f"-----BEGIN {kind}" in value and "-----END" in value


def _b64_pem_present(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _label_key_problem(key: str) -> str | None:
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _LABEL_PREFIX.match(prefix)):
        return f"prefix part {prefix!r} is invalid"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return f"name part {name!r} is invalid"
    return None


# ---- the rules ----------------------------------------------------------------------------


@dataclass
class _Run:
    minor: int
    mode: str
    documents: tuple[Document, ...]
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    legacy: dict[str, Any] | None = None
    others: list[Document] = field(default_factory=list)

    # -- loading

    def load(self) -> bool:
        """The container's construction: a failure here is the only error Talos reports."""
        seen: set[str] = set()
        conflicting: dict[str, str] = {}
        for doc in self.documents:
            key = doc.key
            if key.is_legacy:
                if self.legacy is not None:
                    return self._load_error("duplicate v1alpha1.Config")
                for path, since in LEGACY_FIELDS_SINCE.items():
                    if self.minor < since and _present(doc.data, path):
                        return self._load_error(f"unknown field {path} for Talos 1.{self.minor}")
                self.legacy = doc.data
                continue
            if self.minor < KINDS_SINCE.get(key.kind, 0):
                return self._load_error(
                    f"unknown document kind {key.kind} for Talos 1.{self.minor}"
                )
            ident = f"{key.kind}/{key.name}"
            if ident in seen:
                return self._load_error(f"duplicate document: {ident}")
            seen.add(ident)
            if self.minor >= 12:
                if ident in conflicting:
                    return self._load_error(
                        f"conflicting documents: {conflicting[ident]} and {ident}"
                    )
                for kind in CONFLICTING_KINDS.get(key.kind, ()):
                    other = f"{kind}/{key.name}"
                    if other in seen:
                        return self._load_error(f"conflicting documents: {other} and {ident}")
                    conflicting[other] = ident
            self.others.append(doc)
        return True

    def _load_error(self, message: str) -> bool:
        self.errors.append(Problem("config", "", message))
        return False

    def err(self, where: str, path: str, message: str) -> None:
        self.errors.append(Problem(where, path, message))

    def warn(self, where: str, path: str, message: str) -> None:
        self.warnings.append(Problem(where, path, message))

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [d.data for d in self.others if d.key.kind == kind]

    def one(self, kind: str) -> dict[str, Any] | None:
        found = self.kinds(kind)
        return found[0] if found else None

    @property
    def machine_type(self) -> str:
        machine = _map((self.legacy or {}).get("machine"))
        value = machine.get("type")
        return value if isinstance(value, str) else ""

    @property
    def controlplane(self) -> bool:
        return self.machine_type in ("controlplane", "init")

    # -- v1alpha1

    def v1alpha1_rules(self) -> None:  # noqa: C901, PLR0912, PLR0915
        if self.legacy is None:
            return
        w, data = "v1alpha1", self.legacy
        machine = data.get("machine")
        if not isinstance(machine, dict):
            self.err(w, "machine", "machine instructions are required")
            return
        cluster = data.get("cluster")
        cluster = cluster if isinstance(cluster, dict) else None
        mtype = self.machine_type
        cp = self.controlplane
        v14 = self.minor >= 14
        if v14 and _list(machine.get("files")):
            self.warn(w, "machine.files", "deprecated; use dedicated configuration documents")

        self._cluster_rules(cluster, cp)

        install = machine.get("install")
        if self.mode == "metal":
            if isinstance(install, dict):
                disk = install.get("disk")
                if not disk and not _map(install.get("diskSelector")):
                    self.err(
                        w,
                        "machine.install",
                        "either install disk or diskSelector should be defined",
                    )
                if (
                    self.minor >= 12
                    and _list(install.get("extraKernelArgs"))
                    and install.get("grubUseUKICmdline") is True
                ):
                    self.err(
                        w,
                        "machine.install",
                        "install.extraKernelArgs and install.grubUseUKICmdline can't be "
                        "used together",
                    )
            elif not v14:
                self.err(w, "machine.install", 'install instructions are required in "metal" mode')

        host_dns = _map(_get(machine, "features.hostDNS"))
        if self.mode == "container" and not v14:
            if host_dns.get("enabled") is not True:
                self.err(
                    w,
                    "machine.features.hostDNS.enabled",
                    "feature HostDNS should be enabled in container mode",
                )
            if host_dns.get("forwardKubeDNSToHost") is not True:
                self.err(
                    w,
                    "machine.features.hostDNS.forwardKubeDNSToHost",
                    "feature HostDNS should forward kube-dns to host in container mode",
                )
        if (
            self.minor >= 13
            and host_dns.get("forwardKubeDNSToHost") is True
            and host_dns.get("enabled") is not True
        ):
            self.err(
                w,
                "machine.features.hostDNS",
                "feature hostDNS.forwardKubeDNSToHost requires hostDNS.enabled to be true",
            )

        if mtype in ("join",):
            self.warn(w, "machine.type", 'use "worker" instead of "join" for machine type')

        ca = machine.get("ca")
        ca = ca if isinstance(ca, dict) else None
        accepted = _list(machine.get("acceptedCAs"))
        if ca is None and not accepted:
            self.err(w, "machine.ca", "issuing CA or some accepted CAs are required")

        if mtype in ("init", "controlplane"):
            network = cluster.get("network") if cluster else None
            if not v14 or network is not None:
                self._cni_rules(_map(network).get("cni"))
            if ca is None:
                self.err(w, "machine.ca", "issuing CA is required")
            elif not ca.get("key"):
                self.err(w, "machine.ca.key", "issuing CA key is required for controlplane nodes")
        elif mtype in ("worker", "join", ""):
            for index, device in enumerate(_list(_get(machine, "network.interfaces"))):
                device = _map(device)
                if device.get("vip") is not None:
                    self.err(
                        w,
                        f"machine.network.interfaces[{index}].vip",
                        "virtual (shared) IP is not allowed on non-controlplane nodes",
                    )
                for vlan in _list(device.get("vlans")):
                    if _map(vlan).get("vip") is not None:
                        self.err(
                            w,
                            f"machine.network.interfaces[{index}].vlans",
                            "virtual (shared) IP is not allowed on non-controlplane nodes",
                        )
            if ca is not None:
                if ca.get("key"):
                    self.err(
                        w,
                        "machine.ca.key",
                        "issuing Talos API CA key is not allowed on non-controlplane nodes",
                    )
                if not ca.get("crt") and not accepted:
                    self.err(
                        w,
                        "machine.ca.crt",
                        "trusted CA certificates are required on non-controlplane nodes",
                    )
            if cluster and _map(cluster.get("ca")).get("key"):
                self.err(
                    w,
                    "cluster.ca.key",
                    "issuing Kubernetes API CA key is not allowed on non-controlplane nodes",
                )
        else:
            self.err(w, "machine.type", f"unknown machine type {mtype!r}")

        self._network_rules(machine)

        for disk in _list(machine.get("disks")):
            if disk is None and self.minor < 14:
                self.err(w, "machine.disks", "a disk entry is null")
                continue
            parts = _list(_map(disk).get("partitions"))
            for index, part in enumerate(parts):
                if not _map(part).get("size") and index != len(parts) - 1:
                    self.err(
                        w,
                        "machine.disks",
                        "partition is set to occupy full disk, but it's not the last "
                        "partition in the list",
                    )

        kubelet = machine.get("kubelet")
        if isinstance(kubelet, dict):
            for cidr in _list(_get(kubelet, "nodeIP.validSubnets")):
                if not _subnet_ok(str(cidr).removeprefix("!")):
                    self.err(
                        w,
                        "machine.kubelet.nodeIP.validSubnets",
                        f"kubelet nodeIP subnet is not valid: {cidr!r}",
                    )
            extra = _map(kubelet.get("extraConfig"))
            for name in _PROTECTED_KUBELET_FIELDS:
                if name in extra:
                    self.err(
                        w,
                        "machine.kubelet.extraConfig",
                        f"kubelet configuration field {name!r} can't be overridden",
                    )

        for label in ("EPHEMERAL", "STATE"):
            enc = _get(machine, f"systemDiskEncryption.{label.lower()}")
            if not isinstance(enc, dict):
                continue
            keys = _list(enc.get("keys"))
            if not keys:
                self.err(
                    w,
                    "machine.systemDiskEncryption",
                    f"partition {label!r}: no encryption keys provided",
                )
            slots: set[int] = set()
            for key in keys:
                key = _map(key)
                slot = key.get("slot", 0)
                if slot in slots:
                    self.err(
                        w,
                        "machine.systemDiskEncryption",
                        f"partition {label!r}: encryption key slot {slot} is already in use",
                    )
                slots.add(slot)
                if not any(key.get(k) is not None for k in ("nodeID", "static", "kms", "tpm")):
                    self.err(
                        w,
                        "machine.systemDiskEncryption",
                        f"partition {label!r}: encryption key at slot {slot} doesn't have "
                        f"the configuration parameters",
                    )

        kubespan = _map(_get(machine, "network.kubespan"))
        if kubespan.get("enabled") is True:
            if self.minor < 14:
                disc = _map(cluster.get("discovery")) if cluster else {}
                if disc.get("enabled") is not True:
                    self.err(
                        w,
                        "cluster.discovery",
                        ".cluster.discovery should be enabled when "
                        ".machine.network.kubespan is enabled",
                    )
                if not (cluster or {}).get("id"):
                    self.err(
                        w,
                        "cluster.id",
                        ".cluster.id should be set when .machine.network.kubespan is enabled",
                    )
                if not (cluster or {}).get("secret"):
                    self.err(
                        w,
                        "cluster.secret",
                        ".cluster.secret should be set when .machine.network.kubespan is enabled",
                    )
            for cidr in _list(_get(kubespan, "filters.endpoints")):
                if not _subnet_ok(str(cidr).removeprefix("!")):
                    self.err(
                        w,
                        "machine.network.kubespan.filters.endpoints",
                        f"KubeSpan endpoint filter is not valid: {cidr!r}",
                    )
            if self.minor >= 12:
                for cidr in _list(_get(kubespan, "filters.excludeAdvertisedNetworks")):
                    if not _prefix_ok(str(cidr)):
                        self.err(
                            w,
                            "machine.network.kubespan.filters.excludeAdvertisedNetworks",
                            f"KubeSpan exclude advertised networks filter is not valid: {cidr!r}",
                        )

        logging = machine.get("logging")
        for dest in _list(_map(logging).get("destinations")):
            dest = _map(dest)
            url = dest.get("endpoint")
            where = "machine.logging.destinations"
            if not isinstance(url, str) or not url:
                self.err(w, where, "empty logging endpoint")
            else:
                endpoint = urlsplit(url)
                if not endpoint.netloc.rpartition("@")[2]:
                    self.err(w, where, "empty logging endpoint's host")
                if endpoint.scheme not in ("tcp", "udp"):
                    self.err(w, where, f"unexpected logging endpoint scheme {endpoint.scheme!r}")
            if dest.get("format") != "json_lines":
                self.err(w, where, f"unknown logging format {dest.get('format')!r}")

        images: set[str] = set()
        for ext in _list(_get(machine, "install.extensions")):
            image = _map(ext).get("image")
            image = image if isinstance(image, str) else ""  # as Talos reads a missing one
            if image in images:
                self.err(w, "machine.install.extensions", f"duplicate system extension {image!r}")
            images.add(image)
        if images:
            self.warn(w, "machine.install.extensions", "deprecated; use boot assets instead")

        for key in _map(machine.get("nodeLabels")):
            problem = _label_key_problem(str(key))
            if problem:
                self.err(
                    w, "machine.nodeLabels", f"invalid machine node labels: {key!r}: {problem}"
                )
        for key in _map(machine.get("nodeAnnotations")):
            problem = _label_key_problem(str(key))
            if problem:
                self.err(
                    w,
                    "machine.nodeAnnotations",
                    f"invalid machine node annotations: {key!r}: {problem}",
                )
        for key, value in _map(machine.get("nodeTaints")).items():
            problem = _label_key_problem(str(key))
            effect = str(value).rpartition(":")[2]
            if problem or effect not in _TAINT_EFFECTS:
                self.err(w, "machine.nodeTaints", f"invalid machine node taints: {key!r}")

        access = _get(machine, "features.kubernetesTalosAPIAccess")
        access_on = isinstance(access, dict) and (v14 or access.get("enabled") is True)
        if access_on and not self.one("KubeTalosAPIAccessConfig"):
            assert isinstance(access, dict)
            if not cp:
                self.err(
                    w,
                    "machine.features.kubernetesTalosAPIAccess",
                    "feature Kubernetes Talos API Access can only be enabled on control "
                    "plane machines",
                )
            for role in _list(access.get("allowedRoles")):
                if role not in _ROLES:
                    self.err(
                        w,
                        "machine.features.kubernetesTalosAPIAccess.allowedRoles",
                        f"invalid role {role!r} in allowed roles for Kubernetes Talos API Access",
                    )
            if self.minor < 12 and _get(machine, "features.rbac") is not True:
                self.err(
                    w,
                    "machine.features.rbac",
                    "feature API RBAC should be enabled when Kubernetes Talos API Access "
                    "feature is enabled",
                )

        algorithm = _get(machine, "features.nodeAddressSortAlgorithm")
        if algorithm and algorithm not in _SORT_ALGORITHMS:
            self.err(
                w,
                "machine.features.nodeAddressSortAlgorithm",
                f"invalid node address sort algorithm: {algorithm!r}",
            )

        if data.get("persist") is False:
            self.err(w, "persist", ".persist should be enabled")

        if v14:
            self._kubernetes_versions(machine, cluster)

    def _cluster_rules(self, cluster: dict[str, Any] | None, cp: bool) -> None:  # noqa: C901, PLR0912
        w = "v1alpha1"
        if cluster is None:
            self.err(w, "cluster", "cluster instructions are required")
            return
        control = cluster.get("controlPlane")
        if self.minor < 14 or control is not None:
            endpoint = _map(control).get("endpoint")
            if endpoint is None:
                self.err(
                    w, "cluster.controlPlane.endpoint", "cluster controlplane endpoint is required"
                )
                return
            problem = endpoint_problem(str(endpoint))
            if problem:
                self.err(
                    w, "cluster.controlPlane.endpoint", f"invalid controlplane endpoint: {problem}"
                )
        if (
            self.minor >= 14
            and cluster.get("serviceAccount") is not None
            and _get(cluster, "controlPlane.endpoint") is None
        ):
            self.err(
                w,
                "cluster.serviceAccount",
                ".cluster.serviceAccount requires the cluster endpoint to be set in the "
                "same document",
            )
        domain = _get(cluster, "network.dnsDomain")
        if domain and not _dns_name_ok(str(domain)):
            self.err(w, "cluster.network.dnsDomain", f"{domain!r} is not a valid DNS name")
        ecp = cluster.get("externalCloudProvider")
        if isinstance(ecp, dict):
            manifests = _list(ecp.get("manifests"))
            if ecp.get("enabled") is not True and manifests:
                self.err(
                    w,
                    "cluster.externalCloudProvider",
                    "external cloud provider is disabled, but manifests are provided",
                )
            else:
                for url in manifests:
                    problem = endpoint_problem(str(url))
                    if problem:
                        self.err(
                            w,
                            "cluster.externalCloudProvider.manifests",
                            f"invalid external cloud provider manifest url {url!r}: {problem}",
                        )
        etcd = cluster.get("etcd")
        if isinstance(etcd, dict):
            if cp:
                if not isinstance(etcd.get("ca"), dict) or not (
                    _b64_pem_present(_get(etcd, "ca.crt")) or _b64_pem_present(_get(etcd, "ca.key"))
                ):
                    self.err(w, "cluster.etcd.ca", "key/cert combination should not be empty")
                advertised = _list(etcd.get("advertisedSubnets"))
                if etcd.get("subnet") and advertised:
                    self.err(
                        w,
                        "cluster.etcd",
                        "etcd subnet can't be set when advertised subnets are set",
                    )
                subnets = advertised or ([etcd["subnet"]] if etcd.get("subnet") else [])
                for cidr in subnets:
                    if not _subnet_ok(str(cidr).removeprefix("!")):
                        self.err(
                            w,
                            "cluster.etcd.advertisedSubnets",
                            f"etcd advertised subnet is not valid: {cidr!r}",
                        )
                # listening defaults to the advertised subnets (not to the legacy single one)
                for cidr in _list(etcd.get("listenSubnets")) or advertised:
                    if not _subnet_ok(str(cidr).removeprefix("!")):
                        self.err(
                            w,
                            "cluster.etcd.listenSubnets",
                            f"etcd listen subnet is not valid: {cidr!r}",
                        )
            else:
                self.err(w, "cluster.etcd", "etcd config is only allowed on control plane machines")
        if not cp and _map(cluster.get("ca")).get("key"):
            self.err(w, "cluster.ca.key", "cluster CA key is not allowed on non-controlplane nodes")
        names: set[str] = set()
        for manifest in _list(cluster.get("inlineManifests")):
            name = _map(manifest).get("name")
            name = name if isinstance(name, str) else ""
            if not name.strip():
                self.err(w, "cluster.inlineManifests", "inline manifest name can't be empty")
            if name in names:
                self.err(
                    w, "cluster.inlineManifests", f"inline manifest name {name!r} is duplicate"
                )
            names.add(name)
        discovery = cluster.get("discovery")
        if isinstance(discovery, dict) and discovery.get("enabled") is True:
            service = _get(discovery, "registries.service")
            if not isinstance(service, dict) or service.get("disabled") is not True:
                endpoint = _map(service).get("endpoint") or "https://discovery.talos.dev/"
                parts = urlsplit(str(endpoint))
                if not parts.scheme or not str(endpoint).startswith(f"{parts.scheme}:/"):
                    self.err(
                        w,
                        "cluster.discovery.registries.service.endpoint",
                        "cluster discovery service registry endpoint is invalid",
                    )
                elif parts.path not in ("", "/"):
                    self.err(
                        w,
                        "cluster.discovery.registries.service.endpoint",
                        "cluster discovery service path should be empty",
                    )
                if not cluster.get("id"):
                    self.err(w, "cluster.id", "cluster discovery service requires .cluster.id")
                if not cluster.get("secret"):
                    self.err(
                        w, "cluster.secret", "cluster discovery service requires .cluster.secret"
                    )

    def _cni_rules(self, cni: Any) -> None:
        w, path = "v1alpha1", "cluster.network.cni"
        cni = _map(cni)
        name = cni.get("name") or "flannel"
        urls = _list(cni.get("urls"))
        flannel = _map(cni.get("flannel"))
        extra_args = _list(flannel.get("extraArgs"))
        policies = flannel.get("kubeNetworkPoliciesEnabled") is True
        if name == "flannel":
            if urls:
                self.err(w, path, '"urls" field should be empty for "flannel" CNI')
        elif name in ("none", "custom"):
            if name == "none" and urls:
                self.err(w, path, '"urls" field should be empty for "none" CNI')
            if name == "custom" and not urls:
                self.warn(w, path, '"urls" field should not be empty for "custom" CNI')
            if extra_args:
                self.err(w, path, f'"flanneldExtraArgs" field should be empty for "{name}" CNI')
            if policies:
                self.err(
                    w,
                    path,
                    f'"flannelKubeNetworkPoliciesEnabled" should not be enabled for "{name}" CNI',
                )
            if name == "custom":
                for url in urls:
                    problem = endpoint_problem(str(url))
                    if problem:
                        self.err(w, path, problem)
        else:
            self.err(w, path, 'cni name should be one of ["flannel", "custom", "none"]')

    def _network_rules(self, machine: dict[str, Any]) -> None:  # noqa: C901, PLR0912
        w = "v1alpha1"
        network = machine.get("network")
        if not isinstance(network, dict):
            return
        devices = [_map(d) for d in _list(network.get("interfaces"))]
        secondary: dict[str, str] = {}
        for device in devices:
            name = str(device.get("interface") or "")
            bond, bridge = device.get("bond"), device.get("bridge")
            members: list[Any] = []
            if bond is not None and bridge is not None:
                self.err(
                    w,
                    "machine.network.interfaces",
                    f"interface has both bridge and bond sections set {name!r}",
                )
            if isinstance(bond, dict):
                members = _list(bond.get("interfaces"))
                if members and _list(bond.get("deviceSelectors")):
                    self.err(
                        w,
                        "machine.network.interfaces",
                        f"interface {name!r} has both interfaces and selectors set",
                    )
            if isinstance(bridge, dict):
                members = _list(bridge.get("interfaces"))
            for member in members:
                other = secondary.get(member)
                if other is not None and other != name:
                    self.err(
                        w,
                        "machine.network.interfaces",
                        f"interface {member!r} is declared as part of two separate links: "
                        f"{other!r} and {name!r}",
                    )
                secondary[member] = name
        for index, device in enumerate(devices):
            if device.get("ignore") is True:
                continue
            where = f"machine.network.interfaces[{index}]"
            name = str(device.get("interface") or "")
            selector = device.get("deviceSelector")
            if not name and selector is None:
                self.err(w, where, "either interface or deviceSelector is required")
            elif name and selector is not None:
                self.err(w, where, "interface and deviceSelector are mutually exclusive")
            if isinstance(selector, dict) and not any(
                v not in (None, "", False) for v in selector.values()
            ):
                self.err(w, where, "deviceSelector should contain at least one field")
            if isinstance(device.get("bond"), dict):
                self._bond_rules(where, device["bond"])
            for vlan in _list(device.get("vlans")):
                vlan = _map(vlan)
                if vlan.get("cidr") and _list(vlan.get("addresses")):
                    self.err(w, where, "vlan can't have both .cidr and .addresses set")
                if vlan.get("cidr") and not _cidr_or_ip_ok(vlan["cidr"]):
                    self.err(w, where, f"vlan CIDR {vlan['cidr']!r} is invalid")
                for address in _list(vlan.get("addresses")):
                    if not _cidr_or_ip_ok(address):
                        self.err(w, where, f"vlan address {address!r} is invalid")
            addresses = _list(device.get("addresses"))
            cidr = device.get("cidr")
            vip = device.get("vip")
            addressed = cidr or addresses or device.get("dhcp") is True or vip is not None
            if name in secondary and addressed:
                self.err(
                    w,
                    where,
                    "bonded/bridged interface shouldn't have any addressing methods configured",
                )
            if cidr and addresses:
                self.err(w, where, "interface can't have both .cidr and .addresses set")
            if cidr:
                if not _cidr_or_ip_ok(cidr):
                    self.err(w, where, f"CIDR {cidr!r} is invalid")
                self.warn(w, where, "machine.network.interface.cidr is deprecated")
            for address in addresses:
                if not _cidr_or_ip_ok(address):
                    self.err(w, where, f"address {address!r} is invalid")
            if vip is not None and not _addr_ok(str(_map(vip).get("ip") or "")):
                self.err(w, where, f"failed to parse {_map(vip).get('ip')!r} as IP address")
            for rindex, route in enumerate(_list(device.get("routes"))):
                route = _map(route)
                net, gateway, source = (
                    route.get("network"),
                    route.get("gateway"),
                    route.get("source"),
                )
                if net and not _prefix_ok(str(net)):
                    self.err(
                        w, f"{where}.routes[{rindex}].network", f"{net!r}: invalid network address"
                    )
                if gateway and not _addr_ok(str(gateway)):
                    self.err(
                        w,
                        f"{where}.routes[{rindex}].gateway",
                        f"{gateway!r}: invalid network address",
                    )
                if not net and not gateway:
                    self.err(
                        w, f"{where}.routes[{rindex}]", "either network or gateway should be set"
                    )
                if source and not _addr_ok(str(source)):
                    self.err(
                        w,
                        f"{where}.routes[{rindex}].source",
                        f"{source!r}: invalid network address",
                    )
        kubespan = _map(network.get("kubespan"))
        if (
            kubespan.get("enabled") is True
            and kubespan.get("mtu") is not None
            and int(kubespan["mtu"]) < 1280
        ):
            self.err(w, "machine.network.kubespan.mtu", "kubespan link MTU must be at least 1280")

    def _bond_rules(self, where: str, bond: dict[str, Any]) -> None:
        w = "v1alpha1"
        miimon = int(bond.get("miimon") or 0)
        up, down = int(bond.get("updelay") or 0), int(bond.get("downdelay") or 0)
        if miimon == 0:
            if up:
                self.err(w, where, "bond.upDelay can't be set if miiMon is zero")
            if down:
                self.err(w, where, "bond.downDelay can't be set if miiMon is zero")
        else:
            if up % miimon:
                self.err(w, where, "bond.upDelay should be a multiple of miiMon")
            if down % miimon:
                self.err(w, where, "bond.downDelay should be a multiple of miiMon")
        if _list(bond.get("arpIPTarget")):
            self.err(w, where, "bond.arpIPTarget is not supported")
        if bond.get("lacpRate") and bond.get("mode") != "802.3ad":
            self.err(w, where, "bond.lacpRate is only available in 802.3ad mode")
        if bond.get("adActorSystem"):
            self.err(w, where, "bond.adActorSystem is not supported")

    def _kubernetes_versions(self, machine: dict[str, Any], cluster: dict[str, Any] | None) -> None:
        """1.14 checks image tags against the Kubernetes versions this Talos supports."""
        kubelet = machine.get("kubelet")
        if isinstance(kubelet, dict) and kubelet.get("image"):
            self._image("v1alpha1", "machine.kubelet.image", "kubelet", kubelet["image"])
        if cluster is not None and self.controlplane:
            for section, name in (
                ("apiServer", "kube-apiserver"),
                ("controllerManager", "kube-controller-manager"),
                ("scheduler", "kube-scheduler"),
            ):
                image = _get(cluster, f"{section}.image")
                if image:
                    self._image("v1alpha1", f"cluster.{section}.image", name, image)

    def _image(self, where: str, path: str, name: str, image: Any) -> None:
        version = _image_version(image)
        if isinstance(version, str):
            self.err(where, path, f"{name} image is not valid: {version}")
            return
        low, high = KUBERNETES_RANGE[self.minor]
        shown = ".".join(map(str, version))
        if version < low:
            self.err(
                where,
                path,
                f"{name} image is not valid: Kubernetes {shown} is too old for Talos "
                f"1.{self.minor}",
            )
        elif version >= high:
            self.err(
                where,
                path,
                f"{name} image is not valid: Kubernetes {shown} is too new for Talos "
                f"1.{self.minor}",
            )

    # -- documents

    def document_rules(self) -> None:  # noqa: C901, PLR0912, PLR0915
        for doc in self.others:
            d, key = doc.data, doc.key
            where = f"{key.kind}/{key.name}" if key.name else key.kind
            kind = key.kind
            if kind == "KubeClusterConfig":
                if not d.get("clusterName"):
                    self.err(where, "clusterName", "clusterName must be specified")
                endpoint = d.get("endpoint")
                if not endpoint:
                    self.err(where, "endpoint", "endpoint must be specified")
                else:
                    problem = endpoint_problem(str(endpoint))
                    if problem:
                        self.err(where, "endpoint", f"cluster endpoint is invalid: {problem}")
            elif kind == "KubeServiceAccountConfig":
                issuer = _map(d.get("issuer"))
                key_pem = issuer.get("privateKey")
                if not key_pem:
                    self.err(where, "issuer.privateKey", "service issuer private key is required")
                elif not _pem_ok(key_pem, ""):
                    self.err(where, "issuer.privateKey", "service issuer private key is invalid")
                if not issuer.get("issuerURL"):
                    self.err(where, "issuer.issuerURL", "service issuer URL is required")
            elif kind in ("KubeAPIServerCAConfig", "KubeAggregatorCAConfig"):
                issuing = d.get("issuingCA")
                if issuing is None:
                    if kind == "KubeAggregatorCAConfig":
                        self.err(where, "issuingCA", "issuing CA is not set")
                elif not _pem_ok(_map(issuing).get("cert"), "CERTIFICATE"):
                    self.err(where, "issuingCA", "issuing CA: certificate is invalid")
                for index, ca in enumerate(_list(d.get("acceptedCAs"))):
                    if not _pem_ok(ca, "CERTIFICATE"):
                        self.err(where, "acceptedCAs", f"accepted CA #{index}: not a certificate")
            elif kind == "KubeNetworkConfig":
                self._kube_network(where, d)
            elif kind in (
                "KubeletConfig",
                "KubeAPIServerConfig",
                "KubeControllerManagerConfig",
                "KubeSchedulerConfig",
                "KubeProxyConfig",
            ):
                name = {
                    "KubeletConfig": "kubelet",
                    "KubeAPIServerConfig": "kube-apiserver",
                    "KubeControllerManagerConfig": "kube-controller-manager",
                    "KubeSchedulerConfig": "scheduler",
                    "KubeProxyConfig": "proxy",
                }[kind]
                if not d.get("image"):
                    self.err(where, "image", f"{name} image cannot be empty")
                else:
                    self._image(where, "image", name, d["image"])
                if kind == "KubeletConfig":
                    for field_name in _PROTECTED_KUBELET_FIELDS:
                        if field_name in _map(d.get("config")):
                            self.err(
                                where,
                                "config",
                                f"kubelet configuration field {field_name!r} can't be overridden",
                            )
                if (
                    kind == "KubeProxyConfig"
                    and d.get("mode")
                    and d["mode"] not in ("iptables", "ipvs", "nftables")
                ):
                    self.err(where, "mode", f"invalid proxy mode {d['mode']!r}")
            elif kind == "KubePrismConfig":
                port = d.get("port")
                if not isinstance(port, int) or not 0 < port <= 65535:
                    self.err(where, "port", f"invalid port {port}: must be in range 1-65535")
            elif kind == "KubeEtcdEncryptionConfig":
                if not _map(d.get("config")):
                    self.err(where, "config", "etcd encryption config is required")
            elif kind == "KubeFlannelCNIConfig":
                if not d.get("backendType"):
                    self.err(where, "backendType", "flannel backend type must be specified")
            elif kind == "KubeAdmissionControlConfig":
                if not key.name:
                    self.err(where, "name", "admission control plugin name is required")
            elif kind == "KubeAuthorizerConfig":
                if not key.name:
                    self.err(where, "name", "authorizer name is required")
                kind_of = d.get("type")
                if not kind_of:
                    self.err(where, "type", "authorizer type is required")
                elif kind_of not in ("Node", "RBAC", "Webhook"):
                    self.err(where, "type", f"authorizer type {kind_of} is not allowed")
                elif kind_of == "Webhook" and not d.get("webhook"):
                    self.err(
                        where,
                        "webhook",
                        "authorizer webhook configuration is required for Webhook authorizer type",
                    )
            elif kind == "KubeNodeConfig":
                for cidr in _list(_get(d, "nodeIP.validSubnets")):
                    if not _subnet_ok(str(cidr).removeprefix("!")):
                        self.err(
                            where, "nodeIP.validSubnets", f"nodeIP subnet is not valid: {cidr!r}"
                        )
                for label in _map(d.get("labels")):
                    if _label_key_problem(str(label)):
                        self.err(where, "labels", f"invalid node labels: {label!r}")
            elif kind == "HostnameConfig":
                self._hostname(where, d)
            elif kind == "DiscoveryServiceConfig":
                if not key.name:
                    self.err(where, "name", "name is required")
                elif not d.get("endpoint"):
                    self.err(where, "endpoint", "endpoint is required")
            elif kind == "DiscoveryIdentityConfig":
                self._discovery_identity(where, d)
            elif kind == "UnattendedInstallConfig":
                if not _get(d, "installer.image"):
                    self.warn(where, "installer.image", "installer.image is not set")
                if not _get(d, "provisioning.diskSelector.match"):
                    self.err(
                        where,
                        "provisioning.diskSelector.match",
                        "provisioning.diskSelector.match is required",
                    )

    def _kube_network(self, where: str, d: dict[str, Any]) -> None:
        pods, services = _list(d.get("podSubnets")), _list(d.get("serviceSubnets"))
        for label, subnets in (("pod", pods), ("service", services)):
            bad = [s for s in subnets if not _prefix_ok(str(s))]
            if bad:
                self.err(where, f"{label}Subnets", f"{label} subnets: {bad[0]!r} is not a CIDR")
        if len(pods) != len(services):
            self.err(
                where,
                "podSubnets",
                "the number of pod subnets must match the number of service subnets",
            )

    def _hostname(self, where: str, d: dict[str, Any]) -> None:
        auto, hostname = d.get("auto"), d.get("hostname") or ""
        if auto is None and not hostname:
            self.err(where, "", "either 'auto' or 'hostname' must be set")
        if auto != "off" and hostname:
            self.err(where, "", "'auto' and 'hostname' cannot be set at the same time")
        if auto not in ("off", "stable"):
            self.err(where, "auto", f"invalid value for 'auto': {auto}")
        if hostname:
            if len(hostname) > 253:
                self.err(where, "hostname", f"fqdn is too long: {len(hostname)}")
            short = hostname.split(".", 1)[0]
            if not 0 < len(short) <= 63:
                self.err(where, "hostname", f"invalid hostname {short!r}")

    def _discovery_identity(self, where: str, d: dict[str, Any]) -> None:
        if not d.get("clusterID"):
            self.err(where, "clusterID", "clusterID is required")
            return
        secret = d.get("clusterSecret")
        if not secret:
            self.err(where, "clusterSecret", "clusterSecret is required")
            return
        try:
            raw = base64.b64decode(str(secret), validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            self.err(where, "clusterSecret", "invalid clusterSecret")

    # -- conflicts between documents and v1alpha1 fields

    def conflict_rules(self) -> None:  # noqa: C901, PLR0912
        if self.legacy is None or self.minor < 12:
            return
        m = _map(self.legacy.get("machine"))
        c = _map(self.legacy.get("cluster"))
        v14 = self.minor >= 14
        for doc in self.others:
            kind, d = doc.key.kind, doc.data
            message = None
            if kind == "ResolverConfig":
                message = self._resolver_conflict(m, d)
            elif kind == "TimeSyncConfig":
                time = m.get("time")
                if isinstance(time, dict):
                    if time.get("disabled") is True:
                        message = (
                            "time sync cannot be disabled in both v1alpha1 and "
                            "new-style configuration"
                        )
                    elif _list(time.get("servers")):
                        message = (
                            "time servers cannot be specified in both v1alpha1 and "
                            "new-style configuration"
                        )
                    elif time.get("bootTimeout"):
                        message = (
                            "boot timeout cannot be specified in both v1alpha1 and "
                            "new-style configuration"
                        )
            elif kind == "HostnameConfig":
                if _get(m, "network.hostname"):
                    message = "static hostname is already set in v1alpha1 config"
                elif _get(m, "features.stableHostname") is True:
                    message = "stable hostname is already set in v1alpha1 config"
            elif kind == "VolumeConfig":
                name = doc.key.name
                if name in ("STATE", "EPHEMERAL") and d.get("encryption") is not None:
                    if _get(m, f"systemDiskEncryption.{name.lower()}") is not None:
                        message = (
                            f"system disk encryption for {name!r} is configured in "
                            f"both v1alpha1.Config and VolumeConfig"
                        )
            elif kind == "KubeSpanConfig" and self.minor >= 13:
                if _map(_get(m, "network.kubespan")):
                    message = "kubespan is already configured in v1alpha1 machine.network.kubespan"
            elif v14:
                message = self._kube_conflict(kind, m, c)
            if message:
                self.err(doc.key.kind, "", message)

    def _resolver_conflict(self, m: dict[str, Any], d: dict[str, Any]) -> str | None:
        network = _map(m.get("network"))
        if network.get("searchDomains") is not None:
            return ".machine.network.searchDomains is already set in v1alpha1 config"
        if network.get("nameservers") is not None:
            return ".machine.network.nameservers is already set in v1alpha1 config"
        if network.get("disableSearchDomain") is True:
            return ".machine.network.disableSearchDomain is already set in v1alpha1 config"
        if self.minor >= 14 and d.get("hostDNS") and _get(m, "features.hostDNS") is not None:
            return ".machine.features.hostDNS is already set in v1alpha1 config"
        return None

    def _kube_conflict(self, kind: str, m: dict[str, Any], c: dict[str, Any]) -> str | None:  # noqa: C901, PLR0911, PLR0912
        present = _present
        if kind == "UnattendedInstallConfig" and present(m, "install"):
            return (
                "UnattendedInstallConfig config is incompatible with v1alpha1 config "
                "(.machine.install)"
            )
        if kind == "KubeCoreDNSConfig" and present(c, "coreDNS"):
            return "CoreDNS config is already set in v1alpha1 config (.cluster.coreDNS)"
        if kind in ("KubeletConfig", "KubeCredentialProviderConfig") and present(m, "kubelet"):
            return "kubelet config is already set in v1alpha1 config (.machine.kubelet)"
        if kind == "KubeAuditPolicyConfig" and _map(_get(c, "apiServer.auditPolicy")):
            return "audit policy config is already set in v1alpha1 config"
        if kind == "KubeAggregatorCAConfig" and present(c, "aggregatorCA"):
            return (
                "kube-apiserver aggregator CA is already set in v1alpha1 config "
                "(.cluster.aggregatorCA)"
            )
        if kind == "KubeEtcdEncryptionConfig" and (
            c.get("secretboxEncryptionSecret") or c.get("aescbcEncryptionSecret")
        ):
            return "etcd encryption config is already set in v1alpha1 config"
        if kind in ("KubeFlannelCNIConfig", "KubeNetworkConfig") and present(c, "network"):
            return "cluster network config is already set in the v1alpha1 config (.cluster.network)"
        if kind == "KubeClusterConfig":
            if c.get("clusterName"):
                return "cluster name is already set in the v1alpha1 config (.cluster.clusterName)"
            if present(c, "controlPlane.endpoint"):
                return (
                    "cluster endpoint is already set in the v1alpha1 config "
                    "(.cluster.controlPlane.endpoint)"
                )
        if kind == "KubePrismConfig" and present(m, "features.kubePrism"):
            return (
                "KubePrism config in v1alpha1 config (.machine.features.kubePrism) can't "
                "be used with KubePrismConfig document"
            )
        if kind == "KubeControllerManagerConfig" and (
            present(c, "controllerManager") or present(m, "controlPlane.controllerManager")
        ):
            return "kube-controller-manager config is already set in v1alpha1 config"
        if kind == "KubeSchedulerConfig" and (
            present(c, "scheduler") or present(m, "controlPlane.scheduler")
        ):
            return "kube-scheduler config is already set in v1alpha1 config"
        if kind == "KubeAPIServerCAConfig" and present(c, "ca"):
            return "kube-apiserver CA is already set in v1alpha1 config (.cluster.ca)"
        if kind in ("KubeAdmissionControlConfig", "KubeAuthorizerConfig") and _list(
            _get(c, "apiServer.admissionControl")
        ):
            return "admission control plugin config is already set in v1alpha1 config"
        if kind == "KubeServiceAccountConfig" and present(c, "serviceAccount"):
            return "service account is already set in v1alpha1 config (.cluster.serviceAccount)"
        if kind == "KubeAPIServerConfig":
            if present(c, "apiServer"):
                return (
                    "kube-apiserver config is already set in v1alpha1 config (.cluster.apiServer)"
                )
            if _get(c, "controlPlane.localAPIServerPort"):
                return (
                    "kube-apiserver API port is already set in v1alpha1 config "
                    "(.cluster.controlPlane.localAPIServerPort)"
                )
        if kind == "KubeTalosAPIAccessConfig" and present(m, "features.kubernetesTalosAPIAccess"):
            return ".machine.features.kubernetesTalosAPIAccess is already set in v1alpha1 config"
        if kind == "KubeNodeConfig":
            for path in ("allowSchedulingOnControlPlanes", "allowSchedulingOnMasters"):
                if present(c, path):
                    return f".cluster.{path} is already set in v1alpha1 config"
            for path in (
                "kubelet.skipNodeRegistration",
                "kubelet.registerWithFQDN",
                "kubelet.nodeIP",
                "nodeLabels",
                "nodeAnnotations",
                "nodeTaints",
            ):
                if present(m, path):
                    return f".machine.{path} is already set in v1alpha1 config"
        if kind == "KubeProxyConfig" and present(c, "proxy"):
            return (
                "cluster proxy config in v1alpha1 config (.cluster.proxy) can't be used "
                "with KubeProxyConfig document"
            )
        if kind == "CRIBaseRuntimeSpecConfig" and m.get("baseRuntimeSpecOverrides") is not None:
            return "base runtime spec overrides are already set in v1alpha1 config"
        if kind == "ImageCacheConfig" and present(m, "features.imageCache"):
            return "image cache config is already set in v1alpha1 config"
        if kind == "DiscoveryIdentityConfig" and (c.get("id") or c.get("secret")):
            return (
                "cluster identity is already configured in .cluster.id/.cluster.secret "
                "of the v1alpha1 config"
            )
        if kind == "DiscoveryServiceConfig" and present(c, "discovery"):
            return (
                "discovery service is already configured in .cluster.discovery of the "
                "v1alpha1 config"
            )
        return None

    # -- whole-config rules (1.14)

    def container_rules(self) -> None:  # noqa: C901, PLR0912
        if self.minor < 14:
            return
        w = "config"
        m = _map((self.legacy or {}).get("machine"))
        c = _map((self.legacy or {}).get("cluster"))
        cp = self.controlplane
        if self.mode == "container":
            host_dns = self._host_dns()
            if host_dns is None:
                self.err(w, "", "hostDNS config is required in container mode")
            else:
                if host_dns.get("enabled") is not True:
                    self.err(w, "", "hostDNS must be enabled in container mode")
                if host_dns.get("forwardKubeDNSToHost") is not True:
                    self.err(w, "", "forwardKubeDNSToHost must be enabled in container mode")
        resolver = self.one("ResolverConfig")
        if resolver is not None:
            protocols = [_map(ns).get("protocol") for ns in _list(resolver.get("nameservers"))]
            if any(p not in (None, "", "Do53", "default") for p in protocols):
                host_dns = self._host_dns()
                if host_dns is None or host_dns.get("enabled") is not True:
                    self.err(w, "", "hostDNS must be enabled when using non-default DNS protocols")
        legacy_discovery = _map(c.get("discovery"))
        legacy_service = _map(_get(legacy_discovery, "registries.service"))
        discovery_on = bool(self.kinds("DiscoveryServiceConfig")) or (
            legacy_discovery.get("enabled") is True and legacy_service.get("disabled") is not True
        )
        if discovery_on:
            identity = self.one("DiscoveryIdentityConfig") or {}
            if c.get("id") or c.get("secret"):
                identity = {"clusterID": c.get("id"), "clusterSecret": c.get("secret")}
            if not identity.get("clusterID"):
                self.err(
                    w,
                    "",
                    "cluster ID (.cluster.id or DiscoveryIdentityConfig) should be set when "
                    "cluster discovery is enabled",
                )
            if not identity.get("clusterSecret"):
                self.err(
                    w,
                    "",
                    "cluster secret (.cluster.secret or DiscoveryIdentityConfig) should be "
                    "set when cluster discovery is enabled",
                )
        kubespan = self.one("KubeSpanConfig")
        if kubespan is None:
            kubespan = _map(_get(m, "network.kubespan"))
        if kubespan.get("enabled") is True and not discovery_on:
            self.err(w, "", "KubeSpan requires cluster discovery to be enabled")
        has_k8s_ca = self.one("KubeAPIServerCAConfig") is not None or (
            c.get("ca") is not None or c.get("acceptedCAs") is not None
        )
        if cp:
            if has_k8s_ca:
                legacy_enc = c.get("secretboxEncryptionSecret") or c.get("aescbcEncryptionSecret")
                if not legacy_enc and self.one("KubeEtcdEncryptionConfig") is None:
                    self.err(
                        w,
                        "",
                        "etcd encryption config is required for control plane machines "
                        "running kube-apiserver",
                    )
            node = self.one("KubeNodeConfig")
            if node is not None and "node-role.kubernetes.io/control-plane" not in _map(
                node.get("labels")
            ):
                if node.get("skipNodeRegistration") is not True:
                    self.warn(
                        w,
                        "",
                        "KubeNodeConfig should set the control-plane node label on control planes",
                    )
        has_cluster = self.one("KubeClusterConfig") is not None or (
            _get(c, "controlPlane.endpoint") is not None
        )
        if has_k8s_ca and not has_cluster:
            self.err(
                w,
                "",
                "cluster name and endpoint are required when Kubernetes is configured: either "
                ".cluster.clusterName/.cluster.controlPlane.endpoint or the "
                "KubeClusterConfig document",
            )
        only = sorted({d.key.kind for d in self.others if d.key.kind in CONTROLPLANE_ONLY})
        if only and not cp:
            self.err(
                w,
                "",
                f"the following document kinds are only allowed on control plane machines: {only}",
            )

    def _host_dns(self) -> dict[str, Any] | None:
        resolver = self.one("ResolverConfig")
        if resolver is not None and _map(resolver.get("hostDNS")).get("enabled") is True:
            return _map(resolver["hostDNS"])
        legacy = _get((self.legacy or {}).get("machine"), "features.hostDNS")
        return legacy if isinstance(legacy, dict) else None
