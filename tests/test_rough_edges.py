"""Rough edges met on the way from a real cluster to a merged pull request (issue 15 item 10).

Each test drives the command as a user would (a process per command, against a lab started
for the test and stopped by its pid).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.reliability.labkit import World, assert_restored
from tests.test_apply_lab import one_line


def insecure_spec(world: World) -> None:
    data: dict[str, Any] = yaml.safe_load(world.spec.read_text())
    data["omni"].pop("caFile", None)
    data["omni"]["insecureSkipTLSVerify"] = True
    world.spec.write_text(yaml.safe_dump(data, sort_keys=False))


def test_insecure_tls_is_a_formatted_warning_for_every_command(world: World):
    """plan reports OMNI_TLS_UNVERIFIED as a finding; commands without findings (abort here)
    print one formatted line, never Python's ``file:line: InsecureTLSWarning`` text."""
    insecure_spec(world)
    planned = world.cli("plan", str(world.spec), "-o", str(world.plan))
    assert planned.code == 0, planned.text
    assert "Warning: [OMNI_TLS_UNVERIFIED]" in planned.out
    assert "InsecureTLSWarning" not in planned.text and ".py:" not in planned.err
    aborted = world.cli("abort", "lab", "--spec", str(world.spec), "--auto-approve")
    assert "InsecureTLSWarning" not in aborted.text and ".py:" not in aborted.err, aborted.err
    warnings = [ln for ln in aborted.err.splitlines() if ln.startswith("Warning: ")]
    assert len(warnings) == 1, aborted.err
    assert "TLS certificate verification for Omni at" in warnings[0]
    assert "is OFF" in warnings[0]


def lab_processes_for(directory: Path) -> list[int]:
    """Pids of lab servers whose command line names ``directory`` (read from /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"omniport.lab.server" in argv and str(directory).encode() in argv:
            found.append(int(proc.name))
    return found


def test_the_lab_process_itself_refuses_bad_options_before_it_daemonises(tmp_path):
    """Any caller of ``lab.control.up`` (the demo, tests) gets the same sentence."""
    from omniport.lab import control

    directory = tmp_path / "lab"
    with pytest.raises(control.LabError) as err:
        control.up(directory, control.UpOptions(nodes=2, controlplanes=3))
    assert err.value.message == "--controlplanes must be at least 1 and at most --nodes"
    assert not (directory / control.LAB_JSON).exists()
    assert lab_processes_for(directory) == []


def test_lab_patch_says_when_the_new_config_lands(world: World, tmp_path):
    """Live change: active now. A change Talos applies with a reboot: it lands when the node
    is back, which the message says and ``--wait`` waits for."""
    worker = world.nodes[1]
    lab = ["lab", "patch", "--dir", str(world.dir), worker]
    live = tmp_path / "labels.yaml"
    live.write_text("machine:\n  nodeLabels:\n    team: storage\n")
    now = world.cli(*lab, str(live))
    assert now.code == 0, now.text
    running = {n["address"]: n["config_sha256"] for n in world.status()["nodes"]}
    assert f"Patched {worker} (NO_REBOOT)" in now.out
    assert f"The new config is active now (config sha256 {running[worker]})." in now.out

    rebooting = tmp_path / "env.yaml"
    rebooting.write_text("machine:\n  env:\n    HTTP_PROXY: http://proxy.lab:3128\n")
    later = world.cli(*lab, str(rebooting))
    assert later.code == 0, later.text
    assert f"Patched {worker} (REBOOT)" in later.out
    assert "The node is rebooting: the new config (sha256 " in later.out
    assert f"until then it runs config sha256 {running[worker]}" in later.out
    new = later.out.split("the new config (sha256 ", 1)[1].split(")", 1)[0]

    waited = tmp_path / "env2.yaml"
    waited.write_text("machine:\n  env:\n    HTTP_PROXY: http://proxy2.lab:3128\n")
    done = world.cli(*lab, str(waited), "--wait")
    assert done.code == 0, done.text
    assert "The node rebooted: the new config is active now (sha256 " in done.out
    final = done.out.split("active now (sha256 ", 1)[1].split(")", 1)[0]
    assert final != new
    assert {n["address"]: n["config_sha256"] for n in world.status()["nodes"]}[worker] == final


def test_rollback_backup_accepts_a_moved_zip_only_when_its_hash_matches(world: World, tmp_path):
    world.make_plan()
    before = world.snapshot()
    applied = world.apply()
    assert applied.code == 0, applied.text
    imported = world.snapshot()
    (zip_path,) = world.state.glob("*-backup-*.zip")  # the cluster's state directory
    moved = tmp_path / "elsewhere" / "my-backup.zip"
    moved.parent.mkdir()
    zip_path.rename(moved)

    missing = world.roll_back()
    assert missing.code == 1
    line = one_line(missing.err)
    assert f"the backup {zip_path} named by {world.rollback} is missing" in line
    assert f"`omniport rollback --backup PATH {world.rollback}`" in line
    assert zip_path.name in line

    fifo = tmp_path / "fifo.zip"
    os.mkfifo(fifo)
    forged = tmp_path / "forged.zip"
    forged.write_bytes(moved.read_bytes() + b"\0")  # still a zip, not the one apply wrote
    for wrong, says in (
        (forged, "is not the one apply wrote (its sha256 is"),
        (tmp_path / "nowhere.zip", "is missing"),
        (fifo, "is a FIFO, not a regular file"),  # refused, never waited on
    ):
        refused = world.roll_back("--backup", str(wrong))
        assert refused.code == 1
        line = one_line(refused.err)
        assert f"the backup {wrong} given with --backup {says}" in line, line
        assert "Traceback" not in refused.text
        assert world.snapshot() == imported  # nothing changed

    rolled = world.roll_back("--backup", str(moved))
    assert rolled.code == 0, rolled.text
    assert "Rollback complete!" in rolled.out
    assert_restored(world, before)


def test_a_node_known_unreachable_short_circuits_the_health_check(world: World):
    """Talos's check would poll for the node until its timeout (5 minutes here); plan knows the
    node is unreachable from reading it, so it says so instead of waiting."""
    world.tune(healthCheck={"enabled": True, "timeout": "5m"})
    worker = world.nodes[1]
    world.fault(kind="unreachable", node=worker)
    result = world.cli("plan", str(world.spec), "-o", str(world.plan), "--json", timeout=120)
    assert result.code == 1, result.text
    assert result.seconds < 30, f"plan took {result.seconds:.0f} s"
    events = [json.loads(line) for line in result.out.splitlines() if line.strip()]
    found = {
        e["diagnostic"]["code"]: e["diagnostic"]
        for e in events
        if e.get("type") == "diagnostic" and e.get("diagnostic", {}).get("code")
    }
    assert "NODE_UNREACHABLE" in found
    health = found["HEALTH_CHECK_FAILED"]["summary"]
    assert health == (
        f"the cluster health check was not run: {worker} cannot be reached, and the check "
        "would wait its whole timeout (300s) for it"
    )
