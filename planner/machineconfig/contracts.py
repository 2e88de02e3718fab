"""Talos version contracts and the generated-config features each one switches on.

A *version contract* is the ``major.minor`` of the Talos release a config is generated for
(``v1.8.3`` -> 1.8). Talos rejects fields and documents it does not know, so a config must be
generated for the node's own contract. Everything that differs between contracts lives in the
``FEATURES`` table below: each feature is on from its ``since`` contract up to (not including)
its ``until`` contract. :mod:`planner.machineconfig.generate` reads only ``features(contract)``
and never compares versions itself, so supporting a new Talos release means editing this table.

The table was derived by diffing Talos's own stability fixtures across contracts 1.3 to 1.15.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from omniport.planner.errors import OmniportError


class ContractError(OmniportError):
    """A Talos version that cannot be turned into a supported version contract."""


@total_ordering
@dataclass(frozen=True)
class Contract:
    """A Talos version contract: the major and minor of a release."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Contract):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)


OLDEST = Contract(1, 3)
NEWEST = Contract(1, 15)
SUPPORTED: tuple[Contract, ...] = tuple(
    Contract(1, minor) for minor in range(OLDEST.minor, NEWEST.minor + 1)
)

_VERSION = re.compile(r"^v?(\d{1,4})\.(\d{1,4})(?:$|[.\-+])")


def parse_contract(version: str | Contract) -> Contract:
    """Turn ``v1.8``, ``1.8.3`` or ``v1.14.0-rc.1`` into a supported :class:`Contract`."""
    if isinstance(version, Contract):
        contract = version
    else:
        if not isinstance(version, str):
            raise ContractError(
                f"Talos version {version!r} is not a string", "pass a version like v1.8.3"
            )
        match = _VERSION.match(version.strip())
        if match is None:
            raise ContractError(
                f"Talos version {version!r} is not a version like v1.8.3",
                "pass the node's Talos version, for example --talos-version v1.8.3",
            )
        contract = Contract(int(match.group(1)), int(match.group(2)))
    if not OLDEST <= contract <= NEWEST:
        raise ContractError(
            f"Talos version contract {contract} is not supported",
            f"supported contracts are {OLDEST} to {NEWEST}",
        )
    return contract


@dataclass(frozen=True)
class Features:
    """What a contract's generated default config contains, one flag per difference."""

    # machine.features: rbac and apidCheckExtKeyUsage fields are written (hidden from 1.12).
    legacy_rbac_fields: bool
    # machine.features.apidCheckExtKeyUsage is on.
    apid_check_ext_key_usage: bool
    # machine.features.stableHostname (before HostnameConfig took over in 1.12).
    legacy_stable_hostname: bool
    # kubelet defaultRuntimeSeccompProfileEnabled.
    kubelet_seccomp_default: bool
    # Discovery's Kubernetes registry is disabled by default.
    discovery_kubernetes_registry_disabled: bool
    # PodSecurity admission plugin configuration.
    pod_security_admission: bool
    # apiServer.auditPolicy is written.
    audit_policy: bool
    # kubelet disableManifestsDirectory.
    kubelet_manifests_directory_disabled: bool
    # secretbox etcd encryption (aescbc before).
    secretbox_encryption: bool
    # machine.features.diskQuotaSupport.
    disk_quota_support: bool
    # KubePrism is on by default (port 7445).
    kube_prism_default: bool
    # Host DNS is on by default.
    host_dns: bool
    # Host DNS forwards kube-dns to the host.
    host_dns_forward_kube_dns: bool
    # A fresh bundle's service-account key is RSA (ECDSA before).
    rsa_service_account_key: bool
    # Workers carry cluster.clusterName.
    cluster_name_for_workers: bool
    # Control planes get node.kubernetes.io/exclude-from-external-load-balancers.
    exclude_from_external_lb_label: bool
    # apiServer.disablePodSecurityPolicy is written.
    legacy_disable_psp_field: bool
    # The endpoint host is added to apiServer.certSANs.
    api_server_sans_from_endpoint: bool
    # install.grubUseUKICmdline.
    grub_use_uki_cmdline: bool
    # HostnameConfig and registry documents replace machine fields.
    multidoc_network: bool
    # KubeSpanConfig replaces machine.network.kubespan; no empty machine.network.
    multidoc_kubespan: bool
    # Kubernetes settings move to Kube*Config documents, and with them discovery, host DNS,
    # install, sysctls, filesystem trim and workload isolation (the 1.14 split).
    multidoc_kubernetes: bool
    # A fresh bundle's cluster ID is standard base64 (URL-safe base64 before).
    std_base64_cluster_id: bool


@dataclass(frozen=True)
class _Span:
    since: Contract | None = None
    until: Contract | None = None

    def covers(self, contract: Contract) -> bool:
        if self.since is not None and contract < self.since:
            return False
        return self.until is None or contract < self.until


def _v(minor: int) -> Contract:
    return Contract(1, minor)


# The data: feature -> contracts it applies to ([since, until)).
FEATURES: dict[str, _Span] = {
    "legacy_rbac_fields": _Span(until=_v(12)),
    "apid_check_ext_key_usage": _Span(since=_v(3)),
    "legacy_stable_hostname": _Span(since=_v(2), until=_v(12)),
    "kubelet_seccomp_default": _Span(since=_v(2)),
    "discovery_kubernetes_registry_disabled": _Span(since=_v(2)),
    "pod_security_admission": _Span(since=_v(1)),
    "audit_policy": _Span(since=_v(3)),
    "kubelet_manifests_directory_disabled": _Span(since=_v(3)),
    "secretbox_encryption": _Span(since=_v(3)),
    "disk_quota_support": _Span(since=_v(5)),
    "kube_prism_default": _Span(since=_v(6)),
    "host_dns": _Span(since=_v(7)),
    "host_dns_forward_kube_dns": _Span(since=_v(8)),
    "rsa_service_account_key": _Span(since=_v(7)),
    "cluster_name_for_workers": _Span(since=_v(8)),
    "exclude_from_external_lb_label": _Span(since=_v(8)),
    "legacy_disable_psp_field": _Span(until=_v(12)),
    "api_server_sans_from_endpoint": _Span(until=_v(12)),
    "grub_use_uki_cmdline": _Span(since=_v(12)),
    "multidoc_network": _Span(since=_v(12)),
    "multidoc_kubespan": _Span(since=_v(13)),
    "multidoc_kubernetes": _Span(since=_v(14)),
    "std_base64_cluster_id": _Span(since=_v(14)),
}

_CACHE: dict[Contract, Features] = {}


def features(contract: Contract | str) -> Features:
    """The feature flags of a (supported) contract, read from ``FEATURES``."""
    contract = parse_contract(contract)
    cached = _CACHE.get(contract)
    if cached is None:
        cached = Features(**{name: span.covers(contract) for name, span in FEATURES.items()})
        _CACHE[contract] = cached
    return cached
