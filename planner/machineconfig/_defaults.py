"""Fixed values Talos writes into every generated config (private to ``generate``).

Each function returns a fresh structure, so callers may mutate what they get.
"""

from __future__ import annotations

from typing import Any

KUBELET_IMAGE = "ghcr.io/siderolabs/kubelet"
API_SERVER_IMAGE = "registry.k8s.io/kube-apiserver"
CONTROLLER_MANAGER_IMAGE = "registry.k8s.io/kube-controller-manager"
SCHEDULER_IMAGE = "registry.k8s.io/kube-scheduler"
PROXY_IMAGE = "registry.k8s.io/kube-proxy"

DNS_DOMAIN = "cluster.local"
# Talos picks the IPv6 pair only for an endpoint that is a bare IPv6 address, which its own
# URL parsing then rejects, so generated configs always carry the IPv4 defaults.
POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.96.0.0/12"

KUBE_PRISM_PORT = 7445
DISCOVERY_SERVICE_ENDPOINT = "https://discovery.talos.dev/"
EPHEMERAL_VOLUME = "EPHEMERAL"
FILESYSTEM_TRIM_INTERVAL = "168h0m0s"
FLANNEL_BACKEND = "vxlan"
FLANNEL_PORT = 4789
CUSTOM_CNI_NAME = "custom"
CUSTOM_CNI_MANIFEST = "custom-cni"

LABEL_CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
LABEL_EXCLUDE_FROM_LB = "node.kubernetes.io/exclude-from-external-load-balancers"
TAINT_NO_SCHEDULE = "NoSchedule"

# kube-apiserver encryption provider key names: Talos keeps these names so that a cluster
# moved to the 1.14 documents still decrypts what older configs encrypted.
SECRETBOX_KEY_NAME = "key2"
AESCBC_KEY_NAME = "key1"


def pod_security_configuration() -> dict[str, Any]:
    return {
        "apiVersion": "pod-security.admission.config.k8s.io/v1alpha1",
        "defaults": {
            "audit": "restricted",
            "audit-version": "latest",
            "enforce": "baseline",
            "enforce-version": "latest",
            "warn": "restricted",
            "warn-version": "latest",
        },
        "exemptions": {"namespaces": ["kube-system"], "runtimeClasses": [], "usernames": []},
        "kind": "PodSecurityConfiguration",
    }


def audit_policy() -> dict[str, Any]:
    return {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}


def authentication_configuration() -> dict[str, Any]:
    return {
        "anonymous": {
            "conditions": [{"path": "/livez"}, {"path": "/readyz"}, {"path": "/healthz"}],
            "enabled": True,
        },
        "jwt": [],
    }


# (document name, authorizer type), in Talos's order.
AUTHORIZERS = (("node", "Node"), ("rbac", "RBAC"))
