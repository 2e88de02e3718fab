"""The secrets bundle: talosctl layout, validation, rebuilding from configs, fresh bundles."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import random
import re

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from omniport.planner.errors import OmniportError
from omniport.planner.machineconfig.contracts import SUPPORTED, Contract
from omniport.planner.machineconfig.generate import generate
from omniport.planner.machineconfig.secrets import (
    SENSITIVE,
    CertAndKey,
    Certs,
    SecretsBundle,
    SecretsError,
    bundle_from_config,
    new_bundle,
    new_token,
)
from tests.test_gen_helpers import fixture, load_documents, stability

VERSIONS = [f"{c.major}.{c.minor}" for c in SUPPORTED]
NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def stability_secrets() -> tuple[SecretsBundle, dict]:
    path = fixture("v1alpha1", "stability", "secrets.yaml")
    return SecretsBundle.from_yaml(path.read_text()), yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def bundle(stability_secrets) -> SecretsBundle:
    return stability_secrets[0]


# ---- layout ----


@pytest.mark.parametrize(
    "parts", [("v1alpha1", "stability", "secrets.yaml"), ("secrets", "secrets.yaml")]
)
def test_fixture_bundles_round_trip_and_validate(parts):
    text = fixture(*parts).read_text()
    loaded = SecretsBundle.from_yaml(text)
    assert loaded.problems() == []
    assert loaded.validate() is loaded
    assert loaded.to_dict() == yaml.safe_load(text)
    # talosctl's own bytes, apart from the fixture's leading comment line.
    assert loaded.to_yaml() == "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith("#")
    )
    assert SecretsBundle.from_yaml(loaded.to_yaml()) == loaded
    assert loaded.sha256() == SecretsBundle.from_yaml(loaded.to_yaml()).sha256()


def test_yaml_keys_and_order_follow_talosctl(bundle):
    data = bundle.to_dict()
    assert list(data) == ["cluster", "secrets", "trustdinfo", "certs"]
    assert list(data["secrets"]) == ["bootstraptoken", "secretboxencryptionsecret"]
    assert list(data["certs"]) == ["etcd", "k8s", "k8saggregator", "k8sserviceaccount", "os"]
    assert list(data["certs"]["k8sserviceaccount"]) == ["key"]
    assert bundle.to_yaml().startswith("cluster:\n    id: ")


def test_the_invalid_fixture_fails_validation_naming_each_problem():
    path = fixture("secrets", "invalid-secrets.yaml")
    loaded = SecretsBundle.from_yaml(path.read_text(), source="invalid-secrets.yaml")
    expected = [
        "cluster.secret is missing",
        "one of secrets.secretboxencryptionsecret and secrets.aescbcencryptionsecret is required",
        "trustdinfo is missing",
        "certs.etcd.key is missing",
        "certs.k8saggregator is missing",
        "certs.os.key is invalid: unsupported key type 'CERTIFICATE'",
        "certs.os.crt is missing",
    ]
    assert loaded.problems() == expected
    with pytest.raises(SecretsError) as caught:
        loaded.validate(source="invalid-secrets.yaml")
    assert str(caught.value) == (
        f"invalid-secrets.yaml is invalid: {'; '.join(expected)}; regenerate it with "
        "`omniport config secrets --from-controlplane-config` or `talosctl gen secrets`"
    )


def test_a_ca_key_that_does_not_belong_to_its_certificate_is_caught(bundle):
    swapped = dataclasses.replace(
        bundle.certs, k8s=CertAndKey(crt=bundle.certs.k8s.crt, key=bundle.certs.etcd.key)
    )
    broken = dataclasses.replace(bundle, certs=swapped)
    assert broken.problems() == ["certs.k8s.key does not belong to certs.k8s.crt"]


def test_both_encryption_secrets_is_a_problem(bundle):
    both = dataclasses.replace(
        bundle,
        secrets=dataclasses.replace(bundle.secrets, aescbc_encryption_secret="x"),
    )
    assert both.problems() == [
        "only one of secrets.secretboxencryptionsecret and secrets.aescbcencryptionsecret "
        "may be set"
    ]


def test_a_garbled_pem_is_named(bundle):
    garbled = dataclasses.replace(
        bundle,
        certs=dataclasses.replace(
            bundle.certs,
            etcd=CertAndKey(
                crt=b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                key=b"not pem",
            ),
        ),
    )
    assert garbled.problems() == [
        "certs.etcd.key is invalid: no PEM block found",
        "certs.etcd.crt is invalid: the certificate is not a readable PEM certificate",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "s.yaml is empty; pass a secrets bundle file"),
        ("- a\n", "s.yaml must be a mapping, not a list"),
        ("cluster: [\n", "s.yaml is not valid YAML at line 2, column 1"),
        ("clusters: {}\n", "s.yaml: clusters is not a known key (expected one of cluster, "),
        ("cluster: {id: [1]}\n", "s.yaml: cluster.id must be a string, not a list"),
        ("certs: {os: {crt: '!!'}}\n", "s.yaml: certs.os.crt is not valid base64"),
        ("certs: {os: x}\n", "s.yaml: certs.os must be a mapping, not a scalar"),
        ("certs: {os: {cert: x}}\n", "s.yaml: certs.os.cert is not a known key"),
    ],
)
def test_malformed_files_are_clear_errors(text, message):
    with pytest.raises(SecretsError) as caught:
        SecretsBundle.from_yaml(text, source="s.yaml")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_digit_only_tokens_stay_strings(bundle):
    data = bundle.to_dict()
    data["trustdinfo"]["token"] = "123456.1234567890123456"
    text = yaml.safe_dump(data).replace("'123456.1234567890123456'", "123456.1234567890123456")
    assert SecretsBundle.from_yaml(text).trustd_info.token == "123456.1234567890123456"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="{}[]:,-'\"!&*|>#\n abc09=/+", max_size=80))
def test_from_yaml_never_raises_a_bare_exception(text):
    try:
        SecretsBundle.from_yaml(text)
    except OmniportError as err:
        assert "\n" not in str(err)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["cluster", "secrets", "trustdinfo", "certs"]), _json))
def test_from_dict_never_raises_a_bare_exception(data):
    try:
        SecretsBundle.from_dict(data).problems()
    except OmniportError:
        pass


# ---- nothing secret is ever printed ----


def _secret_values(bundle: SecretsBundle) -> list[str]:
    values = [
        bundle.cluster.id,
        bundle.cluster.secret,
        bundle.secrets.bootstrap_token,
        bundle.secrets.secretbox_encryption_secret,
        bundle.trustd_info.token,
    ]
    for pair in (bundle.certs.etcd, bundle.certs.k8s, bundle.certs.k8s_aggregator, bundle.certs.os):
        values += [pair.key.decode(), base64.b64encode(pair.key).decode()]
    values.append(bundle.certs.k8s_service_account.key.decode())
    return values


def test_repr_and_str_never_show_secret_values(bundle):
    shown = [
        repr(bundle),
        str(bundle),
        repr(bundle.certs),
        str(bundle.certs.os),
        repr(bundle.cluster),
    ]
    for text in shown:
        for value in _secret_values(bundle):
            assert value not in text
            assert value[:12] not in text
        assert SENSITIVE in text
    assert "PRIVATE KEY" not in repr(bundle)


# ---- rebuilding from a control-plane config ----


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", ["base", "overrides"])
def test_bundle_from_each_fixture_controlplane_equals_the_fixture_bundle(version, variant, bundle):
    # Every field of the stability bundle is carried by a controlplane config, in both the
    # v1alpha1 layout (<= 1.13) and the 1.14+ documents; only a second encryption provider
    # or key (not part of a bundle) would be dropped.
    docs = load_documents(stability(version, f"{variant}-controlplane"))
    rebuilt = bundle_from_config(docs)
    assert rebuilt == bundle
    assert rebuilt.to_dict() == bundle.to_dict()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_worker_config_gives_the_clear_error(version):
    docs = load_documents(stability(version, "base-worker"))
    with pytest.raises(SecretsError) as caught:
        bundle_from_config(docs, source="worker.yaml")
    assert str(caught.value) == (
        "worker.yaml is a worker config, and worker configs carry no CA private keys; "
        "pass a control-plane config (machine.type: controlplane) to rebuild the bundle"
    )


def test_a_controlplane_config_missing_keys_names_them(bundle):
    docs = generate(
        "controlplane",
        contract="1.14",
        cluster_name="c",
        endpoint="https://c:6443",
        kubernetes_version="1.30.0",
        secrets=bundle,
    )
    docs = [
        d
        for d in docs
        if d.get("kind") not in ("KubeAggregatorCAConfig", "DiscoveryIdentityConfig")
    ]
    del docs[0]["machine"]["token"]
    with pytest.raises(SecretsError) as caught:
        bundle_from_config(docs, source="cp.yaml")
    assert str(caught.value) == (
        "cp.yaml does not carry a complete secrets bundle: cluster.id is missing; "
        "cluster.secret is missing; trustdinfo.token is missing; certs.k8saggregator is missing; "
        "pass the full control-plane config the cluster runs"
    )


def test_first_secretbox_key_of_the_first_provider_is_taken(bundle):
    docs = generate(
        "controlplane",
        contract="1.14",
        cluster_name="c",
        endpoint="https://c:6443",
        kubernetes_version="1.30.0",
        secrets=bundle,
    )
    encryption = next(d for d in docs if d.get("kind") == "KubeEtcdEncryptionConfig")
    encryption["config"]["resources"] = [
        {
            "providers": [{"secretbox": {"keys": [{"name": "x", "secret": "OTHER"}]}}],
            "resources": ["configmaps"],
        },
        {
            "providers": [
                {
                    "secretbox": {
                        "keys": [{"name": "new", "secret": "NEW"}, {"name": "old", "secret": "OLD"}]
                    }
                },
                {"aescbc": {"keys": [{"name": "k", "secret": "AES"}]}},
            ],
            "resources": ["secrets"],
        },
    ]
    assert bundle_from_config(docs).secrets.secretbox_encryption_secret == "NEW"
    encryption["config"]["resources"][1]["providers"].reverse()  # aescbc first: nothing taken
    with pytest.raises(SecretsError, match="one of secrets.secretboxencryptionsecret"):
        bundle_from_config(docs)


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        (
            [],
            "cp.yaml has no v1alpha1 document (the one with `machine:` and `cluster:`); "
            "it is empty",
        ),
        (
            [{"apiVersion": "v1alpha1", "kind": "HostnameConfig"}],
            "cp.yaml has no v1alpha1 document",
        ),
        (["text"], "cp.yaml: document 1 is not a mapping"),
        ([{"machine": [], "cluster": {}}], "cp.yaml: machine must be a mapping"),
        ([{"machine": {"token": 5}, "cluster": {}}], "cp.yaml: machine.token must be a string"),
        (
            [{"machine": {"ca": {"crt": "%%", "key": ""}}, "cluster": {}}],
            "cp.yaml: machine.ca.crt is not valid base64",
        ),
    ],
)
def test_malformed_configs_are_clear_errors(docs, message):
    with pytest.raises(SecretsError) as caught:
        bundle_from_config(docs, source="cp.yaml")
    assert str(caught.value).startswith(message)


_KINDS = [
    "KubeEtcdEncryptionConfig",
    "KubeAPIServerCAConfig",
    "KubeAggregatorCAConfig",
    "KubeServiceAccountConfig",
    "DiscoveryIdentityConfig",
]
_doc = st.one_of(
    st.dictionaries(st.sampled_from(["machine", "cluster", "version"]), _json, max_size=3),
    st.fixed_dictionaries(
        {"kind": st.sampled_from(_KINDS)},
        optional={
            "config": st.fixed_dictionaries({}, optional={"resources": _json}),
            "issuingCA": _json,
            "issuer": _json,
            "clusterID": _json,
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_doc, max_size=4).map(
        lambda docs: [{"machine": {"type": "controlplane"}, "cluster": {}}, *docs]
    )
)
def test_bundle_from_config_never_raises_a_bare_exception(docs):
    try:
        bundle_from_config(docs)
    except OmniportError as err:
        assert "\n" not in str(err)


# ---- fresh bundles ----


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _orgs(cert: x509.Certificate) -> list[str]:
    return [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


@pytest.fixture(scope="module")
def fresh() -> SecretsBundle:
    return new_bundle(Contract(1, 14), NOW)


def test_new_bundle_is_valid_and_shaped_like_talosctl(fresh):
    assert fresh.problems() == []
    certs = fresh.certs
    expected = [
        (certs.etcd, ["etcd"], ec.EllipticCurvePublicKey),
        (certs.k8s, ["kubernetes"], ec.EllipticCurvePublicKey),
        (certs.k8s_aggregator, [], ec.EllipticCurvePublicKey),
        (certs.os, ["talos"], ed25519.Ed25519PublicKey),
    ]
    for pair, orgs, key_type in expected:
        cert = _cert(pair.crt)
        assert _orgs(cert) == orgs
        assert cert.issuer == cert.subject
        assert isinstance(cert.public_key(), key_type)
        if isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
            assert cert.public_key().curve.name == "secp256r1"
        assert cert.not_valid_before_utc == NOW
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=87600)
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert usage.critical and usage.value.key_cert_sign and usage.value.digital_signature
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        assert 0 < cert.serial_number < 2**128
    assert certs.os.key.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----\n")
    assert certs.etcd.key.startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
    assert certs.k8s_service_account.key.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    token = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
    assert token.match(fresh.secrets.bootstrap_token)
    assert token.match(fresh.trustd_info.token)
    for value in (
        fresh.cluster.id,
        fresh.cluster.secret,
        fresh.secrets.secretbox_encryption_secret,
    ):
        assert len(base64.b64decode(value, validate=True)) == 32
    assert fresh.secrets.aescbc_encryption_secret == ""


def test_new_bundle_rsa_service_account_key_is_4096_bits(fresh):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(fresh.certs.k8s_service_account.key, None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 4096


def test_new_bundle_before_1_7_has_an_ecdsa_service_account_key_and_urlsafe_id():
    rng = random.Random(7)
    old = new_bundle(Contract(1, 6), NOW, random_bytes=rng.randbytes)
    assert old.problems() == []
    assert old.certs.k8s_service_account.key.startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
    assert len(base64.urlsafe_b64decode(old.cluster.id)) == 32
    assert "+" not in old.cluster.id and "/" not in old.cluster.id


def test_new_bundle_randomness_is_a_parameter():
    first = new_bundle(
        Contract(1, 8), NOW, random_bytes=random.Random(1).randbytes, rsa_key_size=2048
    )
    again = new_bundle(
        Contract(1, 8), NOW, random_bytes=random.Random(1).randbytes, rsa_key_size=2048
    )
    assert first.cluster == again.cluster
    assert first.secrets == again.secrets
    assert first.trustd_info == again.trustd_info
    assert first.certs.os.key != again.certs.os.key  # key pairs come from OpenSSL


def test_new_bundle_takes_a_naive_now_as_utc():
    naive = new_bundle(Contract(1, 6), NOW.replace(tzinfo=None))
    assert _cert(naive.certs.etcd.crt).not_valid_before_utc == NOW


def test_new_token_is_uniform_over_the_alphabet():
    rng = random.Random(3)
    seen = "".join(new_token(rng.randbytes).replace(".", "") for _ in range(400))
    assert set(seen) == set("0123456789abcdefghijklmnopqrstuvwxyz")


def test_new_bundle_refuses_a_weak_rsa_size():
    with pytest.raises(SecretsError, match="RSA key size 1024 is too small"):
        new_bundle(Contract(1, 8), NOW, rsa_key_size=1024)


@pytest.mark.parametrize("version", ["1.6", "1.13", "1.14"])
def test_fresh_bundle_survives_generate_then_rebuild(version):
    fresh = new_bundle(version, NOW, rsa_key_size=2048)
    docs = generate(
        "controlplane",
        contract=version,
        cluster_name="lab",
        endpoint="https://lab:6443",
        kubernetes_version="1.30.0",
        secrets=fresh,
    )
    assert bundle_from_config(docs) == fresh


def test_certs_section_may_be_partial_in_memory():
    partial = SecretsBundle(certs=Certs(os=CertAndKey(crt=b"x", key=b"")))
    assert "certs.etcd is missing" in partial.problems()
    assert partial.to_dict() == {"certs": {"os": {"crt": "eA==", "key": ""}}}
