"""omniport's validator against machinery's own ``Validate``, for every Talos minor.

Cases: configs made by machinery's generator (the ``gen`` op; 2 machine types x 4 endpoints x
13 option sets x 2 Kubernetes versions = 208 per minor, one in eight also in cloud and
container mode: 260), known-bad mutations of generated configs (missing or malformed
endpoints, bad CIDRs and URLs, duplicate and conflicting documents, wrong CA material per
machine type, document/v1alpha1 conflicts, kinds and fields too new for the minor, and
omni#3424's 1.14 rejection), configs born on 1.9-1.13 judged by 1.14 as an upgraded, imported
node meets them, and strict mode.

"Agree" means, for one config: both say valid, or both say invalid with the same number of
errors. The oracle counts leaf errors (``oracle/validate.go`` flattens Talos's nested error
lists, keeping wrappers as prefixes); a config Talos fails to load (duplicate or conflicting
documents, malformed YAML) counts as one error on both sides. Messages are not compared: the
engine writes its own sentences with the field path. Warnings are not compared.
"""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Callable
from typing import Any

import pytest

from omniport.planner.machineconfig import document as mcdoc
from omniport.planner.machineconfig.validate import validate_bytes
from tests.interop import counts, oracles

KUBERNETES = {
    "1.9": ("1.32.3", "1.26.1"),
    "1.10": ("1.33.1", "1.27.0"),
    "1.11": ("1.34.1", "1.28.0"),
    "1.12": ("1.35.0", "1.29.2"),
    "1.13": ("1.36.0", "1.30.0"),
    "1.14": ("1.37.0", "1.38.0"),
}
ENDPOINTS = ("https://10.0.0.1:6443", "https://cp.example.com", "https://[fd00::1]:6443", "")
OPTION_SETS: tuple[dict[str, Any], ...] = (
    {"install_disk": "/dev/sda"},
    {},
    {"install_disk": "/dev/nvme0n1", "dns_domain": "corp.internal"},
    {"install_disk": "/dev/sda", "allow_scheduling_on_control_planes": True},
    {"install_disk": "/dev/sda", "additional_sans": ["10.0.0.9", "api.example.com"]},
    {"install_disk": "/dev/sda", "kube_prism_port": 0},
    {"install_disk": "/dev/sda", "kube_prism_port": 7445, "local_api_server_port": 6444},
    {"install_disk": "/dev/sda", "sysctls": {"net.core.somaxconn": "65535"}},
    {"install_disk": "/dev/sda", "cni_url": "https://example.com/cni.yaml"},
    {"install_disk": "/dev/sda", "registry_mirrors": {"docker.io": ["https://mirror.local"]}},
    {"install_disk": "/dev/sda", "discovery": False},
    {"install_disk": "/dev/sda", "host_dns_forward_kube_dns": True},
    {"install_disk": "/dev/sda", "install_extra_kernel_args": ["console=ttyS0"]},
)
TYPES = ("controlplane", "worker")


def _engine(config: str, minor: str, mode: str = "metal") -> tuple[bool, int, list[str]]:
    verdict = validate_bytes(config, minor, mode=mode)
    return verdict.valid, len(verdict.errors), [str(e) for e in verdict.errors]


def _oracle_verdict(answer: dict[str, Any]) -> tuple[bool, int, list[str]]:
    if answer.get("error"):
        return False, 1, [answer["error"]]
    errors = answer.get("errors") or []
    return not errors, len(errors), errors


def _compare(
    oracle: oracles.Oracle, check: str, cases: list[dict[str, Any]]
) -> list[tuple[str, Any, Any]]:
    """Ask the oracle, judge each case with the engine, record counts, return disagreements."""
    answers = oracle.ask(cases)
    disagreements = []
    for case, answer in zip(cases, answers, strict=True):
        mode = (case.get("validate") or {}).get("mode", "metal")
        ours = _engine(case["config"], oracle.minor, mode)
        theirs = _oracle_verdict(answer)
        if ours[:2] != theirs[:2]:
            disagreements.append((case["id"], ours, theirs))
    counts.record(check, oracle.minor, tried=len(cases), agreed=len(cases) - len(disagreements))
    return disagreements


