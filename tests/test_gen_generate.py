"""generate(): Talos's default configs for every contract 1.3-1.15, checked against Talos's
own stability fixtures, plus the options, the Omni import baseline and bad input."""

from __future__ import annotations

import dataclasses
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniport.planner.errors import OmniportError
from omniport.planner.machineconfig.contracts import SUPPORTED, Contract, ContractError
from omniport.planner.machineconfig.generate import (
    GenerateError,
    GenerateOptions,
    generate,
    import_baseline,
)
from omniport.planner.machineconfig.merge import apply_patches, load_patch
from omniport.planner.machineconfig.secrets import CertAndKey, Certs, SecretsBundle
from tests.test_gen_helpers import (
    MACHINE_TYPES,
    fixture,
    key_order,
    load_documents,
    stability,
)

VERSIONS = [f"{c.major}.{c.minor}" for c in SUPPORTED]
CASES = [(v, t) for v in VERSIONS for t in MACHINE_TYPES]
IDS = [f"v{v}-{t}" for v, t in CASES]

# The "overrides" options of Talos's stability test.
OVERRIDES = GenerateOptions(
    additional_sans=["foo", "bar"],
    allow_scheduling_on_control_planes=True,
    dns_domain="example.com",
    install_disk="/dev/vda",
    install_extra_kernel_args=["foo=bar", "bar=baz"],
    local_api_server_port=5443,
    sysctls={"foo": "bar"},
    cni_url="https://example.com/cni.yaml",
    registry_mirrors={"ghcr.io": ["https://ghcr.io.my-mirror.com"]},
)


@pytest.fixture(scope="module")
def bundle() -> SecretsBundle:
    return SecretsBundle.from_yaml(fixture("v1alpha1", "stability", "secrets.yaml").read_text())


def base(version: str, machine_type: str, bundle: SecretsBundle, **kw) -> list[dict]:
    return generate(
        machine_type,
        contract=version,
        cluster_name="base",
        endpoint="https://base:6443",
        kubernetes_version="1.28.0",
        secrets=bundle,
        **kw,
    )


@pytest.mark.parametrize(("version", "machine_type"), CASES, ids=IDS)
def test_base_config_equals_talos_fixture(version, machine_type, bundle):
    expected = load_documents(stability(version, f"base-{machine_type}"))
    got = base(version, machine_type, bundle)
    assert got == expected
    # Same documents in the same order, and every mapping's keys in Talos's order.
    assert key_order(got) == key_order(expected)


@pytest.mark.parametrize(("version", "machine_type"), CASES, ids=IDS)
def test_overrides_config_equals_talos_fixture(version, machine_type, bundle):
    expected = load_documents(stability(version, f"overrides-{machine_type}"))
    major, minor = map(int, version.split("."))
    patch_name = "patch.yaml" if Contract(major, minor) >= Contract(1, 14) else "patch-pre14.yaml"
    patch = load_patch(fixture("v1alpha1", "stability", patch_name).read_text(), patch_name)
    generated = base(version, machine_type, bundle, options=OVERRIDES)
    got = [doc.data for doc in apply_patches(generated, [patch])]
    assert got == expected


def test_generate_is_pure_and_returns_fresh_documents(bundle):
    first = base("1.14", "controlplane", bundle)
    first[0]["machine"]["certSANs"].append("mutated")
    first[-1]["enabled"] = False
    assert base("1.14", "controlplane", bundle) == load_documents(
        stability("1.14", "base-controlplane")
    )


def test_init_type_is_a_controlplane_config_with_type_init(bundle):
    init = base("1.8", "init", bundle)
    controlplane = base("1.8", "controlplane", bundle)
    assert init[0]["machine"]["type"] == "init"
    init[0]["machine"]["type"] = "controlplane"
    assert init == controlplane


# ---- the Omni import baseline ----


def kinds(docs):
    return [d.get("kind", "v1alpha1") for d in docs]


def test_import_baseline_pre_1_12_has_empty_endpoint_and_empty_san(bundle):
    docs = import_baseline(
        "controlplane",
        talos_version="v1.5.3",
        kubernetes_version="v1.28.0",
        cluster_name="prod",
        secrets=bundle,
    )
    cluster = docs[0]["cluster"]
    assert cluster["controlPlane"] == {"endpoint": ""}
    assert cluster["clusterName"] == "prod"
    # Talos adds the endpoint's host to the API server SANs up to 1.11, even when it is empty.
    assert cluster["apiServer"]["certSANs"] == [""]
    # Omni pins KubePrism from contract 1.5 even though 1.5's default has it off.
    assert docs[0]["machine"]["features"]["kubePrism"] == {"enabled": True, "port": 7445}
    assert "image" not in docs[0]["machine"]["install"]


