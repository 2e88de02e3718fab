"""Omni's check of a machine's Talos version still runs in omniport's order (issue 13, item 8).

omniport creates a MachineSetNode only after its node has joined and Omni has the machine, so
Omni's create-time validation sees the machine's status and compares its Talos version with the
cluster's (lab/omni_validate.py models it; tests/test_lab_omni_machine_version.py tests the
rule). Here that check refuses a real apply, and the automatic rollback puts everything back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from omniport.planner import planfile
from tests.reliability.labkit import World, assert_restored, start_world

NEWER = "v1.12.0"
"""A minor past the lab's default v1.11.5, which the cluster keeps (its first control plane's)."""
WORKER = "127.1.0.3"


@pytest.fixture
def upgrading(tmp_path: Path):
    """A default lab whose second worker already runs the next Talos minor."""
    world = start_world(tmp_path / "lab", "--node-talos-version", f"{WORKER}={NEWER}")
    try:
        yield world
    finally:
        world.stop()


def test_omni_refuses_a_newer_machine_at_its_machine_set_node_and_apply_rolls_back(
    upgrading: World,
):
    """A cluster caught in the middle of a Talos upgrade: one worker already runs 1.12.

    Planning reports TALOS_VERSIONS_DIFFER, and MACHINE_NEWER_THAN_CLUSTER for the worker
    (the cluster's Talos version is the first control plane's, 1.11, as upstream's importer
    picks it, and the plan predicts Omni's verdict). A user may still accept both (for an Omni
    that admits such machines; omnictl's ``--force`` skips its checks alike): then only Omni's
    own check stands between the import and a machine Omni would have to downgrade. Omni runs
    that check when the worker's MachineSetNode is created, which omniport does after the
    worker joined: apply must fail there, with Omni's InvalidArgument, and roll back every node
    and every Omni resource on its own.
    """
    world = upgrading
    refused = world.cli("plan", str(world.spec))
    assert refused.code == 1, refused.text
    assert "MACHINE_NEWER_THAN_CLUSTER" in refused.text
    assert f"{WORKER} runs Talos 1.12.0, a newer minor than the cluster's 1.11.5" in refused.text

    world.tune(findings={"accept": ["TALOS_VERSIONS_DIFFER", "MACHINE_NEWER_THAN_CLUSTER"]})
    before = world.snapshot()
    before_status = world.status(with_configs=True)

    planned = world.cli("plan", str(world.spec))
    assert planned.code == 0, planned.text
    assert "TALOS_VERSIONS_DIFFER" in planned.text
    plan = planfile.read(world.plan)
    assert not plan.blocking_findings
    worker = next(n for n in plan.nodes if n.address == WORKER)
    step = f"omni_machine_set_node.{worker.machine_uuid}"

    applied = world.apply()
    assert applied.code == 1, applied.text
    assert f"apply failed at {step}:" in applied.err
    assert "failed to validate" in applied.err and "downgrade is not allowed" in applied.err
    assert "rolled back: restored 3 node(s)" in applied.err

    # the journal: the worker joined and Omni had its machine; its MachineSetNode, and only
    # that step, was refused with INVALID_ARGUMENT; then the rollback ran to its end
    records = world.records()
    failed = [r for r in records if r["event"] == "failed"]
    assert [(r["step"], r["data"]["code"]) for r in failed] == [(step, 3)]
    order = [(r["event"], r["step"]) for r in records]
    joined = order.index(("end", f"talos_join.{WORKER}"))
    assert joined < order.index(("start", step)) < order.index(("failed", step))
    assert records[-1]["event"] == "rollback_complete"

    # every node's config byte for byte, and Omni exactly as before (every resource, whole)
    assert_restored(world, before)
    after_status = world.status(with_configs=True)
    assert after_status["nodes"] == before_status["nodes"]
    assert after_status["omni"]["resources"] == before_status["omni"]["resources"]
