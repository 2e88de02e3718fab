"""Self-signed CAs and PEM handling shaped like Talos's secrets bundle (private helper).

What a fresh ``talosctl gen secrets`` CA looks like (read off real bundles):

* self-signed, random 128-bit serial, random 20-byte subject key ID, no authority key ID;
* ``NotBefore = now``, lifetime 87600 h;
* subject holds only ``O=`` values (Talos's CA builder drops a common name, which is why the
  front-proxy CA of a real bundle has an empty subject);
* KeyUsage DigitalSignature + CertSign (critical), ExtKeyUsage ServerAuth + ClientAuth,
  BasicConstraints CA:TRUE (critical);
* PEM labels: ``EC PRIVATE KEY`` (SEC1), ``RSA PRIVATE KEY`` (PKCS#1) and Talos's own
  ``ED25519 PRIVATE KEY`` around a PKCS#8 body.

Serials and key IDs come from the ``random_bytes`` parameter; key pairs come from OpenSSL's
generator (``cryptography`` cannot be fed another source). No file or network I/O.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Callable
from enum import Enum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(hours=87600)
ED25519_LABEL = "ED25519 PRIVATE KEY"
KEY_LABELS = ("RSA PRIVATE KEY", "EC PRIVATE KEY", ED25519_LABEL, "PRIVATE KEY")

RandomBytes = Callable[[int], bytes]
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


class Algorithm(Enum):
    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"
    RSA = "rsa"


class PEMProblem(ValueError):
    """Why a PEM value is unusable; the text never contains key material."""


def first_block(data: bytes) -> tuple[str, bytes]:
    """The label and DER body of the first PEM block in ``data``."""
    match = _PEM.search(data)
    if match is None:
        raise PEMProblem("no PEM block found")
    body = b"".join(match.group(2).split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise PEMProblem("the PEM block's body is not valid base64") from None
    return match.group(1).decode("ascii"), der


def load_key(data: bytes) -> PrivateKey:
    """Parse a private key under any label Talos accepts."""
    label, der = first_block(data)
    if label not in KEY_LABELS:
        raise PEMProblem(f"unsupported key type {label!r}")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PEMProblem(f"the {label} block is not a readable unencrypted key") from None
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise PEMProblem(f"unsupported key algorithm {type(key).__name__}")
    return key


def load_certificate(data: bytes) -> x509.Certificate:
    label, der = first_block(data)
    if label != "CERTIFICATE":
        raise PEMProblem(f"expected a CERTIFICATE block, found {label!r}")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise PEMProblem("the CERTIFICATE block is not a readable X.509 certificate") from None


def same_public_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    try:
        return cert.public_key().public_bytes(der, fmt) == key.public_key().public_bytes(der, fmt)
    except (ValueError, UnsupportedAlgorithm):
        return False


def key_pem(key: PrivateKey) -> bytes:
    """PEM with the label Talos writes for this key type."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        body = base64.b64encode(der)
        lines = b"".join(body[i : i + 64] + b"\n" for i in range(0, len(body), 64))
        return (
            f"-----BEGIN {ED25519_LABEL}-----\n".encode()
            + lines
            + (f"-----END {ED25519_LABEL}-----\n".encode())
        )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def new_key(algorithm: Algorithm, *, rsa_bits: int = 4096) -> PrivateKey:
    if algorithm is Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm is Algorithm.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


def new_ca(
    now: dt.datetime,
    *,
    organizations: tuple[str, ...],
    algorithm: Algorithm,
    random_bytes: RandomBytes,
) -> tuple[bytes, bytes]:
    """A self-signed CA as ``(certificate PEM, key PEM)``; see the module docstring."""
    start = (now if now.tzinfo else now.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    start = start.replace(microsecond=0)
    key = new_key(algorithm)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations])
    serial = int.from_bytes(random_bytes(16), "big") or 1
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(random_bytes(20)), critical=False)
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)
