"""siderov1 signing and server-side verification (pure; no network)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from omniport.providers.codec import siderov1

NOW = 1_800_000_000.0
METHOD = "/cosi.resource.State/Get"


@pytest.fixture(scope="module")
def account() -> siderov1.GeneratedServiceAccount:
    return siderov1.generate_service_account("lab-admin", now=NOW - 60)


@pytest.fixture(scope="module")
def signing_key(account: siderov1.GeneratedServiceAccount) -> siderov1.SigningKey:
    return siderov1.decode_service_account(account.env_value).key


@pytest.fixture(scope="module")
def keys(account: siderov1.GeneratedServiceAccount) -> dict[str, siderov1.PublicKey]:
    public = account.public_key()
    return {public.fingerprint: public}


def _signed(key: siderov1.SigningKey, **kw) -> list[tuple[str, str]]:
    return siderov1.signed_metadata(METHOD, key, now=kw.pop("now", NOW), **kw)


def _replace(md: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k == name else v) for k, v in md]


# -- payload -------------------------------------------------------------------------------------


def test_payload_is_go_json_marshal_form() -> None:
    md = [("x-sidero-timestamp", "1700000000")]
    assert siderov1.build_payload(METHOD, md) == (
        '{"headers":{"authorization":null,"cluster":null,"context":null,"fieldSelectors":null,'
        '"namespace":null,"nodes":null,"runtime":null,"selectors":null,"uid":null,'
        '"x-sidero-timestamp":["1700000000"]},"method":"/cosi.resource.State/Get"}'
    )


def test_payload_keeps_every_value_in_order_and_escapes_like_go() -> None:
    md = [("nodes", "10.0.0.1"), ("nodes", "10.0.0.2"), ("uid", "a<b>&c"), ("other", "x")]
    doc = siderov1.build_payload("/m", md)
    assert '"nodes":["10.0.0.1","10.0.0.2"]' in doc
    assert '"uid":["a\\u003cb\\u003e\\u0026c"]' in doc
    assert "other" not in doc
    assert json.loads(doc)["headers"]["uid"] == ["a<b>&c"]


def test_signed_metadata_has_three_headers_and_a_parsable_signature_header(
    signing_key: siderov1.SigningKey, account: siderov1.GeneratedServiceAccount
) -> None:
    md = dict(_signed(signing_key))
    assert md["x-sidero-timestamp"] == str(int(NOW))
    assert json.loads(md["x-sidero-payload"])["method"] == METHOD
    version, identity, fingerprint, sig = md["x-sidero-signature"].split(" ")
    assert (version, identity) == ("siderov1", "lab-admin")
    assert fingerprint == account.fingerprint
    assert len(fingerprint) == 40 and fingerprint == fingerprint.lower()
    raw = base64.b64decode(sig, validate=True)
    assert raw[0] & 0x80  # one binary OpenPGP packet, base64-encoded once


def test_extra_metadata_is_signed_and_sent(
    signing_key: siderov1.SigningKey, keys: dict[str, siderov1.PublicKey]
) -> None:
    md = _signed(signing_key, metadata={"nodes": ["a", "b"], "x-sidero-timestamp": "1"})
    assert [v for k, v in md if k == "nodes"] == ["a", "b"]
    assert [v for k, v in md if k == "x-sidero-timestamp"] == [str(int(NOW))]
    siderov1.verify(md, METHOD, keys, NOW)


def test_field_selectors_header_is_refused_before_sending(
    signing_key: siderov1.SigningKey,
) -> None:
    with pytest.raises(ValueError, match="fieldSelectors"):
        _signed(signing_key, metadata={"fieldselectors": "x"})


# -- verification --------------------------------------------------------------------------------


def test_signed_call_is_accepted(
    signing_key: siderov1.SigningKey, keys: dict[str, siderov1.PublicKey]
) -> None:
    verified = siderov1.verify(_signed(signing_key), METHOD, keys, NOW + 299)
    assert verified == siderov1.VerifiedCall("lab-admin", signing_key.fingerprint, int(NOW))


def _tamper_signature(md: list[tuple[str, str]]) -> list[tuple[str, str]]:
    header = dict(md)["x-sidero-signature"]
    head, sig = header.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[-5] ^= 0x01  # inside the EdDSA signature value
    return _replace(md, "x-sidero-signature", f"{head} {base64.b64encode(bytes(raw)).decode()}")


def _tamper_payload(md: list[tuple[str, str]]) -> list[tuple[str, str]]:
    payload = dict(md)["x-sidero-payload"]
    return _replace(md, "x-sidero-payload", payload.replace('"method"', '"method" '))


REJECTIONS = [
    ("tampered signature", lambda md: _tamper_signature(md), METHOD, 0, "does not verify"),
    ("payload edited", _tamper_payload, METHOD, 0, "does not verify"),
    ("wrong method", lambda md: md, "/cosi.resource.State/Destroy", 0, "method"),
    ("skew ahead", lambda md: md, METHOD, 301, "skew"),
    ("skew behind", lambda md: md, METHOD, -301, "skew"),
    ("extra header", lambda md: [*md, ("cluster", "x")], METHOD, 0, "'cluster'"),
    (
        "no signature",
        lambda md: [(k, v) for k, v in md if k != "x-sidero-signature"],
        METHOD,
        0,
        "missing x-sidero-signature",
    ),
    (
        "no payload",
        lambda md: [(k, v) for k, v in md if k != "x-sidero-payload"],
        METHOD,
        0,
        "missing x-sidero-payload",
    ),
    (
        "other version",
        lambda md: _replace(md, "x-sidero-signature", "siderov2 a b c"),
        METHOD,
        0,
        "version",
    ),
    (
        "short header",
        lambda md: _replace(md, "x-sidero-signature", "siderov1 a b"),
        METHOD,
        0,
        "malformed",
    ),
    (
        "bad base64",
        lambda md: _replace(
            md,
            "x-sidero-signature",
            " ".join(dict(md)["x-sidero-signature"].split(" ")[:3] + ["%%%"]),
        ),
        METHOD,
        0,
        "base64",
    ),
    (
        "timestamp not a number",
        lambda md: _replace(md, "x-sidero-timestamp", "soon"),
        METHOD,
        0,
        "integer",
    ),
]


@pytest.mark.parametrize(
    "mutate, method, shift, reason", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejections(signing_key, keys, mutate, method, shift, reason) -> None:
    with pytest.raises(siderov1.SignatureRejected, match=reason):
        siderov1.verify(mutate(_signed(signing_key)), method, keys, NOW + shift)


def test_empty_list_is_not_absent(
    signing_key: siderov1.SigningKey, keys: dict[str, siderov1.PublicKey]
) -> None:
    """A payload that says ``[]`` for a header the call does not carry is refused (Go DeepEqual),
    even when validly signed."""
    md = dict(_signed(signing_key))
    doc = json.loads(md["x-sidero-payload"])
    doc["headers"]["uid"] = []
    payload = json.dumps(doc)
    sig = base64.b64encode(signing_key.sign(payload.encode(), created=NOW)).decode()
    forged = [
        ("x-sidero-timestamp", md["x-sidero-timestamp"]),
        ("x-sidero-payload", payload),
        ("x-sidero-signature", f"siderov1 lab-admin {signing_key.fingerprint} {sig}"),
    ]
    with pytest.raises(siderov1.SignatureRejected, match="'uid'"):
        siderov1.verify(forged, METHOD, keys, NOW)
    doc["headers"]["uid"] = None  # null and absent are the same: accepted
    del doc["headers"]["nodes"]
    payload = json.dumps(doc, indent=2)  # key order and whitespace are free
    sig = base64.b64encode(signing_key.sign(payload.encode(), created=NOW)).decode()
    ok = _replace(_replace(forged, "x-sidero-payload", payload), "x-sidero-signature", "")
    ok = _replace(ok, "x-sidero-signature", f"siderov1 x {signing_key.fingerprint} {sig}")
    assert siderov1.verify(ok, METHOD, keys, NOW).identity == "x"


def test_wrong_key_is_rejected(keys: dict[str, siderov1.PublicKey]) -> None:
    other = siderov1.generate_service_account("intruder", now=NOW - 60)
    intruder = siderov1.decode_service_account(other.env_value).key
    md = _signed(intruder)
    with pytest.raises(siderov1.SignatureRejected, match="unknown key"):
        siderov1.verify(md, METHOD, keys, NOW)
    # Claiming a registered fingerprint does not help: the registered key does not verify it.
    registered = next(iter(keys))
    header = dict(md)["x-sidero-signature"].replace(intruder.fingerprint, registered)
    with pytest.raises(siderov1.SignatureRejected, match="not made by key"):
        siderov1.verify(_replace(md, "x-sidero-signature", header), METHOD, keys, NOW)


def test_expired_key_and_future_signature_are_rejected() -> None:
    short = siderov1.generate_service_account("short", now=NOW, lifetime=timedelta(minutes=6))
    key = siderov1.decode_service_account(short.env_value).key
    public = {short.fingerprint: short.public_key()}
    siderov1.verify(_signed(key, now=NOW + 60), METHOD, public, NOW + 60)
    with pytest.raises(siderov1.SignatureRejected, match="expired"):
        siderov1.verify(_signed(key, now=NOW + 400), METHOD, public, NOW + 400)
    # Signed 4 minutes ahead: within the timestamp skew, but beyond half the key lifetime.
    with pytest.raises(siderov1.SignatureRejected, match="future"):
        siderov1.verify(_signed(key, now=NOW + 240), METHOD, public, NOW)
    # Signed before the key existed.
    with pytest.raises(siderov1.SignatureRejected, match="older than the key"):
        siderov1.verify(_signed(key, now=NOW - 120), METHOD, public, NOW - 120)


def test_weak_hash_is_rejected(signing_key, keys) -> None:
    import pgpy

    payload = siderov1.build_payload(METHOD, [("x-sidero-timestamp", str(int(NOW)))])
    with siderov1._quiet():
        sig = signing_key._key.sign(payload.encode(), hash=pgpy.constants.HashAlgorithm.SHA1)
    md = [
        ("x-sidero-timestamp", str(int(NOW))),
        ("x-sidero-payload", payload),
        (
            "x-sidero-signature",
            f"siderov1 a {signing_key.fingerprint} {base64.b64encode(bytes(sig)).decode()}",
        ),
    ]
    with pytest.raises(siderov1.SignatureRejected, match="weak hash"):
        siderov1.verify(md, METHOD, keys, NOW)


# -- keys and service accounts -------------------------------------------------------------------


def test_generated_account_shape(account: siderov1.GeneratedServiceAccount) -> None:
    doc = json.loads(base64.b64decode(account.env_value))
    assert list(doc) == ["name", "pgp_key"]
    assert doc["name"] == "lab-admin"
    assert doc["pgp_key"].startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert account.email == "lab-admin@serviceaccount.omni.sidero.dev"
    assert account.expires_at - account.created == timedelta(days=365)
    assert account.public_key_armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE" not in account.public_key_armored
    assert account.env_value not in repr(account)
    key = siderov1.decode_service_account(account.env_value).key
    assert "PRIVATE" not in repr(key) and key.identity == "lab-admin"
    assert key.expires_at == account.expires_at


@pytest.mark.parametrize(
    "value, reason",
    [
        ("not base64 at all!", "not valid base64"),
        (base64.b64encode(b"{nope").decode(), "does not decode to JSON"),
        (base64.b64encode(b"[]").decode(), "JSON object"),
        (base64.b64encode(b'{"pgp_key":"x"}').decode(), "no 'name'"),
        (base64.b64encode(b'{"name":"a"}').decode(), "no 'pgp_key'"),
        (base64.b64encode(b'{"name":"a","pgp_key":"garbage"}').decode(), "not an OpenPGP key"),
    ],
    ids=["base64", "json", "object", "name", "pgp_key", "garbage key"],
)
def test_bad_service_account_values(value: str, reason: str) -> None:
    with pytest.raises(siderov1.KeyMaterialError, match=reason) as info:
        siderov1.decode_service_account(value, source="OMNI_SERVICE_ACCOUNT_KEY")
    assert str(info.value).startswith("OMNI_SERVICE_ACCOUNT_KEY")


def test_public_key_is_not_a_signing_key(account: siderov1.GeneratedServiceAccount) -> None:
    value = siderov1.encode_service_account("a", account.public_key_armored)
    with pytest.raises(siderov1.KeyMaterialError, match="only a public key"):
        siderov1.decode_service_account(value)


def test_names_that_would_break_the_header_are_refused() -> None:
    with pytest.raises(ValueError):
        siderov1.generate_service_account("two words", now=NOW)
    with pytest.raises(siderov1.KeyMaterialError, match="without spaces"):
        siderov1.SigningKey.from_armored("x", "two words")


def test_key_with_unknown_preference_ids_still_signs() -> None:
    """Newer Go OpenPGP keys advertise algorithms pgpy lacks (e.g. SHA3-256 = 12); pgpy refuses
    to parse them, so the loader drops those IDs from the preference lists and signs anyway."""
    import pgpy
    from pgpy.constants import (
        CompressionAlgorithm,
        EllipticCurveOID,
        HashAlgorithm,
        KeyFlags,
        PubKeyAlgorithm,
        SymmetricKeyAlgorithm,
    )

    with siderov1._quiet():
        key = pgpy.PGPKey.new(PubKeyAlgorithm.EdDSA, EllipticCurveOID.Ed25519)
        key.add_uid(
            pgpy.PGPUID.new("go", email="go@serviceaccount.omni.sidero.dev"),
            usage={KeyFlags.Sign},
            hashes=[HashAlgorithm.SHA256, 12, 14],
            ciphers=[SymmetricKeyAlgorithm.AES256, 99],
            compression=[CompressionAlgorithm.ZLIB, 77],
        )
        armored, public = str(key), str(key.pubkey)
        with pytest.raises(Exception, match="not a valid"):
            pgpy.PGPKey.from_blob(armored)
    signer = siderov1.SigningKey.from_armored(armored, "go")
    verifier = siderov1.PublicKey.from_armored(public)
    assert signer.fingerprint == verifier.fingerprint == str(key.fingerprint).lower()
    md = siderov1.signed_metadata(METHOD, signer, now=NOW)
    assert siderov1.verify(md, METHOD, {verifier.fingerprint: verifier}, NOW).identity == "go"


def test_rewriter_keeps_ordinary_keys_byte_for_byte(account) -> None:
    import pgpy

    with siderov1._quiet():
        body = bytes(pgpy.types.Armorable.ascii_unarmor(account.public_key_armored)["body"])
    rewritten = siderov1._drop_unknown_preferences(body)
    # Same packets (only headers may change form), so pgpy reads the same key back.
    assert siderov1.PublicKey.from_armored(rewritten).fingerprint == account.fingerprint
    assert len(rewritten) == len(body)


@pytest.mark.skipif(shutil.which("gpgv") is None, reason="gpgv (GnuPG) is not installed")
def test_gnupg_accepts_our_signature(tmp_path: Path) -> None:
    """An independent OpenPGP implementation verifies the detached signature we send."""
    import pgpy

    now = time.time()  # gpgv judges key and signature times by the real clock
    account = siderov1.generate_service_account("gpg-check", now=now - 5)
    signing_key = siderov1.decode_service_account(account.env_value).key

    with siderov1._quiet():
        ring = bytes(pgpy.types.Armorable.ascii_unarmor(account.public_key_armored)["body"])
    (tmp_path / "ring.gpg").write_bytes(ring)
    md = dict(_signed(signing_key, now=now))
    (tmp_path / "payload").write_text(md["x-sidero-payload"])
    (tmp_path / "sig").write_bytes(base64.b64decode(md["x-sidero-signature"].split(" ")[3]))
    cmd = ["gpgv", "--homedir", str(tmp_path), "--keyring", str(tmp_path / "ring.gpg")]
    good = subprocess.run([*cmd, "sig", "payload"], cwd=tmp_path, capture_output=True, timeout=30)
    assert good.returncode == 0, good.stderr.decode()
    (tmp_path / "payload").write_text(md["x-sidero-payload"] + " ")
    bad = subprocess.run([*cmd, "sig", "payload"], cwd=tmp_path, capture_output=True, timeout=30)
    assert bad.returncode != 0


def test_every_bit_of_the_signed_data_and_signature_values_matters(signing_key, keys) -> None:
    """Flip each bit of the signature packet: only bits outside what OpenPGP protects may pass
    (the unhashed subpacket area and MPI bit counts, which Go's parser ignores as well)."""
    md = _signed(signing_key)
    head, sig = dict(md)["x-sidero-signature"].rsplit(" ", 1)
    raw = base64.b64decode(sig)
    assert raw[0] == 0xC2 and raw[1] == len(raw) - 2  # new-format header, one-byte length
    body_at = 2
    hashed_end = body_at + 6 + int.from_bytes(raw[body_at + 4 : body_at + 6], "big")
    unhashed_end = hashed_end + 2 + int.from_bytes(raw[hashed_end : hashed_end + 2], "big")
    r_at = unhashed_end + 2
    s_at = r_at + 2 + (int.from_bytes(raw[r_at : r_at + 2], "big") + 7) // 8
    tolerated = set(range(hashed_end + 2, unhashed_end)) | {r_at + 1, s_at + 1}
    accepted = []
    for index in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[index] ^= 1 << bit
            header = f"{head} {base64.b64encode(bytes(flipped)).decode()}"
            try:
                siderov1.verify(_replace(md, "x-sidero-signature", header), METHOD, keys, NOW)
            except siderov1.SignatureRejected:
                continue
            accepted.append(index)
    assert set(accepted) <= tolerated
    assert len(accepted) < 20, accepted