def test_import_baseline_1_4_leaves_kube_prism_off(bundle):
    docs = import_baseline(
        "worker",
        talos_version="1.4.8",
        kubernetes_version="1.27.4",
        cluster_name="c",
        secrets=bundle,
    )
    assert "kubePrism" not in docs[0]["machine"]["features"]
    assert docs[0]["machine"]["kubelet"]["image"] == "ghcr.io/siderolabs/kubelet:v1.27.4"


def test_import_baseline_1_14_uses_documents_with_empty_endpoint(bundle):
    docs = import_baseline(
        "controlplane",
        talos_version="v1.14.0",
        kubernetes_version="1.37.0",
        cluster_name="c",
        secrets=bundle,
    )
    by_kind = {d["kind"]: d for d in docs[1:] if d["kind"] != "KubeAuthorizerConfig"}
    assert by_kind["KubeClusterConfig"]["endpoint"] == ""
    assert by_kind["KubeServiceAccountConfig"]["issuer"]["issuerURL"] == ""
    assert "certExtraSANs" not in by_kind["KubeAPIServerConfig"]
    assert "UnattendedInstallConfig" not in by_kind


# ---- options ----


def test_unattended_install_is_skipped_on_request(bundle):
    with_disk = GenerateOptions(install_disk="/dev/sda", install_image="ghcr.io/x/installer:v1")
    docs = base("1.14", "worker", bundle, options=with_disk)
    unattended = [d for d in docs if d.get("kind") == "UnattendedInstallConfig"]
    assert unattended == [
        {
            "apiVersion": "v1alpha1",
            "kind": "UnattendedInstallConfig",
            "installer": {"image": "ghcr.io/x/installer:v1"},
            "provisioning": {
                "diskSelector": {"match": 'disk.dev_path == "/dev/sda"'},
                "wipe": False,
            },
        }
    ]
    skipped = GenerateOptions(install_disk="/dev/sda", skip_unattended_install=True)
    assert "UnattendedInstallConfig" not in kinds(base("1.14", "worker", bundle, options=skipped))


def test_install_disk_with_quotes_is_quoted_like_go(bundle):
    docs = base("1.14", "worker", bundle, options=GenerateOptions(install_disk='/dev/a"b\\c'))
    doc = next(d for d in docs if d.get("kind") == "UnattendedInstallConfig")
    assert doc["provisioning"]["diskSelector"]["match"] == 'disk.dev_path == "/dev/a\\"b\\\\c"'


@pytest.mark.parametrize("version", ["1.6", "1.13"])
def test_kube_prism_port_zero_turns_it_off_before_1_14(version, bundle):
    docs = base(version, "worker", bundle, options=GenerateOptions(kube_prism_port=0))
    assert "kubePrism" not in docs[0]["machine"]["features"]


def test_kube_prism_port_zero_drops_the_document_from_1_14(bundle):
    docs = base("1.14", "worker", bundle, options=GenerateOptions(kube_prism_port=0))
    assert "KubePrismConfig" not in kinds(docs)
    docs = base("1.14", "worker", bundle, options=GenerateOptions(kube_prism_port=7446))
    assert next(d for d in docs if d.get("kind") == "KubePrismConfig")["port"] == 7446


@pytest.mark.parametrize(
    ("version", "where"),
    [("1.12", "machine"), ("1.13", "document"), ("1.14", "document")],
)
def test_kubespan_lands_where_the_contract_wants_it(version, where, bundle):
    docs = base(version, "worker", bundle, options=GenerateOptions(kubespan=True))
    if where == "machine":
        assert docs[0]["machine"]["network"] == {"kubespan": {"enabled": True}}
        assert "KubeSpanConfig" not in kinds(docs)
    else:
        assert "network" not in docs[0]["machine"]
        assert {"apiVersion": "v1alpha1", "kind": "KubeSpanConfig", "enabled": True} in docs


