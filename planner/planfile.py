"""Plan files on disk: canonical JSON, validated by a schema, sealed by a self-checksum.

The file is meant to be committed and reviewed, so it is deterministic (sorted keys, two-space
indent, stable order) and holds no secret: only hashes and redacted renderings. Reading checks,
in order: the file is readable JSON; its checksum matches (one changed byte is "tampered"); its
format and tool versions are ours (both named when they differ); it matches the schema.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from omniport.planner import __version__, files
from omniport.planner.errors import OmniportError
from omniport.planner.plan import (
    FORMAT_VERSION,
    Action,
    Change,
    ClusterInfo,
    Finding,
    NodePlan,
    Patch,
    Plan,
    Severity,
    SpecLocation,
)
from omniport.planner.sealed import (
    canonical,
    checksum,
    json_problem,
    schema_problem,
    shown,
    write_private,
)


class PlanFileError(OmniportError):
    """A plan file that cannot be used: unreadable, tampered, foreign or malformed."""


def location_data(location: SpecLocation | None) -> dict[str, Any] | None:
    """A spec location as plan and rollback files store it."""
    if location is None:
        return None
    return {"path": location.path, "in_repository": location.in_repository}


def location_of(data: dict[str, Any] | None) -> SpecLocation | None:
    """The spec location a plan or rollback file stored (None when it stored none)."""
    if data is None:
        return None
    return SpecLocation(path=data["path"], in_repository=data["in_repository"])


def to_dict(plan: Plan) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format_version": plan.format_version,
        "tool_version": plan.tool_version,
        "created_at": plan.created_at,
        "spec": plan.spec,
        "spec_sha256": plan.spec_sha256,
        "cluster": {
            "name": plan.cluster.name,
            "talos_version": plan.cluster.talos_version,
            "kubernetes_version": plan.cluster.kubernetes_version,
            "initial_talos_version": plan.cluster.initial_talos_version,
            "initial_kubernetes_version": plan.cluster.initial_kubernetes_version,
            "omni_url": plan.cluster.omni_url,
            "factory_url": plan.cluster.factory_url,
        },
        "nodes_source": plan.nodes_source,
        "nodes": [
            {
                "address": n.address,
                "hostname": n.hostname,
                "machine_uuid": n.machine_uuid,
                "role": n.role,
                "talos_version": n.talos_version,
                "schematic_id": n.schematic_id,
                "config_sha256": n.config_sha256,
                "patches": [
                    {"id": p.id, "sha256": p.sha256, "redacted": p.redacted} for p in n.patches
                ],
                "removed": list(n.removed),
            }
            for n in plan.nodes
        ],
        "findings": [
            {
                "code": f.code,
                "severity": f.severity.value,
                "message": f.message,
                "fix": f.fix,
                "node": f.node,
                "accepted": f.accepted,
                "details": list(f.details),
            }
            for f in plan.findings
        ],
        "changes": [
            {
                "address": c.address,
                "action": c.action.word,
                "resource_type": c.resource_type,
                "resource_id": c.resource_id,
                "after": c.after,
                "node": c.node,
            }
            for c in plan.changes
        ],
        "secrets_sha256": plan.secrets_sha256,
        "fingerprint": plan.fingerprint,
        "spec_location": location_data(plan.spec_location),
        "seal": plan.seal,
    }
    data["checksum"] = checksum(data)
    return data


_SEAL_CONTEXT = b"omniport plan seal v1\0"


def _seal_of(plan: Plan, secrets_yaml: str) -> str:
    """HMAC-SHA256 over the plan's canonical body (all but ``checksum`` and ``seal``).

    The key is derived from the secrets bundle with a context of its own, so it is not the
    ``secrets_sha256`` the plan shows, and nobody without the cluster's secrets can make it."""
    key = hashlib.sha256(_SEAL_CONTEXT + secrets_yaml.encode()).digest()
    body = {k: v for k, v in to_dict(plan).items() if k not in ("checksum", "seal")}
    return hmac.new(key, canonical(body).encode(), hashlib.sha256).hexdigest()


def sealed(plan: Plan, secrets_yaml: str) -> Plan:
    """``plan`` with its seal, made with the secrets bundle it was computed with."""
    return replace(plan, seal=_seal_of(plan, secrets_yaml))


def seal_verifies(plan: Plan, secrets_yaml: str) -> bool:
    """Whether ``plan`` was sealed with ``secrets_yaml`` and not changed since."""
    return plan.seal is not None and hmac.compare_digest(plan.seal, _seal_of(plan, secrets_yaml))


_ACTIONS = {a.word: a for a in Action}


