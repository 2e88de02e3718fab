"""Where apply keeps backups, rollback plans, journals and the lock (issue 15, item 6)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from omniport.planner.execute import statedir
from omniport.planner.execute.session import cluster_lock
from omniport.planner.spec import SpecError, parse_spec

SPEC = """\
version: 1
talos: {nodes: [10.0.0.1]}
omni: {url: https://omni.example}
"""


def spec(text: str = SPEC, base: Path = Path("/repo/clusters")):
    return parse_spec(text, file="import.yaml", base=base)


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({"HOME": "/home/u"}, "/home/u/.local/state/omniport"),
        ({"HOME": "/home/u", "XDG_STATE_HOME": "/xdg"}, "/xdg/omniport"),
        # the XDG spec: a relative value is invalid and ignored
        ({"HOME": "/home/u", "XDG_STATE_HOME": "rel/xdg"}, "/home/u/.local/state/omniport"),
        ({"HOME": "/home/u", "XDG_STATE_HOME": ""}, "/home/u/.local/state/omniport"),
        ({"HOME": "/home/u", "XDG_STATE_HOME": "/xdg", "OMNIPORT_STATE_DIR": "/ci/st"}, "/ci/st"),
        ({"HOME": "/home/u", "OMNIPORT_STATE_DIR": ""}, "/home/u/.local/state/omniport"),
    ],
    ids=["home", "xdg", "xdg-relative-ignored", "xdg-empty", "omniport-env", "omniport-empty"],
)
def test_base_directory_from_the_environment(env, want):
    assert statedir.base_directory(env) == Path(want)


def test_relative_omniport_state_dir_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert statedir.base_directory({"OMNIPORT_STATE_DIR": "st"}) == tmp_path / "st"


OMNI = "https://omni.example:8443"


def test_files_go_to_the_clusters_state_directory_not_beside_the_plan():
    env = {"HOME": "/home/u"}
    files = statedir.files_for(Path("/repo/clusters/import.plan.json"), "prod", OMNI, spec(), env)
    home = Path("/home/u/.local/state/omniport/prod/omni.example_8443")
    assert files == statedir.StateFiles(
        directory=home,
        rollback=home / "import.plan.rollback.json",
        journal=home / "import.plan.journal.jsonl",
        backups=home,
    )


def test_spec_state_directory_is_relative_to_the_spec_and_wins_over_the_environment():
    text = SPEC + "state: {directory: ../.omniport-state}\n"
    env = {"HOME": "/home/u", "OMNIPORT_STATE_DIR": "/ci/st"}
    files = statedir.files_for(Path("/tmp/p.json"), "prod", OMNI, spec(text), env)
    assert files.directory == Path("/repo/.omniport-state/prod/omni.example_8443")
    assert files.rollback == files.directory / "p.rollback.json"
    # the lock stays where every command of this host meets it (abort takes no spec)
    assert statedir.lock_directory("prod", OMNI, env) == Path("/ci/st/prod/omni.example_8443")


def test_backup_directory_moves_the_backups_alone():
    text = SPEC + "backup: {directory: ./backups}\n"
    files = statedir.files_for(Path("/x/p.json"), "prod", OMNI, spec(text), {"HOME": "/h"})
    assert files.backups == Path("/repo/clusters/backups")
    assert files.rollback == Path("/h/.local/state/omniport/prod/omni.example_8443/p.rollback.json")


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("https://acme.omni.siderolabs.io", "acme.omni.siderolabs.io"),
        ("https://127.0.0.1:33967", "127.0.0.1_33967"),
        ("https://[fdae:41e4::1]:8443/", "fdae_41e4__1_8443"),
        ("omni.internal:8443", "omni.internal_8443"),
    ],
)
def test_the_omni_instance_is_one_path_component(url, want):
    assert statedir.omni_name(url) == want


def test_two_omnis_with_a_cluster_of_one_name_do_not_share_state():
    """A staging and a production Omni may both have a cluster "lab": one's unfinished import
    must neither block nor be taken for the other's."""
    env = {"HOME": "/h"}
    a = statedir.files_for(Path("/x/p.json"), "lab", "https://omni-a.example", spec(), env)
    b = statedir.files_for(Path("/x/p.json"), "lab", "https://omni-b.example", spec(), env)
    assert a.rollback != b.rollback and a.directory.parent == b.directory.parent


def test_a_state_directory_that_is_not_a_path_is_a_spec_error():
    with pytest.raises(SpecError, match="state.directory names"):
        spec(SPEC + 'state: {directory: "a\\0b"}\n')
    with pytest.raises(SpecError, match="state"):
        spec(SPEC + "state: {dir: x}\n")


@pytest.mark.parametrize(
    ("name", "want"),
    [("prod", "prod"), ("a/b", "a_b"), ("..", "_.."), (".", "_."), ("eu-1.x", "eu-1.x")],
)
def test_a_cluster_name_is_one_safe_path_component(name, want):
    assert statedir.safe_name(name) == want


def test_prepare_creates_private_directories(tmp_path):
    target = tmp_path / "base" / "prod"
    assert statedir.prepare(target, "$OMNIPORT_STATE_DIR") == target
    for folder in (target, target.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_prepare_refuses_an_unusable_directory_in_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(statedir.StateDirError) as err:
        statedir.prepare(blocker / "prod", "$OMNIPORT_STATE_DIR")
    assert str(blocker / "prod") in err.value.message
    assert "$OMNIPORT_STATE_DIR" in (err.value.fix or "")


def test_the_lock_lives_in_the_clusters_state_directory(tmp_path):
    env = {"OMNIPORT_STATE_DIR": str(tmp_path)}
    lock = cluster_lock("https://omni.example:8443", "prod", "apply", env)
    assert lock.path.parent == tmp_path / "prod" / "omni.example_8443"
    with lock:
        assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(lock.path.parent).st_mode) == 0o700


def test_apply_help_says_where_state_goes():
    from click.testing import CliRunner

    from omniport.planner.cli.root import cli

    out = CliRunner().invoke(cli, ["apply", "--help"]).output
    assert "$OMNIPORT_STATE_DIR" in out and "~/.local/state/omniport" in out


def test_apply_writes_state_where_the_spec_says_and_refuses_an_unusable_one(world, tmp_path):
    world.make_plan()
    before = world.snapshot()
    # an unusable state directory: one sentence naming it and the setting, nothing changed
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    refused = world.apply(env={"OMNIPORT_STATE_DIR": str(blocker)})
    assert refused.code == 1, refused.text
    lines = [line for line in refused.err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(blocker) in lines[0] and "$OMNIPORT_STATE_DIR" in lines[0]
    assert "Traceback" not in refused.text
    assert world.snapshot() == before

    # state.directory, relative to the spec, wins over the environment for backups, the
    # rollback plan and the journal; apply prints those real paths
    world.tune(state={"directory": "../spec-state"})
    world.make_plan()
    applied = world.apply()
    assert applied.code == 0, applied.text
    state = world.state_in((world.dir.parent / "spec-state").resolve())
    rollback = state / "import.plan.rollback.json"
    assert f"Rollback: {rollback}" in applied.out
    assert f"Journal:  {state / 'import.plan.journal.jsonl'}" in applied.out
    assert len(list(state.glob("lab-backup-*.zip"))) == 1
    assert not world.rollback.exists()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    rolled = world.cli("rollback", "--auto-approve", str(rollback))
    assert rolled.code == 0, rolled.text
    from tests.reliability.labkit import assert_restored

    assert_restored(world, before)
