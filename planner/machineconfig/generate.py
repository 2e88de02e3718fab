"""Default Talos machine configs, as ``talosctl gen config`` makes them, for contracts 1.3-1.15.

:func:`generate` returns the documents of a controlplane, init or worker config as plain
dicts, in Talos's document order and key order, for one version contract. Which fields and
documents appear is decided by :func:`planner.machineconfig.contracts.features`; this module
only lays them out. :func:`import_baseline` is the config Omni's importer diffs live configs
against (no endpoint, no install image, KubePrism pinned from 1.5, no unattended install).

Pure: no I/O, no clock, no randomness; the same input gives the same documents.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from omniport.planner.errors import OmniportError
from omniport.planner.machineconfig import _defaults as D
from omniport.planner.machineconfig.contracts import Contract, Features, features, parse_contract
from omniport.planner.machineconfig.secrets import CertAndKey, SecretsBundle

MachineType = Literal["controlplane", "worker", "init"]
MACHINE_TYPES: tuple[str, ...] = ("controlplane", "worker", "init")

Document = dict[str, Any]

_K8S_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")


class GenerateError(OmniportError):
    """Input that cannot produce a machine config."""


def _fail(what: str, fix: str) -> GenerateError:
    return GenerateError(what, fix)


@dataclass(frozen=True)
class GenerateOptions:
    """The ``talosctl gen config`` options beyond name, endpoint and versions.

    Defaults are Talos's. ``kube_prism_port`` ``None`` means "the contract's default"
    (on at 7445 from 1.6); ``0`` turns KubePrism off. ``host_dns_forward_kube_dns`` forces
    forwarding on where the contract would not. ``kubespan`` ``None`` leaves KubeSpan out.
    """

    additional_sans: Sequence[str] = ()
    dns_domain: str = D.DNS_DOMAIN
    allow_scheduling_on_control_planes: bool = False
    install_disk: str = ""
    install_image: str = ""
    install_extra_kernel_args: Sequence[str] = ()
    local_api_server_port: int = 0
    kube_prism_port: int | None = None
    skip_unattended_install: bool = False
    sysctls: Mapping[str, str] = field(default_factory=dict)
    cni_url: str = ""
    registry_mirrors: Mapping[str, Sequence[str]] = field(default_factory=dict)
    registry_ca_certs: Mapping[str, str] = field(default_factory=dict)
    registry_insecure: Sequence[str] = ()
    discovery: bool = True
    host_dns_forward_kube_dns: bool = False
    kubespan: bool | None = None
    debug: bool = False

    def __post_init__(self) -> None:
        for name in ("additional_sans", "install_extra_kernel_args", "registry_insecure"):
            value = getattr(self, name)
            if isinstance(value, str) or not _all_str(value):
                raise _fail(f"option {name} must be a list of strings", "pass a list of strings")
            object.__setattr__(self, name, tuple(value))
        for name in ("dns_domain", "install_disk", "install_image", "cni_url"):
            if not isinstance(getattr(self, name), str):
                raise _fail(f"option {name} must be a string", "pass a string")
        if not self.dns_domain:
            raise _fail("option dns_domain is empty", "pass a DNS domain like cluster.local")
        for name in ("allow_scheduling_on_control_planes", "skip_unattended_install", "debug"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(f"option {name} must be true or false", "pass a boolean")
        for name in ("discovery", "host_dns_forward_kube_dns"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(f"option {name} must be true or false", "pass a boolean")
        if self.kubespan is not None and not isinstance(self.kubespan, bool):
            raise _fail("option kubespan must be true, false or unset", "pass a boolean or None")
        _port("local_api_server_port", self.local_api_server_port)
        if self.kube_prism_port is not None:
            _port("kube_prism_port", self.kube_prism_port)
        if self.cni_url:
            _url("option cni_url", self.cni_url)
        for name in ("sysctls", "registry_ca_certs"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not _all_str([*value, *value.values()]):
                raise _fail(f"option {name} must map strings to strings", "pass a string mapping")
            object.__setattr__(self, name, dict(value))
        mirrors = self.registry_mirrors
        if not isinstance(mirrors, Mapping) or not all(
            isinstance(host, str) and not isinstance(eps, str) and _all_str(eps)
            for host, eps in mirrors.items()
        ):
            raise _fail(
                "option registry_mirrors must map a registry host to a list of endpoint URLs",
                "pass for example {'docker.io': ['https://mirror.example.com']}",
            )
        for host, endpoints in mirrors.items():
            for endpoint in endpoints:
                _url(f"registry mirror endpoint for {host}", endpoint)
        object.__setattr__(self, "registry_mirrors", {h: tuple(e) for h, e in mirrors.items()})


def _all_str(values: object) -> bool:
    try:
        return all(isinstance(v, str) for v in values)  # type: ignore[attr-defined]
    except TypeError:
        return False


def _port(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise _fail(f"option {name} is {value!r}, not a port number", "pass 0 to 65535")


def _url(what: str, value: str) -> str:
    """Check an http(s) URL and return its host as Go's ``URL.Hostname`` does (case kept)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise _fail(f"{what} {value!r} is not a URL", "pass a URL like https://host:6443")
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.partition(":")[0]


