"""Start-up cost of the command line: `omniport --help` and `import omniport.planner.cli`.

Every command a user types pays this before doing anything, so it is kept small by importing
command implementations lazily. Each figure is measured in fresh processes (after warm-up runs
that write the bytecode caches); the interpreter's own start-up is shown for reference. Prints
JSON; run from anywhere:

    python bench/cli_startup.py [--runs N] [--target-ms 250]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORT_TIMER = (
    "import time; t = time.perf_counter(); import omniport.planner.cli; "
    "print(time.perf_counter() - t)"
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _wall_ms(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        _run(args)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median": round(statistics.median(ordered), 1),
        "p95": round(p95, 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
    }


def _heaviest_imports(count: int) -> list[dict[str, object]]:
    """Direct imports of the CLI's root module that cost most (cumulative, -X importtime).

    ``omniport.planner.cli`` is a package whose ``__init__`` only imports ``root``; the root's
    own imports (click, the command modules, the error types) are where start-up time goes.
    """
    proc = _run(["-X", "importtime", "-c", "import omniport.planner.cli"])
    rows = []  # (indent, name, cumulative µs) in completion order: children before parents
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((len(match.group(2)), match.group(3), int(match.group(1))))
    end = next(i for i, (indent, name, _) in enumerate(rows) if name == "omniport.planner.cli.root")
    start = end
    while start > 0 and rows[start - 1][0] > rows[end][0]:
        start -= 1
    children = [r for r in rows[start:end] if r[0] == rows[end][0] + 2]
    children.sort(key=lambda r: r[2], reverse=True)
    return [
        {"module": name, "cumulative_ms": round(us / 1000, 1)} for _, name, us in children[:count]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="processes per figure")
    parser.add_argument("--target-ms", type=float, default=250.0)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    help_args = ["-m", "omniport.planner.cli", "--help"]
    for _ in range(2):  # warm-up: bytecode caches, file system cache
        _run(help_args)

    help_ms = _wall_ms(help_args, args.runs)
    python_ms = _wall_ms(["-c", "pass"], args.runs)
    import_ms = [float(_run(["-c", IMPORT_TIMER]).stdout) * 1000 for _ in range(args.runs)]

    help_figures = _figures(help_ms)
    report = {
        "benchmark": "cli_startup",
        "command": "python -m omniport.planner.cli --help",
        "runs": args.runs,
        "python": sys.version.split()[0],
        "help_wall_ms": help_figures,
        "import_planner_cli_ms": _figures(import_ms),
        "python_startup_ms": _figures(python_ms),
        "heaviest_imports": _heaviest_imports(5),
        "target_ms": args.target_ms,
        "within_target": help_figures["p95"] <= args.target_ms,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
