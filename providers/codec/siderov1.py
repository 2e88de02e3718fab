"""Omni's ``siderov1`` request signatures, for both ends of a gRPC call.

Every call to Omni carries three metadata headers (go-api-signature ``pkg/message``):

* ``x-sidero-timestamp``: Unix seconds, decimal;
* ``x-sidero-payload``: the signed JSON, ``{"headers":{<10 keys>},"method":"/pkg.Svc/Method"}``
  where each key maps to the list of that header's values, or ``null`` when it is absent;
* ``x-sidero-signature``: ``siderov1 <identity> <fingerprint> <base64(signature)>``, the
  signature being a binary detached OpenPGP signature over the exact payload bytes.

The client side is :func:`signed_metadata`; the server side (the lab's Omni) is :func:`verify`,
which applies the checks Omni's interceptor applies. Keys are OpenPGP keys read by pgpy;
service-account keys travel as ``base64({"name": ..., "pgp_key": <armored private key>})``
(:func:`decode_service_account`, :func:`generate_service_account`).

pgpy 0.6 parses keys and makes EdDSA signatures fine with current ``cryptography``, with quirks
handled here. It imports the deprecated ``imghdr`` module (gone in Python 3.13, so
``standard-imghdr`` is a dependency there) and warns on every key operation, so pgpy calls run
with those warnings silenced. It refuses keys whose preference lists name algorithms it does not
know (keys made by newer Go OpenPGP libraries advertise SHA-3), so such keys are parsed again
with the unknown IDs dropped from their preference subpackets (:func:`_drop_unknown_preferences`);
key material, fingerprint and signatures are unchanged, but such a key must not be re-exported
(its self-signature no longer matches). And its ``verify`` re-serializes what it parsed and skips
the hash tag, so it accepts some altered packets Go refuses: verification is therefore done here
(:func:`_parse_signature`, then ``cryptography``) over the exact bytes received, using pgpy only
for the key.

Nothing here reads files, the environment or the clock: times are parameters.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

SIGNATURE_VERSION = "siderov1"
TIMESTAMP_HEADER = "x-sidero-timestamp"
PAYLOAD_HEADER = "x-sidero-payload"
SIGNATURE_HEADER = "x-sidero-signature"
AUTHORIZATION_HEADER = "authorization"

SIGNED_HEADERS: tuple[str, ...] = (
    TIMESTAMP_HEADER,
    "nodes",
    "selectors",
    "fieldSelectors",
    "runtime",
    "context",
    "cluster",
    "namespace",
    "uid",
    AUTHORIZATION_HEADER,
)
"""The metadata keys whose values the payload carries, spelled as Omni looks them up.

Omni reads incoming metadata (whose keys are lower-case) with these exact keys, so the
camel-case ``fieldSelectors`` is never found there: a client must never send that header."""

ALLOWED_SKEW = timedelta(minutes=5)
"""How far the timestamp may be from the server's clock, either way."""

SERVICE_ACCOUNT_DOMAIN = "serviceaccount.omni.sidero.dev"
DEFAULT_SERVICE_ACCOUNT_LIFETIME = timedelta(days=365)

_WEAK_HASHES = {1, 2, 3}  # MD5, SHA-1, RIPEMD-160: Go's OpenPGP rejects signatures using them


class Siderov1Error(Exception):
    """Base class of this module's errors; messages never contain key material."""


class KeyMaterialError(Siderov1Error, ValueError):
    """A key or service-account value cannot be used (malformed, locked, public only...)."""