def from_dict(data: dict[str, Any]) -> Plan:
    """A Plan from already-checked data (see :func:`read`)."""
    c = data["cluster"]
    return Plan(
        format_version=data["format_version"],
        tool_version=data["tool_version"],
        created_at=data["created_at"],
        spec=data["spec"],
        spec_sha256=data["spec_sha256"],
        cluster=ClusterInfo(
            name=c["name"],
            talos_version=c["talos_version"],
            kubernetes_version=c["kubernetes_version"],
            initial_talos_version=c["initial_talos_version"],
            initial_kubernetes_version=c["initial_kubernetes_version"],
            omni_url=c["omni_url"],
            factory_url=c["factory_url"],
        ),
        nodes=tuple(
            NodePlan(
                address=n["address"],
                hostname=n["hostname"],
                machine_uuid=n["machine_uuid"],
                role=n["role"],
                talos_version=n["talos_version"],
                schematic_id=n["schematic_id"],
                config_sha256=n["config_sha256"],
                patches=tuple(Patch(p["id"], p["sha256"], p["redacted"]) for p in n["patches"]),
                removed=tuple(n["removed"]),
            )
            for n in data["nodes"]
        ),
        findings=tuple(
            Finding(
                code=f["code"],
                severity=Severity(f["severity"]),
                message=f["message"],
                fix=f["fix"],
                node=f["node"],
                accepted=f["accepted"],
                details=tuple(f["details"]),
            )
            for f in data["findings"]
        ),
        changes=tuple(
            Change(
                address=ch["address"],
                action=_ACTIONS[ch["action"]],
                resource_type=ch["resource_type"],
                resource_id=ch["resource_id"],
                after=ch["after"],
                node=ch["node"],
            )
            for ch in data["changes"]
        ),
        secrets_sha256=data["secrets_sha256"],
        fingerprint=data["fingerprint"],
        nodes_source=data.get("nodes_source", "spec"),
        spec_location=location_of(data.get("spec_location")),
        seal=data.get("seal"),
    )


def dumps(plan: Plan) -> str:
    return canonical(to_dict(plan))


def default_path(spec_path: Path) -> Path:
    """Where ``omniport plan SPEC`` writes without ``-o``: ``<spec stem>.plan.json`` beside it."""
    return spec_path.parent / f"{spec_path.stem}.plan.json"


def check_target(path: str | Path, *, protect: tuple[Path, ...] = (), force: bool = False) -> Path:
    """Where the plan will be written; raises PlanFileError for a target it must not replace."""
    try:
        return files.plan_target(Path(path), protect=protect, force=force)
    except files.OutputRefused as err:
        raise PlanFileError(err.reason, err.fix) from None


def write(
    plan: Plan,
    path: str | Path,
    *,
    protect: tuple[Path, ...] = (),
    force: bool = False,
    mode: int = 0o600,
) -> None:
    """Write the plan file, never over something that is not a plan (see files.plan_target).

    Mode 0600 by default: it holds no secret, but it names every node and how to reach Omni;
    reviewers get it through the pull request, not through the file's permissions.
    """
    target = check_target(path, protect=protect, force=force)
    try:
        write_private(target, dumps(plan), mode=mode)
    except OSError as err:
        raise PlanFileError(
            f"cannot write the plan file {path}: {err.strerror}", "choose a writable path with -o"
        ) from None


def parse(text: str, source: str = "plan file") -> Plan:
    """Check and load a plan file's text; every refusal is one sentence naming the fix."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise PlanFileError(
            f"{source} is not a plan file (invalid JSON: {json_problem(err)})",
            "run `omniport plan` again to produce one",
        ) from None
    if not isinstance(data, dict) or "checksum" not in data:
        raise PlanFileError(
            f"{source} is not an omniport plan file", "run `omniport plan` to produce one"
        )
    if "import_id" in data and "fingerprint" not in data:
        raise PlanFileError(
            f"{source} is a rollback plan, not a plan file",
            f"run `omniport rollback {source}` to roll that import back",
        )
    if data.get("checksum") != checksum(data):
        raise PlanFileError(
            f"{source} was modified after it was written (checksum mismatch)",
            "a plan is the approval of exactly what was reviewed: run `omniport plan` again",
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise PlanFileError(
            f"{source} has plan format {shown(data.get('format_version'))}, this omniport reads "
            f"format {FORMAT_VERSION}",
            "run `omniport plan` again with this version",
        )
    if data.get("tool_version") != __version__:
        raise PlanFileError(
            f"{source} was made by omniport {shown(data.get('tool_version'))}, this is omniport "
            f"{__version__}; plan files cannot move between versions",
            "run `omniport plan` again with this version",
        )
    problem = schema_problem(data, "plan")
    if problem is not None:
        raise PlanFileError(
            f"{source} does not match the plan schema {problem}",
            "run `omniport plan` again to produce a valid one",
        )
    return from_dict(data)


def read(path: str | Path) -> Plan:
    path = Path(path)
    try:
        text = files.read_text(path, files.PLAN_LIMIT)
    except FileNotFoundError:
        raise PlanFileError(f"no plan file at {path}", "check the path") from None
    except files.Unreadable as err:
        raise PlanFileError(f"the plan file {path} {err.reason}", "check the path") from None
    return parse(text, source=str(path))