def _secrets(oracle: oracles.Oracle) -> str:
    [answer] = oracle.ask([{"id": "secrets", "op": "secrets", "contract": f"v{oracle.minor}"}])
    return answer["secrets"]


def _generated(oracle: oracles.Oracle) -> list[tuple[str, str]]:
    """(id, config) made by machinery's generator for every seeded shape."""
    secrets = _secrets(oracle)
    cases = []
    for kubernetes in KUBERNETES[oracle.minor]:
        for index, options in enumerate(OPTION_SETS):
            for endpoint in ENDPOINTS:
                for machine_type in TYPES:
                    gen = {
                        "type": machine_type,
                        "cluster_name": "seeded",
                        "endpoint": endpoint,
                        "kubernetes_version": kubernetes,
                        "secrets": secrets,
                        **options,
                    }
                    cases.append(
                        {
                            "id": f"{machine_type}-{index}-{endpoint or 'none'}-{kubernetes}",
                            "op": "gen",
                            "contract": f"v{oracle.minor}",
                            "gen": gen,
                        }
                    )
    answers = oracle.ask(cases)
    failed = [a for a in answers if a.get("error")]
    assert not failed, f"machinery could not generate: {failed[:3]}"
    return [(a["id"], a["config"]) for a in answers]


def test_generated_configs_agree(oracle: oracles.Oracle) -> None:
    start = time.monotonic()
    generated = _generated(oracle)
    assert len(generated) >= 200
    cases = [{"id": i, "op": "validate", "config": c} for i, c in generated]
    # the same configs in the other modes, for a slice of them
    for mode in ("cloud", "container"):
        cases += [
            {"id": f"{i}@{mode}", "op": "validate", "config": c, "validate": {"mode": mode}}
            for i, c in generated[::8]
        ]
    disagreements = _compare(oracle, "validate-generated", cases)
    assert not disagreements, disagreements[:5]
    assert time.monotonic() - start < 300


# ---- known-bad mutations ------------------------------------------------------------------

Docs = list[dict[str, Any]]
Mutation = Callable[[Docs, str], Docs | None]


def _legacy(docs: Docs) -> dict[str, Any]:
    return next(d for d in docs if "kind" not in d)


def _kind(docs: Docs, kind: str) -> dict[str, Any] | None:
    return next((d for d in docs if d.get("kind") == kind), None)


def _set_endpoint(value: Any) -> Mutation:
    def mutate(docs: Docs, minor: str) -> Docs:
        doc = _kind(docs, "KubeClusterConfig")
        if doc is not None:
            if value is None:
                doc.pop("endpoint", None)
            else:
                doc["endpoint"] = value
            return docs
        control = _legacy(docs)["cluster"].setdefault("controlPlane", {})
        if value is None:
            control.pop("endpoint", None)
        else:
            control["endpoint"] = value
        return docs

    return mutate


def _legacy_cluster(path: str, value: Any) -> Mutation:
    def mutate(docs: Docs, minor: str) -> Docs:
        node = _legacy(docs).setdefault("cluster", {})
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        return docs

    return mutate


def _legacy_machine(path: str, value: Any) -> Mutation:
    def mutate(docs: Docs, minor: str) -> Docs:
        node = _legacy(docs)["machine"]
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value
        return docs

    return mutate


_DELETE = object()


def _pod_subnet(docs: Docs, minor: str) -> Docs:
    doc = _kind(docs, "KubeNetworkConfig")
    if doc is not None:
        doc["podSubnets"] = ["10.244.0.0/33"]
    else:
        _legacy(docs)["cluster"].setdefault("network", {})["podSubnets"] = ["10.244.0.0/33"]
    return docs


def _subnet_count(docs: Docs, minor: str) -> Docs | None:
    doc = _kind(docs, "KubeNetworkConfig")
    if doc is None:
        return None
    doc["podSubnets"] = ["10.244.0.0/16", "fd00:10:244::/56"]
    return docs


def _duplicate_last(docs: Docs, minor: str) -> Docs | None:
    named = [d for d in docs if "kind" in d]
    if not named:
        return None
    return [*docs, copy.deepcopy(named[-1])]


def _duplicate_legacy(docs: Docs, minor: str) -> Docs:
    return [*docs, copy.deepcopy(_legacy(docs))]


