"""Omni's server-side validations of API writes, including the cluster lock rules.

Mirrors ``internal/backend/runtime/omni/validations`` in spirit (omni-wire.md §1, omni-import.md
§3, §7, §8) with our own wording. Each function returns a list of problems; the wire adapter
wraps them the way Omni's validated state does (``failed to validate: N errors occurred…``).
Controllers write to the store directly and are not validated, as in Omni.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from grpclib.const import Status

from omniport.lab.omni_patchdata import PatchData, PatchDataError
from omniport.lab.omni_store import Resource, StateError, Store, q, render_ref
from omniport.lab.omni_types import CLUSTER_BOOTSTRAP_STATUSES
from omniport.providers.codec.omni_names import (
    ANNOTATION_CLUSTER_LOCKED,
    ANNOTATION_IMPORT_IN_PROGRESS,
    ANNOTATION_MACHINE_LOCKED,
    CLUSTER_STATUSES,
    CLUSTERS,
    CONFIG_PATCHES,
    DEFAULT_NAMESPACE,
    IMPORTED_CLUSTER_SECRETS,
    LABEL_CLUSTER,
    LABEL_CLUSTER_MACHINE,
    LABEL_INSTALLED,
    LABEL_MACHINE,
    LABEL_MACHINE_SET,
    LABEL_ROLE_CONTROLPLANE,
    LABEL_ROLE_WORKER,
    LABEL_TAINTED_BY_IMPORTING,
    LABEL_TALOS_VERSION,
    MACHINE_SET_NODES,
    MACHINE_SETS,
    MACHINE_STATUSES,
    PHASE_TEARING_DOWN,
    TALOS_VERSIONS,
)

Problem = str | StateError
_CLUSTER_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ID_BYTES = 1024
MAX_LABELS = 256
_SEMVER = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
LIFECYCLE_SERVICE_TALOS = (1, 13)
"""From this Talos minor on, Omni installs Talos itself on a machine that runs from ISO/PXE."""


def semver_minor(text: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a strict semantic version (``1.11.5``, no ``v``), else None."""
    match = _SEMVER.match(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def machine_version_problem(
    label: str | None, installed: bool, cluster: tuple[int, int]
) -> str | None:
    """Why Omni refuses a machine for a cluster at Talos ``cluster`` (major, minor), or None.

    ``label`` is the machine's ``talos-version`` label, ``installed`` whether it carries the
    ``installed`` label (Omni: ``client/pkg/omni/resources/omni/version_compat.go``). A machine
    may never join a cluster of an older minor (that would be a downgrade); an installed machine
    may join a newer one. A machine running from ISO or PXE needs the cluster's minor, unless
    both sides are new enough for Omni to install Talos explicitly.
    """
    if label is None:
        return "the machine has no Talos version label"
    machine = semver_minor(label.removeprefix("v"))
    if machine is None:
        return "the machine's Talos version could not be determined"
    if machine > cluster:
        return (
            "the machine has a newer Talos version installed than the cluster: downgrade is "
            "not allowed; upgrade the machine or change the cluster's Talos version"
        )
    if installed or machine == cluster:
        return None
    if min(machine, cluster) >= LIFECYCLE_SERVICE_TALOS:
        return None
    return (
        "a machine running from ISO or PXE must have the cluster's major and minor Talos "
        "version; boot another ISO or change the cluster's Talos version"
    )


@dataclass(frozen=True)
class Checks:
    """The content checks that need the machine-config engine, passed in by the simulator.

    ``config_patch`` returns the reasons a patch is refused (empty when acceptable);
    ``secrets_bundle`` returns why a secrets bundle is invalid, or None.
    """

    config_patch: Callable[[str], list[str]]
    secrets_bundle: Callable[[str], str | None]
    cluster_import_enabled: bool = True
    patch_data: PatchData = field(default_factory=PatchData)
    """Reads a patch's YAML, decoding ``compressed_data``."""


def _locked(cluster: Resource) -> bool:
    return ANNOTATION_CLUSTER_LOCKED in cluster.annotations


def _importing(cluster: Resource) -> bool:
    return ANNOTATION_IMPORT_IN_PROGRESS in cluster.annotations


def _label_set(res: Resource, key: str) -> str | None:
    if key not in res.labels:
        return f"label {q(key)} does not exist"
    if res.labels[key] == "":
        return f"label {q(key)} has empty value"
    return None


def metadata_problems(res: Resource) -> list[Problem]:
    out: list[Problem] = []
    if len(res.id.encode()) > MAX_ID_BYTES:
        out.append(f"resource ID is {len(res.id.encode())} bytes, the limit is {MAX_ID_BYTES}")
    if _CONTROL.search(res.id):
        out.append(f"resource ID {q(res.id)} contains control characters")
    if len(res.labels) > MAX_LABELS:
        out.append(f"resource has {len(res.labels)} labels, the limit is {MAX_LABELS}")
    if len(res.annotations) > MAX_LABELS:
        out.append(f"resource has {len(res.annotations)} annotations, the limit is {MAX_LABELS}")
    return out


class Validator:
    def __init__(self, store: Store, checks: Checks) -> None:
        self.store = store
        self.checks = checks

    def _get(self, type_: str, id_: str) -> Resource | None:
        return self.store.peek(DEFAULT_NAMESPACE, type_, id_)

    # ---- entry points ----------------------------------------------------------------------

    def on_create(self, res: Resource) -> list[Problem]:
        out = metadata_problems(res)
        handler = {
            CLUSTERS: self._cluster_create,
            MACHINE_SETS: lambda r: self._machine_set(None, r),
            MACHINE_SET_NODES: self._machine_set_node_create,
            CONFIG_PATCHES: self._config_patch_create,
            IMPORTED_CLUSTER_SECRETS: self._imported_secrets_create,
        }.get(res.type)
        if handler is not None:
            out += handler(res)
        return out

    def on_update(self, old: Resource | None, new: Resource) -> list[Problem]:
        out = metadata_problems(new)
        if old is not None:
            handler = {
                CLUSTERS: self._cluster_update,
                MACHINE_SETS: self._machine_set,
                MACHINE_SET_NODES: self._machine_set_node_update,
                CONFIG_PATCHES: self._config_patch_update,
            }.get(new.type)
            if handler is not None:
                out += handler(old, new)
        if new.phase == PHASE_TEARING_DOWN:
            out += self.on_destroy(new.type, new.id, old)
        return out

    def on_destroy(self, type_: str, id_: str, existing: Resource | None) -> list[Problem]:
        if existing is None:
            return []
        handler = {
            CLUSTERS: self._cluster_destroy,
            MACHINE_SETS: self._machine_set_destroy,
            MACHINE_SET_NODES: self._machine_set_node_destroy,
        }.get(type_)
        return handler(existing) if handler is not None else []

    # ---- Clusters --------------------------------------------------------------------------

    def _versions(self, res: Resource, old: Resource | None) -> list[Problem]:
        talos = res.spec.talos_version
        k8s = res.spec.kubernetes_version
        skip_talos = old is not None and old.spec.talos_version == talos
        skip_k8s = skip_talos and old is not None and old.spec.kubernetes_version == k8s
        if skip_talos and skip_k8s:
            return []
        version = self._get(TALOS_VERSIONS, talos)
        if version is None:
            ref = render_ref(DEFAULT_NAMESPACE, TALOS_VERSIONS, talos)
            return [f"invalid talos version {q(talos)}: resource {ref} doesn't exist"]
        if not skip_k8s and k8s not in version.spec.compatible_kubernetes_versions:
            return [
                f"invalid kubernetes version {q(k8s)}: is not compatible with talos version "
                f"{q(talos)}"
            ]
        return []

    def _cluster_create(self, res: Resource) -> list[Problem]:
        out: list[Problem] = []
        if not _CLUSTER_ID.match(res.id):
            out.append(
                f"cluster name {q(res.id)} is invalid: use only letters, digits, '-' and '_'"
            )
        return out + self._versions(res, None)

    def _cluster_update(self, old: Resource, new: Resource) -> list[Problem]:
        if new.phase == PHASE_TEARING_DOWN:
            return []
        if _locked(old) and _locked(new) and not _importing(old) and not _importing(new):
            return [
                f"updating cluster configuration is not allowed: the cluster {q(new.id)} is locked"
            ]
        return self._versions(new, old)

    def _cluster_destroy(self, cluster: Resource) -> list[Problem]:
        status = self._get(CLUSTER_STATUSES, cluster.id)
        if status is None:
            return []
        if _locked(cluster) and LABEL_TAINTED_BY_IMPORTING not in status.labels:
            return [f"deletion is not allowed: the cluster {q(cluster.id)} is locked"]
        return []

    # ---- MachineSets -----------------------------------------------------------------------

    def _machine_set(self, old: Resource | None, res: Resource) -> list[Problem]:
        missing = _label_set(res, LABEL_CLUSTER)
        if missing:
            return [missing]
        cluster_id = res.labels[LABEL_CLUSTER]
        if old is not None and old.labels.get(LABEL_CLUSTER, "") not in ("", cluster_id):
            return [
                f"changing value of label {q(LABEL_CLUSTER)} from "
                f"{q(old.labels[LABEL_CLUSTER])} to {q(cluster_id)}"
            ]
        cluster = self._get(CLUSTERS, cluster_id)
        if cluster is None:
            if res.phase == PHASE_TEARING_DOWN:
                return []
            return [f"the cluster {q(cluster_id)} does not exist"]
        locked, importing = _locked(cluster), _importing(cluster)
        if old is None:
            if cluster.phase == PHASE_TEARING_DOWN:
                return [f"the cluster {q(cluster_id)} is tearing down"]
            if locked and not importing:
                return [
                    f"adding machine set {q(res.id)} to the cluster {q(cluster_id)} is not "
                    "allowed: the cluster is locked"
                ]
        if locked and not importing and res.phase != PHASE_TEARING_DOWN:
            return [
                f"updating machine set {q(res.id)} on the cluster {q(cluster_id)} is not allowed: "
                "the cluster is locked"
            ]
        is_cp = LABEL_ROLE_CONTROLPLANE in res.labels
        if not is_cp and LABEL_ROLE_WORKER not in res.labels:
            return [
                f"machine set must have either {q(LABEL_ROLE_CONTROLPLANE)} or "
                f"{q(LABEL_ROLE_WORKER)} label"
            ]
        if is_cp and old is None and self._bootstrapped(cluster_id):
            return [
                "adding control plane machine set to an already bootstrapped cluster is not allowed"
            ]
        if old is not None:
            return []
        prefix = cluster_id + "-"
        if not res.id.startswith(prefix):
            return [f"machine set of cluster {q(cluster_id)} ID must have {q(prefix)} as prefix"]
        cp_id = f"{cluster_id}-control-planes"
        if is_cp and res.id != cp_id:
            return [f"control plane machine set must have ID {q(cp_id)}"]
        if not is_cp and res.id == cp_id:
            return [f"worker machine set must not have ID {q(cp_id)}"]
        return []

    def _bootstrapped(self, cluster_id: str) -> bool:
        """Omni's ClusterBootstrapStatus says so (an import counts once its control-plane set
        exists and a control plane is connected); there is no exemption for imports."""
        status = self._get(CLUSTER_BOOTSTRAP_STATUSES, cluster_id)
        return status is not None and status.spec.bootstrapped

    def _machine_set_destroy(self, res: Resource) -> list[Problem]:
        cluster_id = res.labels.get(LABEL_CLUSTER, "")
        cluster = self._get(CLUSTERS, cluster_id)
        if cluster is not None and _locked(cluster) and cluster.phase != PHASE_TEARING_DOWN:
            return [
                f"removing machine set {q(res.id)} from the cluster {q(cluster_id)} is not "
                "allowed: the cluster is locked"
            ]
        return []

    # ---- MachineSetNodes -------------------------------------------------------------------

    def _machine_set_node_create(self, res: Resource) -> list[Problem]:
        missing = [
            p for p in (_label_set(res, LABEL_CLUSTER), _label_set(res, LABEL_MACHINE_SET)) if p
        ]
        if missing:
            return list(missing)
        ms_id, cluster_id = res.labels[LABEL_MACHINE_SET], res.labels[LABEL_CLUSTER]
        ms = self._get(MACHINE_SETS, ms_id)
        where = f"adding machine set node to the machine set {q(ms_id)} is not allowed"
        if ms is None:
            return [f"{where}: the machine set does not exist"]
        if ms.phase == PHASE_TEARING_DOWN:
            return [f"{where}: the machine set is tearing down"]
        cluster = self._get(CLUSTERS, cluster_id)
        if cluster is None:
            return [f"{where}: the cluster {q(cluster_id)} does not exist"]
        if cluster.phase == PHASE_TEARING_DOWN:
            return [f"{where}: the cluster {q(cluster_id)} is tearing down"]
        if _locked(cluster) and not _importing(cluster):
            return [f"{where}: the cluster {q(cluster_id)} is locked"]
        return self._machine_version(res, cluster) or self._not_locked_controlplane(ms, res)

    def _machine_version(self, res: Resource, cluster: Resource) -> list[Problem]:
        """Omni's check of the machine's Talos version against the cluster's, on create.

        Only once Omni has the machine's MachineStatus, and only when the version that status
        reports parses (leading ``v``s dropped); the verdict then comes from the status's labels
        (:func:`machine_version_problem`). Machines in agent mode pass. Omni runs the same
        check on update only when the machine-set label changes, which is refused anyway.
        """
        status = self._get(MACHINE_STATUSES, res.id)
        if status is None or semver_minor(status.spec.talos_version.lstrip("v")) is None:
            return []
        cluster_version = semver_minor(cluster.spec.talos_version)
        if cluster_version is None:
            return [f"cluster Talos version {q(cluster.spec.talos_version)} is not a semver"]
        if status.spec.schematic.in_agent_mode:
            return []
        label = status.labels.get(LABEL_TALOS_VERSION)
        problem = machine_version_problem(label, LABEL_INSTALLED in status.labels, cluster_version)
        return [problem] if problem else []

    def _machine_set_node_update(self, old: Resource, new: Resource) -> list[Problem]:
        if new.phase == PHASE_TEARING_DOWN:
            return []
        problems = [
            p for p in (_label_set(new, LABEL_CLUSTER), _label_set(new, LABEL_MACHINE_SET)) if p
        ]
        for key in (LABEL_CLUSTER, LABEL_MACHINE_SET):
            before, after = old.labels.get(key, ""), new.labels.get(key, "")
            if before and before != after:
                problems.append(f"changing value of label {q(key)} from {q(before)} to {q(after)}")
        if problems:
            return list(problems)
        ms_id = old.labels.get(LABEL_MACHINE_SET, "")
        cluster_id = old.labels.get(LABEL_CLUSTER, "")
        where = f"updating machine set node on the machine set {q(ms_id)} is not allowed"
        ms = self._get(MACHINE_SETS, ms_id)
        if ms is None:
            return [f"{where}: the machine set does not exist"]
        if ms.phase == PHASE_TEARING_DOWN:
            return [f"{where}: the machine set is tearing down"]
        cluster = self._get(CLUSTERS, cluster_id)
        if cluster is None:
            return [f"{where}: the cluster {q(cluster_id)} does not exist"]
        if cluster.phase == PHASE_TEARING_DOWN:
            return [f"{where}: the cluster {q(cluster_id)} is tearing down"]
        if _locked(cluster) and not _importing(cluster):
            return [f"{where}: the cluster {q(cluster_id)} is locked"]
        return self._not_locked_controlplane(ms, new)

    @staticmethod
    def _not_locked_controlplane(ms: Resource, res: Resource) -> list[Problem]:
        if ANNOTATION_MACHINE_LOCKED in res.annotations and LABEL_ROLE_CONTROLPLANE in ms.labels:
            return ["locking controlplanes is not allowed"]
        return []

    def _machine_set_node_destroy(self, res: Resource) -> list[Problem]:
        ms_id = res.labels.get(LABEL_MACHINE_SET, "")
        cluster_id = res.labels.get(LABEL_CLUSTER, "")
        ms = self._get(MACHINE_SETS, ms_id)
        cluster = self._get(CLUSTERS, cluster_id)
        if ms is None or ms.phase == PHASE_TEARING_DOWN:
            return []
        if cluster is None or cluster.phase == PHASE_TEARING_DOWN:
            return []
        where = f"removing machine set node from the machine set {q(ms_id)} is not allowed"
        if ANNOTATION_MACHINE_LOCKED in res.annotations:
            return [f"{where}: machine set node is locked"]
        if _locked(cluster):
            return [f"{where}: the cluster {q(cluster_id)} is locked"]
        return []

    # ---- ConfigPatches ---------------------------------------------------------------------

    @staticmethod
    def _patch_level(res: Resource) -> list[Problem]:
        has = {k: k in res.labels for k in (LABEL_CLUSTER, LABEL_MACHINE, LABEL_MACHINE_SET)}
        cluster_machine = LABEL_CLUSTER_MACHINE in res.labels
        if has[LABEL_MACHINE] and (has[LABEL_CLUSTER] or has[LABEL_MACHINE_SET] or cluster_machine):
            return [
                f"label {q(LABEL_MACHINE)} targets the machine in every cluster and cannot be "
                "combined with cluster, machine-set or cluster-machine labels"
            ]
        if has[LABEL_MACHINE_SET] and cluster_machine:
            return [
                f"labels {q(LABEL_MACHINE_SET)} and {q(LABEL_CLUSTER_MACHINE)} exclude each other"
            ]
        if (has[LABEL_MACHINE_SET] or cluster_machine) and not has[LABEL_CLUSTER]:
            return [
                f"label {q(LABEL_CLUSTER)} is required with {q(LABEL_MACHINE_SET)} and "
                f"{q(LABEL_CLUSTER_MACHINE)}"
            ]
        return []

    def _patch_data(self, res: Resource) -> tuple[str | None, list[Problem]]:
        try:
            return self.checks.patch_data.text(res.spec), []
        except PatchDataError as exc:
            return None, [str(exc)]

    def _config_patch_create(self, res: Resource) -> list[Problem]:
        out = self._patch_level(res)
        if out:
            return out
        cluster_id = res.labels.get(LABEL_CLUSTER)
        if cluster_id is not None:
            cluster = self._get(CLUSTERS, cluster_id)
            if cluster is not None and cluster.phase == PHASE_TEARING_DOWN:
                return [f"cluster {q(cluster_id)} is tearing down"]
        ms_id = res.labels.get(LABEL_MACHINE_SET)
        if ms_id is not None:
            ms = self._get(MACHINE_SETS, ms_id)
            if ms is not None and ms.phase == PHASE_TEARING_DOWN:
                return [f"machine set {q(ms_id)} is tearing down"]
        data, problems = self._patch_data(res)
        if problems or data is None:
            return problems
        return list(self.checks.config_patch(data))

    def _config_patch_update(self, old: Resource, new: Resource) -> list[Problem]:
        out = self._patch_level(new)
        if out:
            return out
        data, problems = self._patch_data(new)
        if problems or data is None:
            return problems
        if old.spec.data == new.spec.data and old.spec.compressed_data == new.spec.compressed_data:
            return []
        return list(self.checks.config_patch(data))

    # ---- ImportedClusterSecrets ------------------------------------------------------------

    def _imported_secrets_create(self, res: Resource) -> list[Problem]:
        if not self.checks.cluster_import_enabled:
            return ["cluster import feature is not enabled"]
        if self._get(CLUSTERS, res.id) is not None:
            return [
                "cannot create an ImportedClusterSecrets, as there is already an existing "
                f"cluster with name: {q(res.id)}"
            ]
        reason = self.checks.secrets_bundle(res.spec.data)
        if reason is not None:
            return [f"failed to validate imported cluster secret: {reason}"]
        return []


def wrap(problems: list[Problem]) -> StateError:
    """Omni's validation error: a go-multierror under ``failed to validate:``.

    The status code is that of the first problem that carries one, else INVALID_ARGUMENT.
    """
    texts: list[str] = []
    status = None
    for p in problems:
        if isinstance(p, StateError):
            texts.append(p.message)
            status = status or p.status
        else:
            texts.append(p)
    distinct = list(dict.fromkeys(texts))
    noun = "error" if len(distinct) == 1 else "errors"
    body = "".join(f"\t* {t}\n" for t in distinct)
    message = f"failed to validate: {len(distinct)} {noun} occurred:\n{body}\n"
    return StateError(status or Status.INVALID_ARGUMENT, message)
