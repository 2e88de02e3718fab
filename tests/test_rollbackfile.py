"""Rollback plans: sealed, private, refused when tampered or malformed."""

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniport.planner.execute import rollbackfile
from omniport.planner.execute.rollbackfile import (
    OmniRef,
    RollbackFileError,
    RollbackNode,
    RollbackPlan,
)

SHA = "c" * 64


def sample() -> RollbackPlan:
    return RollbackPlan(
        created_at="2026-11-23T20:00:00Z",
        import_id="0b6f6e2c-0000-4000-8000-000000000001",
        plan_checksum=SHA,
        spec={"version": 1},
        cluster_name="prod",
        omni_url="https://omni",
        os_ca_sha256=SHA,
        k8s_ca_sha256=None,
        backup_path="prod-backup-20261123-200000.zip",
        backup_sha256=SHA,
        journal="p.journal.jsonl",
        nodes=(RollbackNode("10.0.0.1", "cp-1", "u1", "cp-1-10.0.0.1.yaml", SHA),),
        omni_resources=(OmniRef("Clusters.omni.sidero.dev", "prod"),),
    )


def test_round_trip_private(tmp_path):
    path = tmp_path / "p.rollback.json"
    rollbackfile.write(sample(), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert rollbackfile.read(path) == sample()


def test_tampered_and_foreign(tmp_path):
    path = tmp_path / "p.rollback.json"
    rollbackfile.write(sample(), path)
    path.write_text(path.read_text().replace("prod", "dev", 1))
    with pytest.raises(RollbackFileError, match="modified after apply wrote it"):
        rollbackfile.read(path)
    with pytest.raises(RollbackFileError, match="not an omniport rollback plan"):
        rollbackfile.parse('{"checksum": "x"}')
    with pytest.raises(RollbackFileError, match="no rollback plan at"):
        rollbackfile.read(tmp_path / "missing.json")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_plan_or_a_clear_error(text):
    try:
        rollbackfile.parse(text)
    except RollbackFileError:
        pass
