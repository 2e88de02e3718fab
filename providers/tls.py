"""``ssl.SSLContext`` builders for Talos-style mutual TLS over HTTP/2 (grpclib).

Talos keys are Ed25519 PKCS#8 under the PEM label ``ED25519 PRIVATE KEY``, which OpenSSL only
reads as ``PRIVATE KEY``; the key is relabelled in memory. ``ssl`` can load a certificate chain
only from a file, so the PEMs go to a private (0600) temporary file that is deleted as soon as
OpenSSL has read it. Key bytes never appear in an error message.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile

__all__ = [
    "TLSConfigError",
    "client_context",
    "load_cert_chain_pem",
    "server_context",
    "standard_key_pem",
]

_ED25519_LABEL = b"ED25519 PRIVATE KEY"
# HTTP/2 forbids the TLS 1.2 suites outside these (RFC 7540 appendix A); TLS 1.3 is unaffected.
_H2_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"


class TLSConfigError(ValueError):
    """The CA, certificate or key bytes cannot be used; the message says which."""


def standard_key_pem(pem: bytes) -> bytes:
    """Talos's ``ED25519 PRIVATE KEY`` label replaced by ``PRIVATE KEY`` (the body is PKCS#8)."""
    return pem.replace(b"BEGIN " + _ED25519_LABEL, b"BEGIN PRIVATE KEY").replace(
        b"END " + _ED25519_LABEL, b"END PRIVATE KEY"
    )


def _base(protocol: int) -> ssl.SSLContext:
    """A bare context: no system CAs, TLS >= 1.2, HTTP/2 by ALPN."""
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_H2_CIPHERS)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def load_cert_chain_pem(ctx: ssl.SSLContext, crt_pem: bytes, key_pem: bytes) -> None:
    """``ctx.load_cert_chain`` from bytes, through a 0600 temp file removed immediately."""
    fd, path = tempfile.mkstemp(prefix="omniport-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:  # mkstemp creates the file with mode 0600
            fh.write(crt_pem.rstrip(b"\n") + b"\n" + standard_key_pem(key_pem))
        try:
            ctx.load_cert_chain(path)
        except ssl.SSLError as exc:
            reason = exc.reason or "unreadable"
            raise TLSConfigError(
                f"the client certificate and key do not form a usable pair ({reason})"
            ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _load_ca(ctx: ssl.SSLContext, ca_pem: bytes) -> None:
    try:
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise TLSConfigError("the CA certificate is not a readable PEM certificate") from None


def client_context(
    ca_pem: bytes,
    crt_pem: bytes | None = None,
    key_pem: bytes | None = None,
    *,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client context trusting only ``ca_pem``, presenting ``crt_pem``/``key_pem`` if given.

    The server name checked is the host the channel dials (grpclib passes it), as talosctl does.
    """
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED, hostname checked
    _load_ca(ctx, ca_pem)
    ctx.check_hostname = check_hostname
    if crt_pem is not None or key_pem is not None:
        if not crt_pem or not key_pem:
            raise TLSConfigError("a client certificate needs both crt and key")
        load_cert_chain_pem(ctx, crt_pem, key_pem)
    return ctx


def server_context(
    crt_pem: bytes,
    key_pem: bytes,
    *,
    client_ca_pem: bytes | None = None,
    require_client_cert: bool = True,
) -> ssl.SSLContext:
    """A server context (test servers, the lab): serves ``crt_pem`` and, when ``client_ca_pem``
    is given, verifies client certificates against it (required unless told otherwise)."""
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    load_cert_chain_pem(ctx, crt_pem, key_pem)
    if client_ca_pem is not None:
        _load_ca(ctx, client_ca_pem)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
