"""Plans that travel, and plans that were tampered with (issue 15 items 3 and 10).

A plan written anywhere (``-o``, or Terraform's ``-out=FILE``) and applied from any directory,
or from another checkout of the same git repository, resolves the spec's relative paths from
the spec's directory, which the plan records. A plan edited and re-checksummed by hand is
refused as forged (its seal, keyed from the cluster's secrets, fails), not as stale; a stale
plan's refusal lists every difference. Every command runs as its own process against the lab.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from omniport.planner import planfile
from omniport.planner.plan import SpecLocation
from omniport.planner.sealed import canonical, checksum
from omniport.planner.speclocation import locate, repository_root, spec_directory
from tests.paths import REPO
from tests.reliability.labkit import Result, World, assert_restored


def run(world: World, cwd: Path, *args: str) -> Result:
    """``omniport ARGS`` as its own process, from ``cwd``."""
    proc = subprocess.run(
        [sys.executable, "-m", "omniport.planner.cli", *args],
        cwd=cwd,
        env={**world.env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, 0.0)


def one_line(text: str) -> str:
    return " ".join(text.split())


# ---- where the spec is: pure lookups on a directory tree -----------------------------------


def test_location_is_relative_to_the_repository_root(tmp_path: Path):
    checkout = tmp_path / "repo"
    (checkout / ".git").mkdir(parents=True)
    spec = checkout / "clusters" / "prod" / "import.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text("version: 1\n")
    assert repository_root(spec.parent) == checkout
    assert locate(spec) == SpecLocation("clusters/prod/import.yaml", in_repository=True)

    # another checkout (a worktree's .git is a file), entered from a directory inside it
    other = tmp_path / "ci" / "build"
    (other / "clusters" / "prod").mkdir(parents=True)
    (other / ".git").write_text("gitdir: /elsewhere\n")
    (other / "clusters" / "prod" / "import.yaml").write_text("version: 1\n")
    plan = tmp_path / "artifacts" / "p.json"
    location = locate(spec)
    assert spec_directory(location, plan, cwd=other / "clusters") == other / "clusters" / "prod"
    # from outside any checkout, the checkout holding the plan file is the next place
    (other / "p.json").write_text("{}")
    assert spec_directory(location, other / "p.json", cwd=tmp_path) == other / "clusters" / "prod"
    # no checkout has the spec: the plan file's directory, as before
    assert spec_directory(location, plan, cwd=tmp_path) == plan.parent


def test_location_outside_a_repository_is_absolute(tmp_path: Path):
    spec = tmp_path / "import.yaml"
    spec.write_text("version: 1\n")
    if repository_root(tmp_path) is not None:
        pytest.skip("the temporary directory is inside a git checkout")
    assert locate(spec) == SpecLocation(str(spec.resolve()), in_repository=False)
    assert spec_directory(locate(spec), tmp_path / "x" / "p.json", cwd=REPO) == tmp_path
    assert spec_directory(None, tmp_path / "x" / "p.json") == tmp_path / "x"


# ---- against the lab ------------------------------------------------------------------------


def rollback_of(apply_output: str) -> Path:
    """The rollback plan apply wrote, as it printed it (in the cluster's state directory)."""
    found = re.search(r"^Rollback: (.+)$", apply_output, re.M)
    assert found, apply_output
    return Path(found.group(1))


def test_out_anywhere_applies_from_any_directory(world: World, tmp_path: Path):
    elsewhere, somewhere = tmp_path / "elsewhere", tmp_path / "somewhere"
    elsewhere.mkdir()
    somewhere.mkdir()
    before = world.snapshot()
    planned = run(world, somewhere, "plan", str(world.spec), f"-out={elsewhere / 'p.json'}")
    assert planned.code == 0, planned.text
    assert (elsewhere / "p.json").is_file()
    assert not (somewhere / "ut=").exists() and not list(somewhere.glob("ut=*"))
    plan = planfile.read(elsewhere / "p.json")
    assert plan.spec_location == SpecLocation(str(world.spec.resolve()), in_repository=False)

    applied = run(world, somewhere, "apply", "--auto-approve", str(elsewhere / "p.json"))
    assert applied.code == 0, applied.text
    assert "Apply complete!" in applied.out
    rolled = run(world, somewhere, "rollback", "--auto-approve", str(rollback_of(applied.out)))
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)


def test_plan_applies_from_another_checkout(world: World, tmp_path: Path):
    """Planned in checkout A, applied in checkout B at another path, A gone (as in CI)."""
    a = tmp_path / "a"
    cluster = a / "clusters" / "lab"
    cluster.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(a)], check=True)
    for name in ("import.yaml", "talosconfig", "lab-ca.pem", "service-account.key"):
        shutil.copy2(world.dir / name, cluster / name)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    planned = run(world, a, "plan", "clusters/lab/import.yaml", "-o", str(artifacts / "p.json"))
    assert planned.code == 0, planned.text
    plan = planfile.read(artifacts / "p.json")
    assert plan.spec_location == SpecLocation("clusters/lab/import.yaml", in_repository=True)

    b = tmp_path / "runner" / "b"
    shutil.copytree(a, b, symlinks=True)
    shutil.rmtree(a)
    before = world.snapshot()
    applied = run(world, b / "clusters", "apply", "--auto-approve", str(artifacts / "p.json"))
    assert applied.code == 0, applied.text
    rollback_file = rollback_of(applied.out)  # in the state directory, not beside the plan
    recorded = json.loads(rollback_file.read_text())
    assert recorded["spec_base"] == str((b / "clusters" / "lab").resolve())
    assert recorded["spec_location"] == {"path": "clusters/lab/import.yaml", "in_repository": True}

    # rolled back from a third checkout, the applying one gone (a later job, a colleague)
    c = tmp_path / "laptop" / "c"
    shutil.copytree(b, c, symlinks=True)
    shutil.rmtree(b)
    imported = world.snapshot()
    lost = run(world, tmp_path, "rollback", "--auto-approve", str(rollback_file))
    assert lost.code == 1  # outside any checkout, the applying one gone: nothing to resolve from
    line = one_line(lost.err)
    assert line.startswith(f"Error: the spec recorded in {rollback_file} cannot be used"), line
    assert line.endswith("run it from a checkout holding the spec, or pass that spec with --spec")
    assert world.snapshot() == imported
    rolled = run(world, c, "rollback", "--auto-approve", str(rollback_file))
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)


