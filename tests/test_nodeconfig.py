"""Per-node machine-config outcomes that need no import base: unread, unparseable, and
join documents left by an earlier import (split off, redacted, their Omni named)."""

from omniport.planner.facts import NodeFacts, ReadError
from omniport.planner.nodeconfig import NodeConfig, node_configs

LIVE = b"version: v1alpha1\nmachine: {type: worker}\n"
JOIN = (
    b"---\napiVersion: v1alpha1\nkind: SideroLinkConfig\n"
    b"apiUrl: https://omni.example:8090/base?jointoken=TOPSECRET\n"
    b"---\napiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[fdae::1]:8091'\n"
)


def node(address: str, config: bytes | None = LIVE, **kw) -> NodeFacts:
    return NodeFacts(address=address, role="worker", config=config, **kw)


def test_nodes_without_a_readable_config_have_an_empty_outcome():
    unreachable = node("10.0.0.1", error=ReadError("Unreachable", "down"))
    unread = node("10.0.0.2", config=None)
    assert node_configs((unreachable, unread), None) == (NodeConfig(), NodeConfig())


def test_an_unparseable_config_says_why():
    (outcome,) = node_configs((node("10.0.0.1", config=b"machine: [unclosed\n"),), None)
    assert outcome.parsed is None
    assert outcome.parse_error and outcome.parse_error.startswith("machine config of 10.0.0.1")


def test_join_documents_are_split_off_redacted_and_named_by_the_omni_they_dial():
    (outcome,) = node_configs((node("10.0.0.1", config=LIVE + JOIN),), None)
    assert outcome.parse_error is None
    assert outcome.parsed is not None and len(outcome.parsed.documents) == 3
    assert outcome.join_target == "https://omni.example:8090/base"
    assert outcome.replaced == (
        "SideroLinkConfig: apiUrl=https://omni.example:8090/base?jointoken=(sensitive value)",
        "EventSinkConfig: endpoint=[fdae::1]:8091",
    )
    assert "TOPSECRET" not in repr(outcome)
    # without an import base nothing else is computed
    assert (outcome.patch_texts, outcome.removed, outcome.residue) == ((), (), ())
