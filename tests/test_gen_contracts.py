"""Version contracts: parsing, and the feature table that drives generation."""

from __future__ import annotations

import dataclasses

import pytest

from omniport.planner.machineconfig.contracts import (
    FEATURES,
    SUPPORTED,
    Contract,
    ContractError,
    Features,
    features,
    parse_contract,
)
from tests.test_gen_helpers import stability


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v1.8.3", Contract(1, 8)),
        ("1.8", Contract(1, 8)),
        ("v1.14.0-rc.1", Contract(1, 14)),
        (" v1.15.0 ", Contract(1, 15)),
        ("1.3.0+build", Contract(1, 3)),
        (Contract(1, 9), Contract(1, 9)),
    ],
)
def test_parse_contract(version, expected):
    assert parse_contract(version) == expected


HINT = "; pass the node's Talos version, for example --talos-version v1.8.3"


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (
            "1.2.9",
            "Talos version contract v1.2 is not supported; supported contracts are v1.3 to v1.15",
        ),
        (
            "v1.16.0",
            "Talos version contract v1.16 is not supported; supported contracts are v1.3 to v1.15",
        ),
        (
            "",
            "Talos version '' is not a version like v1.8.3" + HINT,
        ),
        (
            "v1",
            "Talos version 'v1' is not a version like v1.8.3" + HINT,
        ),
        (
            "1.10x",
            "Talos version '1.10x' is not a version like v1.8.3" + HINT,
        ),
        (18, "Talos version 18 is not a string; pass a version like v1.8.3"),
    ],
)
def test_bad_versions_are_clear_errors(version, message):
    with pytest.raises(ContractError) as caught:
        parse_contract(version)
    assert str(caught.value) == message


def test_contracts_order_by_major_then_minor():
    assert Contract(1, 9) < Contract(1, 10) < Contract(2, 0)
    assert str(Contract(1, 10)) == "v1.10"
    assert SUPPORTED[0] == Contract(1, 3) and SUPPORTED[-1] == Contract(1, 15)


def test_table_and_features_name_the_same_flags():
    assert set(FEATURES) == {f.name for f in dataclasses.fields(Features)}


@pytest.mark.parametrize(
    ("version", "flag", "value"),
    [
        ("1.4", "disk_quota_support", False),
        ("1.5", "disk_quota_support", True),
        ("1.5", "kube_prism_default", False),
        ("1.6", "kube_prism_default", True),
        ("1.6", "rsa_service_account_key", False),
        ("1.7", "rsa_service_account_key", True),
        ("1.11", "legacy_rbac_fields", True),
        ("1.12", "legacy_rbac_fields", False),
        ("1.12", "multidoc_kubespan", False),
        ("1.13", "multidoc_kubespan", True),
        ("1.13", "multidoc_kubernetes", False),
        ("1.14", "multidoc_kubernetes", True),
    ],
)
def test_feature_boundaries(version, flag, value):
    assert getattr(features(version), flag) is value


def test_identical_feature_sets_match_talos_identical_outputs():
    # Talos's fixtures are identical for 1.3 = 1.4, 1.8 = ... = 1.11 and 1.14 = 1.15. The only
    # other difference the table knows, the service-account key type, is not in a config.
    def config_relevant(name):
        return dataclasses.replace(features(name), rsa_service_account_key=False)

    groups: list[list[str]] = []
    for contract in SUPPORTED:
        name = f"{contract.major}.{contract.minor}"
        if groups and config_relevant(groups[-1][0]) == config_relevant(name):
            groups[-1].append(name)
        else:
            groups.append([name])
    assert groups == [
        ["1.3", "1.4"],
        ["1.5"],
        ["1.6"],
        ["1.7"],
        ["1.8", "1.9", "1.10", "1.11"],
        ["1.12"],
        ["1.13"],
        ["1.14", "1.15"],
    ]
    for group in groups:
        for machine in ("base-controlplane", "base-worker"):
            texts = {stability(v, machine).read_bytes() for v in group}
            assert len(texts) == 1, (group, machine)
