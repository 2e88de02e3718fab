"""Facts a node's machine config states outright, so discovery need not ask for them.

Talos's controllers derive these resources from exactly these fields of the v1alpha1 document:
``MachineTypes`` from ``machine.type``, ``KubeletConfigs``' image from ``machine.kubelet.image``,
the control-plane pod configs' images from ``cluster.{apiServer,controllerManager,scheduler}
.image``, and the cluster ``Infos`` name from ``cluster.clusterName``. When the config states a
field, the resource holds that value; when it does not, Talos fills in a default of its version,
so only the resource can say. A field is ``None`` here when the config does not state it or holds
something this module does not interpret (a merge key, a duplicate key, an odd tag, a document of
Talos 1.14's ``Kube*`` family that may state it instead); discovery then reads the resource.

Values are read the way Talos's Go YAML decoder reads a string field: the scalar's text, with
null (``~``, ``null``, empty) meaning not stated. Only the YAML is composed (no Python objects
are built), which costs about half of a full load.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
# scalars whose text is what a Go string field receives (implicit types and explicit !!str)
_TEXT_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "timestamp"))
MACHINE_TYPES = frozenset({"controlplane", "worker", "init"})


@dataclass(frozen=True)
class StatedFacts:
    """What the config states; ``None`` means "read the resource"."""

    machine_type: str | None = None
    kubelet_image: str | None = None
    apiserver_image: str | None = None
    controller_manager_image: str | None = None
    scheduler_image: str | None = None
    cluster_name: str | None = None


NOTHING = StatedFacts()


def stated_facts(config: bytes) -> StatedFacts:
    """The facts ``config`` (a whole machine config, any number of documents) states."""
    try:
        documents = list(yaml.compose_all(config, Loader=_LOADER))
    except (yaml.YAMLError, ValueError, RecursionError):
        return NOTHING
    legacy: yaml.MappingNode | None = None
    kube_documents = False
    try:
        for doc in documents:
            if not isinstance(doc, yaml.MappingNode):
                continue
            kind = _child(doc, "kind")
            if kind is None:
                legacy = legacy or doc
            elif not isinstance(kind, yaml.ScalarNode) or kind.value.startswith("Kube"):
                kube_documents = True
    except _Unreadable:
        return NOTHING
    if legacy is None:
        return NOTHING
    machine_type = _text(legacy, "machine", "type")
    if kube_documents:  # a Kube* document may state the Kubernetes facts instead
        return StatedFacts(machine_type=machine_type if machine_type in MACHINE_TYPES else None)
    return StatedFacts(
        machine_type=machine_type if machine_type in MACHINE_TYPES else None,
        kubelet_image=_text(legacy, "machine", "kubelet", "image"),
        apiserver_image=_text(legacy, "cluster", "apiServer", "image"),
        controller_manager_image=_text(legacy, "cluster", "controllerManager", "image"),
        scheduler_image=_text(legacy, "cluster", "scheduler", "image"),
        cluster_name=_text(legacy, "cluster", "clusterName"),
    )


class _Unreadable(Exception):
    """A mapping this module does not read: merge keys, a key twice, a non-scalar key (Go's
    decoder merges, refuses or rejects those)."""


def _child(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    """The value of ``key`` (None when absent); raises _Unreadable."""
    found: yaml.Node | None = None
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == _TAG + "merge":
            raise _Unreadable
        if k.value == key:
            if found is not None:
                raise _Unreadable
            found = v
    return found


def _text(node: yaml.Node, *path: str) -> str | None:
    """The text of the scalar at ``path``; None when not stated or not plainly readable."""
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            return None
        try:
            child = _child(node, key)
        except _Unreadable:
            return None
        if child is None:
            return None
        node = child
    if isinstance(node, yaml.ScalarNode) and node.tag in _TEXT_TAGS and node.value:
        return str(node.value)
    return None
