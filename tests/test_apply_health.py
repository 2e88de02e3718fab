"""Apply re-runs Talos's cluster health check right before the first change (issue 13, item 1).

A plan made while the cluster was healthy and applied later must not touch an unhealthy
cluster. The lab's ``health`` fault breaks only the health check (a Kubernetes Node NotReady,
which no discovery read shows), so the plan stays current and only the fresh check can stop it.
"""

from __future__ import annotations

from tests.reliability.labkit import World, assert_restored


def test_not_ready_node_stops_apply_before_any_change(world: World):
    world.tune(healthCheck={"timeout": "2s"})
    world.make_plan()
    before = world.snapshot()
    world.fault(kind="health", problem="not-ready", node=world.nodes[1])

    applied = world.apply()

    assert applied.code == 1, applied.text
    assert "the cluster health check failed right before apply, so nothing was changed" in (
        applied.err
    ), applied.text
    assert "some nodes are not ready" in applied.err
    assert "findings.accept" in applied.err
    assert_restored(world, before)
    assert not world.journal.exists()  # stopped before the write-ahead


def test_cancelled_health_stream_is_not_success(world: World):
    # Omni's importer counts CANCELLED as a passed check; omniport does not (see
    # planner.execute.apply.fresh_health_check).
    world.make_plan()
    before = world.snapshot()
    world.fault(kind="health", problem="cancelled")

    applied = world.apply()

    assert applied.code == 1, applied.text
    assert "health check failed right before apply" in applied.err, applied.text
    assert_restored(world, before)


def test_accepted_health_failure_applies_with_a_warning(world: World):
    world.tune(healthCheck={"timeout": "2s"}, findings={"accept": ["HEALTH_CHECK_FAILED"]})
    world.make_plan()
    world.fault(kind="health", problem="not-ready", node=world.nodes[2])

    applied = world.apply()

    assert applied.code == 0, applied.text
    assert "Warning: the cluster health check failed" in applied.out
    assert "accepted by the spec" in applied.out


def test_disabled_health_check_is_not_run_at_apply(world: World):
    world.tune(healthCheck={"enabled": False})
    world.make_plan()
    world.fault(kind="health", problem="cancelled")

    applied = world.apply()

    assert applied.code == 0, applied.text
    assert "Checking the cluster's health" not in applied.out


def test_healthy_cluster_is_checked_and_applied(world: World):
    world.make_plan()

    applied = world.apply()

    assert applied.code == 0, applied.text
    assert "Checking the cluster's health before the first change" in applied.out
