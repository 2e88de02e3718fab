"""Which Image Factory an import uses, and with which credentials (planner.discover)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from omniport.planner.discover import choose_factory
from omniport.providers.errors import PermissionDenied
from omniport.providers.wire.omni.specs import omni_pb2, virtual_pb2

PRIMARY = "https://factory.example.com"
PER_VERSION = "https://factory-1-11.example.com"
SECONDARY = "https://mirror.example.com"


def settings(
    primary: str = PRIMARY,
    *,
    recorded: str = "",
    secondary: str = "",
    enterprise: bool = False,
    auth: object = None,
) -> dict:
    features = SimpleNamespace(
        spec=omni_pb2.FeaturesConfigSpec(
            image_factory_base_url=primary,
            secondary_image_factory_base_url=secondary,
            is_enterprise_image_factory=enterprise,
        )
    )
    versions = [
        SimpleNamespace(id="1.10.7", spec=omni_pb2.TalosVersionSpec(version="1.10.7")),
        SimpleNamespace(
            id="1.11.5",
            spec=omni_pb2.TalosVersionSpec(version="1.11.5", image_factory_url=recorded),
        ),
    ]
    return {"features": features, "versions": versions, "factory_auth": auth}


AUTH = SimpleNamespace(spec=virtual_pb2.ImageFactoryAuthSpec(username="u", password="p4ss"))

CASES = [
    # (name, spec url, settings, talos version, url, source, credentials)
    ("primary", None, settings(), "v1.11.5", PRIMARY, "omni", None),
    (
        "per-version",
        None,
        settings(recorded=PER_VERSION),
        "v1.11.5",
        PER_VERSION,
        "talos-version",
        None,
    ),
    ("other-version", None, settings(recorded=PER_VERSION), "1.10.7", PRIMARY, "omni", None),
    (
        "spec-wins",
        "https://spec.example.com",
        settings(recorded=PER_VERSION),
        "1.11.5",
        "https://spec.example.com",
        "spec",
        None,
    ),
    (
        "enterprise",
        None,
        settings(enterprise=True, auth=AUTH),
        "1.11.5",
        PRIMARY,
        "omni",
        ("u", "p4ss"),
    ),
    (
        "enterprise-per-version",
        None,
        settings(recorded=PER_VERSION, enterprise=True, auth=AUTH),
        "1.11.5",
        PER_VERSION,
        "talos-version",
        ("u", "p4ss"),
    ),
    ("not-enterprise", None, settings(auth=AUTH), "1.11.5", PRIMARY, "omni", None),
    (
        "spec-same-host",
        PRIMARY + "/",
        settings(enterprise=True, auth=AUTH),
        "1.11.5",
        PRIMARY + "/",
        "spec",
        ("u", "p4ss"),
    ),
    (
        "spec-other-host",
        "https://spec.example.com",
        settings(enterprise=True, auth=AUTH),
        "1.11.5",
        "https://spec.example.com",
        "spec",
        None,
    ),
    (
        "auth-unreadable",
        None,
        settings(enterprise=True, auth=PermissionDenied("no")),
        "1.11.5",
        PRIMARY,
        "omni",
        None,
    ),
]


@pytest.mark.parametrize(
    ("spec_url", "given", "talos", "url", "source", "credentials"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_choice(spec_url, given, talos, url, source, credentials):
    chosen = choose_factory(spec_url, given, talos)
    assert (chosen.url, chosen.source, chosen.credentials) == (url, source, credentials)
    assert "p4ss" not in repr(chosen)


def test_secondary_is_kept_beside_the_choice():
    chosen = choose_factory(None, settings(secondary=SECONDARY), "1.11.5")
    assert chosen.url == PRIMARY and chosen.secondary_url == SECONDARY


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (settings(""), "empty image_factory_base_url and its TalosVersion 1.11.5 records no"),
        (
            {**settings(), "features": PermissionDenied("denied by RBAC")},
            "FeaturesConfig could not be read",
        ),
    ],
    ids=["empty", "unreadable"],
)
def test_no_url_is_a_fact_with_its_reason(given, says):
    chosen = choose_factory(None, given, "1.11.5")
    assert chosen.url is None and says in (chosen.missing or "")