def _conflicting_links(docs: Docs, minor: str) -> Docs | None:
    if minor in ("1.9", "1.10", "1.11"):
        return None
    return [
        *docs,
        {"apiVersion": "v1alpha1", "kind": "DummyLinkConfig", "name": "dummy0"},
        {"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": "dummy0", "up": True},
    ]


def _worker_with_ca_key(docs: Docs, minor: str) -> Docs:
    machine = _legacy(docs)["machine"]
    if machine["type"] == "worker":
        machine["ca"]["key"] = base64.b64encode(b"not a key").decode()
    else:
        machine["ca"].pop("key", None)
    return docs


def _interfaces(value: list[dict[str, Any]]) -> Mutation:
    return _legacy_machine("network.interfaces", value)


def _hostname_both(docs: Docs, minor: str) -> Docs | None:
    doc = _kind(docs, "HostnameConfig")
    if doc is None:
        return None
    doc["hostname"] = "node-1"
    return docs


def _worker_gets_apiserver(docs: Docs, minor: str) -> Docs | None:
    if minor != "1.14" or _legacy(docs)["machine"]["type"] != "worker":
        return None
    return [
        *docs,
        {
            "apiVersion": "v1alpha1",
            "kind": "KubeAPIServerConfig",
            "image": "registry.k8s.io/kube-apiserver:v1.37.0",
        },
    ]


def _drop_kind(kind: str) -> Mutation:
    def mutate(docs: Docs, minor: str) -> Docs | None:
        if _kind(docs, kind) is None:
            return None
        return [d for d in docs if d.get("kind") != kind]

    return mutate


def _kubelet_image(docs: Docs, minor: str) -> Docs:
    doc = _kind(docs, "KubeletConfig")
    image = "ghcr.io/siderolabs/kubelet:v1.40.0"
    if doc is not None:
        doc["image"] = image
    else:
        _legacy(docs)["machine"].setdefault("kubelet", {})["image"] = image
    return docs


def omni_3424(docs: Docs, minor: str) -> Docs | None:
    """What Omni pushed in omni#3424: its 1.14 documents plus a patch from a 1.12-born node that
    kept v1alpha1 ``cluster.aggregatorCA`` and a ``cluster.controlPlane`` without endpoint."""
    aggregator = _kind(docs, "KubeAggregatorCAConfig")
    legacy = _legacy(docs)
    if aggregator is not None:
        ca = aggregator["issuingCA"]
        legacy_ca = {
            "crt": base64.b64encode(ca["cert"].encode()).decode(),
            "key": base64.b64encode(ca["key"].encode()).decode(),
        }
    elif "aggregatorCA" in legacy.get("cluster", {}):
        legacy_ca = legacy["cluster"]["aggregatorCA"]
    else:
        return None
    cluster = legacy.setdefault("cluster", {})
    cluster["aggregatorCA"] = legacy_ca
    cluster["controlPlane"] = {"localAPIServerPort": 6443}
    return docs


def _aggregator_only(docs: Docs, minor: str) -> Docs | None:
    """omni#3424's conflict alone: the endpoint is where 1.14 wants it."""
    if _kind(docs, "KubeAggregatorCAConfig") is None:
        return None
    result = omni_3424(docs, minor)
    assert result is not None
    _legacy(result)["cluster"].pop("controlPlane")
    return result


def _accepted_only(docs: Docs, minor: str) -> Docs:
    machine = _legacy(docs)["machine"]
    ca = machine.pop("ca")
    machine["acceptedCAs"] = [{"crt": ca["crt"]}]
    return docs


def _cluster_ca_key(docs: Docs, minor: str) -> Docs:
    cluster = _legacy(docs)["cluster"]
    if "ca" in cluster:
        cluster["ca"]["key"] = base64.b64encode(b"not a key").decode()
    return docs


def _doc_field(kind: str, key: str, value: Any) -> Mutation:
    def mutate(docs: Docs, minor: str) -> Docs | None:
        doc = _kind(docs, kind)
        if doc is None:
            return None
        doc[key] = value
        return docs

    return mutate


