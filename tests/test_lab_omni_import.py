"""The lab's Omni controllers and lock rules, driven over the network like an import would.

Nodes join through the simulator's seam (``on_node_joined``, as the Talos side calls it); all
Omni resources are created, read, torn down and watched through signed gRPC calls.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from grpclib.const import Status

from providers.wire.omni.specs import omni_pb2, siderolink_pb2
from providers.wire.v1alpha1 import state_pb2
from tests.test_lab_omni import (
    CLUSTERS,
    FIXTURES,
    K8S,
    TALOS,
    Env,
    Keys,
    P,
    _next,
    cluster,
    keys,
    rejected,
    resource,
    run,
)

__all__ = ["keys"]  # the module-scoped fixture, shared with test_lab_omni

CP, W1 = "4c4c4544-0000-0001", "4c4c4544-0000-0002"
MS = "MachineSets.omni.sidero.dev"
MSN = "MachineSetNodes.omni.sidero.dev"
PATCHES = "ConfigPatches.omni.sidero.dev"
SECRETS = "ImportedClusterSecrets.omni.sidero.dev"
LOCKED, IMPORTING = P + "cluster-locked", P + "cluster-import-is-in-progress"


def bundle() -> str:
    path = FIXTURES / "secrets" / "secrets.yaml"
    if not path.is_file():
        pytest.skip("talos-fixtures are not available")
    return path.read_text()


async def join(env: Env, uuid: str = CP, address: str = "127.1.0.1", role: str = "controlplane"):
    await env.sim.on_node_joined(
        machine_uuid=uuid,
        address=address,
        hostname=f"node-{address.rsplit('.', 1)[-1]}",
        talos_version=TALOS,
        role=role,
        schematic_id="a" * 64,
    )


async def import_cluster(
    env: Env,
    name: str = "prod",
    *,
    control_planes: bool = True,
    patches: bool = True,
    locked: bool = True,
) -> None:
    """The resources omniport (or omnictl) creates, in the importer's order."""
    op = env.operator
    await op.create(resource(SECRETS, name, omni_pb2.ImportedClusterSecretsSpec(data=bundle())))
    await op.create(cluster(name, annotations={LOCKED: "", IMPORTING: ""} if locked else {}))
    sets = [(f"{name}-workers", P + "role-worker")]
    if control_planes:
        sets.insert(0, (f"{name}-control-planes", P + "role-controlplane"))
    for ms_id, role in sets:
        await op.create(
            resource(MS, ms_id, omni_pb2.MachineSetSpec(), labels={P + "cluster": name, role: ""})
        )
    if not control_planes:
        return
    for uuid, ms_id, role in (
        (CP, f"{name}-control-planes", "role-controlplane"),
        (W1, f"{name}-workers", "role-worker"),
    ):
        labels = {P + "cluster": name, P + role: "", P + "machine-set": ms_id}
        await op.create(resource(MSN, uuid, omni_pb2.MachineSetNodeSpec(), labels=labels))
        if patches:
            await op.create(
                resource(
                    PATCHES,
                    f"10-{uuid}",
                    omni_pb2.ConfigPatchSpec(data="machine:\n  network:\n    hostname: x\n"),
                    labels={P + "cluster": name, P + "cluster-machine": uuid},
                    annotations={"name": "User defined patch"},
                )
            )


def kinds(env: Env) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item in env.sim.resources():
        out.setdefault(item["type"].split(".")[0], set()).add(item["id"])
    return out


def spec(res: Any, cls: Any) -> Any:
    return cls.FromString(res.spec.proto_spec)


# ---- join ----------------------------------------------------------------------------------


