"""``omniport lab up|status|fault|patch|down`` end to end: files, errors, and no process left.

Processes are checked by pid (and, for a lab that failed to start, by scanning /proc for any
process naming its directory), so a leaked lab fails the test that leaked it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from omniport.planner.cli import invocation, run
from tests.conftest import pid_running, stop_by_pid


def processes_naming(directory: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``directory``."""
    found = []
    needle = str(directory).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and pid_running(int(entry.name)):
            found.append(int(entry.name))
    return found


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def lab_dir(tmp_path):
    directory = tmp_path / "lab"
    yield directory
    try:
        info = json.loads((directory / "lab.json").read_text())
    except (OSError, ValueError):
        info = None
    if info:
        stop_by_pid(int(info["pid"]))
    assert processes_naming(directory) == []


def test_up_status_fault_patch_down(lab_dir, capsys, tmp_path):
    # How long `lab up` takes is a figure (bench/apply_scale.py prints lab_up_s), not a test.
    assert run(["lab", "up", "--dir", str(lab_dir), "--nodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "Lab up in" in out
    assert f"Next: {invocation.program()} plan {lab_dir / 'import.yaml'}" in out

    info = json.loads((lab_dir / "lab.json").read_text())
    pid = info["pid"]
    assert pid_running(pid)
    assert set(info["ports"]) >= {"apid", "admin"}
    for name in ("lab.json", "talosconfig", "talosconfig-reader", "import.yaml"):
        mode = stat.S_IMODE((lab_dir / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))

    from omniport.planner.spec import load_spec

    spec = load_spec(lab_dir / "import.yaml")
    assert list(spec.talos.nodes) == [n["address"] for n in info["nodes"]]

    # human status
    assert run(["lab", "status", "--dir", str(lab_dir)]) == 0
    out = capsys.readouterr().out
    for node in info["nodes"]:
        assert node["address"] in out and node["machine_id"] in out
    assert "Omni resources:" in out

    # JSON status: the stable contract
    assert run(["lab", "status", "--dir", str(lab_dir), "--json", "--with-configs"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"nodes", "omni", "factory"}
    keys = {
        "address",
        "hostname",
        "machine_id",
        "role",
        "talos_version",
        "kubernetes_version",
        "config_sha256",
        "connected",
        "maintenance",
        "config",
    }
    assert all(set(n) == keys for n in doc["nodes"])
    assert [n["role"] for n in doc["nodes"]] == ["controlplane", "worker", "worker"]
    assert {n["talos_version"] for n in doc["nodes"]} == {"v1.11.5"}
    assert {n["kubernetes_version"] for n in doc["nodes"]} == {"1.34.1"}
    import hashlib

    for n in doc["nodes"]:
        assert hashlib.sha256(n["config"].encode()).hexdigest() == n["config_sha256"]
    assert isinstance(doc["omni"]["resources"], list)
    assert all(set(r) == {"method", "path", "status"} for r in doc["factory"]["requests"])

    # faults through the CLI
    worker = doc["nodes"][1]["address"]
    assert run(["lab", "fault", "--dir", str(lab_dir), "unreachable", worker]) == 0
    assert f"unreachable: {worker}" in capsys.readouterr().out
    assert run(["lab", "fault", "--dir", str(lab_dir), "latency", "25"]) == 0
    assert run(["lab", "fault", "--dir", str(lab_dir), "apply-fail", "--after", "2"]) == 0
    assert run(["lab", "fault", "--dir", str(lab_dir), "omni-fail", "Create"]) == 0
    assert run(["lab", "fault", "--dir", str(lab_dir), "factory-down"]) == 0
    assert run(["lab", "fault", "--dir", str(lab_dir), "never-connect"]) == 0
    out = capsys.readouterr().out.splitlines()
    last = out[out.index("Active faults:", len(out) - 8) :]
    assert "  latency: 25 ms on every call" in last
    assert "  ApplyConfiguration fails on every node after 2 call(s)" in last
    assert "  Omni Create fails for every type (code 14)" in last
    assert "  Image Factory is down" in last and "  nodes never connect to Omni" in last
    assert run(["lab", "fault", "--dir", str(lab_dir), "omni-fail", "Nope"]) == 1
    assert "'method' must be one of" in one_line_error(capsys)
    assert run(["lab", "fault", "--dir", str(lab_dir), "unreachable", "10.0.0.1"]) == 1
    assert "no node '10.0.0.1'" in one_line_error(capsys)
    assert run(["lab", "fault", "--dir", str(lab_dir), "clear"]) == 0
    assert "Active faults: none" in capsys.readouterr().out
    cp = doc["nodes"][0]["address"]
    fault = ["lab", "fault", "--dir", str(lab_dir)]
    assert run([*fault, "service-unhealthy", cp, "etcd"]) == 0
    assert run([*fault, "etcd-learner", cp]) == 0
    assert run([*fault, "etcd-stale-member", "gone-cp-9"]) == 0
    out = capsys.readouterr().out
    assert f"  unhealthy on {cp}: etcd" in out
    assert f"  etcd learner: {cp}" in out and "  stale etcd member: gone-cp-9" in out
    assert run([*fault, "etcd-learner", cp, "--clear"]) == 0
    assert f"etcd learner: {cp}" not in capsys.readouterr().out
    assert run([*fault, "service-unhealthy", "10.0.0.1", "etcd"]) == 1
    assert "no node '10.0.0.1'" in one_line_error(capsys)
    assert run([*fault, "schematic", worker, "missing"]) == 0
    assert run([*fault, "schematic", cp, "edited"]) == 0
    out = capsys.readouterr().out
    assert f"  schematic content missing on {worker}" in out
    assert f"  schematic content edited on {cp}" in out
    assert run([*fault, "schematic", worker, "--clear"]) == 0
    out = capsys.readouterr().out
    assert f"on {worker}" not in out and f"  schematic content edited on {cp}" in out
    assert run([*fault, "schematic", worker]) == 1
    assert "needs a 'node' and a 'content': 'missing' or 'edited'" in one_line_error(capsys)
    assert run([*fault, "schematic", worker, "gone"]) == 1
    assert "'gone' is not one of 'missing', 'edited'" in one_line_error(capsys)
    assert run([*fault, "health", "not-ready", "--node", worker]) == 0
    assert run([*fault, "health", "cancelled"]) == 0
    out = capsys.readouterr().out
    assert f"  Kubernetes Node not ready: {worker}" in out
    assert "  the health check is cancelled halfway" in out
    assert run([*fault, "kubelet-lag", worker, "ghcr.io/siderolabs/kubelet:v1.30.0"]) == 0
    assert run([*fault, "system-patch"]) == 0
    out = capsys.readouterr().out
    assert f"  KubeletConfig on {worker} reports ghcr.io/siderolabs/kubelet:v1.30.0" in out
    assert "  Omni adds a system config patch to every cluster" in out
    assert run([*fault, "kubelet-lag", worker]) == 1
    assert "needs a 'node' and an 'image'" in one_line_error(capsys)
    assert run([*fault, "health", "not-ready"]) == 1
    assert "a not-ready health fault needs a 'node'" in one_line_error(capsys)
    assert run([*fault, "one-to-many", "refused"]) == 0
    assert run([*fault, "one-to-many", "dropped", "--node", worker]) == 0
    out = capsys.readouterr().out
    assert "  apid refuses one-to-many calls (the nodes metadata)" in out
    assert f"  one-to-many replies leave out {worker}" in out
    assert run([*fault, "one-to-many", "dropped"]) == 1
    assert "a dropped one-to-many fault needs a 'node'" in one_line_error(capsys)
    assert run([*fault, "one-to-many", "refused", "--clear"]) == 0
    assert "apid refuses" not in capsys.readouterr().out
    omni_update = ["omni-fail", "Update", "--type", "Clusters.omni.sidero.dev", "--code", "7"]
    assert run([*fault, *omni_update]) == 0
    assert run([*fault, "join", worker, "--problem", "refused"]) == 0
    out = capsys.readouterr().out
    assert "  Omni Update fails for Clusters.omni.sidero.dev (code 7)" in out
    assert f"  join refused for {worker}" in out
    assert run([*fault, "clear"]) == 0
    assert "Active faults: none" in capsys.readouterr().out

    # patch as talosctl patch machineconfig would
    patch = tmp_path / "labels.yaml"
    patch.write_text("machine:\n  nodeLabels:\n    team: storage\n")
    assert run(["lab", "patch", "--dir", str(lab_dir), worker, str(patch)]) == 0
    out = capsys.readouterr().out
    assert f"Patched {worker} (NO_REBOOT)" in out
    after = {n["address"]: n for n in json.loads(_status_json(lab_dir, capsys))["nodes"]}
    assert after[worker]["config_sha256"] != doc["nodes"][1]["config_sha256"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("machine:\n  nodeLabels: [not, a, map]\n")
    assert run(["lab", "patch", "--dir", str(lab_dir), worker, str(bad)]) == 1
    assert worker in one_line_error(capsys)

    # busy directory
    assert run(["lab", "up", "--dir", str(lab_dir)]) == 1
    err = one_line_error(capsys)
    assert f"is in use by a running lab (pid {pid})" in err and "lab down" in err

    # down: stopped by pid, lab.json gone, nothing left
    assert run(["lab", "down", "--dir", str(lab_dir)]) == 0
    assert f"(pid {pid})" in capsys.readouterr().out
    assert not pid_running(pid)
    assert not (lab_dir / "lab.json").exists()
    assert processes_naming(lab_dir) == []
    assert run(["lab", "down", "--dir", str(lab_dir)]) == 1
    assert "no lab in" in one_line_error(capsys)
    assert run(["lab", "status", "--dir", str(lab_dir)]) == 1
    assert "lab up --dir" in one_line_error(capsys)


def _status_json(lab_dir: Path, capsys) -> str:
    assert run(["lab", "status", "--dir", str(lab_dir), "--json"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--nodes", "2", "--controlplanes", "3"], "--controlplanes must be"),
        (["--talos-version", "banana"], "--talos-version 'banana' is not a version"),
        (
            ["--talos-version", "v1.9.5", "--initial-talos-version", "v1.11.0"],
            "is newer than --talos-version",
        ),
        (["--talos-version", "v1.2.0", "--initial-talos-version", "v1.2.0"], "not supported"),
        (["--node-talos-version", "10.9.9.9=v1.10.0"], "no node 10.9.9.9 in this lab"),
        (["--node-talos-version", "nonsense"], "'nonsense' is not ADDRESS=VERSION"),
        (["--omni-version", "banana"], "--omni-version: "),
    ],
    ids=[
        "controlplanes",
        "bad-version",
        "initial-newer",
        "unsupported-contract",
        "node-version-address",
        "node-version-form",
        "omni-version",
    ],
)
def test_bad_options_fail_in_one_line_and_leave_nothing(lab_dir, capsys, args, text):
    """Checked before a process or DIR exists (issue 15 item 10): no lab.log to point at."""
    assert run(["lab", "up", "--dir", str(lab_dir), *args]) == 1
    err = one_line_error(capsys)
    assert text in err and "nothing was started" in err and "lab.log" not in err
    assert not lab_dir.exists() or not any(lab_dir.iterdir())
    deadline = time.monotonic() + 5
    while processes_naming(lab_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_naming(lab_dir) == []


def test_down_after_the_process_died_cleans_up(lab_dir, capsys):
    assert run(["lab", "up", "--dir", str(lab_dir), "--nodes", "1"]) == 0
    pid = json.loads((lab_dir / "lab.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    capsys.readouterr()
    assert run(["lab", "status", "--dir", str(lab_dir)]) == 1
    assert f"pid {pid} is gone" in one_line_error(capsys)
    assert run(["lab", "down", "--dir", str(lab_dir)]) == 0
    assert "was not running" in capsys.readouterr().out
    assert not (lab_dir / "lab.json").exists()
    # the directory is free again
    assert run(["lab", "up", "--dir", str(lab_dir), "--nodes", "1"]) == 0
    assert run(["lab", "down", "--dir", str(lab_dir)]) == 0


def test_status_of_a_directory_without_lab(tmp_path, capsys):
    assert run(["lab", "status", "--dir", str(tmp_path)]) == 1
    assert "no lab in" in one_line_error(capsys)


def test_up_with_latency_slows_every_call(lab_dir, capsys, aio):
    assert run(["lab", "up", "--dir", str(lab_dir), "--nodes", "1", "--latency-ms", "250"]) == 0
    assert run(["lab", "fault", "--dir", str(lab_dir), "show"]) == 0
    assert "latency: 250 ms on every call" in capsys.readouterr().out
    from omniport.providers.talos import TalosClient

    async def timed():
        async with TalosClient.from_talosconfig(lab_dir / "talosconfig") as client:
            start = time.monotonic()
            await client.version(None)
            return time.monotonic() - start

    assert aio(timed()) >= 0.25
    assert run(["lab", "down", "--dir", str(lab_dir)]) == 0
