"""Talos-style X.509: the CAs, client and server certificates ``talosctl gen config`` makes.

Shapes follow Talos's generator (siderolabs/crypto under ``talosctl gen config``):

* CAs are self-signed with a random 128-bit serial, ``NotBefore = now``, 87600 h lifetime,
  Subject holding only ``O=`` (the CA builder ignores a common name, so the front-proxy CA
  ends up with an empty subject, exactly as in real secrets bundles), KeyUsage
  CertSign+DigitalSignature (critical), ExtKeyUsage ServerAuth+ClientAuth and CA:TRUE.
* The OS CA is Ed25519 (``O=talos``); the Kubernetes (``O=kubernetes``), etcd (``O=etcd``) and
  aggregator CAs are ECDSA P-256 with SHA-256.
* A leaf uses the key type of its CA, no basic constraints, the CA's key ID as authority key ID.
  Admin client certs carry the roles as ``O=`` values, DigitalSignature, ClientAuth, one year.
  apid server certs carry ``CN=<hostname>``, IP and DNS SANs, DigitalSignature, ServerAuth.
* PEM labels: ``ED25519 PRIVATE KEY`` (PKCS#8 body) for Ed25519, ``EC PRIVATE KEY`` (SEC1)
  for ECDSA, ``RSA PRIVATE KEY`` (PKCS#1) for RSA, ``CERTIFICATE`` for certificates.

Pure apart from key, serial and key-ID randomness: the clock is the ``now`` parameter, nothing
is read from or written to disk. Machine configs and talosconfigs hold these as base64 of the
PEM bytes (:func:`b64`, :func:`unb64`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(hours=87600)
"""Talos ``CAValidityTime``."""
CLIENT_CERT_VALIDITY = dt.timedelta(days=365)
"""Talos ``TalosAPIDefaultCertificateValidityDuration`` for talosconfig client certs."""
SERVER_CERT_VALIDITY = dt.timedelta(hours=24)
"""apid's server certificate lifetime (it is re-issued by the node before it expires)."""

ED25519_KEY_LABEL = "ED25519 PRIVATE KEY"
ADMIN_ROLE = "os:admin"

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----\r?\n?", re.S)

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class PKIError(ValueError):
    """Unusable certificate or key material; the message never contains key bytes."""


class KeyAlgorithm(Enum):
    """Key (and signature) families Talos uses."""

    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"
    RSA = "rsa"


@dataclass(frozen=True)
class CertAndKey:
    """A PEM certificate and its PEM private key, as Talos stores them (``crt``/``key``)."""

    crt: bytes
    key: bytes = field(repr=False)

    @property
    def crt_b64(self) -> str:
        return b64(self.crt)

    @property
    def key_b64(self) -> str:
        return b64(self.key)

    def certificate(self) -> x509.Certificate:
        return load_certificate(self.crt)

    def private_key(self) -> PrivateKey:
        return load_private_key(self.key)

    def __repr__(self) -> str:
        return f"CertAndKey(crt={len(self.crt)} bytes, key=(sensitive value))"


# ---- base64-of-PEM helpers ----


def b64(pem: bytes) -> str:
    """Standard base64 of PEM bytes, the form machine configs and talosconfigs hold."""
    return base64.b64encode(pem).decode("ascii")


def unb64(text: str | bytes, *, what: str = "value") -> bytes:
    """Decode a base64-of-PEM field strictly; ``what`` names the field in the error."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PKIError(f"{what} is not valid base64") from exc


# ---- keys ----


def generate_key(algorithm: KeyAlgorithm, *, rsa_bits: int = 4096) -> PrivateKey:
    if algorithm is KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm is KeyAlgorithm.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


def key_algorithm(key: PrivateKey | x509.Certificate) -> KeyAlgorithm:
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        return KeyAlgorithm.ED25519
    if isinstance(public, ec.EllipticCurvePublicKey):
        return KeyAlgorithm.ECDSA_P256
    if isinstance(public, rsa.RSAPublicKey):
        return KeyAlgorithm.RSA
    raise PKIError(f"unsupported key type {type(public).__name__}")


def private_key_pem(key: PrivateKey) -> bytes:
    """PEM with the label Talos writes for this key type (see the module docstring)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return _pem(ED25519_KEY_LABEL, der)
    # SEC1 "EC PRIVATE KEY" and PKCS#1 "RSA PRIVATE KEY"
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def standard_key_pem(pem: bytes) -> bytes:
    """The same key with Talos's ``ED25519 PRIVATE KEY`` label replaced by ``PRIVATE KEY``.

    The body already is PKCS#8, which OpenSSL reads only under the generic label.
    """
    return pem.replace(
        f"-----BEGIN {ED25519_KEY_LABEL}-----".encode(), b"-----BEGIN PRIVATE KEY-----"
    ).replace(f"-----END {ED25519_KEY_LABEL}-----".encode(), b"-----END PRIVATE KEY-----")


