"""Omni's denylist applied to a config patch (``omni.SanitizeConfigPatch``), with a record.

Omni refuses patches that touch what it manages itself, and its importer strips those parts
from the per-node patches. We do the same, in the same order, and also say what was removed
and why so the plan can show it:

1. drop forbidden documents;
2. delete forbidden fields: v1alpha1 field paths, or a kind's own fields;
3. drop top-level keys left holding an empty mapping (one level only, as Omni does);
4. remove forbidden list elements (``os:admin`` in Talos API access roles), and the key when
   its list is left empty;
5. drop documents left with nothing but their header.

Omni keeps a v1alpha1 document reduced to ``version: v1alpha1``; it patches nothing, so it is
dropped here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from omniport.planner.machineconfig.document import Document, MachineConfig, as_documents, copy_tree

_SECRETS = "Omni supplies it from the imported cluster secrets"

FORBIDDEN_FIELDS: dict[str, str] = {
    "cluster.clusterName": "Omni sets the cluster name",
    "cluster.id": _SECRETS,
    "cluster.controlPlane.endpoint": "Omni sets the control-plane endpoint",
    "cluster.token": _SECRETS,
    "cluster.secret": _SECRETS,
    "cluster.aescbcEncryptionSecret": _SECRETS,
    "cluster.secretboxEncryptionSecret": _SECRETS,
    "cluster.ca": _SECRETS,
    "cluster.acceptedCAs": "Omni manages the accepted CAs",
    "cluster.serviceAccount": _SECRETS,
    "machine.token": _SECRETS,
    "machine.ca": _SECRETS,
    "machine.type": "Omni sets the machine type from the machine set",
    "machine.install.disk": "Omni manages the install disk",
    "machine.install.extensions": "Omni installs extensions through the image schematic",
    "machine.acceptedCAs": "Omni manages the accepted CAs",
}

FORBIDDEN_DOCUMENTS: dict[str, str] = {
    "UnattendedInstallConfig": "Omni does not support unattended installs",
    "DiscoveryIdentityConfig": _SECRETS,
    "KubeClusterConfig": "Omni sets the cluster name and control-plane endpoint",
    "KubeEtcdEncryptionConfig": _SECRETS,
    "KubeAPIServerCAConfig": _SECRETS,
    "KubeAggregatorCAConfig": _SECRETS,
}

DOCUMENT_FORBIDDEN_FIELDS: dict[str, dict[str, str]] = {
    "KubeServiceAccountConfig": {"issuer.privateKey": _SECRETS},
}

_ADMIN_ROLE = "os:admin"
_ADMIN_REASON = "Omni does not let a patch grant the os:admin role"

FORBIDDEN_ELEMENTS: dict[str, dict[str, str]] = {
    "machine.features.kubernetesTalosAPIAccess.allowedRoles": {_ADMIN_ROLE: _ADMIN_REASON},
}

DOCUMENT_FORBIDDEN_ELEMENTS: dict[str, dict[str, dict[str, str]]] = {
    "KubeTalosAPIAccessConfig": {"allowedRoles": {_ADMIN_ROLE: _ADMIN_REASON}},
}

_EMPTY_REASON = "left empty once Omni-managed fields were removed"


@dataclass(frozen=True)
class Removal:
    """One thing taken out of a patch: the document, the field path (empty for the whole
    document), and why."""

    document: str
    path: str
    reason: str


@dataclass(frozen=True)
class Sanitized:
    """A cleaned patch and what was removed from it. No documents means no patch."""

    documents: tuple[Document, ...]
    removed: tuple[Removal, ...]

    @property
    def empty(self) -> bool:
        return not self.documents


def sanitize(patch: MachineConfig | Iterable[Document | Mapping[str, Any]]) -> Sanitized:
    """Remove what Omni manages from a strategic patch; the input is left untouched."""
    kept: list[Document] = []
    removed: list[Removal] = []
    for doc in as_documents(patch):
        key = doc.key
        name = str(key)
        if not key.is_legacy and key.kind in FORBIDDEN_DOCUMENTS:
            removed.append(Removal(name, "", FORBIDDEN_DOCUMENTS[key.kind]))
            continue
        fields = FORBIDDEN_FIELDS if key.is_legacy else DOCUMENT_FORBIDDEN_FIELDS.get(key.kind, {})
        elements = (
            FORBIDDEN_ELEMENTS if key.is_legacy else DOCUMENT_FORBIDDEN_ELEMENTS.get(key.kind, {})
        )
        if not _touches(doc.data, fields, elements):
            if not _header_only(doc.data):
                kept.append(doc)
            continue
        data = copy_tree(doc.data)
        for path, reason in fields.items():
            if _remove_field(data, path.split(".")):
                removed.append(Removal(name, path, reason))
        for top in [k for k, v in data.items() if isinstance(v, dict) and not v]:
            del data[top]
            removed.append(Removal(name, top, _EMPTY_REASON))
        for path, forbidden in elements.items():
            for element, reason in _remove_elements(data, path.split("."), forbidden):
                removed.append(Removal(name, f"{path}[{element}]", reason))
        if _header_only(data):
            continue
        kept.append(Document(data))
    return Sanitized(tuple(kept), tuple(removed))


def strip_denylisted(
    config: MachineConfig | Iterable[Document | Mapping[str, Any]],
) -> tuple[Document, ...]:
    """A config without anything Omni manages, for comparing configs Omni would consider equal."""
    out = []
    for doc in as_documents(config):
        key = doc.key
        if not key.is_legacy and key.kind in FORBIDDEN_DOCUMENTS:
            continue
        fields = FORBIDDEN_FIELDS if key.is_legacy else DOCUMENT_FORBIDDEN_FIELDS.get(key.kind, {})
        elements = (
            FORBIDDEN_ELEMENTS if key.is_legacy else DOCUMENT_FORBIDDEN_ELEMENTS.get(key.kind, {})
        )
        if not _touches(doc.data, fields, elements):
            out.append(doc)
            continue
        data = copy_tree(doc.data)
        for path in fields:
            _remove_field(data, path.split("."))
        for path, forbidden in elements.items():
            _remove_elements(data, path.split("."), forbidden)
        out.append(Document(data))
    return tuple(out)


def _touches(
    data: dict[str, Any], fields: Mapping[str, str], elements: Mapping[str, Mapping[str, str]]
) -> bool:
    if any(isinstance(v, dict) and not v for v in data.values()):
        return True
    if any(_lookup(data, path.split(".")) is not _MISSING for path in fields):
        return True
    for path, forbidden in elements.items():
        values = _lookup(data, path.split("."))
        if isinstance(values, list) and any(_hashable_in(v, forbidden) for v in values):
            return True
    return False


_MISSING = object()


def _lookup(data: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _remove_field(data: dict[str, Any], parts: list[str]) -> bool:
    parent = _lookup(data, parts[:-1])
    if isinstance(parent, dict) and parts[-1] in parent:
        del parent[parts[-1]]
        return True
    return False


def _remove_elements(
    data: dict[str, Any], parts: list[str], forbidden: Mapping[str, str]
) -> list[tuple[str, str]]:
    parent = _lookup(data, parts[:-1])
    if not isinstance(parent, dict) or not isinstance(parent.get(parts[-1]), list):
        return []
    values = parent[parts[-1]]
    gone = [(v, forbidden[v]) for v in values if _hashable_in(v, forbidden)]
    if not gone:
        return []
    left = [v for v in values if not _hashable_in(v, forbidden)]
    if left:
        parent[parts[-1]] = left
    else:
        del parent[parts[-1]]
    return gone


def _hashable_in(value: Any, forbidden: Mapping[str, str]) -> bool:
    return isinstance(value, str) and value in forbidden


def _header_only(data: dict[str, Any]) -> bool:
    if "kind" in data or "apiVersion" in data:
        return all(k in ("apiVersion", "kind") for k in data)
    return all(k == "version" for k in data)
