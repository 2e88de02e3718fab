"""How ``omniport plan`` scales: wall time, CPU, peak memory and distance to the latency floor.

For every (nodes, latency) pair it starts a lab (``lab up --nodes N --latency-ms L``), runs
``python -m omniport.planner.cli plan SPEC --json`` as a child process, and records its wall time,
CPU time and peak RSS (``ru_maxrss`` of that one child, from ``os.wait4``). Prints one JSON
document. Run from the repo root:

    python bench/plan_scale.py                                  # 10,100,1000 nodes x 0,20 ms
    python bench/plan_scale.py --nodes 10,100 --latency 0,20    # quick

The latency floor is what no implementation at this parallelism can beat on the lab: the lab
adds ``L`` to every Talos and Omni call on the server side, so a plan spends at least
``round trips on its critical path x L`` waiting;
``omniport.planner.discover.critical_path_round_trips`` counts them from the discovery code (see
its docstring). ``ratio`` is wall time over that floor; ``latency_cost_ratio`` is the time
latency added (wall at L minus wall at 0 ms, same node count) over the floor, i.e. how much of
the waiting discovery fails to overlap.
``cpu_s`` is the plan process's CPU time and ``lab_cpu_s`` the lab's while it served the plan:
on a small machine the two compete, and a plan far above its floor is CPU-bound, not waiting.
``bound_ratio`` is wall time over the largest of the floor, ``cpu_s`` and ``lab_cpu_s``: close
to 1.0 when the plan wastes no time beyond latency and CPU it cannot avoid.
``startup_bound_ratio`` is (interpreter start-up + floor) / floor: the lowest ``ratio`` any plan
run as a fresh process can reach on this machine, before it does any work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omniport.lab import control  # noqa: E402
from omniport.planner.discover import DEFAULT_PARALLELISM, critical_path_round_trips  # noqa: E402

FORMULA = (
    "floor_s = round_trips x latency_ms / 1000, with round_trips = 1 + ceil(nodes / "
    "parallelism) + 1 (omniport.planner.discover.critical_path_round_trips): first the "
    "discovery member list and Omni's settings, read together (they prove both endpoints "
    "answer and tell which nodes are workers); then the nodes in batches of `parallelism`, "
    "one round trip per batch "
    "(one Version, one ServiceList and one EtcdMemberList call for the whole batch, through "
    "apid's one-to-many `nodes` routing, plus four COSI reads per node, all at once); then the "
    "health check, the Omni cluster lookup and the Image Factory checks, together. The lab "
    "delays every call on the server side, not TCP/TLS handshakes, so connection setup is not "
    "counted; interpreter start-up and the CPU time of the calls and of computing patches are "
    "not latency and are not in the floor."
)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    return env


def _run(argv: list[str]) -> tuple[int, float, Any]:
    """Run a child to completion: (exit code, wall seconds, its own rusage)."""
    start = time.perf_counter()
    child = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stderr.close()
    if child.returncode not in (0, 1):
        sys.stderr.write(err.decode(errors="replace"))
    return child.returncode, wall, usage


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) ``pid`` has used so far, from /proc (None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def startup_seconds() -> float:
    """What importing the plan command costs before any I/O (not part of the floor)."""
    code = (
        "import omniport.planner.cli, omniport.planner.planfile, omniport.planner.planning, "
        "omniport.planner.render"
    )
    _, wall, _ = _run([sys.executable, "-c", code])
    return wall


def one(nodes: int, latency_ms: float, controlplanes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="plan-scale-") as tmp:
        directory = Path(tmp)
        options = control.UpOptions(
            nodes=nodes, controlplanes=min(controlplanes, nodes), latency_ms=latency_ms
        )
        info = control.up(directory, options)
        lab_cpu_before = process_cpu_seconds(int(info["pid"]))
        try:
            code, wall, usage = _run(
                [
                    sys.executable,
                    "-m",
                    "omniport.planner.cli",
                    "plan",
                    str(directory / "import.yaml"),
                    "-o",
                    str(directory / "plan.json"),
                    "--json",
                ]
            )
            plan_bytes = (directory / "plan.json").stat().st_size if code in (0, 1) else 0
            lab_cpu_after = process_cpu_seconds(int(info["pid"]))
        finally:
            control.down(directory)
    trips = critical_path_round_trips(nodes, DEFAULT_PARALLELISM)
    floor = trips * latency_ms / 1000.0
    return {
        "nodes": nodes,
        "latency_ms": latency_ms,
        "exit_code": code,
        "lab_startup_s": info.get("startup_seconds"),
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "lab_cpu_s": round(lab_cpu_after - lab_cpu_before, 3)
        if lab_cpu_before is not None and lab_cpu_after is not None
        else None,
        "peak_rss_mib": round(usage.ru_maxrss / 1024.0, 1),
        "plan_file_kib": round(plan_bytes / 1024.0, 1),
        "round_trips": trips,
        "floor_s": round(floor, 3),
        "ratio": round(wall / floor, 2) if floor else None,
        "bound_ratio": _bound_ratio(
            wall, floor, usage.ru_utime + usage.ru_stime, lab_cpu_after, lab_cpu_before
        ),
    }


def _bound_ratio(
    wall: float, floor: float, cpu: float, lab_after: float | None, lab_before: float | None
) -> float | None:
    """wall / max(latency floor, the plan's CPU, the lab's CPU): 1.0 means the run took no
    longer than the largest of the three costs it cannot avoid on this machine."""
    lab = lab_after - lab_before if lab_after is not None and lab_before is not None else 0.0
    bound = max(floor, cpu, lab)
    return round(wall / bound, 2) if bound > 0 else None


def scale_arguments(description: str) -> argparse.Namespace:
    """--nodes, --latency and --controlplanes, as every scale bench takes them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--nodes", default="10,100,1000", help="comma-separated node counts")
    parser.add_argument("--latency", default="0,20", help="comma-separated latencies in ms")
    parser.add_argument("--controlplanes", type=int, default=3)
    return parser.parse_args()


def each_pair(args: argparse.Namespace, one: Any) -> list[dict[str, Any]]:
    """``one(nodes, latency, controlplanes)`` for every pair, each printed on stderr as it ends."""
    runs = []
    for nodes in _ints(args.nodes):
        for latency in _floats(args.latency):
            runs.append(one(nodes, latency, args.controlplanes))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return runs


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: the cores, the interpreter, the load when they were taken."""
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    args = scale_arguments(__doc__.splitlines()[0])
    runs = each_pair(args, one)
    base = {r["nodes"]: r["wall_s"] for r in runs if r["latency_ms"] == 0}
    startup = startup_seconds()
    for r in runs:
        if r["floor_s"] and r["nodes"] in base:
            r["latency_cost_ratio"] = round((r["wall_s"] - base[r["nodes"]]) / r["floor_s"], 2)
        if r["floor_s"]:
            # no plan can beat start-up + floor: the lowest ratio this interpreter allows
            r["startup_bound_ratio"] = round((startup + r["floor_s"]) / r["floor_s"], 2)
    print(
        json.dumps(
            {
                "parallelism": DEFAULT_PARALLELISM,
                "formula": FORMULA,
                "interpreter_startup_s": round(startup, 3),
                **machine_facts(),
                "runs": runs,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