def _resolver_conflict(docs: Docs, minor: str) -> Docs | None:
    if minor in ("1.9", "1.10", "1.11"):
        return None
    _legacy(docs)["machine"].setdefault("network", {})["nameservers"] = ["1.1.1.1"]
    if _kind(docs, "ResolverConfig") is None:
        docs.append(
            {
                "apiVersion": "v1alpha1",
                "kind": "ResolverConfig",
                "nameservers": [{"address": "8.8.8.8"}],
            }
        )
    return docs


def _time_sync_conflict(docs: Docs, minor: str) -> Docs | None:
    if minor in ("1.9", "1.10", "1.11"):
        return None
    _legacy(docs)["machine"]["time"] = {"servers": ["time.example.com"]}
    return [*docs, {"apiVersion": "v1alpha1", "kind": "TimeSyncConfig", "enabled": True}]


def _kube_document(docs: Docs, minor: str) -> Docs:
    return [*docs, {"apiVersion": "v1alpha1", "kind": "KubePrismConfig", "port": 7445}]


MUTATIONS: dict[str, Mutation] = {
    "endpoint-missing": _set_endpoint(None),
    "endpoint-empty": _set_endpoint(""),
    "endpoint-no-scheme": _set_endpoint("cp.example.com"),
    "endpoint-bad-port": _set_endpoint("https://10.0.0.1:99999"),
    "endpoint-ipv6-unbracketed": _set_endpoint("https://fd00::1:6443"),
    "pod-subnet-bad": _pod_subnet,
    "subnet-count": _subnet_count,
    "dns-domain-bad": _legacy_cluster("network.dnsDomain", "bad domain!"),
    "etcd-subnet-bad": _legacy_cluster("etcd.advertisedSubnets", ["10.0.0.0/40"]),
    "etcd-both-subnets": _legacy_cluster("etcd.subnet", "10.0.0.0/8"),
    "inline-manifests-dup": _legacy_cluster(
        "inlineManifests",
        [{"name": "a", "contents": "x"}, {"name": "a", "contents": "y"}, {"name": " "}],
    ),
    "ecp-disabled-manifests": _legacy_cluster(
        "externalCloudProvider", {"enabled": False, "manifests": ["https://example.com/a"]}
    ),
    "ecp-bad-manifest": _legacy_cluster(
        "externalCloudProvider", {"enabled": True, "manifests": ["example.com/a"]}
    ),
    "discovery-no-id": _legacy_cluster("id", ""),
    "cni-unknown": _legacy_cluster("network.cni", {"name": "cilium"}),
    "cni-flannel-urls": _legacy_cluster(
        "network.cni", {"name": "flannel", "urls": ["https://example.com/x"]}
    ),
    "duplicate-document": _duplicate_last,
    "duplicate-v1alpha1": _duplicate_legacy,
    "conflicting-links": _conflicting_links,
    "machine-type-bogus": _legacy_machine("type", "bogus"),
    "ca-key-wrong-side": _worker_with_ca_key,
    "persist-false": lambda docs, minor: (
        [{**_legacy(docs), "persist": False}] + [d for d in docs if "kind" in d]
    ),
    "install-no-disk": _legacy_machine("install", {"image": "ghcr.io/siderolabs/installer"}),
    "install-removed": _legacy_machine("install", _DELETE),
    "kubelet-subnet-bad": _legacy_machine("kubelet.nodeIP.validSubnets", ["10.0.0.0/99"]),
    "kubelet-protected": _legacy_machine(
        "kubelet.extraConfig", {"authentication": {}, "staticPodPath": "/x"}
    ),
    "interfaces-bad": _interfaces(
        [
            {"interface": "eth0", "cidr": "10.0.0.2/24", "addresses": ["10.0.0.3/24"]},
            {"interface": "eth1", "addresses": ["300.0.0.1/24"]},
            {"interface": "eth2", "routes": [{"metric": 10}]},
            {"deviceSelector": {"busPath": "0*"}, "interface": "eth3"},
        ]
    ),
    "vip-on-node": _interfaces([{"interface": "eth0", "dhcp": True, "vip": {"ip": "10.0.0.50"}}]),
    "vip-without-ip": _interfaces([{"interface": "eth0", "dhcp": True, "vip": {}}]),
    "bond-member-addressed": _interfaces(
        [
            {
                "interface": "bond0",
                "dhcp": True,
                "bond": {"mode": "802.3ad", "interfaces": ["eth0"]},
            },
            {"interface": "eth0", "vip": {"ip": "10.0.0.50"}},
            {"interface": "br0", "bridge": {"interfaces": ["eth0"]}},
        ]
    ),
    "bond-delays": _interfaces(
        [{"interface": "bond0", "bond": {"mode": "active-backup", "updelay": 100}}]
    ),
    "kubespan-no-discovery": _legacy_cluster("discovery", {"enabled": False}),
    "talos-api-access-bad-role": _legacy_machine(
        "features.kubernetesTalosAPIAccess",
        {"enabled": True, "allowedRoles": ["os:god"], "allowedKubernetesNamespaces": ["x"]},
    ),
    "node-label-bad": _legacy_machine("nodeLabels", {"-bad-": "x", "ok/": "y"}),
    "hostname-both": _hostname_both,
    "worker-apiserver-doc": _worker_gets_apiserver,
    "no-kube-cluster-doc": _drop_kind("KubeClusterConfig"),
    "no-etcd-encryption-doc": _drop_kind("KubeEtcdEncryptionConfig"),
    "kubelet-too-new": _kubelet_image,
    "install-disk-selector": _legacy_machine(
        "install", {"diskSelector": {"size": ">= 10GB"}, "image": "ghcr.io/siderolabs/installer"}
    ),
    "install-uki-and-args": _legacy_machine(
        "install",
        {"disk": "/dev/sda", "extraKernelArgs": ["console=ttyS0"], "grubUseUKICmdline": True},
    ),
    "host-dns-forward-only": _legacy_machine(
        "features.hostDNS", {"enabled": False, "forwardKubeDNSToHost": True}
    ),
    "accepted-cas-only": _accepted_only,
    "machine-ca-missing": _legacy_machine("ca", _DELETE),
    "cluster-ca-key-on-worker": _cluster_ca_key,
    "etcd-listen-bad": _legacy_cluster("etcd.listenSubnets", ["nonsense"]),
    "partitions-full-not-last": _legacy_machine(
        "disks", [{"device": "/dev/sdb", "partitions": [{"mountpoint": "/a"}, {"size": 1000}]}]
    ),
    "encryption-keys": _legacy_machine(
        "systemDiskEncryption",
        {
            "ephemeral": {"provider": "luks2", "keys": []},
            "state": {"provider": "luks2", "keys": [{"slot": 0}, {"slot": 0, "nodeID": {}}]},
        },
    ),
    "kubespan-filters": _legacy_machine(
        "network.kubespan",
        {"enabled": True, "mtu": 1000, "filters": {"endpoints": ["0.0.0.0/0", "!bad"]}},
    ),
    "logging-destinations": _legacy_machine(
        "logging",
        {
            "destinations": [
                {"endpoint": "http://10.0.0.1:3000", "format": "json_lines"},
                {"endpoint": "udp://10.0.0.1:3000", "format": "text"},
                {"endpoint": "tcp:///path", "format": "json_lines"},
                {"format": "json"},
            ]
        },
    ),
    "extensions-dup": _legacy_machine(
        "install.extensions", [{"image": "ghcr.io/a:1"}, {"image": "ghcr.io/a:1"}]
    ),
    "taints-bad": _legacy_machine("nodeTaints", {"a": "NoSchedule", "b": "Never"}),
    "sort-algorithm-bad": _legacy_machine("features.nodeAddressSortAlgorithm", "v9"),
    "discovery-path": _legacy_cluster(
        "discovery",
        {"enabled": True, "registries": {"service": {"endpoint": "https://d.example.com/x"}}},
    ),
    "bond-options": _interfaces(
        [
            {
                "interface": "bond0",
                "bond": {"mode": "balance-rr", "lacpRate": "fast", "arpIPTarget": ["10.0.0.1"]},
            }
        ]
    ),
    "vlan-cidr-and-addresses": _interfaces(
        [
            {
                "interface": "eth0",
                "vlans": [{"vlanId": 5, "cidr": "10.0.5.2/24", "addresses": ["10.0.5.3/24"]}],
            }
        ]
    ),
    "hostname-auto-bad": _doc_field("HostnameConfig", "auto", "addr"),
    "resolver-conflict": _resolver_conflict,
    "time-sync-conflict": _time_sync_conflict,
    "proxy-mode-bad": _doc_field("KubeProxyConfig", "mode", "userspace"),
    "kubeprism-port-zero": _doc_field("KubePrismConfig", "port", 0),
    "identity-secret-bad": _doc_field("DiscoveryIdentityConfig", "clusterSecret", "c2hvcnQ="),
    "authorizer-type-bad": _doc_field("KubeAuthorizerConfig", "type", "ABAC"),
    "apiserver-image-empty": _doc_field("KubeAPIServerConfig", "image", ""),
    "node-doc-label-bad": _doc_field("KubeNodeConfig", "labels", {"bad key": "x"}),
    "flannel-backend-empty": _doc_field("KubeFlannelCNIConfig", "backendType", ""),
    "kube-document-on-older": _kube_document,
    "omni-3424": omni_3424,
    "omni-3424-conflict-only": _aggregator_only,
}


