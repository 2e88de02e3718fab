"""Golden files: exactly what ``omniport plan``, ``show`` and ``apply`` print, text and JSON.

One lab (seed 0, the default: node identities, hostnames, configs and schematic are fixed by
the seed) is walked through every scenario in order by a module-scoped fixture; each command
runs as its own process (``python -m omniport.planner.cli``, ``NO_COLOR=1``, no TTY) with the
lab's directory as working directory, so the paths omniport prints are the relative ones a
user would see. Each output is compared with ``tests/golden/<name>.txt`` (text) or
``<name>.json`` (``--json``: the parsed events, or the parsed file ``show --json`` prints).

Only what differs from run to run is rewritten, by the substitutions in ``TEXT_SUBSTITUTIONS``
and ``JSON_RUN_SPECIFIC_KEYS`` below; everything omniport decides (order, wording, counts,
addresses, redaction, exit codes) is compared as printed. Concurrency is taken out of the
apply outputs with ``--parallelism 1`` (a user's option), never by sorting lines.

``OMNIPORT_UPDATE_GOLDEN=1`` rewrites the files instead of comparing; review them in the diff.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.paths import REPO
from tests.reliability.labkit import World, start_world

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("OMNIPORT_UPDATE_GOLDEN") == "1"
LAB_DIR = "<lab>"
STATE_DIR = "<state>"

PARTIAL_CONNECTED = re.compile(
    r"^ +(\d+)/(?!\1 )\d+ machine\(s\) connected to Omni.*(\n|$)", re.MULTILINE
)

# (pattern, replacement, why it differs between runs). Applied in order, to text outputs and
# to every string inside parsed JSON. The lab's directory is replaced first (by the fixture).
TEXT_SUBSTITUTIONS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"127\.0\.0\.1:\d+"),
        "127.0.0.1:<port>",
        "the lab's Omni, Image Factory and apid listen on ports the OS picks",
    ),
    (
        re.compile(r"/127\.0\.0\.1_\d+/"),
        "/127.0.0.1_<port>/",
        "the state directory is per Omni instance, named by its host and port",
    ),
    (
        re.compile(r"-backup-\d{8}-\d{6}\.zip"),
        "-backup-<YYYYMMDD-HHMMSS>.zip",
        "the backup's name carries the wall-clock time of the apply",
    ),
    (
        re.compile(r"(after |\[)\d+\.\ds( elapsed\])?"),
        r"\1<seconds>s\2",
        "durations of steps measured on a shared machine",
    ),
    (
        re.compile(r"^.*\.\.\. \[\d+s elapsed\].*\n", re.MULTILINE),
        "",
        "progress lines (planner/progress.py) appear only when a step is slow on this machine",
    ),
    (
        PARTIAL_CONNECTED,
        "",
        "how many machines have connected to Omni by each poll depends on the scheduler; "
        "the final n/n line (what apply waits for) stays",
    ),
    (
        re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b"),
        "<time>",
        "the wall-clock time a plan was written (show --format markdown prints it)",
    ),
    (
        re.compile(r"sha256 [0-9a-f]{12}…"),
        "sha256 <hash>…",
        "hashes of node configs and backups: the lab generates new keys and certificates "
        "(OpenSSL) on every start, so every config's bytes differ",
    ),
)

# JSON keys whose values differ on every run, with why; their values become "<key>".
JSON_RUN_SPECIFIC_KEYS: dict[str, str] = {
    "@timestamp": "wall-clock time of each event",
    "created_at": "wall-clock time the plan was written",
    "checksum": "the plan file's self-checksum covers the hashes below",
    "fingerprint": "covers every node's config bytes, which hold run-specific keys",
    "config_sha256": "node configs hold keys the lab generates on every start",
    "secrets_sha256": "the lab's secrets bundle is generated on every start",
    "spec_sha256": "the spec names the lab's ports",
    "seal": "keyed from the lab's secrets bundle, generated on every start",
    "sha256": "patches name the Image Factory's host:port (the install image)",
    "elapsed_seconds": "durations of steps measured on a shared machine",
}


def normalize_text(text: str, lab_dir: Path) -> str:
    # apply's state directory (labkit: OMNIPORT_STATE_DIR=<lab>/state) stands for the user's
    # ~/.local/state/omniport
    text = text.replace(str(lab_dir / "state"), STATE_DIR).replace(str(lab_dir), LAB_DIR)
    for pattern, replacement, _why in TEXT_SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    return text


def normalize_json(value: Any, lab_dir: Path) -> Any:
    if isinstance(value, dict):
        return {
            k: f"<{k}>" if k in JSON_RUN_SPECIFIC_KEYS else normalize_json(v, lab_dir)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalize_json(v, lab_dir) for v in value]
    if isinstance(value, str):
        return normalize_text(value, lab_dir)
    return value


@dataclass(frozen=True)
class Output:
    """One command's normalized output, in the form its golden file holds."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    as_json: bool

    def render(self, lab_dir: Path) -> str:
        if not self.as_json:
            return (
                f"$ omniport {' '.join(self.argv)}\n"
                f"exit code: {self.code}\n"
                f"--- stdout ---\n{normalize_text(self.stdout, lab_dir)}"
                f"--- stderr ---\n{normalize_text(self.stderr, lab_dir)}"
            )
        if self.argv[0] == "show":
            body: Any = json.loads(self.stdout)
        else:
            events = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
            body = [  # timing: see TEXT_SUBSTITUTIONS
                e
                for e in events
                if e.get("type") != "progress"
                and not PARTIAL_CONNECTED.search("  " + str(e.get("@message", "")))
            ]
        document = {
            "command": f"omniport {' '.join(self.argv)}",
            "exit_code": self.code,
            "stdout": normalize_json(body, lab_dir),
            "stderr": normalize_text(self.stderr, lab_dir),
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@dataclass
class Walk:
    """The lab and every output of the walk, keyed by golden file name."""

    world: World
    outputs: dict[str, Output]


def omniport(world: World, *argv: str) -> Output:
    proc = subprocess.run(
        [sys.executable, "-m", "omniport.planner.cli", *argv],
        cwd=world.dir,
        env={**world.env, "NO_COLOR": "1", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Output(argv, proc.returncode, proc.stdout, proc.stderr, "--json" in argv)


APPLY = ("apply", "--auto-approve", "--parallelism", "1")


def rollback_file(world: World, stem: str) -> Path:
    """Where apply wrote the rollback plan of ``<stem>.json``: the cluster's state directory."""
    return world.state / f"{stem}.rollback.json"


def walk_scenarios(world: World) -> dict[str, Output]:
    """Every scenario, in an order that leaves the lab as it found it between them."""
    out: dict[str, Output] = {}
    worker = world.nodes[-1]
    # a clean plan, as text and as JSON Lines, and the saved file shown both ways
    out["plan-basic.txt"] = omniport(world, "plan", "import.yaml")
    out["plan-basic.json"] = omniport(world, "plan", "--json", "-o", "json.plan", "import.yaml")
    out["show-basic.txt"] = omniport(world, "show", "import.plan.json")
    out["show-basic.json"] = omniport(world, "show", "--json", "import.plan.json")
    out["show-markdown.txt"] = omniport(world, "show", "--format", "markdown", "import.plan.json")

    # findings: a worker that cannot be reached and a control plane whose etcd is unhealthy,
    # so the health check fails too (after the timeout of findings.yaml, not the lab's 1m)
    spec = yaml.safe_load(world.spec.read_text())
    spec["healthCheck"]["timeout"] = "3s"
    (world.dir / "findings.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    world.fault(kind="unreachable", node=worker)
    world.fault(kind="service-unhealthy", node=world.nodes[0], service="etcd")
    try:
        out["plan-findings.txt"] = omniport(world, "plan", "-o", "f.plan", "findings.yaml")
        out["plan-findings.json"] = omniport(
            world, "plan", "--json", "-o", "f.plan", "findings.yaml"
        )
        out["show-findings-markdown.txt"] = omniport(
            world, "show", "--format", "markdown", "f.plan"
        )
    finally:
        world.fault(kind="clear")

    # apply the plan, then roll it back
    out["apply-basic.txt"] = omniport(world, *APPLY, "import.plan.json")
    # (rollback has no --parallelism: its Links are destroyed concurrently, in an order the
    # scheduler picks, so its output is not golden; test_rollback_lab checks what it does)
    rolled = omniport(world, "rollback", "--auto-approve", str(rollback_file(world, "import.plan")))
    assert rolled.code == 0, rolled.stdout + rolled.stderr

    # the same as JSON Lines, from a fresh plan of the restored lab
    omniport(world, "plan", "-o", "again.plan", "import.yaml")
    out["apply-basic.json"] = omniport(world, *APPLY, "--json", "again.plan")
    rolled = omniport(world, "rollback", "--auto-approve", str(rollback_file(world, "again.plan")))
    assert rolled.code == 0, rolled.stdout + rolled.stderr

    # an apply whose last node refuses its new config: it fails and rolls back by itself
    omniport(world, "plan", "-o", "fail.plan", "import.yaml")
    world.fault(kind="apply-failure", node=worker)
    try:
        out["apply-fails.txt"] = omniport(world, *APPLY, "fail.plan")
    finally:
        world.fault(kind="clear")

    # a stale plan: a node's config changed after planning, so apply refuses it
    omniport(world, "plan", "-o", "stale.plan", "import.yaml")
    world.patch(worker, "machine:\n  sysctls:\n    net.ipv4.ip_forward: '1'\n")
    out["apply-stale.txt"] = omniport(world, *APPLY, "stale.plan")
    out["apply-stale.json"] = omniport(world, *APPLY, "--json", "stale.plan")
    return out


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    # Omni registers a joined node at once (not after the default 100 ms), so which Links exist
    # when an apply fails mid-way does not depend on how fast this machine is
    world = start_world(tmp_path_factory.mktemp("golden") / "lab", "--omni-join-ms", "0")
    try:
        yield Walk(world, walk_scenarios(world))
    finally:
        world.stop()


NAMES = (
    "plan-basic.txt",
    "plan-basic.json",
    "show-basic.txt",
    "show-basic.json",
    "show-markdown.txt",
    "plan-findings.txt",
    "plan-findings.json",
    "show-findings-markdown.txt",
    "apply-basic.txt",
    "apply-basic.json",
    "apply-fails.txt",
    "apply-stale.txt",
    "apply-stale.json",
)


@pytest.mark.parametrize("name", NAMES)
def test_golden(walk: Walk, name: str) -> None:
    got = walk.outputs[name].render(walk.world.dir)
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got)
        return
    assert path.is_file(), f"{path} is missing: run with OMNIPORT_UPDATE_GOLDEN=1 and review it"
    want = path.read_text()
    if name.endswith(".json"):
        same = json.loads(want) == json.loads(got)
    else:
        same = want == got
    if not same:
        diff = difflib.unified_diff(
            want.splitlines(keepends=True),
            got.splitlines(keepends=True),
            fromfile=f"tests/golden/{name}",
            tofile="what omniport printed",
        )
        pytest.fail("".join(diff), pytrace=False)


def test_every_golden_file_is_checked() -> None:
    """No golden file lies about: each one here is compared by test_golden."""
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(NAMES)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("apid 127.0.0.1:45013, ready", "apid 127.0.0.1:<port>, ready"),
        ("lab-backup-20261202-174410.zip", "lab-backup-<YYYYMMDD-HHMMSS>.zip"),
        ("complete after 0.2s (canary)", "complete after <seconds>s (canary)"),
        ("  2/3 created [0.0s elapsed]", "  2/3 created [<seconds>s elapsed]"),
        ("(sha256 324421646246…)", "(sha256 <hash>…)"),
        ("created 2026-12-03T06:49:59Z, by", "created <time>, by"),
        # what omniport decides stays as printed
        ("127.1.0.2: Plan: 14 to add, 3 to change", "127.1.0.2: Plan: 14 to add, 3 to change"),
        ("c9078f9419961640c712a8bf2bb9174933dfcf1d", "c9078f9419961640c712a8bf2bb9174933dfcf1d"),
        ("sha256 of 12 bytes", "sha256 of 12 bytes"),
    ],
    ids=[
        "port",
        "backup-time",
        "duration",
        "elapsed",
        "hash",
        "plan-time",
        "addresses",
        "schematic",
        "word",
    ],
)
def test_substitutions_touch_only_run_specific_values(text: str, want: str) -> None:
    assert normalize_text(text, Path("/nowhere")) == want