def load_private_key(pem: bytes) -> PrivateKey:
    """Parse a PEM private key in any label Talos uses."""
    try:
        key = serialization.load_pem_private_key(standard_key_pem(pem), password=None)
    except (ValueError, TypeError):
        raise PKIError("the private key is not a readable unencrypted PEM key") from None
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise PKIError(f"unsupported private key type {type(key).__name__}")
    return key


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise PKIError("the certificate is not a readable PEM certificate") from None


def pem_labels(pem: bytes) -> list[str]:
    """The BEGIN labels of every PEM block, in order (for checks and error messages)."""
    return [m.group(1).decode("ascii") for m in _PEM_BLOCK.finditer(pem)]


def _pem(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"".join([f"-----BEGIN {label}-----\n".encode(), *(ln + b"\n" for ln in lines)]) + (
        f"-----END {label}-----\n".encode()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _sign_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA512 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA512()  # Talos signs with SHA512WithRSA
    return hashes.SHA256()


def _utc(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise PKIError("now must be timezone-aware")
    return now.astimezone(dt.UTC).replace(microsecond=0)


def _name(common_name: str | None, organizations: Sequence[str]) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    if common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


# ---- CAs ----


def new_ca(
    now: dt.datetime,
    *,
    organizations: Sequence[str] = (),
    algorithm: KeyAlgorithm = KeyAlgorithm.ED25519,
    validity: dt.timedelta = CA_VALIDITY,
) -> CertAndKey:
    """A self-signed CA shaped like Talos's ``NewSelfSignedCertificateAuthority``."""
    start = _utc(now)
    key = generate_key(algorithm)
    subject = _name(None, organizations)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number() >> 31)  # 128 random bits, like Talos
        .not_valid_before(start)
        .not_valid_after(start + validity)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _sign_hash(key))
    )
    return CertAndKey(crt=_cert_pem(cert), key=private_key_pem(key))


def talos_os_ca(now: dt.datetime) -> CertAndKey:
    """The Talos API (OS) CA: Ed25519, ``O=talos``."""
    return new_ca(now, organizations=["talos"], algorithm=KeyAlgorithm.ED25519)


def kubernetes_ca(now: dt.datetime) -> CertAndKey:
    return new_ca(now, organizations=["kubernetes"], algorithm=KeyAlgorithm.ECDSA_P256)


def etcd_ca(now: dt.datetime) -> CertAndKey:
    return new_ca(now, organizations=["etcd"], algorithm=KeyAlgorithm.ECDSA_P256)


def aggregator_ca(now: dt.datetime) -> CertAndKey:
    """The front-proxy CA. Talos asks for ``CN=front-proxy`` but its CA builder keeps only
    ``O=``, so real bundles carry an empty subject; so does this."""
    return new_ca(now, organizations=[], algorithm=KeyAlgorithm.ECDSA_P256)


def service_account_key(*, use_rsa: bool = True) -> bytes:
    """The Kubernetes service-account signing key: RSA 4096 from contract 1.7, ECDSA before."""
    key = generate_key(KeyAlgorithm.RSA if use_rsa else KeyAlgorithm.ECDSA_P256)
    return private_key_pem(key)


# ---- leaves ----


def issue(
    ca: CertAndKey,
    now: dt.datetime,
    *,
    validity: dt.timedelta,
    common_name: str | None = None,
    organizations: Sequence[str] = (),
    ip_addresses: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    server_auth: bool = False,
    client_auth: bool = False,
) -> CertAndKey:
    """A leaf signed by ``ca`` with a fresh key of the CA's type (as Talos's ``NewKeyPair``)."""
    ca_cert, ca_key = ca.certificate(), ca.private_key()
    start = _utc(now)
    key = generate_key(key_algorithm(ca_cert))
    usages = []
    if server_auth:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number() >> 31)
        .not_valid_before(start)
        .not_valid_after(start + validity)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    except x509.ExtensionNotFound:
        pass
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, _sign_hash(ca_key))
    return CertAndKey(crt=_cert_pem(cert), key=private_key_pem(key))


def admin_client_cert(
    ca: CertAndKey,
    now: dt.datetime,
    *,
    roles: Sequence[str] = (ADMIN_ROLE,),
    validity: dt.timedelta = CLIENT_CERT_VALIDITY,
) -> CertAndKey:
    """A talosconfig client certificate: roles in ``O=``, ClientAuth, one year by default."""
    return issue(ca, now, validity=validity, organizations=list(roles), client_auth=True)


def apid_server_cert(
    ca: CertAndKey,
    now: dt.datetime,
    *,
    hostname: str,
    ip_addresses: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    validity: dt.timedelta = SERVER_CERT_VALIDITY,
) -> CertAndKey:
    """apid's serving certificate: ``CN=<hostname>``, IP and DNS SANs, ServerAuth."""
    return issue(
        ca,
        now,
        validity=validity,
        common_name=hostname,
        ip_addresses=ip_addresses,
        dns_names=dns_names,
        server_auth=True,
    )


def certificate_roles(pem: bytes) -> list[str]:
    """The ``O=`` values of a certificate: the Talos roles of a client certificate."""
    cert = load_certificate(pem)
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