def _base_configs(oracle: oracles.Oracle) -> list[tuple[str, str]]:
    secrets = _secrets(oracle)
    cases = [
        {
            "id": machine_type,
            "op": "gen",
            "contract": f"v{oracle.minor}",
            "gen": {
                "type": machine_type,
                "cluster_name": "bad",
                "endpoint": "https://10.0.0.1:6443",
                "kubernetes_version": KUBERNETES[oracle.minor][0],
                "secrets": secrets,
                "install_disk": "/dev/sda",
            },
        }
        for machine_type in TYPES
    ]
    return [(a["id"], a["config"]) for a in oracle.ask(cases)]


def test_known_bad_configs_agree(oracle: oracles.Oracle) -> None:
    cases = []
    for base_id, config in _base_configs(oracle):
        for name, mutation in MUTATIONS.items():
            docs = [dict(d.data) for d in mcdoc.parse(config).documents]
            mutated = mutation(copy.deepcopy(docs), oracle.minor)
            if mutated is None:
                continue
            cases.append(
                {"id": f"{name}@{base_id}", "op": "validate", "config": mcdoc.emit(mutated)}
            )
    invalid = [c for c in cases if not _engine(c["config"], oracle.minor)[0]]
    assert len(invalid) >= len(cases) * 3 // 4, "most mutations must break the config"
    disagreements = _compare(oracle, "validate-known-bad", cases)
    assert not disagreements, disagreements[:5]


