"""What a machine config states (planner.configfacts): read when plain, None when unsure."""

from __future__ import annotations

import pytest

from omniport.planner.configfacts import NOTHING, StatedFacts, stated_facts
from tests.paths import TALOS_FIXTURES

FULL = b"""version: v1alpha1
machine:
    type: controlplane
    kubelet:
        image: ghcr.io/siderolabs/kubelet:v1.34.1
cluster:
    clusterName: demo
    apiServer:
        image: registry.k8s.io/kube-apiserver:v1.34.1
    controllerManager:
        image: registry.k8s.io/kube-controller-manager:v1.34.1
    scheduler:
        image: registry.k8s.io/kube-scheduler:v1.34.1
"""
EVERYTHING = StatedFacts(
    machine_type="controlplane",
    kubelet_image="ghcr.io/siderolabs/kubelet:v1.34.1",
    apiserver_image="registry.k8s.io/kube-apiserver:v1.34.1",
    controller_manager_image="registry.k8s.io/kube-controller-manager:v1.34.1",
    scheduler_image="registry.k8s.io/kube-scheduler:v1.34.1",
    cluster_name="demo",
)
SIDEROLINK = b"apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: https://omni.example\n"


def _but(**kw: str | None) -> StatedFacts:
    return StatedFacts(**{**EVERYTHING.__dict__, **kw})


CASES = [
    ("v1alpha1 only", FULL, EVERYTHING),
    ("other documents around it", SIDEROLINK + b"---\n" + FULL + b"---\n" + SIDEROLINK, EVERYTHING),
    (
        "worker without control-plane fields",
        b"version: v1alpha1\nmachine:\n    type: worker\n    kubelet:\n        image: k:1\n",
        StatedFacts(machine_type="worker", kubelet_image="k:1"),
    ),
    (
        "no kubelet image",
        FULL.replace(b"        image: ghcr.io", b"        extra: ghcr.io"),
        _but(kubelet_image=None),
    ),
    (
        "null image",
        FULL.replace(b"image: ghcr.io/siderolabs/kubelet:v1.34.1", b"image: ~"),
        _but(kubelet_image=None),
    ),
    (
        "empty image",
        FULL.replace(b"image: ghcr.io/siderolabs/kubelet:v1.34.1", b'image: ""'),
        _but(kubelet_image=None),
    ),
    (
        "kubelet: null",
        FULL.replace(
            b"    kubelet:\n        image: ghcr.io/siderolabs/kubelet:v1.34.1\n",
            b"    kubelet: null\n",
        ),
        _but(kubelet_image=None),
    ),
    (
        "quoted text",
        FULL.replace(b"clusterName: demo", b"clusterName: 'de mo'"),
        _but(cluster_name="de mo"),
    ),
    # Go's decoder gives a string field the scalar's text, whatever YAML 1.1 would make of it
    (
        "number-like name",
        FULL.replace(b"clusterName: demo", b"clusterName: 0644"),
        _but(cluster_name="0644"),
    ),
    (
        "bool-like name",
        FULL.replace(b"clusterName: demo", b"clusterName: yes"),
        _but(cluster_name="yes"),
    ),
    (
        "binary tag",
        FULL.replace(b"clusterName: demo", b"clusterName: !!binary ZGVtbw=="),
        _but(cluster_name=None),
    ),
    ("init", FULL.replace(b"type: controlplane", b"type: init"), _but(machine_type="init")),
    (
        "unknown machine type",
        FULL.replace(b"type: controlplane", b"type: bogus"),
        _but(machine_type=None),
    ),
    ("duplicate key", FULL + b"    clusterName: other\n", _but(cluster_name=None)),
    (
        "merge key",
        b"x: &k {image: a}\n"
        + FULL.replace(b"    scheduler:\n", b"    scheduler:\n        <<: *k\n"),
        _but(scheduler_image=None),
    ),
    (
        "a Kube* document may state the Kubernetes facts",
        FULL + b"---\napiVersion: v1alpha1\nkind: KubeletConfig\nimage: other\n",
        StatedFacts(machine_type="controlplane"),
    ),
    (
        "flow-style Kube* document",
        FULL + b"---\n{apiVersion: v1alpha1, kind: KubeAPIServerConfig, image: other}\n",
        StatedFacts(machine_type="controlplane"),
    ),
    ("no v1alpha1 document", SIDEROLINK, NOTHING),
    ("not YAML", b"version: v1alpha1\nmachine: [\n", NOTHING),
    ("not UTF-8", b"version: v1alpha1\nmachine:\n    type: \xff\xfe\n", NOTHING),
    ("merge key at the top", b"x: &k {kind: A}\n---\n<<: {kind: B}\n" + FULL, NOTHING),
    ("empty", b"", NOTHING),
]


@pytest.mark.parametrize(("config", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_stated_facts(config: bytes, want: StatedFacts) -> None:
    assert stated_facts(config) == want


def test_generated_configs_state_their_images() -> None:
    """Configs talosctl generated (the stability fixtures) state every fact up to 1.13; from
    1.14 the Kubernetes facts live in Kube* documents and are read from resources."""
    found = sorted(TALOS_FIXTURES.glob("**/stability/**/base-controlplane.yaml"))
    if not found:
        pytest.skip("talos fixtures not available")
    for path in found:
        facts = stated_facts(path.read_bytes())
        assert facts.machine_type == "controlplane", path
        if facts.kubelet_image is None:
            assert b"kind: Kube" in path.read_bytes(), path
        else:
            assert facts.apiserver_image and facts.cluster_name == "base", path
