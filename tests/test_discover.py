"""Discovery of Talos facts over real gRPC + Ed25519 mTLS (the test apid from tests/support)."""

import asyncio
import datetime as dt

from omniport.planner.discover import read_nodes
from omniport.planner.machineconfig import pki
from omniport.providers.talos import TalosClient
from omniport.providers.talosconfig import Endpoint
from omniport.providers.tls import client_context
from tests.support.talos_server import FakeNode, TalosTestServer

NOW = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def test_read_nodes_collects_facts_and_turns_errors_into_facts():
    ca = pki.talos_os_ca(NOW)
    admin = pki.admin_client_cert(ca, NOW)
    reader = pki.admin_client_cert(ca, NOW, roles=("os:reader",))
    nodes = [
        FakeNode.typical("10.5.0.2", "cp-1", uuid="u-cp-1", schematic="a" * 64),
        FakeNode.typical("10.5.0.3", "worker-1", machine_type="worker", uuid="u-w-1"),
    ]

    async def go():
        async with TalosTestServer(ca, nodes) as server:
            endpoint = [Endpoint("127.0.0.1", server.port)]
            async with TalosClient(client_context(ca.crt, admin.crt, admin.key), endpoint) as c:
                facts = await read_nodes(c, ("10.5.0.2", "10.5.0.3", "10.5.0.99"))
            async with TalosClient(client_context(ca.crt, reader.crt, reader.key), endpoint) as c:
                reader_facts = await read_nodes(c, ("10.5.0.2",))
        return facts, reader_facts

    facts, reader_facts = asyncio.run(go())
    cp, worker, missing = facts
    assert (cp.role, cp.hostname, cp.machine_uuid, cp.talos_version) == (
        "controlplane",
        "cp-1",
        "u-cp-1",
        "1.9.5",
    )
    assert cp.config and cp.config.startswith(b"version: v1alpha1")
    assert cp.schematic_id == "a" * 64
    assert cp.cluster_name == "demo"
    assert worker.role == "worker" and worker.schematic_id is None
    assert worker.apiserver_image is None and worker.etcd_members == ()
    assert missing.error is not None and missing.error.kind == "Unreachable"
    assert "10.5.0.99" in missing.error.message
    (reader_cp,) = reader_facts
    assert reader_cp.error is None and reader_cp.config is None
    assert reader_cp.config_error.kind == "PermissionDenied"