@dataclass(frozen=True)
class _Input:
    """Everything the builders read, checked once."""

    machine_type: str
    feats: Features
    cluster_name: str
    endpoint: str
    endpoint_host: str
    kubernetes_version: str
    secrets: SecretsBundle
    options: GenerateOptions

    @property
    def controlplane(self) -> bool:
        return self.machine_type != "worker"

    @property
    def api_server_sans(self) -> list[str]:
        sans = [self.endpoint_host] if self.feats.api_server_sans_from_endpoint else []
        return sans + list(self.options.additional_sans)

    def image(self, repository: str) -> str:
        return f"{repository}:v{self.kubernetes_version}"

    def kube_prism_port(self) -> int:
        """The KubePrism port for the v1alpha1 feature (0: leave it out)."""
        if self.options.kube_prism_port is not None:
            return self.options.kube_prism_port
        return D.KUBE_PRISM_PORT if self.feats.kube_prism_default else 0

    def forward_kube_dns(self) -> bool:
        return self.options.host_dns_forward_kube_dns or self.feats.host_dns_forward_kube_dns


def generate(
    machine_type: MachineType,
    *,
    contract: Contract | str,
    cluster_name: str,
    endpoint: str,
    kubernetes_version: str,
    secrets: SecretsBundle,
    options: GenerateOptions | None = None,
) -> list[Document]:
    """The default config documents for ``machine_type`` under ``contract``.

    ``endpoint`` is the Kubernetes API URL (``https://host:6443``) or ``""``, as Omni's
    importer passes it. ``secrets`` needs the fields the config carries (CA keys only for
    control planes); :meth:`SecretsBundle.validate` is the full cryptographic check.
    """
    inp = _check(
        machine_type, contract, cluster_name, endpoint, kubernetes_version, secrets, options
    )
    docs = [_v1alpha1(inp)]
    docs += _multidoc_machine(inp)
    docs += _registry_documents(inp)
    docs += _network_documents(inp)
    docs += _kubernetes_documents(inp)
    if inp.controlplane:
        docs += _kubernetes_controlplane_documents(inp)
    return docs


def import_baseline(
    machine_type: MachineType,
    *,
    talos_version: str,
    kubernetes_version: str,
    cluster_name: str,
    secrets: SecretsBundle,
) -> list[Document]:
    """The baseline Omni's ``cluster import`` diffs each live config against.

    Generated for the cluster's initial Talos and Kubernetes versions with an empty endpoint
    and install image, KubePrism pinned at 7445 for contracts after 1.4, and no
    UnattendedInstallConfig.
    """
    contract = parse_contract(talos_version)
    options = GenerateOptions(
        install_image="",
        kube_prism_port=D.KUBE_PRISM_PORT if contract > Contract(1, 4) else None,
        skip_unattended_install=True,
    )
    return generate(
        machine_type,
        contract=contract,
        cluster_name=cluster_name,
        endpoint="",
        kubernetes_version=kubernetes_version,
        secrets=secrets,
        options=options,
    )


