"""Shared pieces of the reliability suites: the marker, an isolated working folder, a tree
snapshot that proves "nothing changed", the one-clear-error check, and valid sealed files.

Every test under ``tests/reliability`` is marked ``reliability`` here, so ``-m reliability``
selects the whole folder (modules also set ``pytestmark`` for readers).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from omniport.planner import __version__, planfile
from omniport.planner.execute import rollbackfile
from omniport.planner.execute.rollbackfile import OmniRef, RollbackNode, RollbackPlan
from omniport.planner.plan import (
    Action,
    Change,
    ClusterInfo,
    Finding,
    NodePlan,
    Patch,
    Plan,
    Severity,
)
from tests.paths import REPO

HERE = Path(__file__).resolve().parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

# Environment variables that would let a test read the developer's own credentials.
CREDENTIAL_VARIABLES = (
    "TALOSCONFIG",
    "OMNICONFIG",
    "OMNI_ENDPOINT",
    "OMNI_SERVICE_ACCOUNT_KEY",
    "SIDERO_SERVICE_ACCOUNT_KEY",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)

# `omniport plan` tells a person what it is doing before the (slow) reads, and what a slow
# step waits for ("... [4s elapsed]", planner/progress.py); those lines are progress, not part
# of an error, so the one-line check ignores them.
PROGRESS = re.compile(
    r"^(Reading \d+ node\(s\), Omni and the Image Factory…|.*\.\.\. \[\d+s elapsed\].*)$"
)
SPEC_PROBLEM = re.compile(r"^\S.*:\d+:\d+: \S.*$")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.reliability)


# --- the working folder and its snapshot -----------------------------------------------------

Snapshot = dict[str, tuple[str, int, bytes]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root`` (hidden ones too): kind, mode and bytes (or link target)."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            rel = str(path.relative_to(root))
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", mode, os.readlink(path).encode())
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", mode, b"")
            else:
                out[rel] = ("file", mode, path.read_bytes())
    return out


def assert_unchanged(before: Snapshot, after: Snapshot) -> None:
    created = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert (created, removed, changed) == ([], [], []), "bad input changed the working folder"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty current directory that is also $HOME, with no credential variables set."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work))
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    yield work


# --- the one-clear-error check ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def assert_one_clear_error(result: Outcome, needle: str, *, spec_lines: bool = False) -> None:
    """Exit 1, nothing on stdout, and one ``Error: `` line on stderr naming ``needle``.

    With ``spec_lines`` the error may go on with one ``file:line:col: message`` line per
    further problem (how ``validate`` reports several problems at once).
    """
    for stream in (result.out, result.err):
        assert "Traceback" not in stream
    assert result.code == 1, (result.code, result.err)
    assert result.out == "", result.out
    lines = [line for line in result.err.splitlines() if not PROGRESS.match(line)]
    assert lines, "no error message"
    assert lines[0].startswith("Error: "), result.err
    assert lines[0].strip() != "Error:", result.err
    if spec_lines:
        for line in lines[1:]:
            assert SPEC_PROBLEM.match(line), line
    else:
        assert len(lines) == 1, result.err
    assert needle in result.err, (needle, result.err)
    clauses = lines[0].split("; ")
    assert len(clauses) == len(set(clauses)), f"a clause is repeated: {lines[0]}"


# --- valid sealed files ------------------------------------------------------------------------

SHA = "a" * 64
UUID = "0b6f6e2c-0000-4000-8000-000000000001"


def sample_plan() -> Plan:
    """A plan like `omniport plan` writes for one control plane and one worker."""
    return Plan(
        tool_version=__version__,
        created_at="2026-11-23T20:00:00Z",
        spec={
            "version": 1,
            "talos": {"nodes": ["127.1.0.1", "127.1.0.2"]},
            "omni": {"url": "https://omni.example.com", "insecureSkipTLSVerify": False},
        },
        spec_sha256=SHA,
        cluster=ClusterInfo(
            "prod", "1.11.5", "1.34.1", "1.9.5", "1.32.3", "https://omni.example.com", None
        ),
        nodes=(
            NodePlan(
                address="127.1.0.1",
                hostname="cp-1",
                machine_uuid=UUID,
                role="controlplane",
                talos_version="1.11.5",
                schematic_id="b" * 64,
                config_sha256=SHA,
                patches=(Patch(f"10-{UUID}", SHA, "machine:\n  token: (sensitive value)\n"),),
                removed=("v1alpha1: machine.token",),
            ),
            NodePlan(
                address="127.1.0.2",
                hostname="wörker-1",
                machine_uuid=UUID.replace("1", "2"),
                role="worker",
                talos_version="1.11.5",
                schematic_id=None,
                config_sha256="c" * 64,
            ),
        ),
        findings=(
            Finding("SCHEMATIC_MISSING", Severity.ERROR, "no schematic", "accept it", "127.1.0.2"),
            Finding("DISCOVERY_DISABLED", Severity.WARNING, "discovery is off", details=("x",)),
        ),
        changes=(
            Change(
                "omni_cluster.prod", Action.CREATE, "Clusters.omni.sidero.dev", "prod", {"a": 1}
            ),
            Change(
                "talos_join.127.1.0.1",
                Action.UPDATE,
                "MachineConfigs.config.talos.dev",
                "v1alpha1",
                {"documents": "SideroLinkConfig\nEventSinkConfig\n"},
                "127.1.0.1",
            ),
        ),
        secrets_sha256=SHA,
        fingerprint="d" * 64,
    )


def sample_rollback() -> RollbackPlan:
    """A rollback plan like apply writes before its first change."""
    return RollbackPlan(
        created_at="2026-11-23T20:00:00Z",
        import_id=UUID,
        plan_checksum=SHA,
        spec={"version": 1, "talos": {"nodes": ["127.1.0.1"]}},
        cluster_name="prod",
        omni_url="https://omni.example.com",
        os_ca_sha256=SHA,
        k8s_ca_sha256=None,
        backup_path="prod-backup-20261123-200000.zip",
        backup_sha256=SHA,
        journal="import.journal.jsonl",
        nodes=(RollbackNode("127.1.0.1", "cp-1", UUID, "cp-1-127.1.0.1.yaml", SHA),),
        omni_resources=(OmniRef("Clusters.omni.sidero.dev", "prod"),),
    )


def plan_text() -> str:
    return planfile.dumps(sample_plan())


def rollback_text() -> str:
    from omniport.planner.sealed import canonical

    return canonical(rollbackfile.to_dict(sample_rollback()))


def resealed(data: dict, **changes: object) -> str:
    """``data`` with ``changes`` applied and a fresh, valid checksum: only the content is wrong."""
    from omniport.planner.sealed import canonical, checksum

    data = dict(data, **changes)
    data["checksum"] = checksum(data)
    return canonical(data)


Builder = Callable[[], str | bytes]
