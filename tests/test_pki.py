"""Talos-style PKI: shapes match what `talosctl gen config` writes (and the shared fixtures)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from omniport.planner.machineconfig import pki
from tests.paths import TALOS_FIXTURES

NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def _ku(cert: x509.Certificate) -> x509.KeyUsage:
    return cert.extensions.get_extension_for_class(x509.KeyUsage).value


def _eku(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_os_ca_is_ed25519_talos_ten_years() -> None:
    ca = pki.talos_os_ca(NOW)
    cert = ca.certificate()
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "O=talos"
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + dt.timedelta(hours=87600)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = _ku(cert)
    assert ku.key_cert_sign and ku.digital_signature and not ku.key_encipherment
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ca.key.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----\n")
    assert isinstance(ca.private_key(), ed25519.Ed25519PrivateKey)
    assert cert.serial_number.bit_length() <= 128


@pytest.mark.parametrize(
    ("make", "subject"),
    [
        (pki.kubernetes_ca, "O=kubernetes"),
        (pki.etcd_ca, "O=etcd"),
        (pki.aggregator_ca, ""),  # Talos's CA builder drops the front-proxy CN
    ],
)
def test_ecdsa_cas(make, subject: str) -> None:
    ca = make(NOW)
    cert = ca.certificate()
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert cert.signature_hash_algorithm.name == "sha256"
    assert cert.subject.rfc4514_string() == subject
    assert ca.key.startswith(b"-----BEGIN EC PRIVATE KEY-----\n")


def test_service_account_keys() -> None:
    rsa_pem = pki.service_account_key(use_rsa=True)
    assert rsa_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    key = pki.load_private_key(rsa_pem)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 4096
    ec_pem = pki.service_account_key(use_rsa=False)
    assert ec_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----\n")


def test_admin_client_cert() -> None:
    ca = pki.talos_os_ca(NOW)
    client = pki.admin_client_cert(ca, NOW, roles=["os:admin", "os:etcd:backup"])
    cert = client.certificate()
    cert.verify_directly_issued_by(ca.certificate())
    assert pki.certificate_roles(client.crt) == ["os:admin", "os:etcd:backup"]
    assert not cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = _ku(cert)
    assert ku.digital_signature and not ku.key_cert_sign
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=365)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert client.key.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----\n")


def test_apid_server_cert_sans() -> None:
    ca = pki.talos_os_ca(NOW)
    server = pki.apid_server_cert(
        ca, NOW, hostname="cp-1", ip_addresses=["10.5.0.2", "fd00::2"], dns_names=["cp-1"]
    )
    cert = server.certificate()
    cert.verify_directly_issued_by(ca.certificate())
    assert cert.subject.rfc4514_string() == "CN=cp-1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cp-1"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.5.0.2"),
        ipaddress.ip_address("fd00::2"),
    ]
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_leaf_follows_ca_key_type() -> None:
    k8s = pki.kubernetes_ca(NOW)
    leaf = pki.issue(k8s, NOW, validity=dt.timedelta(hours=1), common_name="x", client_auth=True)
    assert isinstance(leaf.private_key(), ec.EllipticCurvePrivateKey)
    leaf.certificate().verify_directly_issued_by(k8s.certificate())


def test_b64_helpers_and_labels() -> None:
    ca = pki.talos_os_ca(NOW)
    assert pki.unb64(ca.crt_b64) == ca.crt
    assert base64.b64decode(ca.key_b64) == ca.key
    assert pki.pem_labels(ca.key + ca.crt) == ["ED25519 PRIVATE KEY", "CERTIFICATE"]
    assert pki.standard_key_pem(ca.key).startswith(b"-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(pki.PKIError, match="crt is not valid base64"):
        pki.unb64("not base64!", what="crt")


def test_secrets_never_in_repr() -> None:
    ca = pki.talos_os_ca(NOW)
    assert "(sensitive value)" in repr(ca)
    assert ca.key.decode() not in repr(ca)
    assert "PRIVATE" not in repr(ca)


def test_bad_input_is_one_clear_error() -> None:
    with pytest.raises(pki.PKIError, match="timezone-aware"):
        pki.talos_os_ca(dt.datetime(2025, 1, 1))
    with pytest.raises(pki.PKIError, match="not a readable unencrypted PEM key"):
        pki.load_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(pki.PKIError, match="not a readable PEM certificate"):
        pki.load_certificate(b"nope")


def _fixture_secrets() -> dict:
    path = TALOS_FIXTURES / "secrets" / "secrets.yaml"
    if not path.is_file():
        pytest.skip("shared talos-fixtures not present")
    return yaml.safe_load(path.read_text())


def _shape(cert: x509.Certificate) -> list[tuple[str, bool, str]]:
    out = []
    for ext in cert.extensions:
        value = "" if isinstance(ext.value, x509.SubjectKeyIdentifier) else repr(ext.value)
        out.append((ext.oid.dotted_string, ext.critical, value))
    return sorted(out)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("os", pki.talos_os_ca),
        ("k8s", pki.kubernetes_ca),
        ("etcd", pki.etcd_ca),
        ("k8saggregator", pki.aggregator_ca),
    ],
)
def test_cas_match_real_talos_bundle(name: str, make) -> None:
    real = _fixture_secrets()["certs"][name]
    real_cert = x509.load_pem_x509_certificate(base64.b64decode(real["crt"]))
    ours = make(NOW)
    ours_cert = ours.certificate()
    assert _shape(ours_cert) == _shape(real_cert)
    assert ours_cert.subject == real_cert.subject
    assert pki.key_algorithm(ours_cert) == pki.key_algorithm(real_cert)
    assert (
        real_cert.not_valid_after_utc - real_cert.not_valid_before_utc
        == ours_cert.not_valid_after_utc - ours_cert.not_valid_before_utc
    )
    assert pki.pem_labels(base64.b64decode(real["key"])) == pki.pem_labels(ours.key)


def test_issue_from_real_talos_os_ca() -> None:
    real = _fixture_secrets()["certs"]["os"]
    ca = pki.CertAndKey(crt=base64.b64decode(real["crt"]), key=base64.b64decode(real["key"]))
    client = pki.admin_client_cert(ca, NOW)
    client.certificate().verify_directly_issued_by(ca.certificate())
    assert pki.certificate_roles(client.crt) == ["os:admin"]