class SignatureRejected(Siderov1Error):
    """The server-side checks refused a call; ``reason`` says which check, for logs only.

    Omni answers every such case with UNAUTHENTICATED and a generic message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# pgpy, quietly


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence pgpy's import-time DeprecationWarning and its per-call "TODO" UserWarnings.

    The test suite turns warnings into errors; these say nothing about our use of the library."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _pgpy() -> Any:
    try:
        with _quiet():
            import pgpy
    except ImportError as exc:  # pragma: no cover - depends on the interpreter
        raise Siderov1Error(
            f"the OpenPGP library pgpy cannot be imported ({exc}); on Python 3.13+ install "
            "the 'standard-imghdr' package it needs"
        ) from exc
    return pgpy


def _fingerprint_of(pgp_key: Any) -> str:
    return str(pgp_key.fingerprint).replace(" ", "").lower()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _epoch(now: float | datetime) -> float:
    return now.timestamp() if isinstance(now, datetime) else float(now)


# ---------------------------------------------------------------------------------------------
# Unknown algorithm IDs in key preferences


_PREFERENCE_SUBPACKETS = {
    11: "SymmetricKeyAlgorithm",
    21: "HashAlgorithm",
    22: "CompressionAlgorithm",
}


def _known_ids() -> dict[int, set[int]]:
    constants = _pgpy().constants
    return {
        kind: {int(member) for member in getattr(constants, enum_name)}
        for kind, enum_name in _PREFERENCE_SUBPACKETS.items()
    }


def _new_length(length: int) -> bytes:
    """An OpenPGP new-format length (packet bodies and signature subpackets share it)."""
    if length < 192:
        return bytes([length])
    if length < 8384:
        length -= 192
        return bytes([(length >> 8) + 192, length & 0xFF])
    return b"\xff" + length.to_bytes(4, "big")


def _read_new_length(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 192:
        return first, pos + 1
    if first < 224:
        return ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
    if first == 255:
        return int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
    raise ValueError("partial body lengths are not used in key material")


def _filter_subpackets(area: bytes, known: dict[int, set[int]]) -> bytes:
    out = bytearray()
    pos = 0
    while pos < len(area):
        length, body_at = _read_new_length(area, pos)
        end = body_at + length
        if length == 0 or end > len(area):
            raise ValueError("truncated signature subpacket")
        kind = area[body_at] & 0x7F
        if kind in known:
            kept = bytes(b for b in area[body_at + 1 : end] if b in known[kind])
            body = area[body_at : body_at + 1] + kept
            out += _new_length(len(body)) + body
        else:
            out += area[pos:end]
        pos = end
    return bytes(out)


def _filter_signature(body: bytes, known: dict[int, set[int]]) -> bytes:
    if not body or body[0] != 4:  # only v4 signatures carry subpackets pgpy parses
        return body
    hashed_len = int.from_bytes(body[4:6], "big")
    hashed_end = 6 + hashed_len
    unhashed_len = int.from_bytes(body[hashed_end : hashed_end + 2], "big")
    unhashed_end = hashed_end + 2 + unhashed_len
    if unhashed_end > len(body):
        raise ValueError("truncated signature packet")
    hashed = _filter_subpackets(body[6:hashed_end], known)
    unhashed = _filter_subpackets(body[hashed_end + 2 : unhashed_end], known)
    return (
        body[:4]
        + len(hashed).to_bytes(2, "big")
        + hashed
        + len(unhashed).to_bytes(2, "big")
        + unhashed
        + body[unhashed_end:]
    )


def _drop_unknown_preferences(data: bytes) -> bytes:
    """Rewrite a binary OpenPGP key so that preference subpackets name only algorithms pgpy has.

    Walks the packet stream (RFC 4880 section 4.2, old and new headers) and, inside v4 signature
    packets, filters the preferred symmetric, hash and compression subpackets. Other packets are
    copied byte for byte; rewritten signature packets get a new-format header."""
    known = _known_ids()
    out = bytearray()
    pos = 0
    while pos < len(data):
        start = pos
        ctb = data[pos]
        if not ctb & 0x80:
            raise ValueError("not an OpenPGP packet stream")
        if ctb & 0x40:
            tag = ctb & 0x3F
            length, pos = _read_new_length(data, pos + 1)
        else:
            tag = (ctb >> 2) & 0x0F
            kind = ctb & 0x03
            if kind == 3:
                length, pos = len(data) - pos - 1, pos + 1
            else:
                size = 1 << kind
                length = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
                pos += 1 + size
        end = pos + length
        if end > len(data):
            raise ValueError("truncated OpenPGP packet")
        if tag == 2:
            body = _filter_signature(data[pos:end], known)
            out += bytes([0xC0 | tag]) + _new_length(len(body)) + body
        else:
            out += data[start:end]
        pos = end
    return bytes(out)


def _load_key(text: str | bytes, what: str) -> Any:
    """Parse an armored (or binary) OpenPGP key with pgpy, retrying without unknown preferences."""
    pgpy = _pgpy()
    with _quiet():
        try:
            key, _ = pgpy.PGPKey.from_blob(text)
            return key
        except Exception as first:  # pgpy raises PGPError, ValueError, NotImplementedError...
            try:
                body = bytes(pgpy.types.Armorable.ascii_unarmor(text)["body"])
                key, _ = pgpy.PGPKey.from_blob(_drop_unknown_preferences(body))
                return key
            except Exception:
                raise KeyMaterialError(
                    f"{what} is not an OpenPGP key pgpy can read ({type(first).__name__}: "
                    f"{_short(first)})"
                ) from None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:120]


# ---------------------------------------------------------------------------------------------
# Detached signatures, parsed strictly


_HASHES = {8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224", 12: "sha3_256", 14: "sha3_512"}
# Subpacket types a verifier may understand; an unknown one marked critical voids the signature.
_KNOWN_SUBPACKETS = {2, 3, 4, 5, 6, 7, 9, 11, 12, 16, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31}
_KNOWN_SUBPACKETS |= {32, 33, 35, 39}


@dataclass(frozen=True)
class _Signature:
    """The fields of a v4 signature packet that verification needs, read from the exact bytes."""

    sig_type: int
    pk_alg: int
    hash_alg: int
    hashed: bytes  # version .. end of the hashed subpackets: what the signature covers
    created: int
    lifetime: int | None  # signature expiration, seconds after creation
    issuer: str | None  # key ID, 16 upper-case hex digits; the last issuer subpacket wins (Go)
    hash_tag: bytes
    mpis: tuple[bytes, ...]


def _subpackets(area: bytes, hashed: bool, found: dict[str, Any]) -> None:
    pos = 0
    while pos < len(area):
        length, body_at = _read_new_length(area, pos)
        end = body_at + length
        if length == 0 or end > len(area):
            raise ValueError("subpacket overruns its area")
        kind, critical, body = (
            area[body_at] & 0x7F,
            bool(area[body_at] & 0x80),
            area[body_at + 1 : end],
        )
        if critical and (kind not in _KNOWN_SUBPACKETS):
            raise ValueError(f"unknown critical subpacket {kind}")
        if kind == 2 and hashed:
            if len(body) != 4:
                raise ValueError("bad creation time")
            found["created"] = int.from_bytes(body, "big")
        elif kind == 3 and hashed:
            if len(body) != 4:
                raise ValueError("bad signature expiration")
            found["lifetime"] = int.from_bytes(body, "big") or None
        elif kind == 16:
            if len(body) != 8:
                raise ValueError("bad issuer")
            found["issuer"] = body.hex().upper()
        elif kind == 33:
            if len(body) != 21 or body[0] != 4:
                raise ValueError("bad issuer fingerprint")
            found["issuer"] = body[-8:].hex().upper()
        pos = end


def _parse_signature(data: bytes) -> _Signature:
    """One binary v4 signature packet and nothing else; every length must add up (as Go's
    parser demands), so that no byte can change without changing what is verified."""
    if len(data) < 2 or not data[0] & 0x80:
        raise ValueError("not an OpenPGP packet")
    ctb = data[0]
    if ctb & 0x40:
        tag = ctb & 0x3F
        length, pos = _read_new_length(data, 1)
    else:
        tag, kind = (ctb >> 2) & 0x0F, ctb & 0x03
        if kind == 3:
            raise ValueError("indeterminate length")
        size = 1 << kind
        length, pos = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    if tag != 2:
        raise ValueError("not a signature packet")
    body = data[pos:]
    if len(body) != length:
        raise ValueError("packet length does not match")
    if len(body) < 6 or body[0] != 4:
        raise ValueError("not a version 4 signature")
    sig_type, pk_alg, hash_alg = body[1], body[2], body[3]
    hashed_end = 6 + int.from_bytes(body[4:6], "big")
    if hashed_end + 2 > len(body):
        raise ValueError("hashed area overruns the packet")
    unhashed_end = hashed_end + 2 + int.from_bytes(body[hashed_end : hashed_end + 2], "big")
    if unhashed_end + 2 > len(body):
        raise ValueError("unhashed area overruns the packet")
    found: dict[str, Any] = {"created": None, "lifetime": None, "issuer": None}
    _subpackets(body[6:hashed_end], True, found)
    _subpackets(body[hashed_end + 2 : unhashed_end], False, found)
    if found["created"] is None:
        raise ValueError("no creation time in the hashed area")
    mpis = []
    pos = unhashed_end + 2
    while pos < len(body):
        if pos + 2 > len(body):
            raise ValueError("truncated MPI")
        size = (int.from_bytes(body[pos : pos + 2], "big") + 7) // 8
        if pos + 2 + size > len(body):
            raise ValueError("truncated MPI")
        mpis.append(body[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return _Signature(
        sig_type=sig_type,
        pk_alg=pk_alg,
        hash_alg=hash_alg,
        hashed=body[:hashed_end],
        created=found["created"],
        lifetime=found["lifetime"],
        issuer=found["issuer"],
        hash_tag=body[unhashed_end : unhashed_end + 2],
        mpis=tuple(mpis),
    )


def _digest(sig: _Signature, data: bytes) -> tuple[bytes, Any]:
    name = _HASHES.get(sig.hash_alg)
    if name is None:
        raise SignatureRejected(f"signature uses unsupported hash algorithm {sig.hash_alg}")
    if sig.sig_type == 0x01:  # canonical text: CRLF line endings
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    h = hashlib.new(name)
    h.update(data)
    h.update(sig.hashed)
    h.update(b"\x04\xff" + len(sig.hashed).to_bytes(4, "big"))
    algorithm = {
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
        "sha224": hashes.SHA224(),
        "sha3_256": hashes.SHA3_256(),
        "sha3_512": hashes.SHA3_512(),
    }[name]
    return h.digest(), algorithm


def _check_primitive(sig: _Signature, material: Any, digest: bytes, algorithm: Any) -> bool:
    """The public-key operation over ``digest``, with ``cryptography``."""
    public = material.__pubkey__()
    try:
        if sig.pk_alg == 22:  # EdDSA (legacy Ed25519): r || s, each 32 bytes
            if len(sig.mpis) != 2 or any(len(m) > 32 for m in sig.mpis):
                return False
            r, s_ = (m.rjust(32, b"\0") for m in sig.mpis)
            public.verify(r + s_, digest)
        elif sig.pk_alg == 19:  # ECDSA
            if len(sig.mpis) != 2:
                return False
            r_int, s_int = (int.from_bytes(m, "big") for m in sig.mpis)
            encoded = utils.encode_dss_signature(r_int, s_int)
            public.verify(encoded, digest, ec.ECDSA(utils.Prehashed(algorithm)))
        elif sig.pk_alg in (1, 3):  # RSA
            if len(sig.mpis) != 1:
                return False
            size = (public.key_size + 7) // 8
            public.verify(
                sig.mpis[0].rjust(size, b"\0"),
                digest,
                padding.PKCS1v15(),
                utils.Prehashed(algorithm),
            )
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class SigningKey:
    """A private OpenPGP key that signs calls as ``identity`` (never printed)."""

    identity: str
    fingerprint: str
    created: datetime
    expires_at: datetime | None
    _key: Any = field(repr=False, compare=False)

    @classmethod
    def from_armored(cls, armored: str, identity: str, *, what: str = "the key") -> SigningKey:
        if not identity or any(ch.isspace() for ch in identity):
            raise KeyMaterialError(f"{what}: the identity must be non-empty without spaces")
        key = _load_key(armored, what)
        if key.is_public:
            raise KeyMaterialError(f"{what} holds only a public key; a private key is needed")
        if key.is_protected and not key.is_unlocked:
            raise KeyMaterialError(
                f"{what} is protected by a passphrase; Omni service-account keys are not"
            )
        if key.key_algorithm.name not in {"EdDSA", "ECDSA", "RSAEncryptOrSign", "RSASign"}:
            raise KeyMaterialError(f"{what} uses {key.key_algorithm.name}, which cannot sign")
        return cls(
            identity=identity,
            fingerprint=_fingerprint_of(key),
            created=_utc(key.created) or datetime.fromtimestamp(0, UTC),
            expires_at=_utc(key.expires_at),
            _key=key,
        )

    def sign(self, data: bytes, *, created: float | datetime) -> bytes:
        """A binary detached signature (type 0x00, SHA-256) over ``data``, made at ``created``."""
        pgpy = _pgpy()
        when = datetime.fromtimestamp(int(_epoch(created)), UTC)
        with _quiet():
            signature = self._key.sign(
                bytes(data), hash=pgpy.constants.HashAlgorithm.SHA256, created=when
            )
        return bytes(signature)

    def public_key(self) -> PublicKey:
        return PublicKey._from_pgpy(self._key.pubkey)

    def public_armored(self) -> str:
        with _quiet():
            return str(self._key.pubkey)


@dataclass(frozen=True)
class PublicKey:
    """A registered public key, as Omni stores it under ``PublicKeys/<fingerprint>``."""

    fingerprint: str
    created: datetime
    expires_at: datetime | None
    _key: Any = field(repr=False, compare=False)

    @classmethod
    def from_armored(cls, armored: str | bytes, *, what: str = "the public key") -> PublicKey:
        key = _load_key(armored, what)
        return cls._from_pgpy(key if key.is_public else key.pubkey)

    @classmethod
    def _from_pgpy(cls, key: Any) -> PublicKey:
        return cls(
            fingerprint=_fingerprint_of(key),
            created=_utc(key.created) or datetime.fromtimestamp(0, UTC),
            expires_at=_utc(key.expires_at),
            _key=key,
        )

    def armored(self) -> str:
        with _quiet():
            return str(self._key)

    def verify(self, data: bytes, signature: bytes, *, now: float | datetime) -> None:
        """Check a detached signature the way Omni's key verifier (go-crypto) does, or raise.

        The packet is parsed strictly and the digest computed over the exact bytes received
        (pgpy's own verify re-serializes what it parsed and ignores the hash tag, so it accepts
        some altered packets Go refuses). Refused as well: an expired key; a signature that is
        not over a document, uses a weak hash, comes from a key without the sign flag, predates
        the key, has expired, or claims a creation time beyond ``now`` plus the allowed skew
        (capped at half the key lifetime, as Omni retries)."""
        at = _epoch(now)
        if self.expires_at is not None and at > self.expires_at.timestamp():
            raise SignatureRejected(f"key {self.fingerprint} expired at {self.expires_at}")
        try:
            sig = _parse_signature(bytes(signature))
        except (ValueError, IndexError) as exc:
            raise SignatureRejected(f"signature packet is malformed: {exc}") from None
        if sig.sig_type not in (0x00, 0x01):
            raise SignatureRejected(f"signature type {sig.sig_type:#04x} is not over a document")
        if sig.hash_alg in _WEAK_HASHES:
            raise SignatureRejected(f"signature uses weak hash algorithm {sig.hash_alg}")
        window = ALLOWED_SKEW.total_seconds()
        if self.expires_at is not None:
            window = min(window, (self.expires_at - self.created).total_seconds() / 2)
        if sig.created > at + window:
            raise SignatureRejected("signature was made in the future")
        if sig.created < self.created.timestamp():
            raise SignatureRejected("signature is older than the key")
        if sig.lifetime is not None and at > sig.created + sig.lifetime:
            raise SignatureRejected("signature has expired")
        signer = self._signer(sig.issuer)
        if signer is None:
            raise SignatureRejected(f"signature was not made by key {self.fingerprint}")
        digest, algorithm = _digest(sig, bytes(data))
        if digest[:2] != sig.hash_tag:
            raise SignatureRejected(f"signature does not verify with key {self.fingerprint}")
        material, algorithm_id = signer
        if algorithm_id != sig.pk_alg or not _check_primitive(sig, material, digest, algorithm):
            raise SignatureRejected(f"signature does not verify with key {self.fingerprint}")

    def _signer(self, issuer: str | None) -> tuple[Any, int] | None:
        """Key material and algorithm of the (sub)key that ``issuer`` names, if it may sign."""
        pgpy = _pgpy()
        with _quiet():
            candidates = [self._key, *self._key.subkeys.values()]
            for key in candidates:
                if key.fingerprint.keyid.upper() != issuer:
                    continue
                try:
                    flags = key._get_key_flags()
                except Exception:
                    flags = set()
                if pgpy.constants.KeyFlags.Sign not in flags:
                    return None
                return key._key.keymaterial, int(key.key_algorithm)
        return None


# ---------------------------------------------------------------------------------------------
# Payload and headers


def go_json(value: Any, *, sort_keys: bool = True) -> str:
    """JSON exactly as Go's ``json.Marshal`` writes it for maps, lists and strings.

    Compact, map keys sorted, UTF-8 left as is, but ``<``, ``>``, ``&``, U+2028 and U+2029
    escaped (Go's HTML-safe default). Struct fields keep their order (``sort_keys=False``)."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


MetadataLike = Mapping[str, Any] | Iterable[tuple[str, Any]]


def _multimap(metadata: MetadataLike | None) -> dict[str, list[str]]:
    """Metadata as key -> values in arrival order, from a MultiDict, a mapping or pairs."""
    out: dict[str, list[str]] = {}
    if metadata is None:
        return out
    if hasattr(metadata, "getall"):  # multidict.MultiDict (grpclib): items() repeats keys
        pairs: Iterable[tuple[str, Any]] = metadata.items()  # type: ignore[union-attr]
    elif isinstance(metadata, Mapping):
        pairs = (
            (key, item)
            for key, value in metadata.items()
            for item in ([value] if isinstance(value, str | bytes) else value)
        )
    else:
        pairs = metadata
    for key, value in pairs:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        out.setdefault(key, []).append(text)
    return out


def build_payload(method: str, metadata: MetadataLike | None) -> str:
    """The payload a Go client signs for ``method`` with this outgoing metadata.

    Looks each signed header up lower-cased, as Go's ``metadata.MD.Get`` does."""
    values = _multimap(metadata)
    headers = {key: values.get(key.lower()) for key in SIGNED_HEADERS}
    return go_json({"headers": headers, "method": method})


def signed_metadata(
    method: str,
    key: SigningKey,
    *,
    now: float | datetime,
    metadata: MetadataLike | None = None,
) -> list[tuple[str, str]]:
    """Outgoing metadata for one call: ``metadata`` (if any) plus the three siderov1 headers.

    The timestamp is ``now`` (Unix seconds, floored); any timestamp, payload or signature
    already in ``metadata`` is replaced, as Go's re-signing does."""
    own = {TIMESTAMP_HEADER, PAYLOAD_HEADER, SIGNATURE_HEADER}
    pairs = [
        (k.lower(), v) for k, values in _multimap(metadata).items() for v in values if k not in own
    ]
    if any(k == "fieldselectors" for k, _ in pairs):
        raise ValueError("the fieldSelectors header cannot be signed so that Omni accepts it")
    timestamp = int(_epoch(now))
    pairs.append((TIMESTAMP_HEADER, str(timestamp)))
    payload = build_payload(method, pairs)
    signature = base64.b64encode(key.sign(payload.encode("utf-8"), created=timestamp)).decode()
    header = f"{SIGNATURE_VERSION} {key.identity} {key.fingerprint} {signature}"
    return [*pairs, (PAYLOAD_HEADER, payload), (SIGNATURE_HEADER, header)]


@dataclass(frozen=True)
class VerifiedCall:
    """Who signed an accepted call (the identity is only informative, as in Omni)."""

    identity: str
    fingerprint: str
    timestamp: int


_INT = re.compile(r"[+-]?[0-9]+")


def _parse_payload(raw: str) -> tuple[Any, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise SignatureRejected("payload is not JSON") from None
    if not isinstance(doc, dict):
        raise SignatureRejected("payload is not a JSON object")
    headers: Any = None
    method: Any = ""
    for key, value in doc.items():  # Go matches struct fields case-insensitively, last wins
        if key.lower() == "headers":
            headers = value
        elif key.lower() == "method":
            method = value
    if headers is not None and not isinstance(headers, dict):
        raise SignatureRejected("payload headers are not an object")
    for name, values in (headers or {}).items():
        if values is not None and not (
            isinstance(values, list) and all(isinstance(v, str) for v in values)
        ):
            raise SignatureRejected(f"payload header {name!r} is not a list of strings")
    if method is None:
        method = ""
    if not isinstance(method, str):
        raise SignatureRejected("payload method is not a string")
    return headers or {}, method


def verify(
    metadata: MetadataLike,
    method: str,
    public_keys_by_fingerprint: Mapping[str, PublicKey],
    now: float | datetime,
) -> VerifiedCall:
    """Omni's server-side check of a signed call, or :class:`SignatureRejected`.

    In order: the signature header parses (``siderov1`` and four space-separated fields); the
    timestamp is within ±5 minutes of ``now``; the payload's method equals ``method``; each of
    the ten signed headers in the payload deep-equals the incoming metadata (absent and ``null``
    match, ``[]`` does not); the fingerprint names a known key; the key verifies the signature
    over the payload bytes exactly as received."""
    incoming = _multimap(metadata)

    def first(name: str) -> str:
        values = incoming.get(name)
        return values[0] if values else ""

    header = first(SIGNATURE_HEADER)
    if not header:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER}")
    parts = header.split(" ")
    if parts[0] != SIGNATURE_VERSION:
        raise SignatureRejected(f"unsupported signature version {parts[0][:20]!r}")
    if len(parts) < 4:
        raise SignatureRejected("malformed signature header")
    identity, fingerprint, encoded = parts[1], parts[2], parts[3]

    stamp = first(TIMESTAMP_HEADER)
    if not stamp:
        raise SignatureRejected(f"missing {TIMESTAMP_HEADER}")
    if not _INT.fullmatch(stamp):
        raise SignatureRejected("timestamp is not an integer")
    timestamp = int(stamp)
    at = _epoch(now)
    skew = ALLOWED_SKEW.total_seconds()
    if timestamp > at + skew or timestamp < at - skew:
        raise SignatureRejected("timestamp is outside of the allowed skew")

    raw = first(PAYLOAD_HEADER)
    if not raw:
        raise SignatureRejected(f"missing {PAYLOAD_HEADER}")
    headers, signed_method = _parse_payload(raw)
    if signed_method != method:
        raise SignatureRejected(f"payload method {signed_method!r} is not {method!r}")
    for name in SIGNED_HEADERS:
        if headers.get(name) != incoming.get(name):
            raise SignatureRejected(f"payload header {name!r} does not match the metadata")

    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRejected("signature is not valid base64") from None
    key = public_keys_by_fingerprint.get(fingerprint)
    if key is None:
        raise SignatureRejected(f"unknown key {fingerprint[:64]!r}")
    key.verify(raw.encode("utf-8"), signature, now=at)
    return VerifiedCall(identity=identity, fingerprint=fingerprint, timestamp=timestamp)


# ---------------------------------------------------------------------------------------------
# Service accounts


@dataclass(frozen=True)
class ServiceAccount:
    """A decoded service-account key: its name is the signing identity."""

    name: str
    key: SigningKey = field(repr=False)


def decode_service_account(
    value: str, *, source: str = "the service account key"
) -> ServiceAccount:
    """Decode ``base64({"name","pgp_key"})``; errors name ``source`` but never echo the value."""
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"{source} is not valid base64") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except ValueError:
        raise KeyMaterialError(f"{source} does not decode to JSON") from None
    if not isinstance(doc, dict):
        raise KeyMaterialError(f"{source} does not decode to a JSON object")
    name, armored = doc.get("name"), doc.get("pgp_key")
    if not isinstance(name, str) or not name:
        raise KeyMaterialError(f"{source} has no 'name'")
    if not isinstance(armored, str) or not armored:
        raise KeyMaterialError(f"{source} has no 'pgp_key'")
    return ServiceAccount(name=name, key=SigningKey.from_armored(armored, name, what=source))