def test_a_plan_whose_spec_cannot_be_found_names_the_fix(world: World, tmp_path: Path):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    moved = tmp_path / "moved"
    shutil.copytree(world.dir, moved, ignore=shutil.ignore_patterns("locks", "*.sock"))
    planned = run(world, tmp_path, "plan", str(moved / "import.yaml"), "-o", str(artifacts / "p"))
    assert planned.code == 0, planned.text
    shutil.rmtree(moved)
    before = world.snapshot()
    applied = run(world, tmp_path, "apply", "--auto-approve", str(artifacts / "p"))
    assert applied.code == 1
    line = one_line(applied.err)
    assert line.startswith("Error: the spec recorded in ")
    assert "run it from a checkout holding the spec, or keep the plan file beside its spec" in line
    assert "Traceback" not in applied.text
    assert world.snapshot() == before


def _forge(path: Path, edit) -> None:
    """Edit a plan file's data and recompute its checksum, as someone without the keys can."""
    data = json.loads(path.read_text())
    edit(data)
    data["checksum"] = checksum(data)
    path.write_text(canonical(data))


def _hide_a_patch_line(data: dict) -> None:
    patch = data["nodes"][0]["patches"][0]
    patch["redacted"] = "\n".join(patch["redacted"].splitlines()[1:]) + "\n"


def _change_the_fingerprint(data: dict) -> None:
    data["fingerprint"] = "0" * 64


def _drop_the_seal(data: dict) -> None:
    del data["seal"]


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_hide_a_patch_line, "is forged: it was changed after `omniport plan` wrote it"),
        (_change_the_fingerprint, "is forged: it was changed after `omniport plan` wrote it"),
        (_drop_the_seal, "carries no seal, so it was not written by `omniport plan`"),
    ],
    ids=["patch-text-hidden", "fingerprint", "seal-removed"],
)
def test_a_forged_plan_is_refused_as_forged(world: World, edit, needle: str):
    world.make_plan()
    _forge(world.plan, edit)
    planfile.read(world.plan)  # the checksum is valid: only the seal tells
    before = world.snapshot()
    result = world.apply()
    assert result.code == 1
    line = one_line(result.err)
    assert needle in line, line
    assert "Omni's state changed" not in line and "stale" not in line
    assert "run `omniport plan` again" in line
    assert world.snapshot() == before and not world.rollback.exists()


def test_a_stale_plan_lists_every_difference(world: World):
    world.make_plan()
    workers = world.nodes[1:]
    for node in workers:
        world.patch(node, "machine:\n  sysctls:\n    net.ipv4.ip_forward: '1'\n")
    before = world.snapshot()
    result = world.apply()
    assert result.code == 1
    line = one_line(result.err)
    assert f"is stale, {len(workers)} differences:" in line, line
    for i, node in enumerate(workers, 1):
        assert f"({i}) node {node}'s config changed since the plan" in line
    assert "forged" not in line
    events = world.apply("--json")
    assert events.code == 1
    errors = [
        e
        for e in map(json.loads, events.out.splitlines())
        if e["type"] == "diagnostic" and e["@level"] == "error"
    ]
    assert all(f"node {node}'s config changed" in errors[-1]["@message"] for node in workers)
    assert world.snapshot() == before


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["-out=x.json"], "x.json"),  # Terraform's spelling (was: a file named 'ut=x.json')
        (["-out", "y.json"], "y.json"),
        (["-o", "z.json"], "z.json"),
        (["-ow.json"], "w.json"),
        (["--out=v.json"], "v.json"),
    ],
    ids=["terraform-equals", "terraform-space", "short", "short-glued", "long"],
)
def test_every_spelling_of_the_plan_file_option(args: list[str], want: str):
    from omniport.planner.cli.plan import plan

    assert plan.make_context("plan", [*args, "spec.yaml"]).params["out"] == want


def test_stale_message_numbers_every_difference():
    from omniport.planner.execute.apply import stale_message

    one = stale_message(Path("p.json"), ["node a's config changed since the plan"])
    assert one == "the plan p.json is stale: node a's config changed since the plan"
    reasons = [f"node {n}'s config changed since the plan" for n in "abc"]
    assert stale_message(Path("p.json"), reasons) == (
        "the plan p.json is stale, 3 differences: (1) node a's config changed since the plan; "
        "(2) node b's config changed since the plan; (3) node c's config changed since the plan"
    )
