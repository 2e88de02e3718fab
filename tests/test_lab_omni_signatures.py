"""The lab Omni's memory of verified calls answers exactly as ``siderov1.verify`` does.

Real keys and signatures throughout: calls are signed with ``siderov1.signed_metadata`` and the
metadata is a ``MultiDict`` as grpclib hands it to the server. Each case checks the memory
against a fresh ``siderov1.verify`` at the same instant.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from multidict import MultiDict

from omniport.lab.omni_signatures import VerifiedCalls
from omniport.providers.codec import siderov1

NOW = 1_800_000_000.0
METHOD = "/cosi.resource.State/Create"
SKEW = siderov1.ALLOWED_SKEW.total_seconds()


@pytest.fixture(scope="module")
def account() -> tuple[siderov1.SigningKey, siderov1.PublicKey]:
    generated = siderov1.generate_service_account("sa-test", now=NOW - 3600)
    key = siderov1.decode_service_account(generated.env_value).key
    return key, generated.public_key()


def _signed(key: siderov1.SigningKey, at: float, **extra: str) -> MultiDict[str]:
    pairs = siderov1.signed_metadata(METHOD, key, now=at, metadata=list(extra.items()))
    return MultiDict(pairs)


def _same_answer(
    calls: VerifiedCalls, md: MultiDict[str], keys: dict[str, siderov1.PublicKey], at: float
) -> siderov1.VerifiedCall | str:
    """What the memory answers, after checking it equals a fresh verify (call or refusal)."""
    try:
        want: siderov1.VerifiedCall | str = siderov1.verify(md, METHOD, keys, at)
    except siderov1.SignatureRejected as exc:
        want = f"rejected: {exc.reason}"
    try:
        got: siderov1.VerifiedCall | str = calls.verify(md, METHOD, keys, at)
    except siderov1.SignatureRejected as exc:
        got = f"rejected: {exc.reason}"
    assert got == want
    return got


def test_identical_calls_are_reused_within_their_window(account) -> None:
    key, public = account
    keys = {public.fingerprint: public}
    calls = VerifiedCalls()
    md = _signed(key, NOW)
    for at in (NOW, NOW + 0.5, NOW + 1, NOW + SKEW - 1, NOW + SKEW):
        assert isinstance(_same_answer(calls, md, keys, at), siderov1.VerifiedCall)
    assert calls.reused == 4  # all but the first
    assert str(_same_answer(calls, md, keys, NOW + SKEW + 1)).startswith("rejected: timestamp")
    # before it was first seen (a clock set back): verified in full, not reused
    assert isinstance(_same_answer(calls, md, keys, NOW - 1), siderov1.VerifiedCall)
    assert calls.reused == 4


def test_a_bad_signature_is_refused_every_time(account) -> None:
    key, public = account
    keys = {public.fingerprint: public}
    calls = VerifiedCalls()
    good = _signed(key, NOW)
    assert isinstance(_same_answer(calls, good, keys, NOW), siderov1.VerifiedCall)
    header = good[siderov1.SIGNATURE_HEADER]
    prefix, signature = header.rsplit(" ", 1)
    forged = "A" * len(signature) if not signature.startswith("A") else "B" * len(signature)
    bad = MultiDict(good)
    bad[siderov1.SIGNATURE_HEADER] = f"{prefix} {forged}"
    for _ in range(3):
        assert str(_same_answer(calls, bad, keys, NOW)).startswith("rejected")
    assert calls.reused == 0


def test_changed_metadata_is_verified_again(account) -> None:
    key, public = account
    keys = {public.fingerprint: public}
    calls = VerifiedCalls()
    md = _signed(key, NOW, nodes="10.0.0.1")
    for _ in range(3):
        assert isinstance(_same_answer(calls, md, keys, NOW), siderov1.VerifiedCall)
    moved = MultiDict(md)
    moved["nodes"] = "10.0.0.2"  # the payload still says 10.0.0.1
    assert str(_same_answer(calls, moved, keys, NOW)).startswith("rejected: payload header")
    with pytest.raises(siderov1.SignatureRejected, match="payload method"):
        calls.verify(md, "/cosi.resource.State/Destroy", keys, NOW)
    assert calls.reused == 2


def test_an_unregistered_key_is_refused_even_after_success(account) -> None:
    key, public = account
    calls = VerifiedCalls()
    md = _signed(key, NOW)
    keys = {public.fingerprint: public}
    for _ in range(3):
        _same_answer(calls, md, keys, NOW)
    assert str(_same_answer(calls, md, {}, NOW)).startswith("rejected: unknown key")
    again = siderov1.PublicKey.from_armored(public.armored())  # registered anew: a new object
    assert isinstance(
        _same_answer(calls, md, {public.fingerprint: again}, NOW), siderov1.VerifiedCall
    )


def test_a_key_expiring_inside_the_window_is_checked_each_time() -> None:
    generated = siderov1.generate_service_account(
        "sa-short", now=NOW - 100, lifetime=timedelta(seconds=160)
    )
    key = siderov1.decode_service_account(generated.env_value).key
    public = generated.public_key()
    keys = {public.fingerprint: public}
    calls = VerifiedCalls()
    md = _signed(key, NOW)
    for at in (NOW, NOW + 10, NOW + 59, NOW + 60):
        assert isinstance(_same_answer(calls, md, keys, at), siderov1.VerifiedCall)
    assert calls.reused == 0
    assert str(_same_answer(calls, md, keys, NOW + 61)).startswith("rejected: key")


def test_memory_is_bounded(account) -> None:
    key, public = account
    keys = {public.fingerprint: public}
    calls = VerifiedCalls(limit=4)
    for second in range(10):
        md = _signed(key, NOW + second)
        _same_answer(calls, md, keys, NOW + second)
        _same_answer(calls, md, keys, NOW + second)
    assert len(calls) <= 4
