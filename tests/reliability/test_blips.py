"""Transient faults (issue 15 item 8): a brief network blip costs a retry, not a rollback.

The lab's blip faults fail the next N calls and then heal: ``talos-blip`` (apid answers
UNAVAILABLE, its connection to the node reset), ``omni-fail METHOD --times N`` (Omni answers
UNAVAILABLE) and ``factory-blip`` (the factory closes the connection unanswered). Plan and apply
ride through as many blips as the retry budget holds; a non-idempotent write (Omni's Create) is
never retried; more blips than the budget fail with one sentence and, mid-apply, roll back.
"""

from __future__ import annotations

import json

import pytest

from omniport.providers.retry import DEFAULT_RETRY
from tests.reliability.labkit import World, assert_restored
from tests.test_apply_lab import one_line

pytestmark = pytest.mark.reliability

WITHIN = DEFAULT_RETRY.attempts - 1
"""Blips one call survives: every try but the last may fail."""
BEYOND = 10 * DEFAULT_RETRY.attempts
"""More blips than any call's budget."""


def active(world: World) -> dict:
    from omniport.lab import control

    return control.faults(world.dir)


def test_plan_rides_through_blips_of_talos_omni_and_the_factory(world: World):
    world.fault(kind="talos-blip", times=WITHIN)
    world.fault(kind="omni-failure", method="Get", times=WITHIN)
    world.fault(kind="omni-failure", method="List", times=WITHIN)
    world.fault(kind="factory-blip", times=WITHIN)
    result = world.cli("plan", str(world.spec), "-o", str(world.plan), "--json")
    assert result.code == 0, result.text
    events = [json.loads(line) for line in result.out.splitlines() if line.strip()]
    errors = [e for e in events if e.get("@level") == "error"]
    assert not errors, errors
    left = active(world)
    # every blip was spent on a call that then succeeded on a later try
    assert left["talos_blips"] == [] and left["factory_blips"] == 0
    assert left["omni_failures"] == []


def test_apply_rides_through_blips_mid_transaction(world: World):
    world.make_plan()
    # Calls only the transaction makes (plan and apply's re-read never do): the joins'
    # ApplyConfiguration, Omni's Link lookups and the wait for connected machines.
    world.fault(kind="talos-blip", method="ApplyConfiguration", times=WITHIN)
    world.fault(kind="omni-failure", method="Get", type="Links.omni.sidero.dev", times=WITHIN)
    world.fault(kind="omni-failure", method="List", type="Machines.omni.sidero.dev", times=WITHIN)
    result = world.apply()
    assert result.code == 0, result.text
    assert "Apply complete!" in result.out
    events = [r["event"] for r in world.records()]
    assert "failed" not in events and "rollback_begin" not in events
    left = active(world)
    assert left["talos_blips"] == [] and left["omni_failures"] == []
    status = world.status()
    assert all(n["connected"] for n in status["nodes"])


def test_apply_rides_through_calls_reset_under_it(world: World):
    """The call's HTTP/2 stream reset (RST_STREAM), as a dropped connection or a proxy shows
    it, rather than an UNAVAILABLE answer: ApplyConfiguration is retried (it carries the whole
    config, so a repeat is harmless) and the apply completes."""
    world.make_plan()
    world.fault(kind="talos-blip", method="ApplyConfiguration", times=WITHIN, reset=True)
    result = world.apply()
    assert result.code == 0, result.text
    assert "Apply complete!" in result.out
    assert "rollback_begin" not in [r["event"] for r in world.records()]
    assert active(world)["talos_blips"] == []


def test_a_non_idempotent_write_is_not_retried(world: World):
    """Omni's Create: one blip fails the apply (which rolls back) and is hit exactly once."""
    world.make_plan()
    before = world.snapshot()
    rtype = "MachineSets.omni.sidero.dev"
    world.fault(kind="omni-failure", method="Create", type=rtype, times=2)
    result = world.apply()
    assert result.code == 1
    line = one_line(result.err)
    assert rtype in line and "injected failure" in line and "rolled back:" in line
    assert "gave up after" not in line  # it was never retried
    left = active(world)["omni_failures"]
    assert [(f["method"], f["times"]) for f in left] == [("Create", 1)]  # one call hit it
    world.fault(kind="clear")
    assert_restored(world, before)


def test_more_blips_than_the_budget_fail_a_plan_with_one_sentence(world: World):
    world.fault(kind="omni-failure", method="Get", times=BEYOND)
    result = world.cli("plan", str(world.spec), "-o", str(world.plan))
    assert result.code == 1
    assert "Traceback" not in result.text
    errors = [ln for ln in result.out.splitlines() if ln.strip().startswith("Error:")]
    assert len(errors) == 1, result.out
    assert "OMNI_UNREACHABLE" in errors[0]
    assert f"gave up after {DEFAULT_RETRY.attempts} tries" in errors[0]


def test_more_blips_than_the_budget_mid_apply_roll_back_cleanly(world: World):
    world.make_plan()
    before = world.snapshot()
    world.fault(kind="talos-blip", method="ApplyConfiguration", times=BEYOND)
    result = world.apply()
    assert result.code == 1
    assert "Traceback" not in result.text
    line = one_line(result.err)
    assert "apply failed at talos_join." in line and "rolled back:" in line
    assert f"gave up after {DEFAULT_RETRY.attempts} tries" in line
    world.fault(kind="clear")
    assert_restored(world, before)


def test_blip_faults_from_the_command_line(world: World):
    lab = ["lab", "fault", "--dir", str(world.dir)]
    node = world.nodes[1]
    shown = world.cli(*lab, "talos-blip", "--times", "2", "--node", node, "--method", "Version")
    assert shown.code == 0, shown.text
    assert f"Talos blip: the next 2 Version call(s) to {node}" in shown.out
    shown = world.cli(*lab, "talos-blip", "--reset", "--method", "ApplyConfiguration")
    assert "the next 1 ApplyConfiguration call(s) to any node (stream reset)" in shown.out
    shown = world.cli(*lab, "factory-blip", "--times", "3")
    assert "Image Factory blip: the next 3 request(s)" in shown.out
    shown = world.cli(*lab, "omni-fail", "Get", "--times", "1")
    assert "Omni Get fails for every type (code 14) for the next 1 call(s)" in shown.out
    bad = world.cli(*lab, "talos-blip", "--times", "0")
    assert bad.code != 0 and "Traceback" not in bad.text
    cleared = world.cli(*lab, "clear")
    assert cleared.out.strip() == "Active faults: none"
