"""The final verify tolerates Omni's own config patches (issue 13, item 7).

Omni adds system patches to a cluster by itself (labelled ``omni.sidero.dev/system-patch``,
owned by a controller). Before, apply's final check counted one as "Omni's ConfigPatches differ
from the plan (unexpected: …)" and rolled a healthy import back. The lab's ``system-patch``
fault makes its Omni add one to every cluster.
"""

from __future__ import annotations

import pytest

from omniport.lab.omni_system_patches import NAME, patch_id
from omniport.planner.execute.apply import omni_managed
from omniport.providers.codec.omni_names import LABEL_SYSTEM_PATCH
from omniport.providers.omni import Resource
from tests.reliability.labkit import World, assert_restored

PATCHES = "ConfigPatches.omni.sidero.dev"


def test_apply_keeps_going_when_omni_adds_a_system_patch(world: World):
    before = world.snapshot()
    world.fault(kind="system-patch")
    world.make_plan()

    applied = world.apply()

    assert applied.code == 0, applied.text
    patches = {r["id"]: r for r in world.status()["omni"]["resources"] if r["type"] == PATCHES}
    system = patches[patch_id("lab")]
    assert LABEL_SYSTEM_PATCH in system["labels"]

    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)  # Omni removed its own patch with the cluster


@pytest.mark.parametrize(
    ("resource", "managed"),
    [
        (Resource(PATCHES, "400-p", labels={LABEL_SYSTEM_PATCH: ""}), True),
        (Resource(PATCHES, "000-c", owner=NAME), True),
        (Resource(PATCHES, "400-user", labels={"omni.sidero.dev/cluster": "c"}), False),
    ],
)
def test_omni_managed_is_told_by_label_or_owner(resource, managed):
    assert omni_managed(resource) is managed
