"""omniport plan beside Omni's own importer (its dry run), on the same lab, side by side.

For every (nodes, latency) pair it starts one lab (``lab up --nodes N --latency-ms L``) and runs
against it, one after the other, each as a child process:

- ``omniport plan SPEC --json`` (``python -m omniport.planner.cli``), and
- the real importer's dry run: ``tests/interop/.build/bin/omni -lab DIR import --dry-run
  -lab-versions`` — our small Go program around Omni's ``clusterimport`` package (client
  v1.9.3): ``BuildContext`` + ``Run`` with ``DryRun``, the lab's talosconfig, service-account
  key and CA (``SSL_CERT_FILE``), the versions of the lab's spec.

Both only read, and both run Talos's health check (omniport's spec enables it; the importer
runs it unless told to skip). The importer's dry run also registers each schematic with the
lab's Image Factory (``POST /schematics``), as it does against the real one; omniport checks
them read-only. Per tool: wall, CPU (user + system of that child and what it waited for, from
``os.wait4``), peak RSS, exit code, and the lab's CPU while it ran (the lab shares the two
cores: CPU a remote Talos and Omni would not take from the client's machine). Per pair:
``wall_ratio`` and ``cpu_ratio`` = omniport / importer (below 1: omniport took less).

    python bench/interop_scale.py                                # 10,100,1000 x 0,20 ms
    python bench/interop_scale.py --nodes 10 --latency 0          # quick

Needs the Go program built (``tests/interop/build omni``); it says so and stops otherwise.
What each tool checks beyond the other is in tests/interop/README.md.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from plan_scale import (  # noqa: E402
    _run,
    each_pair,
    machine_facts,
    process_cpu_seconds,
    scale_arguments,
)

from omniport.lab import control  # noqa: E402

IMPORTER = ROOT / "tests" / "interop" / ".build" / "bin" / "omni"


def _measure(argv: list[str], lab_pid: int) -> dict[str, Any]:
    before = process_cpu_seconds(lab_pid)
    code, wall, usage = _run(argv)
    after = process_cpu_seconds(lab_pid)
    return {
        "exit_code": code,
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024.0, 1),
        "lab_cpu_s": round(after - before, 3) if before is not None and after is not None else None,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def one(nodes: int, latency_ms: float, controlplanes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="interop-scale-") as tmp:
        directory = Path(tmp)
        options = control.UpOptions(
            nodes=nodes, controlplanes=min(controlplanes, nodes), latency_ms=latency_ms
        )
        info = control.up(directory, options)
        pid = int(info["pid"])
        try:
            omniport = _measure(
                [
                    sys.executable,
                    "-m",
                    "omniport.planner.cli",
                    "plan",
                    str(directory / "import.yaml"),
                    "-o",
                    str(directory / "plan.json"),
                    "--json",
                ],
                pid,
            )
            importer = _measure(
                [str(IMPORTER), "-lab", str(directory), "import", "--dry-run", "-lab-versions"],
                pid,
            )
        finally:
            control.down(directory)
    return {
        "nodes": nodes,
        "latency_ms": latency_ms,
        "omniport_plan": omniport,
        "importer_dry_run": importer,
        "wall_ratio": _ratio(omniport["wall_s"], importer["wall_s"]),
        "cpu_ratio": _ratio(omniport["cpu_s"], importer["cpu_s"]),
        "peak_rss_ratio": _ratio(omniport["peak_rss_mib"], importer["peak_rss_mib"]),
    }


def table(runs: list[dict[str, Any]]) -> str:
    """The side-by-side table, one line per (nodes, latency)."""
    head = (
        f"{'nodes':>6} {'ms':>4} | {'plan wall':>9} {'cpu':>6} {'MiB':>6} | "
        f"{'import wall':>11} {'cpu':>6} {'MiB':>6} | {'wall x':>6} {'cpu x':>6} {'MiB x':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        p, i = r["omniport_plan"], r["importer_dry_run"]
        lines.append(
            f"{r['nodes']:>6} {r['latency_ms']:>4g} | {p['wall_s']:>9.2f} {p['cpu_s']:>6.2f} "
            f"{p['peak_rss_mib']:>6.0f} | {i['wall_s']:>11.2f} {i['cpu_s']:>6.2f} "
            f"{i['peak_rss_mib']:>6.0f} | {r['wall_ratio'] or 0:>6.2f} {r['cpu_ratio'] or 0:>6.2f} "
            f"{r['peak_rss_ratio'] or 0:>6.2f}"
        )
    return "\n".join(lines)


def main() -> int:
    args = scale_arguments(__doc__.splitlines()[0])
    if not os.access(IMPORTER, os.X_OK):
        print(
            f"{IMPORTER.relative_to(ROOT)} is not built; run tests/interop/build omni first",
            file=sys.stderr,
        )
        return 1
    runs = each_pair(args, one)
    print(table(runs), file=sys.stderr)
    print(
        json.dumps(
            {
                "importer": "omni client v1.9.3 clusterimport, DryRun (tests/interop/omni)",
                **machine_facts(),
                "runs": runs,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
