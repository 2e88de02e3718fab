"""Checks on hand-made facts: each code fires on its situation, and acceptance rules hold."""

from dataclasses import replace

import pytest

from omniport.planner.checks import (
    CHECKS,
    check,
    config_findings,
    image_version,
    plan_findings,
    resolve_versions,
)
from omniport.planner.facts import (
    ClusterFacts,
    EtcdMember,
    FactoryFacts,
    HealthFacts,
    Member,
    NodeFacts,
    OmniFacts,
    ReadError,
    SchematicCheck,
    Service,
)
from omniport.planner.machineconfig.verify import Mismatch
from omniport.planner.nodeconfig import NodeConfig
from omniport.planner.plan import Severity
from omniport.planner.spec import parse_spec

SPEC = """\
version: 1
talos: {nodes: [10.0.0.1, 10.0.0.2]}
omni: {url: "https://omni.example.com"}
"""


def spec(extra: str = ""):
    return parse_spec(SPEC + extra)


def node(address, role="controlplane", **kw):
    base = dict(
        address=address,
        role=role,
        talos_version="1.11.5",
        hostname=f"h-{address}",
        machine_uuid=f"uuid-{address}",
        config=b"version: v1alpha1\n",
        schematic_id="a" * 64,
        schematic_yaml="customization: {}\n",
        kubelet_image="ghcr.io/siderolabs/kubelet:v1.34.1",
    )
    if role == "controlplane":
        base.update(
            apiserver_image="registry.k8s.io/kube-apiserver:v1.34.1",
            scheduler_image="registry.k8s.io/kube-scheduler:v1.34.1",
            controller_manager_image="registry.k8s.io/kube-controller-manager:v1.34.1",
            cluster_name="prod",
            etcd_members=(EtcdMember(1, f"h-{address}", (), False),),
        )
    base.update(kw)
    return NodeFacts(**base)


MACHINE_API = "https://omni:8090"


def facts(nodes=None, members=None, omni=None, factory=None, health=None):
    nodes = nodes or (node("10.0.0.1"), node("10.0.0.2", "worker"))
    if members is None:
        members = tuple(Member(n.hostname, n.hostname, (n.address,), n.role) for n in nodes)
    return ClusterFacts(
        nodes=tuple(nodes),
        members=members,
        omni=omni
        or OmniFacts(
            url="https://omni",
            talos_versions={"1.11.5": ("1.34.1",)},
            machine_api_url=MACHINE_API,
        ),
        factory=factory or FactoryFacts(url="https://factory"),
        health=health or HealthFacts(ran=True),
    )


def test_no_advertised_siderolink_url_blocks():
    f = facts(omni=OmniFacts(url="u", talos_versions={"1.11.5": ("1.34.1",)}))
    found = check(f, spec("findings: {force: true}\n"))
    assert codes(found) == ["SIDEROLINK_URL_INVALID"] and found[0].blocking


def test_unreadable_members_are_a_finding_not_silence():
    found = check(replace(facts(), members=None, members_error="cp: permission denied"), spec())
    assert codes(found) == ["MEMBERS_UNREADABLE"]
    assert "cp: permission denied" in found[0].message and found[0].blocking


def codes(findings):
    return sorted(f.code for f in findings)


def test_healthy_cluster_has_no_findings():
    assert check(facts(), spec()) == []


def test_versions_resolved_from_first_control_plane():
    v = resolve_versions(facts(), spec("versions: {initialTalos: 1.9.5}\n"))
    assert (v.talos, v.kubernetes, v.initial_talos, v.initial_kubernetes) == (
        "1.11.5",
        "1.34.1",
        "1.9.5",
        "1.34.1",
    )


@pytest.mark.parametrize(
    "image,version",
    [
        ("ghcr.io/siderolabs/kubelet:v1.34.1", "1.34.1"),
        ("registry.k8s.io/kube-apiserver:v1.35.0-rc.1@sha256:" + "0" * 64, "1.35.0-rc.1"),
        ("localhost:5000/kubelet:latest", None),
        (None, None),
    ],
)
def test_image_version(image, version):
    assert image_version(image) == version


