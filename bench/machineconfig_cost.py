"""Cost per node of the config engine: generate + diff + sanitize + verify (+ parse).

Uses the largest Talos fixture (configdiff/modified.yaml, a 1.11-style control plane) as the
live config and the stability secrets bundle; prints JSON figures. Run from the repo root:

    python bench/machineconfig_cost.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omniport.planner.machineconfig import document as mcdoc  # noqa: E402
from omniport.planner.machineconfig.diff import diff
from omniport.planner.machineconfig.generate import import_baseline
from omniport.planner.machineconfig.merge import apply_patches
from omniport.planner.machineconfig.sanitize import sanitize
from omniport.planner.machineconfig.secrets import SecretsBundle
from omniport.planner.machineconfig.verify import compare

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "talos-fixtures"


def one_node(live_raw: bytes, bundle: SecretsBundle) -> None:
    live = mcdoc.parse(live_raw)
    baseline = import_baseline(
        "controlplane",
        talos_version="1.11.5",
        kubernetes_version="1.34.1",
        cluster_name="base",
        secrets=bundle,
    )
    kept = []
    for patch in diff(baseline, live):
        cleaned = sanitize(patch)
        if not cleaned.empty:
            kept.append(cleaned.documents)
            mcdoc.emit(cleaned.documents)
    compare(live, apply_patches(baseline, kept))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    live_path = FIXTURES / "configdiff" / "modified.yaml"
    secrets_path = FIXTURES / "v1alpha1" / "stability" / "secrets.yaml"
    if not live_path.exists():
        raise SystemExit(f"fixtures not found at {FIXTURES}; the benchmark needs ../shared")
    live_raw = live_path.read_bytes()
    bundle = SecretsBundle.from_yaml(secrets_path.read_text())
    for _ in range(10):
        one_node(live_raw, bundle)
    wall, cpu = [], []
    for _ in range(args.rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        one_node(live_raw, bundle)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    print(
        json.dumps(
            {
                "benchmark": "machineconfig_cost_per_node",
                "fixture": "configdiff/modified.yaml",
                "bytes": len(live_raw),
                "rounds": args.rounds,
                "wall_ms_median": round(statistics.median(wall) * 1000, 3),
                "wall_ms_p95": round(sorted(wall)[int(len(wall) * 0.95)] * 1000, 3),
                "cpu_ms_median": round(statistics.median(cpu) * 1000, 3),
                "target_ms": 5.0,
                "steps": ["parse", "generate baseline", "diff", "sanitize", "emit", "verify"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
