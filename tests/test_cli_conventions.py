"""talosctl/omnictl conventions on the command line (issue 15 item 5).

- every ``--flag`` a message of omniport names exists on some omniport command (so "pass
  --talosconfig" is advice a user can follow), read from the code itself;
- the global access flags (``--talosconfig``, ``--context``, ``--endpoints``, ``--nodes``,
  ``--omniconfig``) go before or after the command and override the spec, against a lab;
- ``--no-color`` on every command; ``NO_COLOR`` counts only when non-empty; ``FORCE_COLOR``;
- ``OMNIPORT_IN_AUTOMATION`` leaves out the interactive hints;
- ``omniport completion bash|zsh|fish`` prints scripts that drive click's completion.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from omniport.planner.cli import cli, run
from omniport.planner.cli.context import color_wanted
from tests.paths import REPO

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
SCANNED = ("planner", "providers", "lab")

# Flags of other programs that omniport's messages quote; each is accepted only in a string
# that also names that program (the second item), so an omniport message cannot hide here.
FOREIGN = {
    "--file": "talosctl apply-config",
    "--insecure": "talosctl apply-config",
    "--image-factory-address": "Omni",
}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def named_flags() -> Iterator[tuple[str, str, str]]:
    """(flag, file:line, the string) for every ``--flag`` in a string of the code that is not a
    docstring (docstrings speak to developers; messages and help texts speak to users) nor
    a flag alone (declarations and argv items)."""
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            if "wire" in path.relative_to(REPO).parts:
                continue
            tree = ast.parse(path.read_text(), str(path))
            skip = _docstrings(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.JoinedStr):
                    parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
                    text = "".join(str(p) for p in parts)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    if id(node) in skip:
                        continue
                    text = node.value
                else:
                    continue
                if FLAG.fullmatch(text):
                    continue  # a declaration or an argv item (click, argparse), not a message
                for match in FLAG.finditer(text):
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    yield match.group(), where, text


def existing_flags() -> set[str]:
    found = {"--help", "--version"}

    def walk(command: click.Command) -> None:
        for param in command.params:
            found.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                walk(sub)

    walk(cli)
    return found


def test_every_flag_a_message_names_exists_on_some_command():
    exists = existing_flags()
    seen = list(named_flags())
    assert len(seen) > 50, "the scan found too few flags: is it reading the code?"
    missing = []
    for flag, where, text in seen:
        if flag in exists:
            continue
        marker = FOREIGN.get(flag)
        if marker is not None and marker in text:
            continue
        missing.append(f"{where}: {flag} in {text[:80]!r}")
    assert not missing, "messages name flags that no command has:\n" + "\n".join(missing)


def test_the_flags_messages_tell_users_to_pass_are_global():
    """The talosconfig/omniconfig lookups' advice, before and after a command."""
    for flag in ("--talosconfig", "--context", "--endpoints", "--nodes", "--omniconfig"):
        assert flag in {o for p in cli.params for o in p.opts}
        for name in ("validate", "plan", "apply", "rollback", "abort", "unlock"):
            assert flag in {o for p in cli.commands[name].params for o in p.opts}, (name, flag)


def _all_commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _all_commands(sub, (*path, name))


@pytest.mark.parametrize("path", list(_all_commands(cli)), ids=lambda p: " ".join(p) or "root")
def test_no_color_is_accepted_on_every_command(path, capsys, tmp_path):
    args = list(path)
    if args[:2] == ["lab", "fault"]:  # the group's own required option
        args[2:2] = ["--dir", str(tmp_path)]
    assert run([*args, "--no-color", "--help"]) == 0
    assert "--no-color" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flag", "env", "tty", "expected"),
    [
        (False, {}, True, True),
        (False, {}, False, False),
        (False, {"NO_COLOR": "1"}, True, False),
        (False, {"NO_COLOR": ""}, True, True),  # no-color.org: empty means unset
        (False, {"FORCE_COLOR": "1"}, False, True),
        (False, {"FORCE_COLOR": ""}, False, False),
        (False, {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, True),
        (True, {"FORCE_COLOR": "1"}, True, False),  # the flag beats everything
    ],
    ids=["tty", "pipe", "no-color", "empty-no-color", "force", "empty-force", "both", "flag"],
)
def test_color_rules(flag, env, tty, expected):
    assert color_wanted(flag, env, tty) is expected