def test_omni_3424_rejected_by_1_14_only(interop_built: None) -> None:
    """1.14.1 rejects omni#3424's config for both reasons; the same v1alpha1 fields with the
    endpoint in place are fine for 1.12 (no multi-document Kubernetes config there)."""
    new = oracles.Oracle("1.14")
    config = dict(_base_configs(new))["controlplane"]
    docs = [dict(d.data) for d in mcdoc.parse(config).documents]
    pushed = mcdoc.emit(omni_3424(docs, "1.14") or [])
    [answer] = new.ask([{"id": "3424", "op": "validate", "config": pushed}])
    assert any("controlplane endpoint is required" in e for e in answer["errors"])
    assert any("aggregatorCA" in e for e in answer["errors"])
    ours = validate_bytes(pushed, "1.14")
    paths = {(e.where, e.path) for e in ours.errors}
    assert ("v1alpha1", "cluster.controlPlane.endpoint") in paths
    assert ("KubeAggregatorCAConfig", "") in paths

    old = oracles.Oracle("1.12")
    config = dict(_base_configs(old))["controlplane"]
    docs = [dict(d.data) for d in mcdoc.parse(config).documents]
    assert "aggregatorCA" in _legacy(docs)["cluster"]
    [answer] = old.ask([{"id": "1.12", "op": "validate", "config": config}])
    assert not answer.get("errors") and not answer.get("error")
    assert validate_bytes(config, "1.12").valid
    # a 1.12-born config stays valid under 1.14: the legacy fields alone are not the problem
    [answer] = new.ask([{"id": "1.12@1.14", "op": "validate", "config": config}])
    assert _oracle_verdict(answer)[:2] == _engine(config, "1.14")[:2]


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_strict_turns_v1alpha1_warnings_into_errors(oracle: oracles.Oracle, strict: bool) -> None:
    """A custom CNI without URLs is a v1alpha1 warning; 1.14's UnattendedInstallConfig warns
    too, but strict mode leaves other documents' warnings alone."""
    cases = []
    for base_id, config in _base_configs(oracle):
        docs = [dict(d.data) for d in mcdoc.parse(config).documents]
        cluster = _legacy(docs)["cluster"]
        if "network" in cluster:
            cluster["network"]["cni"] = {"name": "custom"}
        cases.append(
            {
                "id": f"{base_id}-{strict}",
                "op": "validate",
                "config": mcdoc.emit(docs),
                "validate": {"mode": "cloud", "strict": strict},
            }
        )
    answers = oracle.ask(cases)
    for case, answer in zip(cases, answers, strict=True):
        ours = validate_bytes(case["config"], oracle.minor, mode="cloud", strict=strict)
        assert (ours.valid, len(ours.errors)) == _oracle_verdict(answer)[:2], case["id"]
    counts.record("validate-strict", oracle.minor, tried=len(cases), agreed=len(cases))


