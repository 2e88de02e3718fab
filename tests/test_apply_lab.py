"""plan -> apply -> rollback against the lab, over real sockets, as a user runs them.

Each test starts its own lab (they all change it) and stops it by pid afterwards.
"""

from __future__ import annotations

import json
import os
import pty
import re
import stat
import subprocess
import sys
import time
import zipfile

from omniport.planner import planfile
from omniport.planner.changes import OWNER_ANNOTATION
from omniport.planner.execute.secrets import config_secrets
from tests.reliability.labkit import REPO, World, assert_restored

LOCKED = "omni.sidero.dev/cluster-locked"
IMPORTING = "omni.sidero.dev/cluster-import-is-in-progress"


TICKER = re.compile(r"^.*\.\.\. \[\d+s elapsed\]")
"""planner/progress.py's re-announcement of a slow wait: printed only when this machine is slow."""


def one_line(text: str) -> str:
    """The one line ``text`` says (progress re-announcements aside)."""
    lines = [line for line in text.strip().splitlines() if line.strip() and not TICKER.match(line)]
    assert len(lines) == 1, text
    return lines[0]


def resources(status: dict, kind: str) -> dict[str, dict]:
    return {r["id"]: r for r in status["omni"]["resources"] if r["type"] == kind}


def test_plan_apply_rollback_round_trip(world: World):
    before = world.snapshot()
    planned = world.cli("plan", str(world.spec))
    assert planned.code == 0, planned.text
    plan = planfile.read(world.plan)

    applied = world.apply()
    assert applied.code == 0, applied.text
    assert "Apply complete! Resources:" in applied.out
    # backup, rollback plan, journal and lock: in the cluster's state directory, not beside
    # the spec (issue 15, item 6); folders 0700 (issue 16, item 2)
    backups = list(world.state.glob("*.zip"))
    assert len(backups) == 1
    assert not list(world.dir.glob("*.zip")) and not (world.dir / "backups").exists()
    assert not list(world.dir.glob("*.rollback.json")) and not list(world.dir.glob("*.jsonl"))
    for folder in (world.state, world.state.parent, world.state.parent.parent):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
    assert [p.name for p in world.state.glob("*.lock")], "the lock is in the state directory"
    backup = backups[0]
    assert re.fullmatch(rf"{plan.cluster.name}-backup-\d{{8}}-\d{{6}}\.zip", backup.name)
    for path in (backup, world.rollback, world.journal):
        assert str(path) in applied.out, path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path

    # the backup: omnictl's layout, the exact bytes each node held
    with zipfile.ZipFile(backup) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    assert entries == {
        f"{n.hostname}-{n.address}.yaml": before.configs[n.address] for n in plan.nodes
    }

    # every node connected, Omni holds exactly the planned resources, the cluster locked
    joined = world.snapshot()
    status = world.status()
    assert all(n["connected"] for n in status["nodes"])
    import_id = json.loads(world.rollback.read_text())["import_id"]
    planned_ids: dict[str, set[str]] = {}
    for change in plan.changes:
        planned_ids.setdefault(change.resource_type, set()).add(change.resource_id)
    cluster = resources(status, "Clusters.omni.sidero.dev")[plan.cluster.name]
    assert LOCKED in cluster["annotations"] and IMPORTING in cluster["annotations"]
    for kind in (
        "Clusters.omni.sidero.dev",
        "MachineSets.omni.sidero.dev",
        "MachineSetNodes.omni.sidero.dev",
        "ConfigPatches.omni.sidero.dev",
    ):
        held = resources(status, kind)
        assert set(held) == planned_ids[kind], kind
        assert all(r["annotations"][OWNER_ANNOTATION] == import_id for r in held.values())
    uuids = {n.machine_uuid for n in plan.nodes}
    assert set(resources(status, "ClusterMachines.omni.sidero.dev")) == uuids
    assert set(resources(status, "Links.omni.sidero.dev")) == uuids

    # the journal: JSON Lines, begin ... complete, every step started and ended
    records = world.records()
    assert records[0]["event"] == "begin" and records[-1]["event"] == "complete"
    starts = [r["step"] for r in records if r["event"] == "start"]
    ends = [r["step"] for r in records if r["event"] == "end"]
    assert starts == ends or sorted(starts) == sorted(ends)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))

    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert "Rollback complete!" in rolled.out
    assert_restored(world, before)
    assert not any(n["connected"] for n in world.status()["nodes"])

    # no secret of any node config, nor the join token, in any output or file we wrote
    secrets: set[str] = set()
    for config in [*before.configs.values(), *joined.configs.values()]:
        secrets |= config_secrets(config)
    token = re.search(rb"jointoken=([A-Za-z0-9_\-]+)", next(iter(joined.configs.values())))
    assert token, "the applied config holds the join URL"
    secrets.add(token.group(1).decode())
    texts = [planned.text, applied.text, rolled.text] + [
        p.read_text() for p in (world.journal, world.rollback, world.plan)
    ]
    leaked = {s for s in secrets for t in texts if s in t}
    assert not leaked, f"{len(leaked)} secret(s) leaked"


