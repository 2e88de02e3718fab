"""How ``omniport apply`` and ``omniport rollback`` scale: wall time against the latency floor.

For every (nodes, latency) pair a fresh lab is started (``lab up --nodes N --latency-ms L``), its
spec gets ``apply.parallelism: P`` (so apply and rollback connect and restore P nodes at once)
and the plan-only health check is switched off (apply never runs it), then three child
processes run: ``plan``, ``apply --auto-approve --json --parallelism P`` and
``rollback --auto-approve --json``; the lab is stopped by its pid even when a step fails.
Each child's wall time, CPU time and peak RSS (``ru_maxrss`` of that one child, from
``os.wait4``) are recorded; the JSON Lines events of apply and rollback split the wall time into
phases (address prefixes of the journaled steps). Prints one JSON document. From the repo root:

    python bench/apply_scale.py                                        # 10,100,1000 x 0,20 ms
    python bench/apply_scale.py --nodes 10,100 --latency 0,20 --parallelism 10   # quick

The latency floor: the lab sleeps ``L`` in every Talos and Omni call on the server side (not in
TCP/TLS handshakes, not in Image Factory requests), so a run waits at least
``round trips on its critical path x L``. The round trips are counted from the code of
``planner/execute/apply.py`` and ``planner/execute/rollback.py`` phase by phase (see
APPLY_FLOOR and ROLLBACK_FLOOR below; the output prints each formula with its counts).
``ratio`` = wall / floor; ``latency_cost_ratio`` = (wall at L - wall at 0 ms, same nodes) /
floor, i.e. how much more than the floor the latency actually cost (1.0 = every round trip
overlapped as the model says).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omniport.lab import control  # noqa: E402
from omniport.planner.discover import DEFAULT_PARALLELISM as READ_PARALLELISM  # noqa: E402

CHECK_PARALLELISM = 50
"""``planner/execute/rollback.py`` ``check_target``: reads every node behind ``Semaphore(50)``."""

TARGET_RATIO = 1.5
"""Issue 7: apply at 1000 nodes within 1.5x its latency floor."""


# ---- the floor model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One phase of a run: its name (as in the phase timings), formula and round trips."""

    phase: str
    formula: str
    count: Callable[[dict[str, int], int], int]


def _c(n: int, p: int) -> int:
    return math.ceil(n / p) if n > 0 else 0


APPLY_FLOOR: tuple[Term, ...] = (
    Term(
        "recheck",
        f"ceil(nodes/{READ_PARALLELISM}) + 1: discover() again, one round trip per batch of "
        f"{READ_PARALLELISM} nodes (members read alongside), then Omni's settings",
        lambda k, p: _c(k["nodes"], READ_PARALLELISM) + 1,
    ),
    Term("write_ahead", "0: backup zip and rollback plan, local files", lambda k, p: 0),
    Term("omni_imported_cluster_secrets", "1: Create ImportedClusterSecrets", lambda k, p: 1),
    Term("omni_cluster", "1: Create Cluster", lambda k, p: 1),
    Term(
        "omni_machine_set",
        "machine_sets: one Create after the other",
        lambda k, p: k["machine_sets"],
    ),
    Term(
        "omni_machine_set_node",
        "ceil(machine_set_nodes/P): Creates, P at once",
        lambda k, p: _c(k["machine_set_nodes"], p),
    ),
    Term(
        "omni_config_patch",
        "ceil(config_patches/P): Creates, P at once",
        lambda k, p: _c(k["config_patches"], p),
    ),
    Term(
        "talos_join",
        "2 + 2 x ceil((joins-1)/P): canary (Get MachineConfig, ApplyConfiguration), then "
        "the rest P at once, each a Get and an ApplyConfiguration",
        lambda k, p: 2 + 2 * _c(k["joins"] - 1, p),
    ),
    Term(
        "omni_wait_connected",
        "1: one poll (List Machines and List ClusterMachines together) when all are connected",
        lambda k, p: 1,
    ),
    Term(
        "omniport_verify",
        f"ceil(nodes/max(P, {READ_PARALLELISM})) + 1: Get MachineConfig per node (reads, so "
        f"as wide as discovery); then Get Cluster and List MachineSets, MachineSetNodes, "
        "ConfigPatches together",
        lambda k, p: _c(k["nodes"], max(p, READ_PARALLELISM)) + 1,
    ),
)

