"""The --json event stream follows its published schema (schemas/events.schema.json).

Every command that takes --json is run against a lab the way CI runs it, on success and on
failure (an early error, a refused approval, an apply that fails and rolls back), and every line
it prints on stdout must be one event valid against the schema. A failed run must say so in the
stream itself, as its last event: an error diagnostic.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from omniport import schemas

VALIDATOR = jsonschema.Draft202012Validator(schemas.load("events"))


def events(stdout: str) -> list[dict[str, Any]]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "no event on stdout"
    parsed = []
    for line in lines:
        event = json.loads(line)  # every stdout line is JSON: no stray text in --json mode
        errors = sorted(VALIDATOR.iter_errors(event), key=lambda e: list(e.path))
        assert not errors, f"{line}\n" + "\n".join(e.message for e in errors)
        parsed.append(event)
    return parsed


def ends_in_error(stream: list[dict[str, Any]]) -> dict[str, Any]:
    last = stream[-1]
    assert last["type"] == "diagnostic" and last["@level"] == "error", last
    return last


def test_the_schema_is_a_valid_schema_and_refuses_what_it_should():
    jsonschema.Draft202012Validator.check_schema(schemas.load("events"))
    good = {
        "@level": "info",
        "@message": "omniport 1",
        "@module": "omniport.ui",
        "@timestamp": "2026-12-02T10:00:00.000001+00:00",
        "type": "version",
        "omniport": "1",
        "ui": "1.0",
    }
    assert VALIDATOR.is_valid(good)
    assert not VALIDATOR.is_valid({**good, "type": "versoin"})
    assert not VALIDATOR.is_valid({**good, "extra": 1})
    assert not VALIDATOR.is_valid({k: v for k, v in good.items() if k != "@timestamp"})
    errored = {**good, "type": "apply_errored", "@level": "error"}
    del errored["omniport"], errored["ui"]
    hook = {"resource": {"addr": "a.b", "resource_type": "T", "resource_name": "b"}}
    assert not VALIDATOR.is_valid({**errored, "hook": {**hook, "action": "create"}})  # no error
    assert VALIDATOR.is_valid({**errored, "hook": {**hook, "action": "create", "error": "x"}})


def test_plan_show_apply_rollback_streams(world):
    plan = events(world.cli("plan", "--json", "-o", str(world.plan), str(world.spec)).out)
    assert plan[0]["type"] == "version" and plan[-1]["type"] == "change_summary"
    show = events(world.cli("show", "--json", str(world.plan)).out)
    assert [e["type"] for e in show] == [e["type"] for e in plan]
    applied = world.cli("apply", "--json", "--auto-approve", str(world.plan))
    assert applied.code == 0, applied.text
    kinds = {e["type"] for e in events(applied.out)}
    assert {"apply_start", "apply_progress", "apply_complete", "change_summary"} <= kinds
    rolled = world.cli("rollback", "--json", "--auto-approve", str(world.rollback))
    assert rolled.code == 0, rolled.text
    assert events(rolled.out)[-1]["changes"]["operation"] == "rollback"


def test_failed_apply_stream_names_the_step_and_ends_in_error(world):
    assert world.cli("plan", "-o", str(world.plan), str(world.spec)).code == 0
    world.fault(kind="apply-failure", node=world.nodes[-1], after=0, clear=False)
    applied = world.cli("apply", "--json", "--auto-approve", str(world.plan))
    assert applied.code != 0
    stream = events(applied.out)
    assert any(e["type"] == "apply_errored" for e in stream)
    ends_in_error(stream)


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "--json", "missing.yaml"),
        ("show", "--json", "missing.plan.json"),
        ("apply", "--json", "missing.plan.json"),
        ("rollback", "--json", "--auto-approve", "missing.rollback.json"),
    ],
    ids=["plan", "show", "apply", "rollback"],
)
def test_early_errors_are_in_the_stream(world, args):
    done = world.cli(*args)
    assert done.code != 0
    last = ends_in_error(events(done.out))
    assert "missing" in last["@message"]


def test_refused_approval_is_in_the_stream(world):
    assert world.cli("plan", "-o", str(world.plan), str(world.spec)).code == 0
    done = world.cli("apply", "--json", str(world.plan))
    assert done.code != 0
    last = ends_in_error(events(done.out))
    assert "--auto-approve" in last["@message"]
