"""A simulated node parses each config once, and the reboot check compares without copying.

``SimNode.view`` keeps the view of the config before the current one, so restoring it (what a
rollback does) needs no parse; ``reboot_reason`` compares configs without their live fields
in place. Both are checked against the plain computation they replace.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from omniport.lab.world import (
    _LIVE_FEATURES,
    _LIVE_MACHINE,
    _LIVE_TOP,
    ConfigView,
    SimNode,
    _equal_without_live_fields,
    _without_live_fields,
    reboot_reason,
)


def _config(hostname: str, **machine: object) -> bytes:
    doc = {
        "version": "v1alpha1",
        "machine": {"type": "worker", "network": {"hostname": hostname}, **machine},
        "cluster": {"clusterName": "lab"},
    }
    return yaml.safe_dump(doc).encode()


def _node(config: bytes) -> SimNode:
    return SimNode(
        address="127.1.0.9",
        machine_uuid="6f3c8a0e-0000-4000-8000-000000000009",
        role="worker",
        talos_version="v1.11.5",
        default_hostname="talos-abc-def",
        node_id="node-9",
        config=config,
    )


def test_restoring_the_previous_config_reuses_its_view() -> None:
    original = _config("worker-9")
    node = _node(original)
    first = node.view
    assert node.hostname == "worker-9"
    node.config = _config("worker-9", features={"kubePrism": {"enabled": True}})
    joined = node.view
    assert joined is not first
    node.config = bytes(bytearray(original))  # equal bytes, a new object (as off the wire)
    assert node.view is first
    assert node.view.documents == ConfigView.parse(original).documents
    node.config = _config("worker-10")
    assert node.view.hostname == "worker-10"
    assert node.view is not joined  # only the one before the current config is kept
    node.config = _config("worker-9", features={"kubePrism": {"enabled": True}})
    assert node.view.documents == joined.documents


_leaf = st.one_of(st.none(), st.booleans(), st.integers(0, 2), st.sampled_from(["a", "b"]))


def _some_of(keys: list[str], value: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(keys, value))


_features = st.one_of(_leaf, _some_of([*_LIVE_FEATURES[:2], "rbac", "stableHostname"], _leaf))
_machine = st.one_of(
    _leaf,
    st.tuples(_some_of([*_LIVE_MACHINE[:3], "type", "token"], _leaf), _features).map(
        lambda parts: {**parts[0], "features": parts[1]}
    ),
    _some_of([*_LIVE_MACHINE[:3], "type", "token"], _leaf),
)
_doc = st.one_of(
    st.none(),
    st.tuples(_some_of([*_LIVE_TOP, "version", "persist"], _leaf), _machine).map(
        lambda parts: {**parts[0], "machine": parts[1]}
    ),
    _some_of([*_LIVE_TOP, "version", "persist"], _leaf),
)


@settings(max_examples=800, deadline=None)
@given(_doc, st.data())
def test_live_field_comparison_matches_the_copying_one(old, data) -> None:
    new = data.draw(_doc)
    if old is not None and data.draw(st.booleans()):
        # a copy of ``old`` with one key set or dropped, live or not, at one of the levels
        new = copy.deepcopy(old)
        level = data.draw(st.sampled_from(["top", "machine", "features"]))
        target, keys = new, [*_LIVE_TOP, "version"]
        if level != "top" and isinstance(new.get("machine"), dict):
            target, keys = new["machine"], [*_LIVE_MACHINE[:3], "type", "features"]
            if level == "features" and isinstance(target.get("features"), dict):
                target, keys = target["features"], [*_LIVE_FEATURES[:2], "rbac"]
        key = data.draw(st.sampled_from(keys))
        if data.draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = data.draw(_leaf)
    expected = _without_live_fields(old) == _without_live_fields(new)
    assert _equal_without_live_fields(old, new) == expected
    assert _equal_without_live_fields(new, old) == expected


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"machine": {"features": {"kubePrism": 1}}}, {"machine": {}}),
        ({"machine": {"features": {"kubePrism": 1}}}, {"machine": {"features": {"kubePrism": 2}}}),
        ({"machine": {"features": {}}}, {"machine": {"features": None}}),
        ({"debug": True, "machine": 1}, {"machine": 1}),
        ({"machine": {"ca": 1}}, {"machine": {}}),
        ({"machine": {"type": "a"}}, {"machine": "x"}),
        ({"machine": {}}, {}),
        ({"cluster": 1}, {}),
        (None, {}),
        (None, None),
    ],
)
def test_live_field_comparison_edge_cases(old, new) -> None:
    expected = _without_live_fields(old) == _without_live_fields(new)
    assert _equal_without_live_fields(old, new) == expected
    assert _equal_without_live_fields(new, old) == expected


def test_reboot_reason_still_names_the_difference() -> None:
    before = ConfigView.parse(_config("worker-9"))
    live = ConfigView.parse(_config("worker-9", sysctls={"vm.max_map_count": "262144"}))
    assert reboot_reason(before, live) is None
    other = ConfigView.parse(_config("worker-9", token="changed"))
    reason = reboot_reason(before, other)
    assert reason is not None
    assert reason.startswith("this config change can't be applied in immediate mode\ndiff: ")
    assert "+  token: changed" in reason