def encode_service_account(name: str, armored_private_key: str) -> str:
    """The environment-variable value for a service account, as Omni's Go code encodes it."""
    doc = go_json({"name": name, "pgp_key": armored_private_key}, sort_keys=False)
    return base64.b64encode(doc.encode("utf-8")).decode("ascii")


@dataclass(frozen=True)
class GeneratedServiceAccount:
    """A new service account: give ``public_key_armored`` to Omni, ``env_value`` to the user."""

    name: str
    email: str
    fingerprint: str
    created: datetime
    expires_at: datetime
    public_key_armored: str
    env_value: str = field(repr=False)

    def public_key(self) -> PublicKey:
        return PublicKey.from_armored(self.public_key_armored)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def generate_service_account(
    name: str,
    *,
    now: float | datetime,
    lifetime: timedelta = DEFAULT_SERVICE_ACCOUNT_LIFETIME,
    comment: str = "automation",
) -> GeneratedServiceAccount:
    """A fresh EdDSA (Ed25519) key for service account ``name``, shaped like Omni's own.

    User ID ``name (comment) <name@serviceaccount.omni.sidero.dev>``, flags sign+certify,
    key lifetime ``lifetime`` from ``now``, SHA-256 / AES-256 preferences."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"service account name {name!r} must be letters, digits, '.', '_' or '-'")
    if lifetime <= timedelta(0):
        raise ValueError("service account key lifetime must be positive")
    pgpy = _pgpy()
    c = pgpy.constants
    created = datetime.fromtimestamp(int(_epoch(now)), UTC)
    email = f"{name}@{SERVICE_ACCOUNT_DOMAIN}"
    with _quiet():
        key = pgpy.PGPKey.new(c.PubKeyAlgorithm.EdDSA, c.EllipticCurveOID.Ed25519, created=created)
        uid = pgpy.PGPUID.new(name, comment=comment, email=email)
        key.add_uid(
            uid,
            usage={c.KeyFlags.Sign, c.KeyFlags.Certify},
            hashes=[c.HashAlgorithm.SHA256],
            ciphers=[c.SymmetricKeyAlgorithm.AES256, c.SymmetricKeyAlgorithm.AES128],
            compression=[c.CompressionAlgorithm.Uncompressed, c.CompressionAlgorithm.ZLIB],
            key_expiration=lifetime,
            primary=True,
            created=created,
        )
        armored_private = str(key)
        armored_public = str(key.pubkey)
    return GeneratedServiceAccount(
        name=name,
        email=email,
        fingerprint=_fingerprint_of(key),
        created=created,
        expires_at=created + lifetime,
        public_key_armored=armored_public,
        env_value=encode_service_account(name, armored_private),
    )
