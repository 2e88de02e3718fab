"""The lab's Omni checks a machine's Talos version against its cluster's, as Omni does.

Omni (``internal/backend/runtime/omni/validations/machine_set_node.go``, with the rule in
``client/pkg/omni/resources/omni/version_compat.go``) refuses to create a MachineSetNode whose
machine cannot run in the cluster: never a newer Talos minor than the cluster's (a downgrade);
a machine running from ISO or PXE only at the cluster's minor (unless both are 1.13 or newer).
The check needs the machine's MachineStatus: a MachineSetNode for a machine Omni has not seen
is not checked. The rule is tested on its own, then over the wire.
"""

from __future__ import annotations

import pytest

from omniport.lab.omni_validate import machine_version_problem, semver_minor
from tests.test_lab_omni import TALOS, Env, Keys, P, keys, new_cluster, rejected, run
from tests.test_lab_omni_import import INVALID, MSN, STATUSES, machine_set, set_node

__all__ = ["keys"]  # the module-scoped fixture, shared with test_lab_omni

NEWER, OLDER = "1.12.0", "1.10.7"
UUIDS = {"same": "4c4c4544-0000-0011", "newer": "4c4c4544-0000-0012", "older": "4c4c4544-0000-0013"}


# ---- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "installed", "cluster", "refused"),
    [
        # installed machines: the cluster's minor or an older one joins; a newer one never
        ("v1.11.5", True, "1.11.5", None),
        ("v1.11.0", True, "1.11.5", None),
        ("v1.11.9", True, "1.11.5", None),  # patch versions do not count
        ("v1.10.7", True, "1.11.5", None),
        ("v1.9.6", True, "1.12.0", None),
        ("v1.12.0", True, "1.11.5", "downgrade is not allowed"),
        ("v2.0.0", True, "1.14.0", "downgrade is not allowed"),
        ("1.12.0", True, "1.11.5", "downgrade is not allowed"),  # the "v" is optional
        # from ISO or PXE: the cluster's minor, unless both are new enough to install Talos
        ("v1.11.2", False, "1.11.5", None),
        ("v1.10.7", False, "1.11.5", "from ISO or PXE"),
        ("v1.12.4", False, "1.13.0", "from ISO or PXE"),
        ("v1.13.0", False, "1.14.2", None),
        ("v1.14.0", False, "1.13.1", "downgrade is not allowed"),
        # a label Omni cannot use refuses the machine
        (None, True, "1.11.5", "no Talos version label"),
        ("v1.11", True, "1.11.5", "could not be determined"),
        ("latest", True, "1.11.5", "could not be determined"),
    ],
)
def test_machine_version_rule(
    label: str | None, installed: bool, cluster: str, refused: str | None
) -> None:
    cluster_minor = semver_minor(cluster)
    assert cluster_minor is not None
    problem = machine_version_problem(label, installed, cluster_minor)
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and refused in problem


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("1.11.5", (1, 11)),
        ("1.14.0-alpha.1", (1, 14)),
        ("1.10.7+build.3", (1, 10)),
        ("v1.11.5", None),  # strict: no "v"
        ("1.11", None),
        ("01.11.5", None),
        ("", None),
    ],
)
def test_semver_minor_is_strict(text: str, minor: tuple[int, int] | None) -> None:
    assert semver_minor(text) == minor


# ---- over the wire -------------------------------------------------------------------------


async def join(env: Env, uuid: str, address: str, talos_version: str) -> None:
    joined = await env.sim.on_node_joined(
        machine_uuid=uuid,
        address=address,
        hostname=f"node-{address.rsplit('.', 1)[-1]}",
        talos_version=talos_version,
        role="worker",
        schematic_id="a" * 64,
        api_url=env.sim.join.documents()[0]["apiUrl"],
    )
    assert joined


def test_machine_status_carries_the_version_labels(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        await join(env, UUIDS["newer"], "127.1.0.2", NEWER)
        await env.sim.settle()
        status = await env.reader.get(STATUSES, UUIDS["newer"])
        assert status.spec.talos_version == f"v{NEWER}"
        assert status.labels[P + "talos-version"] == f"v{NEWER}"
        assert status.labels[P + "installed"] == ""

    run(keys, scenario)


def test_machine_set_node_is_refused_for_a_newer_talos_minor(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await new_cluster(op, "prod")  # Talos TALOS (1.11.5)
        await machine_set(op, "prod-workers")
        versions = {"same": TALOS, "newer": NEWER, "older": OLDER}
        for n, (kind, uuid) in enumerate(UUIDS.items()):
            await join(env, uuid, f"127.1.0.{n + 2}", versions[kind])
        await env.sim.settle()

        message = await rejected(
            set_node(op, UUIDS["newer"], "prod-workers"),
            INVALID,
            "failed to validate: 1 error occurred:",
            "downgrade is not allowed",
        )
        assert NEWER not in message  # Omni's reason names no version
        assert UUIDS["newer"] not in {r.id for r in await env.reader.list(MSN)}

        # the cluster's minor, and an older installed one, are accepted
        await set_node(op, UUIDS["same"], "prod-workers")
        await set_node(op, UUIDS["older"], "prod-workers")
        # a machine Omni has no status for is not checked
        await set_node(op, "4c4c4544-0000-00ff", "prod-workers")
        created = {r.id for r in await env.reader.list(MSN)}
        assert created == {UUIDS["same"], UUIDS["older"], "4c4c4544-0000-00ff"}

    run(keys, scenario)


def test_a_newer_cluster_accepts_the_machine(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await new_cluster(op, "next", talos=NEWER)
        await machine_set(op, "next-workers", "next")
        await join(env, UUIDS["newer"], "127.1.0.2", NEWER)
        await join(env, UUIDS["older"], "127.1.0.3", OLDER)
        await env.sim.settle()
        await set_node(op, UUIDS["newer"], "next-workers", "next")
        await set_node(op, UUIDS["older"], "next-workers", "next")

    run(keys, scenario)