def test_mixed_talos_versions_and_acceptance():
    f = facts(nodes=(node("10.0.0.1"), node("10.0.0.2", "worker", talos_version="1.10.3")))
    found = check(f, spec())
    assert codes(found) == ["TALOS_VERSIONS_DIFFER"]
    assert found[0].blocking
    accepted = check(f, spec("findings: {accept: [TALOS_VERSIONS_DIFFER]}\n"))
    assert accepted[0].accepted and not accepted[0].blocking


@pytest.mark.parametrize(
    ("worker", "refused"),
    [
        ("1.12.0", True),  # a newer minor: Omni would have to downgrade it
        ("v1.12.0", True),
        ("2.0.0", True),
        ("1.11.9", False),  # a newer patch of the same minor joins
        ("1.10.3", False),  # an older minor (installed): Omni upgrades it with the cluster
        ("unknown", False),  # unreadable: TALOS_VERSIONS_DIFFER says it, this cannot
    ],
)
def test_a_machine_on_a_newer_minor_than_the_cluster_is_predicted(worker, refused):
    f = facts(nodes=(node("10.0.0.1"), node("10.0.0.2", "worker", talos_version=worker)))
    found = check(f, spec("findings: {accept: [TALOS_VERSIONS_DIFFER]}\n"))
    newer = [x for x in found if x.code == "MACHINE_NEWER_THAN_CLUSTER"]
    if not refused:
        assert newer == []
        return
    assert len(newer) == 1 and newer[0].node == "10.0.0.2" and newer[0].blocking
    assert f"10.0.0.2 runs Talos {worker}, a newer minor than the cluster's 1.11.5" in (
        newer[0].message
    )
    both = "findings: {accept: [TALOS_VERSIONS_DIFFER, MACHINE_NEWER_THAN_CLUSTER]}\n"
    assert not any(x.blocking for x in check(f, spec(both)))


def test_force_never_accepts_unacceptable_codes():
    f = facts(
        omni=OmniFacts(
            url="u",
            cluster_exists=True,
            talos_versions={"1.11.5": ("1.34.1",)},
            machine_api_url=MACHINE_API,
        )
    )
    found = check(f, spec("findings: {force: true}\n"))
    assert codes(found) == ["CLUSTER_EXISTS"]
    assert found[0].blocking


def test_unreachable_and_reader_only_nodes():
    f = facts(
        nodes=(
            node(
                "10.0.0.1",
                config=None,
                config_error=ReadError("PermissionDenied", "not authorized"),
            ),
            NodeFacts("10.0.0.2", error=ReadError("Unreachable", "connection refused")),
        ),
        members=(),
    )
    found = check(f, spec())
    assert "NODE_UNREACHABLE" in codes(found)
    assert "TALOS_ROLE_INSUFFICIENT" in codes(found)


def test_schematic_findings():
    f = facts(
        nodes=(
            node("10.0.0.1", schematic_id=None, schematic_yaml=None),
            node("10.0.0.2", "worker", schematic_yaml=None),
        )
    )
    assert codes(check(f, spec())) == ["SCHEMATIC_MISSING", "SCHEMATIC_UNVERIFIABLE"]
    mismatch = FactoryFacts(
        url="https://f", checks=(SchematicCheck("10.0.0.1", "a" * 64, "b" * 64, True),)
    )
    assert codes(check(facts(factory=mismatch), spec())) == ["SCHEMATIC_MISMATCH"]


def test_below_minimum_and_unknown_to_omni():
    old = facts(
        nodes=(
            node("10.0.0.1", talos_version="1.9.0"),
            node("10.0.0.2", "worker", talos_version="1.9.0"),
        )
    )
    assert codes(check(old, spec())) == ["TALOS_BELOW_MINIMUM", "TALOS_VERSION_UNKNOWN_TO_OMNI"]