def _check(
    machine_type: object,
    contract: Contract | str,
    cluster_name: object,
    endpoint: object,
    kubernetes_version: object,
    secrets: object,
    options: GenerateOptions | None,
) -> _Input:
    if machine_type not in MACHINE_TYPES:
        raise _fail(
            f"machine type {machine_type!r} is not one of {', '.join(MACHINE_TYPES)}",
            "pass --type controlplane or --type worker",
        )
    feats = features(contract)
    if not isinstance(cluster_name, str) or not cluster_name.strip():
        raise _fail("the cluster name is empty", "pass a cluster name")
    if not isinstance(endpoint, str):
        raise _fail("the endpoint must be a string", "pass a URL like https://host:6443")
    host = _url("endpoint", endpoint) if endpoint else ""
    if not isinstance(kubernetes_version, str):
        raise _fail("the Kubernetes version must be a string", "pass a version like 1.28.0")
    version = kubernetes_version.strip().removeprefix("v")
    if not _K8S_VERSION.match(version):
        raise _fail(
            f"Kubernetes version {kubernetes_version!r} is not a version like 1.28.0",
            "pass the Kubernetes version, for example --kubernetes-version 1.28.0",
        )
    if not isinstance(secrets, SecretsBundle):
        raise _fail("secrets must be a SecretsBundle", "load one with SecretsBundle.from_yaml")
    if options is None:
        options = GenerateOptions()
    elif not isinstance(options, GenerateOptions):
        raise _fail("options must be GenerateOptions", "build them with GenerateOptions(...)")
    missing = _missing_secrets(secrets, machine_type != "worker")
    if missing:
        raise _fail(
            f"the secrets bundle lacks {', '.join(missing)}, needed for a {machine_type} config",
            "pass a complete bundle (omniport config secrets, or talosctl gen secrets)",
        )
    return _Input(
        machine_type=str(machine_type),
        feats=feats,
        cluster_name=cluster_name,
        endpoint=endpoint,
        endpoint_host=host,
        kubernetes_version=version,
        secrets=secrets,
        options=options,
    )


def _missing_secrets(bundle: SecretsBundle, controlplane: bool) -> list[str]:
    cluster, kube, trustd, certs = bundle.cluster, bundle.secrets, bundle.trustd_info, bundle.certs
    missing = []
    if cluster is None or not cluster.id:
        missing.append("cluster.id")
    if cluster is None or not cluster.secret:
        missing.append("cluster.secret")
    if kube is None or not kube.bootstrap_token:
        missing.append("secrets.bootstraptoken")
    if trustd is None or not trustd.token:
        missing.append("trustdinfo.token")
    if controlplane and (
        kube is None or not (kube.secretbox_encryption_secret or kube.aescbc_encryption_secret)
    ):
        missing.append("secrets.secretboxencryptionsecret")
    wanted = [("os", "os"), ("k8s", "k8s")]
    if controlplane:
        wanted += [("etcd", "etcd"), ("k8s_aggregator", "k8saggregator")]
    for attr, name in wanted:
        pair = getattr(certs, attr) if certs is not None else None
        if pair is None or not pair.crt:
            missing.append(f"certs.{name}.crt")
        if controlplane and (pair is None or not pair.key):
            missing.append(f"certs.{name}.key")
    account = certs.k8s_service_account if certs is not None else None
    if controlplane and (account is None or not account.key):
        missing.append("certs.k8sserviceaccount.key")
    return missing


# ---- the v1alpha1 document ----


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _pair(pair: CertAndKey | None, with_key: bool) -> dict[str, str]:
    assert pair is not None  # checked by _missing_secrets
    return {"crt": _b64(pair.crt), "key": _b64(pair.key) if with_key else ""}


def _v1alpha1(inp: _Input) -> Document:
    return {
        "version": "v1alpha1",
        "debug": inp.options.debug,
        "persist": True,
        "machine": _machine(inp),
        "cluster": _cluster(inp),
    }


def _machine(inp: _Input) -> Document:
    f, opts, certs = inp.feats, inp.options, inp.secrets.certs
    assert certs is not None and inp.secrets.trustd_info is not None
    machine: Document = {
        "type": inp.machine_type,
        "token": inp.secrets.trustd_info.token,
        "ca": _pair(certs.os, inp.controlplane),
        "certSANs": list(opts.additional_sans),
    }
    if not f.multidoc_kubernetes:
        kubelet: Document = {"image": inp.image(D.KUBELET_IMAGE)}
        if f.kubelet_seccomp_default:
            kubelet["defaultRuntimeSeccompProfileEnabled"] = True
        if f.kubelet_manifests_directory_disabled:
            kubelet["disableManifestsDirectory"] = True
        machine["kubelet"] = kubelet
    if not f.multidoc_kubespan:
        network: Document = {}
        if opts.kubespan is not None:
            network["kubespan"] = {"enabled": opts.kubespan}
        machine["network"] = network
    if not f.multidoc_kubernetes:
        install: Document = {}
        if opts.install_disk:
            install["disk"] = opts.install_disk
        if opts.install_extra_kernel_args:
            install["extraKernelArgs"] = list(opts.install_extra_kernel_args)
        if opts.install_image:
            install["image"] = opts.install_image
        install["wipe"] = False
        if f.grub_use_uki_cmdline:
            install["grubUseUKICmdline"] = True
        machine["install"] = install
        if opts.sysctls:
            machine["sysctls"] = dict(sorted(opts.sysctls.items()))
    if not f.multidoc_network:
        registries = _legacy_registries(opts)
        if registries:
            machine["registries"] = registries
    machine["features"] = _machine_features(inp)
    if inp.controlplane and f.exclude_from_external_lb_label and not f.multidoc_kubernetes:
        machine["nodeLabels"] = {D.LABEL_EXCLUDE_FROM_LB: ""}
    return machine


