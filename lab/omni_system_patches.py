"""Omni's own config patches on a cluster: labelled ``omni.sidero.dev/system-patch`` and owned
by a controller, never by the user who imports.

Omni adds such patches itself (cluster templates mark theirs as system patches, and controllers
own theirs). An importer that checks "Omni holds exactly the patches I created" must recognise
them, or a healthy import fails its final check and rolls back. The lab adds one per cluster
while the ``system-patch`` fault is on (``omniport lab fault system-patch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from omniport.lab.omni_controllers import Controller, Key
from omniport.lab.omni_store import Resource
from omniport.lab.omni_types import CLUSTERS, CONFIG_PATCHES, TYPES
from omniport.providers.codec.omni_names import LABEL_CLUSTER, LABEL_SYSTEM_PATCH, PHASE_RUNNING
from omniport.providers.wire.omni.specs import omni_pb2

NAME = "SystemPatchController"
PATCH = "machine:\n  nodeLabels:\n    omni.sidero.dev/managed: 'true'\n"


def patch_id(cluster: str) -> str:
    return f"000-system-{cluster}"


class SystemPatchController(Controller):
    """Keeps one system patch on every running cluster while the fault is on."""

    name = NAME

    def inputs(self) -> dict[str, Callable[[Resource], Iterable[Key]]]:
        return {CLUSTERS: lambda cluster: [cluster.id]}

    async def reconcile(self, key: Key) -> None:
        cluster = self.peek(CLUSTERS, key)
        namespace = TYPES[CONFIG_PATCHES].namespace
        current = self.store.peek(namespace, CONFIG_PATCHES, patch_id(key))
        wanted = cluster is not None and cluster.phase == PHASE_RUNNING
        if wanted and current is None and self.ctx.system_patches():
            patch = Resource(
                namespace,
                CONFIG_PATCHES,
                patch_id(key),
                omni_pb2.ConfigPatchSpec(data=PATCH),
                labels={LABEL_CLUSTER: key, LABEL_SYSTEM_PATCH: ""},
            )
            self.store.create(patch, owner=NAME)
        elif not wanted and current is not None and current.owner == NAME:
            if current.phase == PHASE_RUNNING:
                self.store.teardown(namespace, CONFIG_PATCHES, current.id, owner=NAME)
            if not current.finalizers:
                self.store.destroy(namespace, CONFIG_PATCHES, current.id, owner=NAME)
