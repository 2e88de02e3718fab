"""Nodes that still hold join documents of an earlier import (issue 13, item 3).

``omnictl cluster import abort`` tears the import down in Omni but leaves the three join
documents on the nodes. Such a node is re-importable: the plan names the documents the join
will overwrite (LEFTOVER_JOIN_DOCUMENTS, a warning), the imported patches never carry them, and
rollback restores them with the backup bytes. Join documents for *another* Omni still block
(NODE_ALREADY_CONNECTED).
"""

from __future__ import annotations

import json

import yaml

from omniport.planner import planfile
from tests.reliability.labkit import World, assert_restored

LEFTOVER = (
    "apiVersion: v1alpha1\nkind: SideroLinkConfig\n"
    "apiUrl: https://127.0.0.1:8090?jointoken=token-of-an-aborted-import\n"
    "---\napiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[fdae:41e4:649b:9303::1]:8090'\n"
    "---\napiVersion: v1alpha1\nkind: KmsgLogConfig\nname: omni-kmsg\n"
    "url: tcp://[fdae:41e4:649b:9303::1]:8092\n"
)


def test_leftover_join_documents_are_replaced_and_restored(world: World):
    node = world.nodes[1]
    world.patch(node, LEFTOVER)
    before = world.snapshot()
    assert not next(n for n in world.status()["nodes"] if n["address"] == node)["connected"]

    planned = world.cli("plan", str(world.spec))
    assert planned.code == 0, planned.text
    assert "LEFTOVER_JOIN_DOCUMENTS" in planned.out
    assert "token-of-an-aborted-import" not in planned.out + world.plan.read_text()
    plan = planfile.read(world.plan)
    join = next(c for c in plan.changes if c.address == f"talos_join.{node}")
    replaced = join.after["documents_replaced"]
    assert "SideroLinkConfig: apiUrl=https://127.0.0.1:8090?jointoken=(sensitive value)" in (
        replaced
    )
    assert "KmsgLogConfig: name=omni-kmsg" in replaced
    patches = [c.after["data"] for c in plan.changes if c.node == node and "data" in c.after]
    assert patches and not any("SideroLinkConfig" in p for p in patches)

    applied = world.apply()
    assert applied.code == 0, applied.text
    status = world.status(with_configs=True)
    joined = next(n for n in status["nodes"] if n["address"] == node)
    assert joined["connected"]
    links = [d for d in yaml.safe_load_all(joined["config"]) if d and d.get("kind")]
    assert [d["kind"] for d in links if d["kind"] == "SideroLinkConfig"] == ["SideroLinkConfig"]
    assert "token-of-an-aborted-import" not in joined["config"]

    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)  # the leftover documents are back, byte for byte
    status = world.status()
    assert not next(n for n in status["nodes"] if n["address"] == node)["connected"]
    assert json.loads(world.rollback.read_text())["import_id"]