def _machine_features(inp: _Input) -> Document:
    f = inp.feats
    out: Document = {}
    if f.legacy_rbac_fields:
        out["rbac"] = True
    if f.legacy_stable_hostname:
        out["stableHostname"] = True
    if f.legacy_rbac_fields and f.apid_check_ext_key_usage:
        out["apidCheckExtKeyUsage"] = True
    if f.disk_quota_support:
        out["diskQuotaSupport"] = True
    if not f.multidoc_kubernetes and (port := inp.kube_prism_port()) > 0:
        out["kubePrism"] = {"enabled": True, "port": port}
    if f.host_dns and not f.multidoc_kubernetes:
        out["hostDNS"] = _host_dns(inp)
    return out


def _host_dns(inp: _Input) -> Document:
    out: Document = {"enabled": True}
    if inp.forward_kube_dns():
        out["forwardKubeDNSToHost"] = True
    return out


def _legacy_registries(opts: GenerateOptions) -> Document:
    out: Document = {}
    if opts.registry_mirrors:
        out["mirrors"] = {
            host: {"endpoints": list(endpoints)}
            for host, endpoints in sorted(opts.registry_mirrors.items())
        }
    tls: dict[str, Document] = {}
    for host, ca in opts.registry_ca_certs.items():
        tls.setdefault(host, {})["ca"] = _b64(ca.encode())
    for host in opts.registry_insecure:
        tls.setdefault(host, {})["insecureSkipVerify"] = True
    if tls:
        out["config"] = {host: {"tls": tls[host]} for host in sorted(tls)}
    return out


def _cluster(inp: _Input) -> Document:
    f, opts, bundle = inp.feats, inp.options, inp.secrets
    certs, kube, identity = bundle.certs, bundle.secrets, bundle.cluster
    assert certs is not None and kube is not None and identity is not None
    legacy = not f.multidoc_kubernetes
    cp = inp.controlplane
    cluster: Document = {}
    if legacy:
        cluster["id"] = identity.id
        cluster["secret"] = identity.secret
        control_plane: Document = {"endpoint": inp.endpoint}
        if cp and opts.local_api_server_port:
            control_plane["localAPIServerPort"] = opts.local_api_server_port
        cluster["controlPlane"] = control_plane
        if cp or f.cluster_name_for_workers:
            cluster["clusterName"] = inp.cluster_name
        network: Document = {}
        if opts.cni_url:
            network["cni"] = {"name": D.CUSTOM_CNI_NAME, "urls": [opts.cni_url]}
        network["dnsDomain"] = opts.dns_domain
        network["podSubnets"] = [D.POD_SUBNET]
        network["serviceSubnets"] = [D.SERVICE_SUBNET]
        cluster["network"] = network
    cluster["token"] = kube.bootstrap_token
    if legacy and cp:
        if f.secretbox_encryption:
            if kube.secretbox_encryption_secret:
                cluster["secretboxEncryptionSecret"] = kube.secretbox_encryption_secret
        elif kube.aescbc_encryption_secret:
            cluster["aescbcEncryptionSecret"] = kube.aescbc_encryption_secret
    if legacy:
        cluster["ca"] = _pair(certs.k8s, cp)
    if legacy and cp:
        assert certs.k8s_service_account is not None
        cluster["aggregatorCA"] = _pair(certs.k8s_aggregator, True)
        cluster["serviceAccount"] = {"key": _b64(certs.k8s_service_account.key)}
        cluster["apiServer"] = _legacy_api_server(inp)
        cluster["controllerManager"] = {"image": inp.image(D.CONTROLLER_MANAGER_IMAGE)}
        cluster["proxy"] = {"image": inp.image(D.PROXY_IMAGE)}
        cluster["scheduler"] = {"image": inp.image(D.SCHEDULER_IMAGE)}
    if legacy:
        kubernetes_registry: Document = {}
        if f.discovery_kubernetes_registry_disabled:
            kubernetes_registry["disabled"] = True
        cluster["discovery"] = {
            "enabled": opts.discovery,
            "registries": {"kubernetes": kubernetes_registry, "service": {}},
        }
    if cp:
        cluster["etcd"] = {"ca": _pair(certs.etcd, True)}
    if legacy and cp and opts.allow_scheduling_on_control_planes:
        cluster["allowSchedulingOnControlPlanes"] = True
    return cluster