def test_node_join_registers_link_machine_and_status(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        await join(env)
        await env.sim.settle()
        link = await env.reader.get("Links.omni.sidero.dev", CP)
        link_spec = spec(link, siderolink_pb2.SiderolinkSpec)
        assert link_spec.connected and link_spec.node_subnet.startswith("fdae:41e4:649b:9303:")
        assert link.metadata.owner == "" and "MachineController" in link.metadata.finalizers
        machine = await env.reader.get("Machines.omni.sidero.dev", CP)
        assert machine.metadata.owner == "MachineController"
        assert spec(machine, omni_pb2.MachineSpec).connected
        status = await env.reader.get("MachineStatuses.omni.sidero.dev", CP)
        ms = spec(status, omni_pb2.MachineStatusSpec)
        assert (ms.talos_version, ms.network.hostname, ms.connected) == (
            f"v{TALOS}",
            "node-1",
            True,
        )
        assert ms.schematic.full_id == "a" * 64 and ms.network.addresses == ["127.1.0.1"]
        assert "JoinTokenUsages" in kinds(env)

        await env.sim.on_node_left(CP)
        await env.sim.settle()
        assert not spec(
            await env.reader.get("Links.omni.sidero.dev", CP), siderolink_pb2.SiderolinkSpec
        ).connected
        assert not spec(
            await env.reader.get("Machines.omni.sidero.dev", CP), omni_pb2.MachineSpec
        ).connected
        status = await env.reader.get("MachineStatuses.omni.sidero.dev", CP)
        assert not spec(status, omni_pb2.MachineStatusSpec).connected

        await join(env)  # reconnects
        await env.sim.settle()
        assert spec(
            await env.reader.get("Machines.omni.sidero.dev", CP), omni_pb2.MachineSpec
        ).connected

    run(keys, scenario)


# ---- import --------------------------------------------------------------------------------


def test_import_yields_cluster_machines_secrets_and_tainted_status(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        await join(env, CP)
        await join(env, W1, "127.1.0.2", "worker")
        await env.sim.settle()
        await import_cluster(env)
        await env.sim.settle()

        machines = {
            r.metadata.id: r
            for r in await env.reader.list(
                "ClusterMachines.omni.sidero.dev", (P + "cluster", "prod")
            )
        }
        assert set(machines) == {CP, W1}
        cp = machines[CP]
        assert cp.metadata.owner == "MachineSetStatusController"
        assert dict(cp.metadata.labels) == {
            P + "cluster": "prod",
            P + "machine-set": "prod-control-planes",
            P + "role-controlplane": "",
        }
        assert P + "role-worker" in machines[W1].metadata.labels
        assert spec(cp, omni_pb2.ClusterMachineSpec).kubernetes_version == K8S
        for uuid in (CP, W1):
            node = await env.reader.get(MSN, uuid)
            assert "MachineSetStatusController" in node.metadata.finalizers
            machine = await env.reader.get("Machines.omni.sidero.dev", uuid)
            assert "MachineSetStatusController" in machine.metadata.finalizers
        status = await env.reader.get("MachineStatuses.omni.sidero.dev", CP)
        assert spec(status, omni_pb2.MachineStatusSpec).cluster == "prod"

        # the imported secrets became ClusterSecrets, and the imported copy is gone
        found = kinds(env)
        assert "prod" in found["ClusterSecrets"]
        assert (
            "ImportedClusterSecrets" not in found or "prod" not in found["ImportedClusterSecrets"]
        )

        cs = await env.reader.get("ClusterStatuses.omni.sidero.dev", "prod")
        assert cs.metadata.owner == "ClusterStatusController"
        assert cs.metadata.labels[P + "tainted-by-importing"] == ""
        assert cs.metadata.annotations[LOCKED] == ""
        status_spec = spec(cs, omni_pb2.ClusterStatusSpec)
        assert status_spec.phase == omni_pb2.ClusterStatusSpec.RUNNING
        assert (status_spec.machines.total, status_spec.machines.connected) == (2, 2)
        assert status_spec.talos_version == TALOS and status_spec.has_connected_control_planes

        # a disconnected machine shows in the status
        await env.sim.on_node_left(W1)
        await env.sim.settle()
        cs = await env.reader.get("ClusterStatuses.omni.sidero.dev", "prod")
        assert spec(cs, omni_pb2.ClusterStatusSpec).phase == omni_pb2.ClusterStatusSpec.SCALING_UP

        # nothing is pushed while the cluster is locked
        assert env.gateway.pushed == {}

        # unlock drops both annotations; ClusterStatus no longer mirrors the lock
        current = await env.operator.get(CLUSTERS, "prod")
        del current.metadata.annotations[LOCKED]
        del current.metadata.annotations[IMPORTING]
        await env.operator.update(current)
        await env.sim.settle()
        cs = await env.reader.get("ClusterStatuses.omni.sidero.dev", "prod")
        assert LOCKED not in cs.metadata.annotations

    run(keys, scenario)


def test_imported_secrets_wait_for_the_control_plane_set(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        await import_cluster(env, control_planes=False)
        await env.sim.settle()
        found = kinds(env)
        assert "prod" in found["ImportedClusterSecrets"]
        assert "ClusterSecrets" not in found
        cs = await env.reader.get("ClusterStatuses.omni.sidero.dev", "prod")
        assert P + "tainted-by-importing" not in cs.metadata.labels
        await env.operator.create(
            resource(
                MS,
                "prod-control-planes",
                omni_pb2.MachineSetSpec(),
                labels={P + "cluster": "prod", P + "role-controlplane": ""},
            )
        )
        await env.sim.settle()
        found = kinds(env)
        assert "prod" in found["ClusterSecrets"]
        assert "prod" not in found.get("ImportedClusterSecrets", set())
        cs = await env.reader.get("ClusterStatuses.omni.sidero.dev", "prod")
        assert P + "tainted-by-importing" in cs.metadata.labels

    run(keys, scenario)


# ---- lock rules ----------------------------------------------------------------------------


def test_lock_rules(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await join(env, CP)
        await import_cluster(env)
        await env.sim.settle()
        # finish the import but keep the lock
        current = await op.get(CLUSTERS, "prod")
        del current.metadata.annotations[IMPORTING]
        current = await op.update(current)

        changed = await op.get(CLUSTERS, "prod")
        changed_spec = omni_pb2.ClusterSpec.FromString(changed.spec.proto_spec)
        changed_spec.kubernetes_version = "1.33.5"
        changed.spec.proto_spec = changed_spec.SerializeToString()
        await rejected(
            op.update(changed),
            Status.INVALID_ARGUMENT,
            'updating cluster configuration is not allowed: the cluster "prod" is locked',
        )
        extra = resource(
            MS,
            "prod-extra",
            omni_pb2.MachineSetSpec(),
            labels={P + "cluster": "prod", P + "role-worker": ""},
        )
        await rejected(op.create(extra), Status.INVALID_ARGUMENT, "the cluster is locked")
        node = resource(
            MSN,
            "4c4c4544-0000-0009",
            omni_pb2.MachineSetNodeSpec(),
            labels={P + "cluster": "prod", P + "machine-set": "prod-workers"},
        )
        await rejected(op.create(node), Status.INVALID_ARGUMENT, 'the cluster "prod" is locked')
        await rejected(op.destroy(MSN, CP), Status.INVALID_ARGUMENT, 'the cluster "prod" is locked')
        await rejected(
            op.teardown(MS, "prod-workers"),
            Status.INVALID_ARGUMENT,
            'removing machine set "prod-workers" from the cluster "prod" is not allowed',
        )
        workers = await op.get(MS, "prod-workers")
        workers.metadata.labels["extra"] = "x"
        await rejected(op.update(workers), Status.INVALID_ARGUMENT, "updating machine set")

        # toggling the lock itself is allowed, and lifts the rules
        current = await op.get(CLUSTERS, "prod")
        del current.metadata.annotations[LOCKED]
        await op.update(current)
        await op.update(workers)
        await op.create(extra)

        # a locked cluster that is not tainted any more cannot be deleted
        current = await op.get(CLUSTERS, "prod")
        current.metadata.annotations[LOCKED] = ""
        await op.update(current)
        env.sim.mark_ca_rotated("prod")
        await env.sim.settle()
        cs = await env.reader.get("ClusterStatuses.omni.sidero.dev", "prod")
        assert P + "tainted-by-importing" not in cs.metadata.labels
        await rejected(
            op.teardown(CLUSTERS, "prod"),
            Status.INVALID_ARGUMENT,
            'deletion is not allowed: the cluster "prod" is locked',
        )

    run(keys, scenario)


# ---- abort ---------------------------------------------------------------------------------


async def _wait_destroyed(env: Env, type_: str, id_: str) -> None:
    opened, req = env.operator.watch(
        state_pb2.WatchRequest(namespace="default", type=type_, id=id_)
    )
    async with opened as stream:
        await stream.send_message(req, end=True)
        await _next(stream)
        while (await _next(stream)).event[0].event_type != state_pb2.DESTROYED:
            pass
        await stream.cancel()


def test_abort_tears_down_cluster_then_links(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        await join(env, CP)
        await join(env, W1, "127.1.0.2", "worker")
        await import_cluster(env)
        await env.sim.settle()
        # omnictl's abort: list the nodes, tear down the cluster, watch it go, then the links
        nodes = [r.metadata.id for r in await op.list(MSN, (P + "cluster", "prod"))]
        assert sorted(nodes) == [CP, W1]
        assert await op.teardown(CLUSTERS, "prod") is False
        await asyncio.wait_for(_wait_destroyed(env, CLUSTERS, "prod"), 10)
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
        machine = await op.get("Machines.omni.sidero.dev", CP)
        assert list(machine.metadata.finalizers) == []
        for uuid in nodes:
            await op.teardown("Links.omni.sidero.dev", uuid)
        await env.sim.settle()
        found = kinds(env)
        for kind in ("Links", "Machines", "MachineStatuses", "JoinTokenUsages"):
            assert not found.get(kind), (kind, found.get(kind))
        await rejected(op.get("Links.omni.sidero.dev", CP), Status.NOT_FOUND)

    run(keys, scenario)


def test_cluster_teardown_before_control_planes_destroys_imported_secrets(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        # locked but not tainted (no ClusterSecrets yet): Omni refuses the deletion
        await import_cluster(env, control_planes=False)
        await env.sim.settle()
        await rejected(env.operator.teardown(CLUSTERS, "prod"), Status.INVALID_ARGUMENT, "locked")
        current = await env.operator.get(CLUSTERS, "prod")
        current.metadata.annotations.clear()
        await env.operator.update(current)
        assert "prod" in kinds(env)["ImportedClusterSecrets"]
        await env.operator.teardown(CLUSTERS, "prod")
        await env.sim.settle()
        found = kinds(env)
        assert not found.get("ImportedClusterSecrets") and not found.get("Clusters")
        assert not found.get("MachineSets")

    run(keys, scenario)


def test_imported_secrets_orphan_can_be_torn_down_and_recreated(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        res = resource(SECRETS, "prod", omni_pb2.ImportedClusterSecretsSpec(data=bundle()))
        await op.create(res)
        await rejected(op.create(res), Status.ALREADY_EXISTS, "already exists")
        assert await op.teardown(SECRETS, "prod") is True
        await op.destroy(SECRETS, "prod")
        await op.create(res)
        await rejected(env.reader.destroy(SECRETS, "prod"), Status.PERMISSION_DENIED)

    run(keys, scenario)


# ---- validations ---------------------------------------------------------------------------


def test_validations(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        inval = Status.INVALID_ARGUMENT
        await rejected(op.create(cluster("bad name")), inval, 'cluster name "bad name" is invalid')
        await rejected(
            op.create(cluster(talos="1.2.3")),
            inval,
            'invalid talos version "1.2.3": resource TalosVersions.omni.sidero.dev'
            "(default/1.2.3@undefined) doesn't exist",
        )
        await rejected(
            op.create(cluster(k8s="1.20.0")),
            inval,
            'invalid kubernetes version "1.20.0": is not compatible with talos version',
        )
        two = await rejected(op.create(cluster("bad/x", talos="9.9.9")), inval)
        assert two.startswith("failed to validate: 2 errors occurred:\n\t* ")
        await rejected(op.create(cluster("x" * 1025)), inval, "the limit is 1024")
        await rejected(
            op.create(cluster(labels={f"k{i}": "" for i in range(257)})), inval, "257 labels"
        )
        await op.create(cluster())

        def ms(id_: str, **labels: str) -> Any:
            return resource(MS, id_, omni_pb2.MachineSetSpec(), labels=labels)

        cl = P + "cluster"
        await rejected(op.create(ms("prod-a")), inval, f'label "{cl}" does not exist')
        await rejected(op.create(ms("x-a", **{cl: "x"})), inval, 'the cluster "x" does not exist')
        await rejected(op.create(ms("prod-a", **{cl: "prod"})), inval, "either")
        await rejected(
            op.create(ms("a", **{cl: "prod", P + "role-worker": ""})),
            inval,
            'ID must have "prod-" as prefix',
        )
        await rejected(
            op.create(ms("prod-cp", **{cl: "prod", P + "role-controlplane": ""})),
            inval,
            'control plane machine set must have ID "prod-control-planes"',
        )
        await rejected(
            op.create(ms("prod-control-planes", **{cl: "prod", P + "role-worker": ""})),
            inval,
            "worker machine set must not have ID",
        )
        await op.create(ms("prod-workers", **{cl: "prod", P + "role-worker": ""}))

        def node(id_: str, **labels: str) -> Any:
            return resource(MSN, id_, omni_pb2.MachineSetNodeSpec(), labels=labels)

        msl = P + "machine-set"
        await rejected(op.create(node(CP, **{cl: "prod"})), inval, f'label "{msl}" does not exist')
        await rejected(op.create(node(CP, **{cl: "prod", msl: ""})), inval, "has empty value")
        await rejected(
            op.create(node(CP, **{cl: "prod", msl: "prod-nope"})),
            inval,
            "the machine set does not exist",
        )
        await op.create(node(W1, **{cl: "prod", msl: "prod-workers"}))
        moved = await op.get(MSN, W1)
        moved.metadata.labels[cl] = "other"
        await rejected(op.update(moved), inval, "changing value of label")

        def patch(id_: str, **labels: str) -> Any:
            return resource(
                PATCHES, id_, omni_pb2.ConfigPatchSpec(data="machine: {}\n"), labels=labels
            )

        await rejected(op.create(patch("p1", **{P + "cluster-machine": CP})), inval, "is required")
        await rejected(
            op.create(patch("p2", **{P + "machine": CP, cl: "prod"})), inval, "cannot be combined"
        )
        await rejected(
            op.create(patch("p3", **{cl: "prod", msl: "prod-workers", P + "cluster-machine": CP})),
            inval,
            "exclude each other",
        )
        compressed = resource(PATCHES, "p4", omni_pb2.ConfigPatchSpec(compressed_data=b"\x28\xb5"))
        await rejected(op.create(compressed), inval, "send the YAML in data")
        await op.create(patch("10-" + W1, **{cl: "prod", P + "cluster-machine": W1}))

        # imported secrets: not for an existing cluster
        secrets = resource(SECRETS, "prod", omni_pb2.ImportedClusterSecretsSpec(data=bundle()))
        await rejected(
            op.create(secrets),
            inval,
            "cannot create an ImportedClusterSecrets, as there is already an existing cluster "
            'with name: "prod"',
        )

    run(keys, scenario)


# ---- content checks and unlock -------------------------------------------------------------


def test_config_patch_denylist_and_bundle_validation(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        op = env.operator
        inval = Status.INVALID_ARGUMENT

        def patch(id_: str, data: str) -> Any:
            return resource(PATCHES, id_, omni_pb2.ConfigPatchSpec(data=data))

        await rejected(
            op.create(patch("p1", "cluster:\n  clusterName: other\n")),
            inval,
            'overriding "v1alpha1: cluster.clusterName" is not allowed',
        )
        two = await rejected(
            op.create(patch("p2", "machine:\n  token: abc\n  ca:\n    crt: x\n")), inval
        )
        assert two.startswith("failed to validate: 2 errors occurred:")
        await rejected(
            op.create(
                patch("p3", "apiVersion: v1alpha1\nkind: KubeEtcdEncryptionConfig\nconfig: x\n")
            ),
            inval,
            "KubeEtcdEncryptionConfig",
        )
        await rejected(op.create(patch("p4", "machine: [\n")), inval, "config patch")
        ok = await op.create(patch("p5", "machine:\n  network:\n    hostname: fine\n"))
        # an update that adds a forbidden field is refused too
        ok.spec.proto_spec = omni_pb2.ConfigPatchSpec(
            data="cluster:\n  id: x\n"
        ).SerializeToString()
        await rejected(op.update(ok), inval, "cluster.id")

        invalid = FIXTURES / "secrets" / "invalid-secrets.yaml"
        if invalid.is_file():
            res = resource(
                SECRETS, "bad", omni_pb2.ImportedClusterSecretsSpec(data=invalid.read_text())
            )
            await rejected(op.create(res), inval, "failed to validate imported cluster secret:")
        await rejected(
            op.create(resource(SECRETS, "bad", omni_pb2.ImportedClusterSecretsSpec(data="x: 1"))),
            inval,
            "failed to validate imported cluster secret:",
        )

    run(keys, scenario)


def _docs(config: bytes) -> list[dict[str, Any]]:
    import yaml

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

        current = await op.get(CLUSTERS, "prod")
        del current.metadata.annotations[LOCKED]
        del current.metadata.annotations[IMPORTING]
        await op.update(current)
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
        kinds_seen = {d.get("kind") for d in docs}
        assert {"SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig"} <= kinds_seen
        link = next(d for d in docs if d.get("kind") == "SideroLinkConfig")
        assert link["apiUrl"] == "https://127.0.0.1:8090?jointoken=lab-token"
        assert env.sim.rendered_config(CP) == env.gateway.pushed[CP][-1]

        # the failed push is recorded and retried until the node takes it
        failed = [
            r
            for r in env.sim.resources()
            if r["type"].startswith("ClusterMachineConfigStatuses") and r["id"] == W1
        ]
        assert failed
        env.gateway.fail.clear()
        for _ in range(50):
            if W1 in env.gateway.pushed:
                break
            await asyncio.sleep(0.1)
        assert _docs(env.gateway.pushed[W1][-1])[0]["machine"]["type"] == "worker"

        # a patch changed after unlock is pushed again; an unchanged render is not
        pushes = len(env.gateway.pushed[CP])
        patch_res = await op.get(PATCHES, f"10-{CP}")
        patch_res.spec.proto_spec = omni_pb2.ConfigPatchSpec(
            data="machine:\n  network:\n    hostname: renamed\n"
        ).SerializeToString()
        await op.update(patch_res)
        await env.sim.settle()
        assert len(env.gateway.pushed[CP]) == pushes + 1
        assert _docs(env.gateway.pushed[CP][-1])[0]["machine"]["network"]["hostname"] == "renamed"
        await env.sim.on_node_left(W1)
        await env.sim.settle()
        assert len(env.gateway.pushed[CP]) == pushes + 1

    run(keys, scenario)