def test_registry_tls_options_before_and_after_1_12(bundle):
    options = GenerateOptions(
        registry_mirrors={"b.io": ["https://m2"], "a.io": ["https://m1"]},
        registry_ca_certs={"a.io": "PEM"},
        registry_insecure=["c.io"],
    )
    legacy = base("1.11", "worker", bundle, options=options)[0]["machine"]["registries"]
    assert list(legacy["mirrors"]) == ["a.io", "b.io"]
    assert legacy["config"] == {
        "a.io": {"tls": {"ca": "UEVN"}},
        "c.io": {"tls": {"insecureSkipVerify": True}},
    }
    docs = base("1.12", "worker", bundle, options=options)
    registry = [(d["kind"], d["name"]) for d in docs if d.get("kind", "").startswith("Registry")]
    assert registry == [
        ("RegistryMirrorConfig", "a.io"),
        ("RegistryMirrorConfig", "b.io"),
        ("RegistryTLSConfig", "a.io"),
        ("RegistryTLSConfig", "c.io"),
    ]
    assert {"apiVersion": "v1alpha1", "kind": "RegistryTLSConfig", "name": "a.io", "ca": "PEM"} in (
        docs
    )


@pytest.mark.parametrize("version", ["1.11", "1.14"])
def test_discovery_off(version, bundle):
    docs = base(version, "worker", bundle, options=GenerateOptions(discovery=False))
    if version == "1.11":
        assert docs[0]["cluster"]["discovery"]["enabled"] is False
    else:
        assert "DiscoveryServiceConfig" not in kinds(docs)
        assert "DiscoveryIdentityConfig" in kinds(docs)


def test_install_image_and_debug(bundle):
    options = GenerateOptions(install_image="ghcr.io/siderolabs/installer:v1.8.0", debug=True)
    docs = base("1.8", "worker", bundle, options=options)
    assert docs[0]["debug"] is True
    assert docs[0]["machine"]["install"] == {
        "image": "ghcr.io/siderolabs/installer:v1.8.0",
        "wipe": False,
    }


# ---- bad input: one clear OmniportError, never a bare exception ----


def _call(bundle, **overrides):
    args = {
        "contract": "1.8",
        "cluster_name": "base",
        "endpoint": "https://base:6443",
        "kubernetes_version": "1.28.0",
        "secrets": bundle,
    }
    machine_type = overrides.pop("machine_type", "controlplane")
    args.update(overrides)
    return generate(machine_type, **args)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (
            {"machine_type": "master"},
            GenerateError,
            "machine type 'master' is not one of controlplane, worker, init; "
            "pass --type controlplane or --type worker",
        ),
        (
            {"contract": "v1.2.0"},
            ContractError,
            "Talos version contract v1.2 is not supported; supported contracts are v1.3 to v1.15",
        ),
        (
            {"contract": "latest"},
            ContractError,
            "Talos version 'latest' is not a version like v1.8.3; pass the node's Talos version, "
            "for example --talos-version v1.8.3",
        ),
        ({"cluster_name": " "}, GenerateError, "the cluster name is empty; pass a cluster name"),
        (
            {"endpoint": "base:6443"},
            GenerateError,
            "endpoint 'base:6443' is not a URL; pass a URL like https://host:6443",
        ),
        (
            {"endpoint": "https://[::1"},
            GenerateError,
            "endpoint 'https://[::1' is not a URL; pass a URL like https://host:6443",
        ),
        (
            {"endpoint": "https://h:99999"},
            GenerateError,
            "endpoint 'https://h:99999' is not a URL; pass a URL like https://host:6443",
        ),
        (
            {"kubernetes_version": "latest"},
            GenerateError,
            "Kubernetes version 'latest' is not a version like 1.28.0; pass the Kubernetes "
            "version, for example --kubernetes-version 1.28.0",
        ),
        (
            {"secrets": "secrets.yaml"},
            GenerateError,
            "secrets must be a SecretsBundle; load one with SecretsBundle.from_yaml",
        ),
    ],
    ids=[
        "type",
        "old-contract",
        "bad-version",
        "name",
        "endpoint",
        "ipv6",
        "port",
        "k8s",
        "bundle",
    ],
)
def test_bad_input_is_one_clear_error(overrides, error, message, bundle):
    with pytest.raises(error) as caught:
        _call(bundle, **overrides)
    assert str(caught.value) == message


