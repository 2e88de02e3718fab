"""Rollback plans on disk: written before apply's first change, sealed, mode 0600.

The rollback plan is what ``omniport rollback`` executes; it names the backup zip (which holds
the secrets) and records hashes only, so it is safe to print. Reading refuses a tampered or
foreign file with one sentence, like plan files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omniport.planner import __version__, files
from omniport.planner.errors import OmniportError
from omniport.planner.plan import SpecLocation
from omniport.planner.planfile import location_data, location_of
from omniport.planner.sealed import (
    canonical,
    checksum,
    json_problem,
    schema_problem,
    shown,
    write_private,
)

FORMAT_VERSION = 1


class RollbackFileError(OmniportError):
    pass


@dataclass(frozen=True)
class RollbackNode:
    address: str
    hostname: str
    machine_uuid: str
    backup_entry: str
    config_sha256: str
    """sha256 of the backup bytes: rollback restores exactly these and verifies the hash."""


@dataclass(frozen=True)
class OmniRef:
    type: str
    id: str
    namespace: str = "default"


@dataclass(frozen=True)
class RollbackPlan:
    created_at: str
    import_id: str
    plan_checksum: str
    spec: dict[str, Any]
    cluster_name: str
    omni_url: str
    os_ca_sha256: str
    k8s_ca_sha256: str | None
    backup_path: str
    backup_sha256: str
    journal: str
    nodes: tuple[RollbackNode, ...]
    omni_resources: tuple[OmniRef, ...]
    links: tuple[str, ...] = ()
    """Machine UUIDs whose Omni Link this import brings into being (Omni did not know them)."""
    spec_base: str = ""
    """The directory the spec's relative paths (talosconfig, omniconfig, keys) resolved from at
    apply time: rollback's last resort when ``spec_location`` finds no spec."""
    spec_location: SpecLocation | None = None
    """Where the spec was, as the plan recorded it, so that rollback run from another checkout
    (a CI job, a colleague) finds the talosconfig and keys there."""
    tool_version: str = __version__
    format_version: int = FORMAT_VERSION


def to_dict(plan: RollbackPlan) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format_version": plan.format_version,
        "tool_version": plan.tool_version,
        "created_at": plan.created_at,
        "import_id": plan.import_id,
        "plan_checksum": plan.plan_checksum,
        "spec": plan.spec,
        "cluster": {
            "name": plan.cluster_name,
            "omni_url": plan.omni_url,
            "os_ca_sha256": plan.os_ca_sha256,
            "k8s_ca_sha256": plan.k8s_ca_sha256,
        },
        "backup": {"path": plan.backup_path, "sha256": plan.backup_sha256},
        "journal": plan.journal,
        "nodes": [
            {
                "address": n.address,
                "hostname": n.hostname,
                "machine_uuid": n.machine_uuid,
                "backup_entry": n.backup_entry,
                "config_sha256": n.config_sha256,
            }
            for n in plan.nodes
        ],
        "omni_resources": [
            {"type": r.type, "id": r.id, "namespace": r.namespace} for r in plan.omni_resources
        ],
        "links": list(plan.links),
        "spec_base": plan.spec_base,
    }
    if plan.spec_location is not None:  # absent in files written before it was recorded
        data["spec_location"] = location_data(plan.spec_location)
    data["checksum"] = checksum(data)
    return data


def from_dict(data: dict[str, Any]) -> RollbackPlan:
    c = data["cluster"]
    return RollbackPlan(
        format_version=data["format_version"],
        tool_version=data["tool_version"],
        created_at=data["created_at"],
        import_id=data["import_id"],
        plan_checksum=data["plan_checksum"],
        spec=data["spec"],
        cluster_name=c["name"],
        omni_url=c["omni_url"],
        os_ca_sha256=c["os_ca_sha256"],
        k8s_ca_sha256=c["k8s_ca_sha256"],
        backup_path=data["backup"]["path"],
        backup_sha256=data["backup"]["sha256"],
        journal=data["journal"],
        nodes=tuple(RollbackNode(**n) for n in data["nodes"]),
        omni_resources=tuple(OmniRef(**r) for r in data["omni_resources"]),
        links=tuple(data["links"]),
        spec_base=data["spec_base"],
        spec_location=location_of(data.get("spec_location")),
    )


def write(plan: RollbackPlan, path: Path) -> None:
    try:
        write_private(Path(path), canonical(to_dict(plan)), mode=0o600)
    except OSError as err:
        raise RollbackFileError(
            f"cannot write the rollback plan {path}: {err.strerror}",
            "make that directory writable, or point $OMNIPORT_STATE_DIR (or state.directory in "
            "the spec) at one you can write",
        ) from None


def parse(text: str, source: str = "rollback file") -> RollbackPlan:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise RollbackFileError(
            f"{source} is not a rollback plan (invalid JSON: {json_problem(err)})",
            "pass the .rollback.json apply wrote",
        ) from None
    if isinstance(data, dict) and "fingerprint" in data and "import_id" not in data:
        raise RollbackFileError(
            f"{source} is a plan file, not a rollback plan",
            "pass the .rollback.json that apply wrote (it printed the path: the cluster's state "
            "directory, by default ~/.local/state/omniport/<cluster>/<omni host>/)",
        )
    if not isinstance(data, dict) or "checksum" not in data or "import_id" not in data:
        raise RollbackFileError(
            f"{source} is not an omniport rollback plan", "pass the .rollback.json apply wrote"
        )
    if data["checksum"] != checksum(data):
        raise RollbackFileError(
            f"{source} was modified after apply wrote it (checksum mismatch)",
            "use the original file; rollback acts only on what apply recorded",
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise RollbackFileError(
            f"{source} has rollback format {shown(data.get('format_version'))}, this omniport "
            f"reads format {FORMAT_VERSION}",
            f"use omniport {shown(data.get('tool_version'))} to roll it back",
        )
    problem = schema_problem(data, "rollback")
    if problem is not None:
        raise RollbackFileError(
            f"{source} does not match the rollback schema {problem}",
            "use the original file apply wrote",
        )
    return from_dict(data)


def read(path: Path) -> RollbackPlan:
    path = Path(path)
    try:
        text = files.read_text(path, files.ROLLBACK_LIMIT)
    except FileNotFoundError:
        raise RollbackFileError(f"no rollback plan at {path}", "check the path") from None
    except files.Unreadable as err:
        raise RollbackFileError(
            f"the rollback plan {path} {err.reason}", "check the path"
        ) from None
    return parse(text, source=str(path))
