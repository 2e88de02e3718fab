"""The lab's Omni controllers and lock rules, driven over the network like an import would.

Nodes join through the simulator's seam (``on_node_joined``, as the Talos side calls it); all
Omni resources are created, read, torn down and watched with ``OmniClient`` over TLS.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml
from grpclib.const import Status

from omniport.providers.omni import OmniClient
from omniport.providers.wire.omni.specs import omni_pb2
from tests.paths import TALOS_FIXTURES
from tests.test_lab_omni import (
    CLUSTERS,
    K8S,
    TALOS,
    Env,
    Keys,
    P,
    keys,
    new_cluster,
    rejected,
    run,
)

__all__ = ["keys"]  # the module-scoped fixture, shared with test_lab_omni

CP, W1 = "4c4c4544-0000-0001", "4c4c4544-0000-0002"
MS = "MachineSets.omni.sidero.dev"
MSN = "MachineSetNodes.omni.sidero.dev"
PATCHES = "ConfigPatches.omni.sidero.dev"
SECRETS = "ImportedClusterSecrets.omni.sidero.dev"
LINKS = "Links.omni.sidero.dev"
MACHINES = "Machines.omni.sidero.dev"
STATUSES = "MachineStatuses.omni.sidero.dev"
CLUSTER_STATUSES = "ClusterStatuses.omni.sidero.dev"
CLUSTER_MACHINES = "ClusterMachines.omni.sidero.dev"
LOCKED, IMPORTING = P + "cluster-locked", P + "cluster-import-is-in-progress"
CLUSTER_LABEL, MS_LABEL = P + "cluster", P + "machine-set"
INVALID = Status.INVALID_ARGUMENT


def bundle() -> str:
    path = TALOS_FIXTURES / "secrets" / "secrets.yaml"
    if not path.is_file():
        pytest.skip("talos-fixtures are not available")
    return path.read_text()


async def join(
    env: Env, uuid: str = CP, address: str = "127.1.0.1", role: str = "controlplane"
) -> None:
    joined = await env.sim.on_node_joined(
        machine_uuid=uuid,
        address=address,
        hostname=f"node-{address.rsplit('.', 1)[-1]}",
        talos_version=TALOS,
        role=role,
        schematic_id="a" * 64,
        api_url=env.sim.join.documents()[0]["apiUrl"],
    )
    assert joined


async def machine_set(op: OmniClient, id_: str, cluster: str = "prod", role: str = "worker") -> Any:
    labels = {CLUSTER_LABEL: cluster, P + f"role-{role}": ""}
    return await op.create(MS, id_, omni_pb2.MachineSetSpec(), labels=labels)


async def set_node(op: OmniClient, uuid: str, ms_id: str, cluster: str = "prod") -> Any:
    labels = {CLUSTER_LABEL: cluster, MS_LABEL: ms_id}
    return await op.create(MSN, uuid, labels=labels)


async def import_cluster(
    env: Env,
    name: str = "prod",
    *,
    control_planes: bool = True,
    locked: bool = True,
) -> None:
    """The resources omniport (or omnictl) creates, in the importer's order."""
    op = env.operator
    await op.create(SECRETS, name, omni_pb2.ImportedClusterSecretsSpec(data=bundle()))
    await new_cluster(op, name, annotations={LOCKED: "", IMPORTING: ""} if locked else {})
    if control_planes:
        await machine_set(op, f"{name}-control-planes", name, "controlplane")
    await machine_set(op, f"{name}-workers", name, "worker")
    if not control_planes:
        return
    for uuid, ms_id in ((CP, f"{name}-control-planes"), (W1, f"{name}-workers")):
        await set_node(op, uuid, ms_id, name)
        await op.create(
            PATCHES,
            f"10-{uuid}",
            omni_pb2.ConfigPatchSpec(data="machine:\n  network:\n    hostname: x\n"),
            labels={CLUSTER_LABEL: name, P + "cluster-machine": uuid},
            annotations={"name": "User defined patch"},
        )