def _legacy_api_server(inp: _Input) -> Document:
    f = inp.feats
    api: Document = {"image": inp.image(D.API_SERVER_IMAGE)}
    if sans := inp.api_server_sans:
        api["certSANs"] = sans
    if f.legacy_disable_psp_field:
        api["disablePodSecurityPolicy"] = True
    if f.pod_security_admission:
        api["admissionControl"] = [
            {"name": "PodSecurity", "configuration": D.pod_security_configuration()}
        ]
    if f.audit_policy:
        api["auditPolicy"] = D.audit_policy()
    return api


# ---- multi-document configs ----


def _doc(kind: str, name: str | None = None, **body: Any) -> Document:
    doc: Document = {"apiVersion": "v1alpha1", "kind": kind}
    if name is not None:
        doc["name"] = name
    doc.update(body)
    return doc


def _multidoc_machine(inp: _Input) -> list[Document]:
    """Discovery, identity, install, resolver, sysctl, volume and security documents (1.14+)."""
    f, opts, identity = inp.feats, inp.options, inp.secrets.cluster
    if not f.multidoc_kubernetes:
        return []
    assert identity is not None
    docs = []
    if opts.discovery:
        docs.append(
            _doc("DiscoveryServiceConfig", "default", endpoint=D.DISCOVERY_SERVICE_ENDPOINT)
        )
    docs.append(
        _doc("DiscoveryIdentityConfig", clusterID=identity.id, clusterSecret=identity.secret)
    )
    if opts.install_disk and not opts.skip_unattended_install:
        installer: Document = {"image": opts.install_image} if opts.install_image else {}
        docs.append(
            _doc(
                "UnattendedInstallConfig",
                installer=installer,
                provisioning={
                    "diskSelector": {"match": f"disk.dev_path == {_go_quote(opts.install_disk)}"},
                    "wipe": False,
                },
            )
        )
    if f.host_dns:
        docs.append(_doc("ResolverConfig", hostDNS=_host_dns(inp)))
    if opts.sysctls:
        docs.append(_doc("SysctlConfig", params=dict(sorted(opts.sysctls.items()))))
    docs.append(_doc("VolumeConfig", D.EPHEMERAL_VOLUME, mount={"secure": True}))
    docs.append(_doc("FilesystemTrimConfig", interval=D.FILESYSTEM_TRIM_INTERVAL))
    docs.append(_doc("SecurityProfileConfig", workloadIsolation=True))
    return docs