ROLLBACK_FLOOR: tuple[Term, ...] = (
    Term(
        "check",
        f"2 x ceil(nodes/{CHECK_PARALLELISM}) + 2: check_target reads SystemInformation then "
        f"MachineConfig per node, {CHECK_PARALLELISM} at once; Get Cluster, Get ClusterStatus",
        lambda k, p: 2 * _c(k["nodes"], CHECK_PARALLELISM) + 2,
    ),
    Term(
        "talos_join",
        "3 x ceil(restores/P): per node Get MachineConfig, ApplyConfiguration, Get to verify",
        lambda k, p: 3 * _c(k["restores"], p),
    ),
    Term(
        "omni_cluster",
        "7: Get Cluster, 3 Lists, Get ClusterStatus, Teardown, Watch until destroyed (the "
        "cluster is tainted by the import, so no unlock/relock)",
        lambda k, p: 7,
    ),
    Term(
        "omni_config_patch",
        "ceil(config_patches/P): a Get each (gone with the cluster)",
        lambda k, p: _c(k["config_patches"], p),
    ),
    Term(
        "omni_machine_set_node",
        "ceil(machine_set_nodes/P): a Get each",
        lambda k, p: _c(k["machine_set_nodes"], p),
    ),
    Term(
        "omni_machine_set",
        "ceil(machine_sets/P): a Get each",
        lambda k, p: _c(k["machine_sets"], p),
    ),
    Term(
        "omni_imported_cluster_secrets",
        "1: Destroy ImportedClusterSecrets",
        lambda k, p: 1,
    ),
    Term(
        "omni_link",
        "1 + 3 x ceil(links/P): one List of Links, then per Link Get, Teardown, Watch until "
        "destroyed",
        lambda k, p: (1 if k["links"] else 0) + 3 * _c(k["links"], p),
    ),
    Term(
        "leftovers",
        "1: Get Cluster, 3 Lists and a List of Links, together",
        lambda k, p: 1,
    ),
)


def floor(terms: tuple[Term, ...], counts: dict[str, int], p: int) -> dict[str, int]:
    return {t.phase: t.count(counts, p) for t in terms}


# ---- processes ------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    extra = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + extra if extra else "")
    env["NO_COLOR"] = "1"
    return env


@dataclass
class Child:
    code: int
    wall: float
    started: float  # time.time() at spawn, to align with the events' @timestamp
    cpu: float
    peak_rss_mib: float
    stdout: Path
    stderr: Path
    samples: list[tuple[float, float, float]]
    """(time.time(), the child's CPU seconds, the lab's CPU seconds), every 20 ms."""

    def error(self) -> str:
        lines = self.stderr.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {self.code}"

    def cpu_between(self, a: float, b: float) -> tuple[float, float]:
        """CPU seconds (the child's, the lab's) spent between two instants (20 ms grain)."""

        def at(t: float) -> tuple[float, float]:
            i = bisect.bisect_right(self.samples, (t, math.inf, math.inf)) - 1
            return self.samples[max(i, 0)][1:]

        (c0, l0), (c1, l1) = at(a), at(b)
        return c1 - c0, l1 - l0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a running (or not yet reaped) process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(args: list[str], out: Path, timeout: float, lab_pid: int) -> Child:
    """Run ``python -m omniport.planner.cli ARGS`` to completion, sampling its CPU and the lab's;
    the child is killed by its pid on timeout or ^C."""
    err = out.with_suffix(".stderr")
    samples: list[tuple[float, float, float]] = []
    with open(out, "wb") as so, open(err, "wb") as se:
        started = time.time()
        t0 = time.perf_counter()
        samples.append((started, 0.0, cpu_seconds(lab_pid)))
        proc = subprocess.Popen(
            [sys.executable, "-m", "omniport.planner.cli", *args],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=so,
            stderr=se,
        )
        try:
            while True:
                try:
                    samples.append((time.time(), cpu_seconds(proc.pid), cpu_seconds(lab_pid)))
                except OSError:
                    pass
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError(f"{' '.join(args[:1])} ran longer than {timeout:g} s")
                time.sleep(0.02)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    wall = time.perf_counter() - t0
    cpu = usage.ru_utime + usage.ru_stime
    samples.append((started + wall, cpu, cpu_seconds(lab_pid)))
    samples.sort()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Child(
        code=proc.returncode,
        wall=wall,
        started=started,
        cpu=cpu,
        peak_rss_mib=usage.ru_maxrss / 1024.0,
        stdout=out,
        stderr=err,
        samples=samples,
    )