def omniport(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO):
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return subprocess.run(
        [sys.executable, "-m", "omniport.planner.cli", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(scope="module")
def moved(lab, tmp_path_factory):
    """The shared lab's spec, copied elsewhere with a talosconfig path that does not exist
    there."""
    import yaml

    where = tmp_path_factory.mktemp("moved")
    data = yaml.safe_load((lab.dir / "import.yaml").read_text())
    data["talos"]["talosconfig"] = "./no-such-talosconfig"
    for section in ("omni", "imageFactory"):
        data[section]["caFile"] = str(lab.dir / "lab-ca.pem")
    data["omni"]["serviceAccountKeyFile"] = str(lab.dir / "service-account.key")
    data["backup"] = {"directory": str(where / "backups")}
    (where / "import.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return where


def test_without_the_flag_the_spec_is_refused_naming_the_file(moved):
    done = omniport("validate", str(moved / "import.yaml"))
    assert done.returncode == 1
    assert "no-such-talosconfig" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("before", [True, False], ids=["before-command", "after-command"])
def test_global_talosconfig_and_nodes_override_the_spec(lab, moved, before):
    nodes = lab.nodes[::-1]  # every node (a cluster's node missing is a blocking finding)
    flags = ["--talosconfig", str(lab.talosconfig), "--nodes", ",".join(nodes)]
    plan = moved / f"p-{before}.json"
    args = ["plan", str(moved / "import.yaml"), "-o", str(plan)]
    done = omniport(*(flags + args if before else args + flags), env={"NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    recorded = json.loads(plan.read_text())
    assert recorded["spec"]["talos"]["talosconfig"] == str(lab.talosconfig)
    assert recorded["spec"]["talos"]["nodes"] == nodes
    assert {n["address"] for n in recorded["nodes"]} == set(nodes)


def test_global_context_is_used_and_a_wrong_one_is_named(lab, moved):
    base = ["--talosconfig", str(lab.talosconfig)]
    ok = omniport(*base, "--context", "lab", "validate", str(moved / "import.yaml"))
    assert ok.returncode == 0, ok.stderr
    bad = omniport(*base, "--context", "nope", "plan", str(moved / "import.yaml"), "-o", "x.json")
    assert bad.returncode == 1
    assert "context 'nope' is not in the talosconfig (available: lab)" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_global_endpoints_replace_the_talosconfig_endpoints(lab, moved):
    dead = omniport(
        "--talosconfig",
        str(lab.talosconfig),
        "--endpoints",
        "127.0.0.1:9",  # nothing listens on the discard port of loopback
        "plan",
        str(moved / "import.yaml"),
        "-o",
        str(moved / "dead.json"),
    )
    assert dead.returncode == 1
    assert "127.0.0.1:9" in dead.stderr and "Traceback" not in dead.stderr
    assert not (moved / "dead.json").exists()


def test_a_missing_override_file_is_a_usage_error(moved):
    done = omniport("plan", str(moved / "import.yaml"), "--omniconfig", "nowhere.yaml")
    assert done.returncode == 1
    assert "'--omniconfig'" in done.stderr and "nowhere.yaml" in done.stderr
    assert "Traceback" not in done.stderr


def test_nodes_cannot_change_what_apply_imports(lab, moved):
    plan = lab.dir / "conventions-nodes.plan.json"  # beside its spec, as apply needs today
    assert omniport("plan", str(lab.dir / "import.yaml"), "-o", str(plan)).returncode == 0
    done = omniport("--nodes", lab.nodes[0], "apply", "--auto-approve", str(plan))
    assert done.returncode == 1
    assert "--nodes cannot change the nodes of `omniport apply`" in done.stderr


def test_force_color_and_no_color_on_a_rendered_plan(lab, moved):
    plan = moved / "colors.json"
    assert omniport("plan", str(lab.dir / "import.yaml"), "-o", str(plan)).returncode == 0
    forced = omniport("show", str(plan), env={"FORCE_COLOR": "1"})
    assert "\x1b[" in forced.stdout
    assert "\x1b[" not in omniport("show", str(plan), env={"NO_COLOR": ""}).stdout  # no TTY
    flagged = omniport("show", "--no-color", str(plan), env={"FORCE_COLOR": "1"})
    assert "\x1b[" not in flagged.stdout
    root_flag = omniport("--no-color", "show", str(plan), env={"FORCE_COLOR": "1"})
    assert "\x1b[" not in root_flag.stdout


def test_automation_mode_drops_the_next_step_hints(lab, moved):
    args = ("plan", str(lab.dir / "import.yaml"), "-o", str(moved / "auto.json"))
    interactive = omniport(*args)
    assert "To perform exactly these actions, run:" in interactive.stdout
    automated = omniport(*args, env={"OMNIPORT_IN_AUTOMATION": "1"})
    assert automated.returncode == 0
    assert "Saved the plan to:" in automated.stdout
    assert "To perform exactly" not in automated.stdout
    empty = omniport(*args, env={"OMNIPORT_IN_AUTOMATION": ""})  # empty means unset
    assert "To perform exactly these actions, run:" in empty.stdout


def test_automation_mode_drops_next_after_lab_up(tmp_path):
    from tests.conftest import stop_by_pid

    pids = []
    try:
        for name, env in (("a", {}), ("b", {"OMNIPORT_IN_AUTOMATION": "1"})):
            done = omniport("lab", "up", "--dir", str(tmp_path / name), env=env)
            assert done.returncode == 0, done.stderr
            pids.append(json.loads((tmp_path / name / "lab.json").read_text())["pid"])
            assert ("Next:" in done.stdout) is (name == "a")
    finally:
        for pid in pids:
            stop_by_pid(int(pid))


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F"), ("zsh", "#compdef omniport"), ("fish", "complete ")],
)
def test_completion_scripts(shell, marker):
    done = omniport("completion", shell)
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout and "_OMNIPORT_COMPLETE" in done.stdout


def test_completion_completes_commands_and_flags():
    """What the bash script asks the program, answered by click's completion."""
    env = {"_OMNIPORT_COMPLETE": "bash_complete", "COMP_WORDS": "omniport pl", "COMP_CWORD": "1"}
    done = omniport(env=env)
    assert "plain,plan" in done.stdout.splitlines()
    env.update(COMP_WORDS="omniport plan --talos", COMP_CWORD="2")
    assert "plain,--talosconfig" in omniport(env=env).stdout.splitlines()


def test_completion_refuses_an_unknown_shell():
    done = omniport("completion", "powershell")
    assert done.returncode == 1
    assert "'powershell' is not one of 'bash', 'zsh', 'fish'" in done.stderr


def test_apply_and_rollback_reach_the_cluster_as_the_flags_say(world):
    """A CI runner keeps the talosconfig elsewhere than the laptop that planned: the recorded
    path is gone, --talosconfig names the new one, and the plan still hashes as planned."""
    from tests.reliability.labkit import assert_restored

    before = world.snapshot()
    assert world.cli("plan", "-o", str(world.plan), str(world.spec)).code == 0
    moved = world.dir / "ci" / "talosconfig"
    moved.parent.mkdir()
    (world.dir / "talosconfig").rename(moved)

    refused = world.apply()
    assert refused.code == 1 and "talosconfig" in refused.err
    assert "Traceback" not in refused.err
    assert world.snapshot() == before

    applied = world.apply("--talosconfig", str(moved))
    assert applied.code == 0, applied.text
    rolled = world.cli(
        "--talosconfig", str(moved), "rollback", "--auto-approve", str(world.rollback)
    )
    assert rolled.code == 0, rolled.text
    assert_restored(world, before)