def test_members_mismatch_and_etcd():
    f = facts(
        members=(
            Member("a", "h-10.0.0.1", ("10.0.0.1",), "controlplane"),
            Member("b", "h-10.0.0.2", ("10.0.0.2",), "worker"),
            Member("c", "h-10.0.0.3", ("10.0.0.3",), "worker"),
        ),
        nodes=(
            node(
                "10.0.0.1",
                etcd_members=(
                    EtcdMember(1, "h-10.0.0.1", (), False),
                    EtcdMember(2, "old-cp", (), False),
                ),
            ),
            node("10.0.0.2", "worker"),
        ),
    )
    found = check(f, spec())
    assert codes(found) == ["ETCD_MEMBERS_MISMATCH", "MEMBERS_MISMATCH"]
    assert "h-10.0.0.3 (10.0.0.3)" in next(x for x in found if x.code == "MEMBERS_MISMATCH").message


def test_unhealthy_service_and_health_check():
    f = facts(
        nodes=(
            node("10.0.0.1", services=(Service("etcd", "Running", False),)),
            node("10.0.0.2", "worker"),
        ),
        health=HealthFacts(ran=True, ok=False, error="etcd is not healthy"),
    )
    assert codes(check(f, spec())) == ["HEALTH_CHECK_FAILED", "SERVICE_UNHEALTHY"]


def test_every_code_has_a_fix():
    for code, c in CHECKS.items():
        assert c.fix, code
        assert isinstance(c.severity, Severity)


def test_config_findings_follow_node_order_then_the_secrets_problem():
    # Machine-config findings come from each node's outcome (planner.nodeconfig), node by
    # node in the order of each node's own checks, after every discovery finding.
    f = facts(nodes=(node("10.0.0.1"), node("10.0.0.2", "worker"), node("10.0.0.3", "worker")))
    mismatch = Mismatch("v1alpha1", "machine.network.hostname", "a", "b")
    configs = (
        NodeConfig(
            replaced=("SideroLinkConfig: apiUrl=(sensitive value)",),
            join_target=MACHINE_API,
            residue=(mismatch,),
            removed=("v1alpha1: machine.token",),
            refusal=("machine.install: required",),
            preview=(mismatch, mismatch),
        ),
        NodeConfig(parse_error="machine config of 10.0.0.2: bad YAML"),
        NodeConfig(replaced=("SideroLinkConfig: apiUrl=(sensitive value)",), join_target=""),
    )
    found = config_findings(f, spec(), configs, "no readable control-plane config")
    assert [(x.code, x.node) for x in found] == [
        ("LEFTOVER_JOIN_DOCUMENTS", "10.0.0.1"),
        ("CONFIG_RESIDUE", "10.0.0.1"),
        ("DENYLISTED_VALUES", "10.0.0.1"),
        ("UNLOCK_CONFIG_INVALID", "10.0.0.1"),
        ("UNLOCK_PREVIEW", "10.0.0.1"),
        ("NODE_READ_FAILED", "10.0.0.2"),
        ("NODE_ALREADY_CONNECTED", "10.0.0.3"),
        ("NODE_READ_FAILED", None),
    ]
    assert found[3].message == (
        "Talos 1.11.5 would refuse the config Omni pushes after unlock: 1 error(s)"
    )
    assert found[4].details == (str(mismatch), str(mismatch))
    assert found[6].message == "the node's config already holds join documents for another Omni"
    assert plan_findings(f, spec(), configs, None) == check(f, spec()) + found[:-1]


def test_join_documents_for_another_omni_name_it():
    f = facts()
    configs = (
        NodeConfig(replaced=("SideroLinkConfig: …",), join_target="https://other:8090"),
        NodeConfig(),
    )
    (found,) = config_findings(f, spec(), configs, None)
    assert found.code == "NODE_ALREADY_CONNECTED"
    assert found.message.endswith("for another Omni (https://other:8090)")