def test_bundle_without_ca_keys_cannot_make_a_controlplane(bundle):
    certs = bundle.certs
    keyless = SecretsBundle(
        cluster=bundle.cluster,
        secrets=bundle.secrets,
        trustd_info=bundle.trustd_info,
        certs=Certs(
            os=CertAndKey(crt=certs.os.crt, key=b""), k8s=CertAndKey(crt=certs.k8s.crt, key=b"")
        ),
    )
    assert _call(keyless, machine_type="worker")  # a worker needs no keys
    with pytest.raises(GenerateError) as caught:
        _call(keyless)
    assert str(caught.value) == (
        "the secrets bundle lacks certs.os.key, certs.k8s.key, certs.etcd.crt, certs.etcd.key, "
        "certs.k8saggregator.crt, certs.k8saggregator.key, certs.k8sserviceaccount.key, "
        "needed for a controlplane config; pass a complete bundle (omniport config secrets, "
        "or talosctl gen secrets)"
    )


def test_empty_bundle_names_everything_missing():
    with pytest.raises(GenerateError, match="lacks cluster.id, cluster.secret, "):
        _call(SecretsBundle(), machine_type="worker")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"additional_sans": "foo"}, "option additional_sans must be a list of strings"),
        ({"local_api_server_port": 70000}, "option local_api_server_port is 70000, not a port"),
        ({"kube_prism_port": True}, "option kube_prism_port is True, not a port"),
        ({"cni_url": "cni.yaml"}, "option cni_url 'cni.yaml' is not a URL"),
        ({"sysctls": {"a": 1}}, "option sysctls must map strings to strings"),
        ({"registry_mirrors": {"a": "https://m"}}, "option registry_mirrors must map"),
        ({"registry_mirrors": {"a": ["m"]}}, "registry mirror endpoint for a 'm' is not a URL"),
        ({"dns_domain": ""}, "option dns_domain is empty"),
        ({"debug": "yes"}, "option debug must be true or false"),
        ({"kubespan": 1}, "option kubespan must be true, false or unset"),
    ],
)
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(GenerateError) as caught:
        GenerateOptions(**options)
    assert str(caught.value).startswith(message)


_text = st.text(alphabet=string.printable + "é[]:/@", max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    machine_type=st.one_of(st.sampled_from(["controlplane", "worker", "init"]), _text, st.none()),
    contract=st.one_of(_text, st.sampled_from(["1.3", "v1.14.1", "1.15"])),
    cluster_name=st.one_of(_text, st.integers()),
    endpoint=st.one_of(_text, st.sampled_from(["", "https://h:6443", "http://[fd00::1]:6443"])),
    kubernetes_version=st.one_of(_text, st.sampled_from(["1.28.0", "v1.30.1-rc.0"])),
)
def test_generate_never_raises_a_bare_exception(
    bundle, machine_type, contract, cluster_name, endpoint, kubernetes_version
):
    try:
        docs = generate(
            machine_type,
            contract=contract,
            cluster_name=cluster_name,
            endpoint=endpoint,
            kubernetes_version=kubernetes_version,
            secrets=bundle,
        )
    except OmniportError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert docs[0]["version"] == "v1alpha1"


@pytest.mark.parametrize(
    ("endpoint", "san"),
    [
        ("https://[fd00::1]:6443", "fd00::1"),
        ("https://API.Example.com", "API.Example.com"),
        ("https://user@host:6443/path", "host"),
    ],
)
def test_endpoint_host_becomes_the_api_server_san_like_go(endpoint, san, bundle):
    docs = _call(bundle, endpoint=endpoint)
    assert docs[0]["cluster"]["apiServer"]["certSANs"] == [san]
    # Talos keeps the IPv4 defaults for any endpoint URL, IPv6 hosts included.
    assert docs[0]["cluster"]["network"]["podSubnets"] == ["10.244.0.0/16"]


_any = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_OPTION_NAMES = [f.name for f in dataclasses.fields(GenerateOptions)]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_OPTION_NAMES), _any, max_size=4))
def test_options_never_raise_a_bare_exception(bundle, options):
    try:
        built = GenerateOptions(**options)
        for machine_type in ("controlplane", "worker"):
            for version in ("1.11", "1.12", "1.14"):
                base(version, machine_type, bundle, options=built)
    except OmniportError as err:
        assert "\n" not in str(err)
