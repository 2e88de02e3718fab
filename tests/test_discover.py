"""Discovery of Talos facts over real gRPC + Ed25519 mTLS, against the lab's apid."""

from omniport.planner.discover import read_nodes


def test_read_nodes_collects_facts_and_turns_errors_into_facts(aio, lab, lab_factory):
    cp_address, worker_address = lab.controlplanes[0], lab.workers[0]
    missing_address = "127.9.9.9"  # no such node behind the lab's apid

    async def go(handle, nodes, role="admin"):
        async with handle.client(role) as client:
            return await read_nodes(client, nodes)

    cp, worker, missing = aio(go(lab, (cp_address, worker_address, missing_address)))
    info = {n["address"]: n for n in lab.info["nodes"]}
    assert (cp.role, cp.hostname, cp.machine_uuid, cp.talos_version) == (
        "controlplane",
        info[cp_address]["hostname"],
        info[cp_address]["machine_id"],
        "1.11.5",
    )
    assert cp.config and b"version: v1alpha1" in cp.config
    assert cp.schematic_id == lab.info["schematic_id"]
    assert cp.cluster_name == lab.info["cluster"]
    assert cp.apiserver_image and cp.etcd_members
    assert worker.role == "worker" and worker.hostname == info[worker_address]["hostname"]
    assert worker.apiserver_image is None and worker.etcd_members == ()
    assert missing.error is not None and missing.error.kind == "Unreachable"
    assert missing_address in missing.error.message

    # a reader may read every fact but the config, which becomes a fact of its own
    (reader_cp,) = aio(go(lab, (cp_address,), "reader"))
    assert reader_cp.error is None and reader_cp.config is None
    assert reader_cp.config_error.kind == "PermissionDenied"

    # a node running a plain image (no Image Factory schematic) has no schematic ID
    plain = lab_factory("--nodes", "2", "--no-factory-schematic", name="plain-discover")
    (plain_worker,) = aio(go(plain, (plain.workers[0],)))
    assert plain_worker.role == "worker" and plain_worker.schematic_id is None