async def unlock(op: OmniClient, name: str = "prod") -> None:
    """omnictl's ``cluster unlock``: drop both annotations with UpdateWithConflicts."""
    await op.update_with_conflicts(
        CLUSTERS, name, lambda r: r.without_annotation(LOCKED).without_annotation(IMPORTING)
    )


def kinds(env: Env) -> dict[str, set[str]]:
    """What the simulator holds, by type prefix (internal types included): ``lab status``."""
    out: dict[str, set[str]] = {}
    for item in env.sim.resources():
        out.setdefault(item["type"].split(".")[0], set()).add(item["id"])
    return out


# ---- join ----------------------------------------------------------------------------------


def test_node_join_registers_link_machine_and_status(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        rd = env.reader
        await join(env)
        await env.sim.settle()
        link = await rd.get(LINKS, CP)
        assert link.spec.connected and link.spec.node_subnet.startswith("fdae:41e4:649b:9303:")
        assert link.owner == "" and "MachineController" in link.finalizers
        machine = await rd.get(MACHINES, CP)
        assert machine.owner == "MachineController" and machine.spec.connected
        status = (await rd.get(STATUSES, CP)).spec
        assert (status.talos_version, status.network.hostname) == (f"v{TALOS}", "node-1")
        assert status.connected and status.schematic.full_id == "a" * 64
        assert list(status.network.addresses) == ["127.1.0.1"]
        assert "JoinTokenUsages" in kinds(env)

        await env.sim.on_node_left(CP)
        await env.sim.settle()
        assert not (await rd.get(LINKS, CP)).spec.connected
        assert not (await rd.get(MACHINES, CP)).spec.connected
        assert not (await rd.get(STATUSES, CP)).spec.connected

        await join(env)  # reconnects
        await env.sim.settle()
        assert (await rd.get(MACHINES, CP)).spec.connected

    run(keys, scenario)


# ---- import --------------------------------------------------------------------------------


def test_import_yields_cluster_machines_secrets_and_tainted_status(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        rd = env.reader
        await join(env, CP)
        await join(env, W1, "127.1.0.2", "worker")
        await env.sim.settle()
        await import_cluster(env)
        await env.sim.settle()

        machines = {
            r.id: r for r in await rd.list(CLUSTER_MACHINES, labels={CLUSTER_LABEL: "prod"})
        }
        assert set(machines) == {CP, W1}
        cp = machines[CP]
        assert cp.owner == "MachineSetStatusController"
        assert dict(cp.labels) == {
            CLUSTER_LABEL: "prod",
            MS_LABEL: "prod-control-planes",
            P + "role-controlplane": "",
        }
        assert P + "role-worker" in machines[W1].labels
        assert cp.spec.kubernetes_version == K8S
        for uuid in (CP, W1):
            assert "MachineSetStatusController" in (await rd.get(MSN, uuid)).finalizers
            assert "MachineSetStatusController" in (await rd.get(MACHINES, uuid)).finalizers
        assert (await rd.get(STATUSES, CP)).spec.cluster == "prod"

        # the imported secrets became ClusterSecrets, and the imported copy is gone
        found = kinds(env)
        assert "prod" in found["ClusterSecrets"]
        assert "prod" not in found.get("ImportedClusterSecrets", set())

        cs = await rd.get(CLUSTER_STATUSES, "prod")
        assert cs.owner == "ClusterStatusController"
        assert cs.labels[P + "tainted-by-importing"] == ""
        assert cs.annotations[LOCKED] == ""
        assert cs.spec.phase == omni_pb2.ClusterStatusSpec.RUNNING
        assert (cs.spec.machines.total, cs.spec.machines.connected) == (2, 2)
        assert cs.spec.talos_version == TALOS and cs.spec.has_connected_control_planes

        # a disconnected machine shows in the status
        await env.sim.on_node_left(W1)
        await env.sim.settle()
        cs = await rd.get(CLUSTER_STATUSES, "prod")
        assert cs.spec.phase == omni_pb2.ClusterStatusSpec.SCALING_UP

        # nothing is pushed while the cluster is locked
        assert env.gateway.pushed == {}
        assert env.sim.rendered_config(CP) is not None  # ...though it could be rendered

        # unlock drops both annotations; ClusterStatus no longer mirrors the lock
        await unlock(env.operator)
        await env.sim.settle()
        assert LOCKED not in (await rd.get(CLUSTER_STATUSES, "prod")).annotations

    run(keys, scenario)


def test_imported_secrets_wait_for_the_control_plane_set(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        await import_cluster(env, control_planes=False)
        await env.sim.settle()
        found = kinds(env)
        assert "prod" in found["ImportedClusterSecrets"]
        assert "ClusterSecrets" not in found
        cs = await env.reader.get(CLUSTER_STATUSES, "prod")
        assert P + "tainted-by-importing" not in cs.labels
        await machine_set(env.operator, "prod-control-planes", role="controlplane")
        await env.sim.settle()
        found = kinds(env)
        assert "prod" in found["ClusterSecrets"]
        assert "prod" not in found.get("ImportedClusterSecrets", set())
        cs = await env.reader.get(CLUSTER_STATUSES, "prod")
        assert P + "tainted-by-importing" in cs.labels

    run(keys, scenario)


def test_cluster_machines_wait_for_the_machine_status(keys: Keys) -> None:
    """Omni makes a ClusterMachine only for a node whose MachineStatus exists (it has joined)."""

    async def scenario(env: Env) -> None:
        rd = env.reader
        await join(env, CP)
        await import_cluster(env)  # W1 has a MachineSetNode but has not joined yet
        await env.sim.settle()
        held = {r.id for r in await rd.list(CLUSTER_MACHINES, labels={CLUSTER_LABEL: "prod"})}
        assert held == {CP}
        assert "MachineSetStatusController" not in (await rd.get(MSN, W1)).finalizers
        cs = (await rd.get(CLUSTER_STATUSES, "prod")).spec
        assert (cs.machines.total, cs.machines.requested) == (1, 2)

        await join(env, W1, "127.1.0.2", "worker")
        await env.sim.settle()
        held = {r.id for r in await rd.list(CLUSTER_MACHINES, labels={CLUSTER_LABEL: "prod"})}
        assert held == {CP, W1}
        assert (await rd.get(STATUSES, W1)).spec.cluster == "prod"

    run(keys, scenario)


def test_a_control_plane_set_on_a_bootstrapped_cluster_is_refused(keys: Keys) -> None:
    """Omni's check has no import exemption: an import passes because its cluster counts as
    bootstrapped only once the control-plane set exists and a control plane is connected."""

    async def scenario(env: Env) -> None:
        await join(env, CP)
        await import_cluster(env)  # creates prod-control-planes: not bootstrapped yet
        await env.sim.settle()
        await rejected(
            machine_set(env.operator, "prod-control-planes", role="controlplane"),
            INVALID,
            "adding control plane machine set to an already bootstrapped cluster is not allowed",
        )
        cp_set = await env.reader.get(MS, "prod-control-planes")
        assert "ClusterBootstrapStatusController" in cp_set.finalizers

    run(keys, scenario)


# ---- reset on removal ------------------------------------------------------------------------


async def imported(env: Env) -> None:
    await join(env, CP)
    await join(env, W1, "127.1.0.2", "worker")
    await import_cluster(env)
    await env.sim.settle()
    assert P + "tainted-by-importing" in (await env.reader.get(CLUSTER_STATUSES, "prod")).labels


async def delete_cluster(env: Env) -> None:
    await env.operator.teardown(CLUSTERS, "prod")
    await env.operator.wait_destroyed(CLUSTERS, "prod", timeout=10)
    await env.sim.settle()


def test_abort_order_removes_machines_without_reset(keys: Keys) -> None:
    """Locked, tainted by importing and tearing down: the one case Omni does not wipe."""

    async def scenario(env: Env) -> None:
        await imported(env)
        await delete_cluster(env)
        assert env.gateway.resets == []
        assert not kinds(env).get("ClusterMachines")

    run(keys, scenario)


def test_dropping_only_import_in_progress_still_skips_the_reset(keys: Keys) -> None:
    """Omni's exemption reads the lock and ClusterStatus' taint, not the import annotation."""

    async def scenario(env: Env) -> None:
        await imported(env)
        await env.operator.update_with_conflicts(
            CLUSTERS, "prod", lambda r: r.without_annotation(IMPORTING)
        )
        await delete_cluster(env)
        assert env.gateway.resets == []

    run(keys, scenario)


def test_unlocking_before_deleting_wipes_every_machine(keys: Keys) -> None:
    """The wrong order: unlock (as ``omnictl cluster unlock`` does), then delete. Omni resets
    every machine of the cluster before letting it go."""

    async def scenario(env: Env) -> None:
        await imported(env)
        await unlock(env.operator)
        await env.sim.settle()
        env.gateway.pushed.clear()
        await delete_cluster(env)
        assert sorted(env.gateway.resets) == sorted([CP, W1])
        assert not kinds(env).get("ClusterMachines")

    run(keys, scenario)


def test_removing_a_node_from_an_unlocked_cluster_wipes_it(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        await imported(env)
        await unlock(env.operator)
        await env.operator.teardown(MSN, W1)
        await env.operator.wait_destroyed(MSN, W1, timeout=10)
        await env.sim.settle()
        assert env.gateway.resets == [W1]

    run(keys, scenario)


def test_a_disconnected_machine_holds_its_reset_until_it_returns(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        await imported(env)
        await unlock(env.operator)
        await env.sim.on_node_left(W1)
        await env.sim.settle()
        await env.operator.teardown(CLUSTERS, "prod")
        await env.sim.settle()
        assert env.gateway.resets == [CP]
        assert W1 in kinds(env)["ClusterMachines"]  # the cluster waits for the reset
        await join(env, W1, "127.1.0.2", "worker")
        await env.operator.wait_destroyed(CLUSTERS, "prod", timeout=10)
        assert env.gateway.resets == [CP, W1]

    run(keys, scenario)


# ---- lock rules ----------------------------------------------------------------------------


def test_lock_rules(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await join(env, CP)
        await import_cluster(env)
        await env.sim.settle()
        # finish the import but keep the lock
        await op.update_with_conflicts(CLUSTERS, "prod", lambda r: r.without_annotation(IMPORTING))

        def bump(res: Any) -> Any:
            spec = res.spec_copy()
            spec.kubernetes_version = "1.33.5"
            return res.replace(spec=spec)

        await rejected(
            op.update_with_conflicts(CLUSTERS, "prod", bump),
            INVALID,
            'updating cluster configuration is not allowed: the cluster "prod" is locked',
        )
        await rejected(
            machine_set(op, "prod-extra"),
            INVALID,
            'adding machine set "prod-extra" to the cluster "prod" is not allowed: the cluster '
            "is locked",
        )
        await rejected(
            set_node(op, "4c4c4544-0000-0009", "prod-workers"),
            INVALID,
            'adding machine set node to the machine set "prod-workers" is not allowed: the '
            'cluster "prod" is locked',
        )
        await rejected(
            op.destroy(MSN, CP),
            INVALID,
            'removing machine set node from the machine set "prod-control-planes" is not '
            'allowed: the cluster "prod" is locked',
        )
        await rejected(
            op.teardown(MS, "prod-workers"),
            INVALID,
            'removing machine set "prod-workers" from the cluster "prod" is not allowed',
        )
        workers = await op.get(MS, "prod-workers")
        await rejected(
            op.update(workers.with_label("extra", "x")),
            INVALID,
            'updating machine set "prod-workers" on the cluster "prod" is not allowed',
        )

        # toggling the lock itself is allowed, and lifts the rules
        await op.update_with_conflicts(CLUSTERS, "prod", lambda r: r.without_annotation(LOCKED))
        workers = await op.get(MS, "prod-workers")
        await op.update(workers.with_label("extra", "x"))
        await machine_set(op, "prod-extra")

        # a locked cluster that is no longer tainted cannot be deleted
        await op.update_with_conflicts(CLUSTERS, "prod", lambda r: r.with_annotation(LOCKED))
        env.sim.mark_ca_rotated("prod")
        await env.sim.settle()
        cs = await env.reader.get(CLUSTER_STATUSES, "prod")
        assert P + "tainted-by-importing" not in cs.labels
        await rejected(
            op.teardown(CLUSTERS, "prod"),
            INVALID,
            'deletion is not allowed: the cluster "prod" is locked',
        )

    run(keys, scenario)


# ---- abort ---------------------------------------------------------------------------------


def test_abort_tears_down_cluster_then_links(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await join(env, CP)
        await join(env, W1, "127.1.0.2", "worker")
        await import_cluster(env)
        await env.sim.settle()
        # omnictl's abort: list the nodes, tear down the cluster, watch it go, then the links
        nodes = [r.id for r in await op.list(MSN, labels={CLUSTER_LABEL: "prod"})]
        assert sorted(nodes) == [CP, W1]
        assert await op.teardown(CLUSTERS, "prod") is False
        await op.wait_destroyed(CLUSTERS, "prod", timeout=10)
        await env.sim.settle()
        found = kinds(env)
        for kind in (
            "MachineSets",
            "MachineSetNodes",
            "ConfigPatches",
            "ClusterMachines",
            "ClusterStatuses",
            "ClusterSecrets",
            "ImportedClusterSecrets",
        ):
            assert not found.get(kind), (kind, found.get(kind))
        assert (await op.get(MACHINES, CP)).finalizers == ()
        for uuid in nodes:
            await op.teardown(LINKS, uuid)
        await env.sim.settle()
        found = kinds(env)
        for kind in ("Links", "Machines", "MachineStatuses", "JoinTokenUsages"):
            assert not found.get(kind), (kind, found.get(kind))
        assert await op.find(LINKS, CP) is None

    run(keys, scenario)


def test_cluster_teardown_before_control_planes_destroys_imported_secrets(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        # locked but not tainted (no ClusterSecrets yet): Omni refuses the deletion
        await import_cluster(env, control_planes=False)
        await env.sim.settle()
        await rejected(op.teardown(CLUSTERS, "prod"), INVALID, "is locked")
        await unlock(op)
        assert "prod" in kinds(env)["ImportedClusterSecrets"]
        await op.teardown(CLUSTERS, "prod")
        await op.wait_destroyed(CLUSTERS, "prod", timeout=10)
        found = kinds(env)
        assert not found.get("ImportedClusterSecrets") and not found.get("MachineSets")

    run(keys, scenario)


def test_imported_secrets_orphan_can_be_torn_down_and_recreated(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        spec = omni_pb2.ImportedClusterSecretsSpec(data=bundle())
        await op.create(SECRETS, "prod", spec)
        await rejected(op.create(SECRETS, "prod", spec), Status.ALREADY_EXISTS, "already exists")
        assert await op.teardown(SECRETS, "prod") is True
        await op.destroy(SECRETS, "prod")
        await op.create(SECRETS, "prod", spec)
        await rejected(env.reader.destroy(SECRETS, "prod"), Status.PERMISSION_DENIED)

    run(keys, scenario)


# ---- validations ---------------------------------------------------------------------------


def test_cluster_and_machine_set_validations(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await rejected(new_cluster(op, "bad name"), INVALID, 'cluster name "bad name" is invalid')
        await rejected(
            new_cluster(op, talos="1.2.3"),
            INVALID,
            'invalid talos version "1.2.3": resource TalosVersions.omni.sidero.dev'
            "(default/1.2.3@undefined) doesn't exist",
        )
        await rejected(
            new_cluster(op, k8s="1.20.0"),
            INVALID,
            'invalid kubernetes version "1.20.0": is not compatible with talos version',
        )
        two = await rejected(new_cluster(op, "bad/x", talos="9.9.9"), INVALID)
        assert "failed to validate: 2 errors occurred:\n\t* " in two
        await rejected(new_cluster(op, "x" * 1025), INVALID, "the limit is 1024")
        many = {f"k{i}": "" for i in range(257)}
        await rejected(new_cluster(op, labels=many), INVALID, "257 labels")
        await new_cluster(op)

        async def ms(id_: str, **labels: str) -> Any:
            return await op.create(MS, id_, labels=labels)

        await rejected(ms("prod-a"), INVALID, f'label "{CLUSTER_LABEL}" does not exist')
        await rejected(ms("x-a", **{CLUSTER_LABEL: "x"}), INVALID, 'the cluster "x" does not exist')
        await rejected(ms("prod-a", **{CLUSTER_LABEL: "prod"}), INVALID, "must have either")
        worker = {CLUSTER_LABEL: "prod", P + "role-worker": ""}
        control = {CLUSTER_LABEL: "prod", P + "role-controlplane": ""}
        await rejected(ms("a", **worker), INVALID, 'ID must have "prod-" as prefix')
        await rejected(
            ms("prod-cp", **control),
            INVALID,
            'control plane machine set must have ID "prod-control-planes"',
        )
        await rejected(
            ms("prod-control-planes", **worker), INVALID, "worker machine set must not have ID"
        )
        await ms("prod-workers", **worker)

        async def node(id_: str, **labels: str) -> Any:
            return await op.create(MSN, id_, labels=labels)

        await rejected(node(CP, **{CLUSTER_LABEL: "prod"}), INVALID, f'"{MS_LABEL}" does not exist')
        await rejected(node(CP, **{CLUSTER_LABEL: "prod", MS_LABEL: ""}), INVALID, "empty value")
        await rejected(
            node(CP, **{CLUSTER_LABEL: "prod", MS_LABEL: "prod-nope"}),
            INVALID,
            "the machine set does not exist",
        )
        moved = await node(W1, **{CLUSTER_LABEL: "prod", MS_LABEL: "prod-workers"})
        await rejected(
            op.update(moved.with_label(CLUSTER_LABEL, "other")), INVALID, "changing value of label"
        )

        # imported secrets: not for an existing cluster
        await rejected(
            op.create(SECRETS, "prod", omni_pb2.ImportedClusterSecretsSpec(data=bundle())),
            INVALID,
            "cannot create an ImportedClusterSecrets, as there is already an existing cluster "
            'with name: "prod"',
        )

    run(keys, scenario)


def test_config_patch_validations_and_bundle_check(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator

        async def patch(id_: str, data: str, **labels: str) -> Any:
            return await op.create(PATCHES, id_, omni_pb2.ConfigPatchSpec(data=data), labels=labels)

        empty = "machine: {}\n"
        await rejected(patch("p1", empty, **{P + "cluster-machine": CP}), INVALID, "is required")
        await rejected(
            patch("p2", empty, **{P + "machine": CP, CLUSTER_LABEL: "prod"}),
            INVALID,
            "cannot be combined",
        )
        await rejected(
            patch("p3", empty, **{CLUSTER_LABEL: "p", MS_LABEL: "p-w", P + "cluster-machine": CP}),
            INVALID,
            "exclude each other",
        )
        compressed = omni_pb2.ConfigPatchSpec(compressed_data=b"\x28\xb5\x2f\xfd")
        await rejected(op.create(PATCHES, "p4", compressed), INVALID, "not a zstd frame")

        await rejected(
            patch("d1", "cluster:\n  clusterName: other\n"),
            INVALID,
            'overriding "v1alpha1: cluster.clusterName" is not allowed',
        )
        two = await rejected(patch("d2", "machine:\n  token: abc\n  ca:\n    crt: x\n"), INVALID)
        assert "failed to validate: 2 errors occurred:" in two
        await rejected(
            patch("d3", "apiVersion: v1alpha1\nkind: KubeEtcdEncryptionConfig\nconfig: x\n"),
            INVALID,
            "KubeEtcdEncryptionConfig",
        )
        roles = (
            "machine:\n  features:\n    kubernetesTalosAPIAccess:\n      allowedRoles: [os:admin]\n"
        )
        await rejected(patch("d4", roles), INVALID, "os:admin")
        await rejected(patch("d5", "machine: [\n"), INVALID, "config patch")
        ok = await patch("ok", "machine:\n  network:\n    hostname: fine\n")
        # an update that adds a forbidden field is refused too
        bad = ok.replace(spec=omni_pb2.ConfigPatchSpec(data="cluster:\n  id: x\n"))
        await rejected(op.update(bad), INVALID, "cluster.id")

        invalid = TALOS_FIXTURES / "secrets" / "invalid-secrets.yaml"
        if invalid.is_file():
            await rejected(
                op.create(
                    SECRETS, "c1", omni_pb2.ImportedClusterSecretsSpec(data=invalid.read_text())
                ),
                INVALID,
                "failed to validate imported cluster secret:",
            )
        await rejected(
            op.create(SECRETS, "c2", omni_pb2.ImportedClusterSecretsSpec(data="x: 1")),
            INVALID,
            "failed to validate imported cluster secret:",
        )

    run(keys, scenario)


# ---- unlock --------------------------------------------------------------------------------


def _docs(config: bytes) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(config) if d]


def test_unlock_pushes_rendered_configs(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await join(env, CP)
        await join(env, W1, "127.1.0.2", "worker")
        await import_cluster(env)
        await env.sim.settle()
        assert env.gateway.pushed == {}
        env.gateway.fail.add(W1)

        await unlock(op)
        await env.sim.settle()

        assert list(env.gateway.pushed) == [CP]
        docs = _docs(env.gateway.pushed[CP][-1])
        legacy = docs[0]
        assert legacy["machine"]["type"] == "controlplane"
        assert legacy["cluster"]["clusterName"] == "prod"
        assert legacy["cluster"]["controlPlane"]["endpoint"] == (
            "https://[fdae:41e4:649b:9303::1]:10000"
        )
        assert legacy["machine"]["network"]["hostname"] == "x"  # the imported patch
        assert f"v{K8S}" in legacy["machine"]["kubelet"]["image"]
        assert {"SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig"} <= {
            d.get("kind") for d in docs
        }
        link = next(d for d in docs if d.get("kind") == "SideroLinkConfig")
        assert link["apiUrl"] == "https://127.0.0.1:8090?jointoken=lab-token"
        assert env.sim.rendered_config(CP) == env.gateway.pushed[CP][-1]

        # the failed push is recorded and retried until the node takes it
        statuses = {
            r["id"] for r in env.sim.resources() if r["type"].startswith("ClusterMachineConfig")
        }
        assert statuses == {CP, W1}
        env.gateway.fail.clear()
        for _ in range(150):  # retries back off from 0.5 s
            if W1 in env.gateway.pushed:
                break
            await asyncio.sleep(0.1)
        assert _docs(env.gateway.pushed[W1][-1])[0]["machine"]["type"] == "worker"

        # a patch changed after unlock is pushed again; an unchanged render is not
        pushes = len(env.gateway.pushed[CP])
        current = await op.get(PATCHES, f"10-{CP}")
        renamed = omni_pb2.ConfigPatchSpec(data="machine:\n  network:\n    hostname: renamed\n")
        await op.update(current.replace(spec=renamed))
        await env.sim.settle()
        assert len(env.gateway.pushed[CP]) == pushes + 1
        assert _docs(env.gateway.pushed[CP][-1])[0]["machine"]["network"]["hostname"] == "renamed"
        await env.sim.on_node_left(W1)
        await env.sim.settle()
        assert len(env.gateway.pushed[CP]) == pushes + 1

    run(keys, scenario)
