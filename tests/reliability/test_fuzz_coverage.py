"""Coverage-guided fuzzing (atheris) of the spec, plan, rollback, config and patch readers.

Each target runs under libFuzzer for a bounded time (``OMNIPORT_FUZZ_SECONDS``, 20 s by default),
starting from valid seeds; the test fails with the crashing input when any input ends in an
exception other than omniport's own one-line errors. Inputs that once crashed live in
``tests/fuzz/corpus/<target>/`` and are replayed on every run, without atheris.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fuzz.targets import TARGETS, run_one
from tests.paths import TALOS_FIXTURES as FIXTURES
from tests.reliability.conftest import EXAMPLES, plan_text, rollback_text

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fuzz" / "corpus"
SECONDS = int(os.environ.get("OMNIPORT_FUZZ_SECONDS", "20"))


def _seeds(target: str) -> list[bytes]:
    """Valid inputs for a target: the fuzzer mutates these, and they must parse (controls)."""
    if target == "spec":
        return [path.read_bytes() for path in EXAMPLES]
    if target == "plan":
        return [plan_text().encode()]
    if target == "rollback":
        return [rollback_text().encode()]
    if not FIXTURES.is_dir():
        pytest.skip(f"{FIXTURES} is absent (../shared beside the checkout)")
    if target == "config":
        stability = FIXTURES / "v1alpha1" / "stability"
        return [p.read_bytes() for p in sorted(stability.glob("v*/*-*.yaml"))]
    # the strategic patches (JSON patches are lists, read by another path)
    patches = sorted((FIXTURES / "configpatcher").rglob("*.yaml"))
    return [
        p.read_bytes()
        for p in patches
        if p.name.startswith(("strategic", "patch"))
        and all(isinstance(doc, dict) for doc in yaml.safe_load_all(p.read_text()))
    ]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_parse(target: str):
    """Positive control: the seeds are accepted, so the targets do not refuse everything."""
    seeds = _seeds(target)
    assert seeds
    for seed in seeds:
        TARGETS[target](seed)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_corpus_of_past_crashes_replays_cleanly(target: str):
    folder = CORPUS / target
    cases = sorted(folder.iterdir()) if folder.is_dir() else []
    for case in cases:
        run_one(target, case.read_bytes())


def _need_atheris() -> None:
    """Skip without atheris locally; in CI (CI=true) its absence is a failure, not a skip."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("atheris is not installed: pip install -e '.[test]' on Linux x86_64")
        pytest.skip("atheris is not installed")


def _fuzz(target: str, seeds: list[bytes], tmp_path: Path, seconds: int):
    """Run tests/fuzz/run.py; returns the process and the crashing inputs it kept."""
    seed_dir = tmp_path / "seeds"
    seed_dir.mkdir()
    for number, seed in enumerate(seeds):
        (seed_dir / f"seed-{number}").write_bytes(seed)
    crashes = tmp_path / "crashes"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            target,
            f"--seconds={seconds}",
            f"--seeds={seed_dir}",
            f"--corpus={tmp_path / 'corpus'}",
            f"--crashes={crashes}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        check=False,
    )
    return done, sorted(crashes.glob("*")) if crashes.is_dir() else []


def test_the_harness_reports_a_planted_crash(tmp_path: Path):
    """The fuzz test can fail: libFuzzer finds the planted bug from a seed one byte away."""
    _need_atheris()
    done, found = _fuzz("canary", [b"FUZY"], tmp_path, seconds=60)
    assert done.returncode != 0
    assert [p.read_bytes()[:4] for p in found] == [b"FUZZ"]
    assert "planted crash" in done.stdout + done.stderr


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz(target: str, tmp_path: Path):
    _need_atheris()
    done, found = _fuzz(target, _seeds(target), tmp_path, SECONDS)
    report = "\n".join(f"{p.name}: {p.read_bytes()[:2000]!r}" for p in found)
    assert done.returncode == 0 and not found, (
        f"fuzzing {target} found a crash (add the input to tests/fuzz/corpus/{target}/ once "
        f"fixed):\n{report}\n{done.stderr[-4000:]}"
    )
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", done.stderr)
    assert executed and int(executed.group(1)) > 50, done.stderr[-2000:]
    print(f"fuzz {target}: {executed.group(1)} inputs in {SECONDS} s")