def peak_rss_mib(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return None


def fsync_ms(directory: Path, samples: int = 50) -> float:
    """Median cost of one journal-sized append + fsync in ``directory`` (what each record pays)."""
    path = directory / ".fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for i in range(samples):
            t0 = time.perf_counter()
            os.write(fd, b'{"seq": %d, "event": "start", "step": "probe"}\n' % i)
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return statistics.median(times) * 1000.0


def stop_lab(directory: Path, pid: int) -> None:
    """``lab down``; if that fails, SIGTERM then SIGKILL the pid this bench started."""
    try:
        control.down(directory)
    except Exception as exc:  # noqa: BLE001 - the lab must not outlive the bench
        print(f"lab down failed ({exc}); stopping pid {pid}", file=sys.stderr)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not control.pid_alive(pid):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while control.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


# ---- events -> phases -----------------------------------------------------------------------

STEP_EVENTS = ("apply_start", "apply_progress", "apply_complete", "apply_errored")


def _events(path: Path) -> list[tuple[float, dict[str, Any]]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        ev = json.loads(line)
        out.append((datetime.fromisoformat(ev["@timestamp"]).timestamp(), ev))
    return out


def phases(
    child: Child, before_steps: tuple[str, str], after_steps: str
) -> dict[str, tuple[float, float]]:
    """(start, end) instants per phase: start-up, the part before the first step (split at the
    first ``planned_change``), each step kind (first start to last end, by address prefix),
    the part after the last step, and exit."""
    events = _events(child.stdout)
    if not events:
        return {}
    end = child.started + child.wall
    out: dict[str, tuple[float, float]] = {"startup": (child.started, events[0][0])}
    steps = [(t, ev) for t, ev in events if ev["type"] in STEP_EVENTS]
    first_step = steps[0][0] if steps else events[-1][0]
    split = next((t for t, ev in events if ev["type"] == "planned_change"), first_step)
    out[before_steps[0]] = (events[0][0], split)
    out[before_steps[1]] = (split, first_step)
    spans: dict[str, list[float]] = {}
    for t, ev in steps:
        prefix = ev["hook"]["resource"]["addr"].split(".", 1)[0]
        span = spans.setdefault(prefix, [t, t])
        span[1] = t
    for prefix, (a, b) in spans.items():
        out[prefix] = (a, b)
    last_step = steps[-1][0] if steps else first_step
    summary = next(
        (t for t, ev in events if ev["type"] == "change_summary" and t >= last_step), last_step
    )
    out[after_steps] = (last_step, summary)
    out["finish_and_exit"] = (summary, end)
    return out


# ---- one configuration ----------------------------------------------------------------------


def counts_from(plan: dict[str, Any], rollback: dict[str, Any] | None) -> dict[str, int]:
    by_type: dict[str, int] = {}
    for change in plan["changes"]:
        kind = change["resource_type"].split(".", 1)[0]
        by_type[kind] = by_type.get(kind, 0) + 1
    nodes = len(plan["nodes"])
    return {
        "nodes": nodes,
        "controlplanes": sum(1 for n in plan["nodes"] if n["role"] == "controlplane"),
        "machine_sets": by_type.get("MachineSets", 0),
        "machine_set_nodes": by_type.get("MachineSetNodes", 0),
        "config_patches": by_type.get("ConfigPatches", 0),
        "joins": by_type.get("MachineConfigs", 0),
        "links": len(rollback["links"]) if rollback else nodes,
        "restores": nodes,
    }


def measured(
    child: Child,
    spans: dict[str, tuple[float, float]],
    model: dict[str, int],
    latency_ms: float,
    records: int,
    fsync: float,
) -> dict[str, Any]:
    rtts = sum(model.values())
    floor_s = rtts * latency_ms / 1000.0
    _, lab_cpu = child.cpu_between(child.started, child.started + child.wall)

    def phase(name: str, a: float, b: float) -> dict[str, Any]:
        cpu, lab = child.cpu_between(a, b)
        out: dict[str, Any] = {
            "wall_s": round(b - a, 3),
            "cpu_s": round(cpu, 2),
            "lab_cpu_s": round(lab, 2),
        }
        if name in model:
            out["floor_round_trips"] = model[name]
            out["floor_s"] = round(model[name] * latency_ms / 1000.0, 3)
        return out

    return {
        "exit_code": child.code,
        "wall_s": round(child.wall, 3),
        "floor_round_trips": rtts,
        "floor_s": round(floor_s, 3),
        "ratio": round(child.wall / floor_s, 2) if floor_s else None,
        # wall over the largest cost this machine cannot avoid: latency, our CPU, the lab's CPU
        "bound_ratio": round(child.wall / max(floor_s, child.cpu, lab_cpu), 2)
        if max(floor_s, child.cpu, lab_cpu) > 0
        else None,
        "cpu_s": round(child.cpu, 3),
        "peak_rss_mib": round(child.peak_rss_mib, 1),
        "lab_cpu_s": round(lab_cpu, 3),
        "journal_records": records,
        "journal_fsync_s_est": round(records * fsync / 1000.0, 3),
        "phases": {name: phase(name, a, b) for name, (a, b) in spans.items()},
    }


def _journal_lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


def one(
    nodes: int, latency_ms: float, p: int, controlplanes: int, timeout: float, keep: bool
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"apply-scale-{nodes}-{latency_ms:g}-"))
    lab_dir = work / "lab"
    result: dict[str, Any] = {"nodes": nodes, "latency_ms": latency_ms, "ok": False}
    t0 = time.perf_counter()
    info = control.up(
        lab_dir,
        control.UpOptions(
            nodes=nodes, controlplanes=min(controlplanes, nodes), latency_ms=latency_ms
        ),
    )
    lab_pid = int(info["pid"])
    result["lab_up_s"] = round(time.perf_counter() - t0, 3)
    try:
        spec_path = lab_dir / "import.yaml"
        text = spec_path.read_text()
        header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
        spec = yaml.safe_load(text)
        spec.setdefault("apply", {})["parallelism"] = p
        spec.setdefault("healthCheck", {})["enabled"] = False
        spec_path.write_text(header + yaml.safe_dump(spec, sort_keys=False))
        before = {n["address"]: n["config_sha256"] for n in control.status(lab_dir)["nodes"]}

        plan_path = lab_dir / "import.plan.json"
        planned = run_child(
            ["plan", str(spec_path), "-o", str(plan_path), "--json", "--detailed-exitcode"],
            work / "plan.jsonl",
            timeout,
            lab_pid,
        )
        result["plan"] = {
            "exit_code": planned.code,
            "wall_s": round(planned.wall, 3),
            "peak_rss_mib": round(planned.peak_rss_mib, 1),
        }
        if planned.code != 2:
            result["error"] = f"plan: {planned.error()}"
            return result
        plan = json.loads(plan_path.read_text())

        fsync = fsync_ms(lab_dir)
        result["fsync_ms"] = round(fsync, 3)
        # apply's state (journal, rollback plan, backup) goes to this run's own directory,
        # which the children inherit, not to the user's ~/.local/state/omniport
        os.environ["OMNIPORT_STATE_DIR"] = str(work / "state")
        state = work / "state" / str(info["cluster"])
        journal = state / "import.plan.journal.jsonl"
        rollback_file = state / "import.plan.rollback.json"
        applied = run_child(
            ["apply", "--auto-approve", "--json", "--parallelism", str(p), str(plan_path)],
            work / "apply.jsonl",
            timeout,
            lab_pid,
        )
        rollback = json.loads(rollback_file.read_text()) if rollback_file.exists() else None
        counts = counts_from(plan, rollback)
        result["counts"] = counts
        apply_records = _journal_lines(journal)
        result["apply"] = measured(
            applied,
            phases(applied, ("recheck", "write_ahead"), "complete"),
            floor(APPLY_FLOOR, counts, p),
            latency_ms,
            apply_records,
            fsync,
        )
        if applied.code != 0:
            result["error"] = f"apply: {applied.error()}"
            return result

        rolled = run_child(
            ["rollback", "--auto-approve", "--json", str(rollback_file)],
            work / "rollback.jsonl",
            timeout,
            lab_pid,
        )
        result["rollback"] = measured(
            rolled,
            phases(rolled, ("check", "confirm"), "leftovers"),
            floor(ROLLBACK_FLOOR, counts, p),
            latency_ms,
            _journal_lines(journal) - apply_records,
            fsync,
        )
        if rolled.code != 0:
            result["error"] = f"rollback: {rolled.error()}"
            return result
        after = control.status(lab_dir)["nodes"]
        changed = [n["address"] for n in after if before.get(n["address"]) != n["config_sha256"]]
        connected = [n["address"] for n in after if n.get("connected")]
        result["restored_byte_identical"] = not changed and not connected
        if changed or connected:
            result["error"] = (
                f"rollback left {len(changed)} changed and {len(connected)} connected node(s)"
            )
            return result
        result["ok"] = True
        return result
    finally:
        try:
            result["lab_peak_rss_mib"] = round(peak_rss_mib(lab_pid) or 0.0, 1)
        except OSError:
            pass
        stop_lab(lab_dir, lab_pid)
        if result["ok"] and not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            result["workdir"] = str(work)


# ---- main -----------------------------------------------------------------------------------


def _list(text: str, kind: Callable[[str], Any]) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="10,100,1000", help="comma-separated node counts")
    parser.add_argument("--latency", default="0,20", help="comma-separated latencies in ms")
    parser.add_argument("--parallelism", type=int, default=10, help="apply.parallelism (P)")
    parser.add_argument("--controlplanes", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per command, seconds")
    parser.add_argument("--keep", action="store_true", help="keep every work directory")
    args = parser.parse_args()
    if not 1 <= args.parallelism <= 1000:
        parser.error("--parallelism must be within 1..1000 (the spec's limits)")
    load_start = [round(x, 2) for x in os.getloadavg()]
    runs = []
    for nodes in _list(args.nodes, int):
        for latency in _list(args.latency, float):
            print(f"apply_scale: {nodes} nodes, {latency:g} ms…", file=sys.stderr, flush=True)
            runs.append(
                one(nodes, latency, args.parallelism, args.controlplanes, args.timeout, args.keep)
            )
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    base = {r["nodes"]: r for r in runs if r["latency_ms"] == 0 and r["ok"]}
    for r in runs:
        zero = base.get(r["nodes"])
        if zero is None or not r["ok"] or r["latency_ms"] == 0:
            continue
        for op in ("apply", "rollback"):
            fig = r[op]
            fig["latency_cost_ratio"] = round(
                (fig["wall_s"] - zero[op]["wall_s"]) / fig["floor_s"], 2
            )
            fig["latency_round_trips_observed"] = round(
                (fig["wall_s"] - zero[op]["wall_s"]) / (r["latency_ms"] / 1000.0)
            )
            for name, phase in fig["phases"].items():
                was = zero[op]["phases"].get(name)
                if phase.get("floor_s") and was is not None:
                    added = phase["wall_s"] - was["wall_s"]
                    phase["latency_cost_ratio"] = round(added / phase["floor_s"], 2)
    at_target = [
        r["apply"]["ratio"] for r in runs if r["ok"] and r["nodes"] == 1000 and r["apply"]["ratio"]
    ]
    report = {
        "benchmark": "apply_scale",
        "parallelism": args.parallelism,
        "controlplanes": args.controlplanes,
        "floor": {
            "formula": "floor_s = round_trips x latency_ms / 1000; ratio = wall_s / floor_s; "
            "latency_cost_ratio = (wall_s - wall_s at 0 ms) / floor_s",
            "not_counted": "TCP/TLS handshakes and Image Factory requests (the lab delays "
            "neither), interpreter start-up, CPU time, journal fsyncs",
            "apply": {t.phase: t.formula for t in APPLY_FLOOR},
            "rollback": {t.phase: t.formula for t in ROLLBACK_FLOOR},
        },
        "target": {"apply_ratio_at_1000_nodes": TARGET_RATIO},
        "within_target": (max(at_target) <= TARGET_RATIO) if at_target else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "runs": runs,
    }
    print(json.dumps(report, indent=2))
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
