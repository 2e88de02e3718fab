"""Journal, backup and lock: the crash-safety primitives apply and rollback stand on."""

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from omniport.planner.execute import journal
from omniport.planner.execute.backup import BackupEntry, BackupError, read_backup, write_backup
from omniport.planner.execute.lock import ClusterLock, LockedError


def test_journal_appends_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "j.jsonl"
    with journal.Journal(path) as j:
        j.append("begin")
        j.append("start", "omni_cluster.prod")
        j.append("end", "omni_cluster.prod")
        j.append("start", "talos_join.10.0.0.1", node="10.0.0.1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, "a") as handle:
        handle.write('{"seq": 5, "event": "end", "st')  # the process died mid-write
    records = journal.read(path)
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert journal.started_steps(records) == ["omni_cluster.prod", "talos_join.10.0.0.1"]
    with journal.Journal(path) as j:  # reopening continues the sequence
        assert j.append("undo_end", "omni_cluster.prod").seq == 5
    assert journal.undone_steps(journal.read(path)) == {"omni_cluster.prod"}


def test_backup_is_private_and_round_trips(tmp_path):
    entries = [BackupEntry("10.0.0.1", "cp-1", b"machine:\n  token: secret\n")]
    path = write_backup(tmp_path / "b" / "prod-backup-20261123-200000.zip", entries)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_backup(path) == {"cp-1-10.0.0.1.yaml": b"machine:\n  token: secret\n"}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    with pytest.raises(BackupError, match="is missing"):
        read_backup(tmp_path / "nope.zip")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(BackupError, match="cannot be read"):
        read_backup(tmp_path / "bad.zip")


def test_second_lock_fails_fast_and_names_the_holder(tmp_path):
    with ClusterLock("omni.example/prod", "apply", tmp_path) as info:
        assert info.operation == "apply"
        with pytest.raises(LockedError) as err:
            ClusterLock("omni.example/prod", "rollback", tmp_path).acquire()
        assert f"lock ID {info.id}" in str(err.value)
        assert "apply by" in str(err.value)
    # released: the next one gets it
    with ClusterLock("omni.example/prod", "rollback", tmp_path):
        pass


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        from pathlib import Path
        from omniport.planner.execute.lock import ClusterLock
        ClusterLock("c", "apply", Path({str(tmp_path)!r})).acquire()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -9
    with ClusterLock("c", "apply", tmp_path):
        pass
