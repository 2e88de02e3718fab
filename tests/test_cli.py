"""The CLI skeleton: every command of the design is registered and exit codes are mapped."""

from omniport.planner.cli import run

COMMANDS = [
    "validate",
    "plan",
    "show",
    "apply",
    "rollback",
    "abort",
    "unlock",
    "config",
    "lab",
    "demo",
]


def test_help_lists_every_command(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"  {name} " in out, name


def test_version(capsys):
    assert run(["--version"]) == 0
    assert "omniport, version" in capsys.readouterr().out


def test_usage_error_exits_1_not_2(capsys):
    # 2 is reserved for "changes present" (plan --detailed-exitcode), as in Terraform.
    assert run(["plan"]) == 1
    assert "Missing argument" in capsys.readouterr().err


def test_unknown_command_exits_1(capsys):
    assert run(["frobnicate"]) == 1
    assert "No such command" in capsys.readouterr().err
