"""Files omniport is pointed at that are not what they seem (issue 16, items 2 and 6).

A FIFO given as a spec, plan, rollback plan, machine config, patch or secrets bundle must not
hang the run; ``-o`` must never replace
a FIFO or device (as root, a rename over ``/dev/full`` replaced the device node), the spec, or a
file that is not a plan unless ``--force``. These cases cannot live in the bad-input corpus,
whose snapshots read every file (a FIFO would block the snapshot itself).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from omniport.planner import files, planfile
from omniport.planner.cli import run
from tests.reliability.conftest import assert_one_clear_error
from tests.test_planfile import sample_plan

pytestmark = pytest.mark.reliability

CONFIG_GEN = (
    "config",
    "gen",
    "--talos-version",
    "v1.11.5",
    "--kubernetes-version",
    "1.34.1",
    "--cluster-name",
    "prod",
    "--endpoint",
    "https://prod:6443",
    "--type",
    "worker",
)


@pytest.fixture
def omniport(capsys):
    from tests.reliability.conftest import Outcome

    def invoke(*args: str):
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return invoke


FIFO_CASES = [
    (("validate", "{fifo}"), "is a FIFO, not a regular file"),
    (("plan", "{fifo}"), "is a FIFO, not a regular file"),
    (("show", "{fifo}"), "is a FIFO, not a regular file"),
    (("apply", "--auto-approve", "{fifo}"), "is a FIFO, not a regular file"),
    (("rollback", "--auto-approve", "{fifo}"), "is a FIFO, not a regular file"),
    (CONFIG_GEN + ("--secrets", "{fifo}"), "is a FIFO, not a regular file"),
    (("config", "secrets", "--from-controlplane-config", "{fifo}"), "is a FIFO"),
    (("config", "patch", "{fifo}", "-p", "{{}}"), "is a FIFO, not a regular file"),
    (("config", "patch", "{config}", "-p", "@{fifo}"), "is a FIFO, not a regular file"),
    (("config", "diff", "{fifo}", "{config}"), "is a FIFO, not a regular file"),
    (("config", "validate", "--talos-version", "v1.11.5", "{fifo}"), "is a FIFO"),
]
FIFO_IDS = [
    "validate",
    "plan",
    "show",
    "apply",
    "rollback",
    "config-gen-secrets",
    "config-secrets",
    "config-patch",
    "config-patch-patch-file",
    "config-diff",
    "config-validate",
]
"""The bad-input corpus's FIFO cases (tests/reliability/corpus_counts.py counts them)."""


def _listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root``: mode, size, mtime (reading a FIFO's bytes would block)."""
    out = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        out[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return out


@pytest.mark.parametrize(("args", "needle"), FIFO_CASES, ids=FIFO_IDS)
def test_a_fifo_as_input_is_refused_without_waiting(tmp_path, omniport, args, needle):
    fifo = tmp_path / "input.yaml"
    os.mkfifo(fifo)
    config = tmp_path / "c.yaml"
    config.write_text("version: v1alpha1\nmachine:\n  type: worker\n")
    before = _listing(tmp_path)
    result = omniport(*(a.format(fifo=fifo, config=config) for a in args))
    assert_one_clear_error(result, needle, spec_lines=True)
    assert _listing(tmp_path) == before, "nothing created, changed or removed"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_plan_output_onto_a_fifo_is_refused_and_the_fifo_stays(tmp_path):
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    with pytest.raises(planfile.PlanFileError, match="is a FIFO; a plan is only written"):
        planfile.write(sample_plan(), fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null")
def test_plan_output_onto_a_device_is_refused():
    with pytest.raises(files.OutputRefused, match="is a character device"):
        files.plan_target(Path("/dev/null"))


def test_force_replaces_a_file_that_is_not_a_plan(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("keep me\n")
    with pytest.raises(planfile.PlanFileError, match="is not an omniport plan file"):
        planfile.write(sample_plan(), other)
    assert other.read_text() == "keep me\n"
    planfile.write(sample_plan(), other, force=True)
    assert planfile.read(other) == sample_plan()


def test_an_earlier_plan_is_replaced_and_a_symlink_keeps_pointing_at_it(tmp_path):
    real = tmp_path / "real.plan.json"
    planfile.write(sample_plan(), real)
    link = tmp_path / "link.json"
    link.symlink_to(real.name)
    planfile.write(sample_plan(), link)
    assert link.is_symlink() and planfile.read(real) == sample_plan()
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600


def test_a_plan_larger_than_the_cap_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    planfile.write(sample_plan(), path)
    monkeypatch.setattr(files, "PLAN_LIMIT", 100)
    with pytest.raises(planfile.PlanFileError, match="more than the 100 B allowed"):
        planfile.read(path)


def test_private_dirs_are_owner_only_and_existing_ones_are_left_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    files.make_private_dirs(shared / "state" / "cluster")
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o755
    for folder in (shared / "state", shared / "state" / "cluster"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    files.make_private_dirs(shared / "state")  # already there: nothing changes