def _born_older_variants(docs: Docs, aggregator: dict[str, Any]) -> dict[str, Docs]:
    """A config born on an older minor as Omni's 1.14 render may meet it (omni#3424)."""
    out = {"as-born": docs}
    no_endpoint = copy.deepcopy(docs)
    _legacy(no_endpoint)["cluster"]["controlPlane"] = {}
    out["control-plane-without-endpoint"] = no_endpoint
    no_section = copy.deepcopy(docs)
    _legacy(no_section)["cluster"].pop("controlPlane", None)
    out["no-control-plane-section"] = no_section
    out["with-aggregator-document"] = [*copy.deepcopy(no_endpoint), aggregator]
    return out


def test_configs_born_on_older_minors_under_1_14(interop_built: None) -> None:
    """1.14 judges what older minors generated: legacy fields alone, without their endpoint,
    and next to a 1.14 document (the shapes an upgraded, imported node ends up in)."""
    new = oracles.Oracle("1.14")
    base = dict(_base_configs(new))["controlplane"]
    aggregator = next(
        d.data for d in mcdoc.parse(base).documents if d.key.kind == "KubeAggregatorCAConfig"
    )
    cases = []
    for minor in ("1.9", "1.10", "1.11", "1.12", "1.13"):
        for config_id, config in _generated(oracles.Oracle(minor))[::8]:
            docs = [dict(d.data) for d in mcdoc.parse(config).documents]
            for name, variant in _born_older_variants(docs, aggregator).items():
                cases.append(
                    {
                        "id": f"{minor}/{config_id}/{name}",
                        "op": "validate",
                        "config": mcdoc.emit(variant),
                    }
                )
    disagreements = _compare(new, "validate-born-older", cases)
    assert not disagreements, disagreements[:5]


def test_legacy_fields_beside_1_14_documents(interop_built: None) -> None:
    """Each v1alpha1 field a 1.12-born node carries, put next to 1.14's generated documents
    (one at a time, then all at once): the conflict table omni#3424 belongs to."""
    new, old = oracles.Oracle("1.14"), oracles.Oracle("1.12")
    olds = {k: mcdoc.parse(v).documents[0].data for k, v in _base_configs(old)}
    cases = []
    for role, config in _base_configs(new):
        docs = [dict(d.data) for d in mcdoc.parse(config).documents]
        legacy12 = olds[role]
        for section in ("machine", "cluster"):
            for key, value in legacy12[section].items():
                variant = copy.deepcopy(docs)
                _legacy(variant).setdefault(section, {})[key] = copy.deepcopy(value)
                cases.append(
                    {
                        "id": f"{role}/{section}.{key}",
                        "op": "validate",
                        "config": mcdoc.emit(variant),
                    }
                )
        merged = copy.deepcopy(docs)
        merged[0] = {**copy.deepcopy(legacy12), "machine": legacy12["machine"]}
        cases.append({"id": f"{role}/all", "op": "validate", "config": mcdoc.emit(merged)})
    disagreements = _compare(new, "validate-legacy-beside-1.14", cases)
    assert not disagreements, disagreements[:5]