def _go_quote(text: str) -> str:
    """A double-quoted string literal as Go's ``%q`` writes printable text."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _registry_documents(inp: _Input) -> list[Document]:
    if not inp.feats.multidoc_network:
        return []
    opts = inp.options
    docs = [
        _doc("RegistryMirrorConfig", host, endpoints=[{"url": url} for url in endpoints])
        for host, endpoints in opts.registry_mirrors.items()
    ]
    tls: dict[str, Document] = {}
    for host, ca in opts.registry_ca_certs.items():
        tls.setdefault(host, _doc("RegistryTLSConfig", host))["ca"] = ca
    for host in opts.registry_insecure:
        tls.setdefault(host, _doc("RegistryTLSConfig", host))["insecureSkipVerify"] = True
    docs += tls.values()
    return sorted(docs, key=lambda d: (d["kind"], d["name"]))


def _network_documents(inp: _Input) -> list[Document]:
    docs = []
    if inp.feats.multidoc_network:
        docs.append(_doc("HostnameConfig", auto="stable"))
    if inp.options.kubespan is not None and inp.feats.multidoc_kubespan:
        docs.append(_doc("KubeSpanConfig", enabled=inp.options.kubespan))
    return docs


def _kubernetes_documents(inp: _Input) -> list[Document]:
    """The Kube* documents every node gets (1.14+)."""
    f, opts, certs = inp.feats, inp.options, inp.secrets.certs
    if not f.multidoc_kubernetes:
        return []
    assert certs is not None and certs.k8s is not None
    node: Document = {"nodeIP": {}}
    if inp.controlplane:
        labels = {D.LABEL_CONTROL_PLANE: ""}
        if f.exclude_from_external_lb_label:
            labels[D.LABEL_EXCLUDE_FROM_LB] = ""
        node["labels"] = dict(sorted(labels.items()))
        if not opts.allow_scheduling_on_control_planes:
            node["taints"] = {D.LABEL_CONTROL_PLANE: D.TAINT_NO_SCHEDULE}
    if inp.controlplane:
        ca: Document = {
            "issuingCA": {"cert": certs.k8s.crt.decode(), "key": certs.k8s.key.decode()}
        }
    else:
        ca = {"acceptedCAs": [certs.k8s.crt.decode()]}
    docs = [
        _doc("KubeClusterConfig", clusterName=inp.cluster_name, endpoint=inp.endpoint),
        _doc("KubeNodeConfig", **node),
        _doc(
            "KubeletConfig",
            image=inp.image(D.KUBELET_IMAGE),
            config={},
            defaultRuntimeSeccompProfileEnabled=True,
        ),
        _doc(
            "KubeNetworkConfig",
            dnsDomain=opts.dns_domain,
            podSubnets=[D.POD_SUBNET],
            serviceSubnets=[D.SERVICE_SUBNET],
        ),
        _doc("KubeAPIServerCAConfig", **ca),
    ]
    port = D.KUBE_PRISM_PORT if opts.kube_prism_port is None else opts.kube_prism_port
    if port > 0:
        docs.append(_doc("KubePrismConfig", port=port))
    return docs


def _kubernetes_controlplane_documents(inp: _Input) -> list[Document]:
    """The Kube* documents only control planes get (1.14+)."""
    opts, bundle = inp.options, inp.secrets
    certs, kube = bundle.certs, bundle.secrets
    if not inp.feats.multidoc_kubernetes:
        return []
    assert certs is not None and kube is not None
    assert certs.k8s_aggregator is not None and certs.k8s_service_account is not None
    providers = []
    for secret, key_name in (
        (kube.secretbox_encryption_secret, D.SECRETBOX_KEY_NAME),
        (kube.aescbc_encryption_secret, D.AESCBC_KEY_NAME),
    ):
        if secret:
            providers.append({"secretbox": {"keys": [{"name": key_name, "secret": secret}]}})
    api_server: Document = {"image": inp.image(D.API_SERVER_IMAGE)}
    if opts.local_api_server_port:
        api_server["apiPort"] = opts.local_api_server_port
    if sans := inp.api_server_sans:
        api_server["certExtraSANs"] = sans
    docs = [
        _doc(
            "KubeAggregatorCAConfig",
            issuingCA={
                "cert": certs.k8s_aggregator.crt.decode(),
                "key": certs.k8s_aggregator.key.decode(),
            },
        ),
        _doc(
            "KubeAdmissionControlConfig",
            "PodSecurity",
            configuration=D.pod_security_configuration(),
        ),
        _doc("KubeAuditPolicyConfig", configuration=D.audit_policy()),
        _doc("KubeAuthenticationConfig", configuration=D.authentication_configuration()),
        *(_doc("KubeAuthorizerConfig", name, type=kind) for name, kind in D.AUTHORIZERS),
        _doc(
            "KubeEtcdEncryptionConfig",
            config={"resources": [{"providers": providers, "resources": ["secrets"]}]},
        ),
        _doc(
            "KubeServiceAccountConfig",
            issuer={
                "privateKey": certs.k8s_service_account.key.decode(),
                "issuerURL": inp.endpoint,
            },
        ),
        _doc("KubeAPIServerConfig", **api_server),
        _doc("KubeControllerManagerConfig", image=inp.image(D.CONTROLLER_MANAGER_IMAGE)),
        _doc("KubeSchedulerConfig", image=inp.image(D.SCHEDULER_IMAGE), config={}),
        _doc("KubeProxyConfig", image=inp.image(D.PROXY_IMAGE), config={}),
    ]
    if not opts.cni_url:
        docs.append(
            _doc("KubeFlannelCNIConfig", backendType=D.FLANNEL_BACKEND, backendPort=D.FLANNEL_PORT)
        )
    docs.append(_doc("KubeCoreDNSConfig", enabled=True))
    if opts.cni_url:
        docs.append(_doc("KubeExternalManifestConfig", D.CUSTOM_CNI_MANIFEST, url=opts.cni_url))
    return docs
