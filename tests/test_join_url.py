"""The SideroLink join URL, built as Omni builds it (issue 13, item 4).

Omni adds ``jointoken`` to the query its advertised URL already has and re-encodes the query
(Go's ``url.Values.Encode``). Pasting strings together broke on tokens holding ``+ / = &`` and
on URLs that already carry a query. The lab's Omni now accepts a machine only when its apiUrl
reaches the advertised endpoint with the exact join token, so a wrong URL shows as a machine
that never connects, as against real Omni.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from omniport.providers.codec.joinurl import JoinURLError, api_url_problem, join_api_url
from tests.reliability.labkit import World, assert_restored, start_world
from tests.test_plan_lab import plan
from tests.test_plan_lab_findings import expect

# (advertised URL, token, expected apiUrl): the expectation is what Go's net/url gives for
# url.Parse(u); q := u.Query(); q.Add("jointoken", t); u.RawQuery = q.Encode(); u.String().
CASES = [
    ("https://127.0.0.1:8090", "abcd", "https://127.0.0.1:8090?jointoken=abcd"),
    (
        "grpc://omni.example:8090",
        "a+b/c=d&e",
        "grpc://omni.example:8090?jointoken=a%2Bb%2Fc%3Dd%26e",
    ),
    ("https://omni.example/link/?x=1&b=2", "t", "https://omni.example/link/?b=2&jointoken=t&x=1"),
    ("https://omni.example?b=a b&b=c", "t", "https://omni.example?b=a+b&b=c&jointoken=t"),
    (
        "https://omni.example?jointoken=old",
        "new",
        "https://omni.example?jointoken=old&jointoken=new",
    ),
    ("https://omni.example?a=1;b=2&c=3", "t", "https://omni.example?c=3&jointoken=t"),
    ("https://omni.example?a=%zz&c=%41", "t", "https://omni.example?c=A&jointoken=t"),
    ("https://omni.example?flag", "t", "https://omni.example?flag=&jointoken=t"),
    (
        "https://[fd00::1]:8090/#frag",
        "k:ey~_.",
        "https://[fd00::1]:8090/?jointoken=k%3Aey~_.#frag",
    ),
]


@pytest.mark.parametrize(("url", "token", "expected"), CASES)
def test_join_url_is_encoded_as_omni_encodes_it(url, token, expected):
    assert join_api_url(url, token) == expected
    # whatever the token holds, Omni's server reads it back as one value
    assert parse_qs(urlsplit(expected).query)["jointoken"][-1] == token


@pytest.mark.parametrize("url", ["", "omni.example:8090", "/relative/path", "https://"])
def test_unusable_advertised_urls_are_refused_with_a_reason(url):
    with pytest.raises(JoinURLError):
        join_api_url(url, "t")
    assert api_url_problem(url)


TOKEN = "q+r/s=t&u=v=="
ADVERTISED = "https://127.0.0.1:8090/siderolink/?region=eu%20west"


@pytest.fixture
def world(tmp_path):
    w = start_world(
        tmp_path / "lab",
        "--omni-machine-api-url",
        ADVERTISED,
        "--omni-join-token",
        TOKEN,
    )
    try:
        yield w
    finally:
        w.stop()


def test_awkward_token_and_url_join_and_roll_back(world: World):
    before = world.snapshot()
    world.make_plan()
    applied = world.apply()
    assert applied.code == 0, applied.text
    assert TOKEN not in applied.out + applied.err  # and never printed

    status = world.status(with_configs=True)
    assert all(n["connected"] for n in status["nodes"])  # the lab's Omni accepted the token
    expected = join_api_url(ADVERTISED, TOKEN)
    for node in status["nodes"]:
        docs = list(yaml.safe_load_all(node["config"]))
        link = next(d for d in docs if d and d.get("kind") == "SideroLinkConfig")
        assert link["apiUrl"] == expected
    assert expected == (
        "https://127.0.0.1:8090/siderolink/?jointoken=q%2Br%2Fs%3Dt%26u%3Dv%3D%3D&region=eu+west"
    )

    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)


def test_unusable_advertised_url_is_a_blocking_finding(tmp_path):
    w = start_world(tmp_path / "lab", "--omni-machine-api-url", "omni.example:8090")
    try:
        result = plan(w.spec, tmp_path / "plan.json")
        assert result.code == 1
        expect(result, "SIDEROLINK_URL_INVALID", None, "is not an absolute URL")
    finally:
        w.stop()
