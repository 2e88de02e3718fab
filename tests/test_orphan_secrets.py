"""An orphaned ImportedClusterSecrets is replaced, as Omni's importer does (issue 13, item 3).

A run that dies right after creating ImportedClusterSecrets, and whose journal and rollback plan
are lost with it (a CI runner gone), leaves an orphan in Omni that no client can read (Omni
permits only create and destroy on it). The next apply must not fail on AlreadyExists: it
replaces the orphan (there is no Cluster of that name: re-discovery just checked), the plan
announces that, and rollback removes what apply created.
"""

from __future__ import annotations

import shutil

from omniport.planner import planfile
from omniport.planner.changes import SCHEMATIC_TYPE
from omniport.planner.execute.session import KILL_ENV
from tests.reliability.labkit import World, assert_restored

SECRETS = "ImportedClusterSecrets.omni.sidero.dev"


def test_apply_replaces_an_orphan_left_by_a_lost_run(world: World, tmp_path):
    world.make_plan()
    before = world.snapshot()
    # records: begin, each schematic registration (start, end), then the secrets (start, end):
    # die right after the orphan exists
    plan = planfile.read(world.plan)
    registrations = sum(1 for c in plan.changes if c.resource_type == SCHEMATIC_TYPE)
    killed = world.apply(env={KILL_ENV: str(1 + 2 * registrations + 2)})
    assert killed.code != 0
    assert (SECRETS, "lab") in world.snapshot().resources
    for lost in (world.journal, world.rollback):  # the run's records are gone with its runner
        shutil.move(lost, tmp_path / lost.name)

    world.make_plan()
    plan = planfile.read(world.plan)
    secrets = next(c for c in plan.changes if c.resource_type == SECRETS)
    assert secrets.after["if_present"] == "replaced (an orphan of a crashed import)"
    applied = world.apply()
    assert applied.code == 0, applied.text
    ends = [r for r in world.records() if r.get("step") == "omni_imported_cluster_secrets.lab"]
    assert any((r.get("data") or {}).get("replaced_orphan") for r in ends), ends

    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)
