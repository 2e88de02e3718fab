"""Omni resources first, nodes after: every crash point is one Omni's own abort cleans up.

omniport creates the Omni resources (locked, import-in-progress) before any node joins, where
Omni's importer joins the nodes first. This proves the order leaves nothing that needs
omniport: apply is SIGKILLed right after each journal record in turn, then Omni's real
``clusterimport.Abort`` runs (``omni abort``), then omniport's rollback. At every point:

- once Omni taints the cluster as importing (when its secrets become the cluster's, i.e. once
  the control-plane MachineSet exists), the real abort succeeds and leaves no import resource;
- between the Cluster's creation and that moment, the real abort refuses ("not tainted as
  importing"): Omni's own importer creates the same resources in the same order and has the
  same window; the cluster is locked and marked importing, and omniport's rollback removes it;
- before the Cluster exists, the real abort finds no cluster, and Omni holds nothing of the
  import but, at most, the ImportedClusterSecrets (which a next import replaces, as both
  importers do);
- omniport's rollback then restores every node byte for byte and removes what is left;
- and Omni's importer can import the cluster again (its dry run passes).
"""

from __future__ import annotations

import signal
import time

import pytest

from omniport.planner.execute.session import KILL_ENV
from tests.interop import counts
from tests.interop.test_omni_client import CLUSTER, IMPORT_TYPES, driver, lab_args
from tests.reliability.labkit import World, assert_restored, start_world
from tests.reliability.test_crash_matrix import APPLY_RECORDS

__all__ = ["driver"]  # the fixture, imported for this module's tests

KILLED = -signal.SIGKILL
SECRETS = "ImportedClusterSecrets.omni.sidero.dev"
TAINTED = "omni.sidero.dev/tainted-by-importing"
CLUSTER_SCOPED = IMPORT_TYPES[:6]  # Clusters … ClusterMachines (not Links, Machines, statuses)


def held(world: World) -> dict[str, list[str]]:
    """Import resources Omni holds, as the lab's status lists them (Omni's API permits only
    create and destroy on ImportedClusterSecrets, so no client can list them)."""
    out: dict[str, list[str]] = {}
    for res in world.status()["omni"]["resources"]:
        if res["type"] in (*IMPORT_TYPES, SECRETS):
            out.setdefault(res["type"], []).append(res["id"])
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("record", range(1, APPLY_RECORDS + 1))
def test_real_abort_then_rollback_clean_up_after_apply_is_killed(driver, tmp_path, record):
    world = start_world(tmp_path / "lab", *lab_args())
    try:
        world.make_plan()
        before = world.snapshot()
        killed = world.apply(env={KILL_ENV: str(record)})
        assert killed.code == KILLED, killed.text
        cluster_existed = "Clusters.omni.sidero.dev" in held(world)
        set_nodes = held(world).get("MachineSetNodes.omni.sidero.dev", [])
        tainted = any(
            r["type"] == "ClusterStatuses.omni.sidero.dev" and TAINTED in r["labels"]
            for r in world.status()["omni"]["resources"]
        )

        code, result, err = driver.run(world.handle, "abort", CLUSTER)
        if tainted:
            assert code == 0 and result["ok"], (record, result, err)
            # the cluster and all it held are gone; the Links of its machines are torn down
            # (the abort does not wait for them); machines that joined but had no
            # MachineSetNode yet stay registered, as after Omni's own importer
            deadline = time.monotonic() + 10  # Omni's controllers remove their outputs after
            while set(held(world)) & set(CLUSTER_SCOPED) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not set(held(world)) & set(CLUSTER_SCOPED), (record, held(world))
            linked = {m for m in set_nodes}
            for res in world.status()["omni"]["resources"]:
                if res["type"] == "Links.omni.sidero.dev" and res["id"] in linked:
                    assert res["phase"] == "tearingDown", (record, res)
        elif cluster_existed:
            assert code != 0 and "is not tainted as importing" in result["error"], (record, result)
        else:
            assert code != 0 and "failed to get cluster" in result["error"], (record, result)
            assert set(held(world)) <= {SECRETS}, record

        rolled = world.roll_back()
        assert rolled.code == 0, rolled.text
        assert_restored(world, before)
        code, result, err = driver.run(world.handle, "import", "--dry-run")
        assert code == 0 and result["ok"], (record, result, err)
        counts.record("crash-then-real-abort", "omni", tried=1, agreed=1)
    finally:
        world.stop()
