"""The ordered changes of an import, and the join documents."""

from omniport.planner.changes import NodeImport, plan_changes
from omniport.planner.join import JoinOptions, join_documents, removal_documents
from omniport.planner.plan import Action

JOIN = JoinOptions("https://omni.example:8090", "s3cr3t-token", 8091, 8092)


def test_join_documents_match_omnis_importer():
    docs = join_documents(JOIN)
    assert [d["kind"] for d in docs] == ["SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig"]
    assert docs[0]["apiUrl"] == "https://omni.example:8090?jointoken=s3cr3t-token"
    assert docs[1]["endpoint"] == "[fdae:41e4:649b:9303::1]:8091"
    assert docs[2] == {
        "apiVersion": "v1alpha1",
        "kind": "KmsgLogConfig",
        "name": "omni-kmsg",
        "url": "tcp://[fdae:41e4:649b:9303::1]:8092",
    }
    assert "s3cr3t" not in repr(join_documents(JOIN, redact=True))
    assert all(d["$patch"] == "delete" for d in removal_documents())


def test_changes_in_apply_order_without_secrets():
    nodes = [
        NodeImport("10.0.0.1", "u1", "controlplane", (("10-u1", "machine: {}\n"),)),
        NodeImport("10.0.0.2", "u2", "worker", ()),
    ]
    changes = plan_changes("prod", "1.11.5", "1.34.1", nodes, JOIN)
    assert [c.address for c in changes] == [
        "omni_imported_cluster_secrets.prod",
        "omni_cluster.prod",
        "omni_machine_set.prod-control-planes",
        "omni_machine_set.prod-workers",
        "omni_config_patch.10-u1",
        "talos_join.10.0.0.1",
        "talos_join.10.0.0.2",
        "omni_machine_set_node.u1",
        "omni_machine_set_node.u2",
    ]
    assert [c.action for c in changes].count(Action.UPDATE) == 2
    assert "s3cr3t" not in repr(changes)
    assert changes[0].after == {
        "data": "(sensitive value)",
        "if_present": "replaced (an orphan of a crashed import)",
    }
    assert changes[8].after["labels"]["omni.sidero.dev/machine-set"] == "prod-workers"