def test_json_lines_events(world: World):
    world.make_plan()
    applied = world.cli("apply", "--auto-approve", "--json", str(world.plan))
    assert applied.code == 0, applied.text
    events = [json.loads(line) for line in applied.out.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "version"
    for kind in ("apply_start", "apply_progress", "apply_complete", "change_summary"):
        assert kind in kinds, kind
    summary = [e for e in events if e["type"] == "change_summary"][-1]
    assert summary["changes"]["operation"] == "apply" and summary["changes"]["add"] > 0
    for e in events:
        assert {"@level", "@message", "@module", "@timestamp", "type"} <= set(e)
    progress = [e for e in events if e["type"] == "apply_progress"]
    assert any(e["hook"].get("total") == len(world.nodes) for e in progress)
    assert all("elapsed_seconds" in e["hook"] for e in progress)

    rolled = world.cli("rollback", "--auto-approve", "--json", str(world.rollback))
    assert rolled.code == 0, rolled.text
    events = [json.loads(line) for line in rolled.out.splitlines()]
    assert events[0]["type"] == "version"
    assert events[-1]["type"] == "change_summary"
    assert events[-1]["changes"]["operation"] == "rollback"


def test_stale_plan_is_refused_naming_the_node(world: World):
    world.make_plan()
    node = world.nodes[1]
    world.patch(node, "machine:\n  sysctls:\n    net.ipv4.ip_forward: '1'\n")
    before = world.snapshot()
    result = world.apply()
    assert result.code == 1
    line = one_line(result.err)
    assert f"node {node}'s config changed since the plan" in line
    assert "run `omniport plan` again" in line
    assert world.snapshot() == before
    assert not world.rollback.exists() and not list(world.state.glob("*.zip"))


def test_tampered_plan_is_refused(world: World):
    world.make_plan()
    raw = bytearray(world.plan.read_bytes())
    at = raw.index(b'"kubernetes_version": "') + len(b'"kubernetes_version": "')
    raw[at] = ord("9") if raw[at] != ord("9") else ord("8")  # one byte
    world.plan.write_bytes(bytes(raw))
    before = world.snapshot()
    result = world.apply()
    assert result.code == 1
    assert "was modified after it was written (checksum mismatch)" in one_line(result.err)
    assert world.snapshot() == before and not world.rollback.exists()


def test_concurrent_apply_fails_fast_naming_the_holder(world: World):
    world.make_plan()
    before = world.snapshot()
    world.fault(kind="latency", ms=150)
    first = world.popen("apply", "--auto-approve", str(world.plan))
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size for p in world.state.glob("*.lock")):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    second = world.apply()
    assert second.code == 1 and second.seconds < 10
    line = one_line(second.err)
    assert "is locked by another omniport run (apply by" in line
    assert f"pid {first.pid}" in line
    out, err = first.communicate(timeout=180)
    assert first.returncode == 0, out + err
    world.fault(kind="clear")
    assert world.roll_back().code == 0
    assert_restored(world, before)


def test_apply_without_a_terminal_needs_auto_approve(world: World):
    world.make_plan()
    before = world.snapshot()
    result = world.cli("apply", str(world.plan))
    assert result.code == 1
    assert "no terminal to ask on" in one_line(result.err)
    assert world.snapshot() == before


def _apply_on_a_terminal(world: World, answer: str) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "omniport.planner.cli", "apply", str(world.plan)],
        cwd=REPO,
        env=world.env,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    os.close(slave)
    buffer = b""
    assert proc.stdout is not None
    while b"Enter a value:" not in buffer:
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, buffer.decode()
        buffer += chunk
    os.write(master, answer.encode() + b"\n")
    rest, _ = proc.communicate(timeout=180)
    os.close(master)
    return proc.returncode, (buffer + rest).decode()


def test_only_yes_approves(world: World):
    world.make_plan()
    before = world.snapshot()
    code, out = _apply_on_a_terminal(world, "y")
    assert code == 1 and "Apply cancelled." in out
    assert "Only 'yes' will be accepted to approve." in out
    assert "Plan:" in out  # the plan was shown before the question
    assert world.snapshot() == before
    code, out = _apply_on_a_terminal(world, "yes")
    assert code == 0, out
    assert "Apply complete!" in out
    assert world.roll_back().code == 0
    assert_restored(world, before)


def test_no_rollback_keeps_what_succeeded_and_names_the_command(world: World):
    world.make_plan()
    before = world.snapshot()
    world.fault(kind="apply-failure", node=world.nodes[0])
    result = world.apply("--no-rollback")
    world.fault(kind="clear")
    assert result.code == 1
    assert f"omniport rollback {world.rollback}" in result.out
    assert world.snapshot().extra_resources(before), "the Omni resources were kept"
    rolled = world.roll_back()
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)
