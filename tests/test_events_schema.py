"""The --json event stream follows its published schema, schemas/events.schema.json (issue 15
item 7).

Every command whose ``--json`` is an event stream (plan, apply, rollback, abort, unlock) is run
against a lab the way CI runs it, on success and on failure (errors before the command starts,
a refused approval, an apply that fails and rolls back, progress on a slow lab), and every line
it prints on stdout must be one event valid against the schema. The stream starts with the
version event, and a failed run says so in the stream itself, as its last event: an error
diagnostic.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from omniport import schemas
from omniport.planner import render

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
    assert parsed[0]["type"] == "version", "a stream starts with its version event"
    assert sum(e["type"] == "version" for e in parsed) == 1
    return parsed


def ends_in_error(stream: list[dict[str, Any]]) -> dict[str, Any]:
    last = stream[-1]
    assert last["type"] == "diagnostic" and last["@level"] == "error", last
    return last


# ---- the schema itself ----------------------------------------------------------------------


def test_the_schema_is_a_valid_schema_and_refuses_what_it_should():
    jsonschema.Draft202012Validator.check_schema(schemas.load("events"))
    good = render.version_event()
    assert VALIDATOR.is_valid(good)
    assert not VALIDATOR.is_valid({**good, "type": "versoin"})
    assert not VALIDATOR.is_valid({**good, "extra": 1})
    assert not VALIDATOR.is_valid({k: v for k, v in good.items() if k != "@timestamp"})
    assert not VALIDATOR.is_valid({**good, "@timestamp": "yesterday"})
    step = {"address": "a.b", "resource_type": "T", "resource_id": "b", "action": "create"}
    errored = render.hook_event("apply_errored", "x", step, level="error", elapsed_seconds=1.0)
    assert not VALIDATOR.is_valid(errored)  # an errored step says its error
    errored["hook"]["error"] = "boom"
    assert VALIDATOR.is_valid(errored)
    assert not VALIDATOR.is_valid({**errored, "@level": "info"})
    progress = render.progress_event(
        {"stage": "discovery", "what": "reading", "elapsed_seconds": 2.0, "repeat": False}, "x"
    )
    assert VALIDATOR.is_valid(progress)
    progress["progress"]["repeat"] = "no"
    assert not VALIDATOR.is_valid(progress)


def test_every_event_type_the_code_emits_has_a_branch():
    """The event kinds written in planner/ are exactly the schema's branches."""
    import re

    from tests.paths import REPO

    kinds: set[str] = set()
    for path in (REPO / "planner").rglob("*.py"):
        text = path.read_text()
        kinds |= set(re.findall(r"(?:render\.)?\bevent\(\s*\"([a-z_]+)\"", text))
        kinds |= set(re.findall(r"hook_event\(\s*\"([a-z_]+)\"", text))
    branches = {b["properties"]["type"]["const"] for b in schemas.load("events")["oneOf"]}
    assert kinds, "the scan found no event kinds"
    assert kinds == branches, (sorted(kinds - branches), sorted(branches - kinds))


# ---- streams of real runs -------------------------------------------------------------------


def test_plan_show_apply_rollback_streams(world):
    plan = events(world.cli("plan", "--json", "-o", str(world.plan), str(world.spec)).out)
    assert plan[-1]["type"] == "change_summary"
    assert {"diagnostic", "planned_change"} <= {e["type"] for e in plan}
    shown = world.cli("show", "--json", str(world.plan))
    assert shown.code == 0 and isinstance(json.loads(shown.out), dict)  # a document, not events
    applied = world.cli("apply", "--json", "--auto-approve", str(world.plan))
    assert applied.code == 0, applied.text
    kinds = {e["type"] for e in events(applied.out)}
    assert {"apply_start", "apply_progress", "apply_complete", "change_summary", "log"} <= kinds
    rolled = world.cli("rollback", "--json", "--auto-approve", str(world.rollback))
    assert rolled.code == 0, rolled.text
    assert events(rolled.out)[-1]["changes"]["operation"] == "rollback"


def test_failed_apply_stream_names_the_step_and_ends_in_error(world):
    assert world.cli("plan", "-o", str(world.plan), str(world.spec)).code == 0
    world.fault(kind="apply-failure", node=world.nodes[-1], after=0)
    applied = world.cli("apply", "--json", "--auto-approve", str(world.plan))
    assert applied.code == 1
    stream = events(applied.out)
    errored = [e for e in stream if e["type"] == "apply_errored"]
    assert errored and errored[0]["hook"]["node"] == world.nodes[-1]
    last = ends_in_error(stream)
    assert "rolled back" in last["@message"] or "roll" in last["@message"]
    assert last["@message"] in applied.err  # the same sentence on stderr


def test_progress_events_of_a_slow_plan_are_in_the_stream(world):
    world.fault(kind="latency", ms=2100)
    done = world.cli("plan", "--json", "-o", str(world.plan), str(world.spec))
    assert done.code == 0, done.err
    stream = events(done.out)
    ticks = [e for e in stream if e["type"] == "progress"]
    assert ticks, "a plan of a slow lab streamed no progress event"
    assert {t["progress"]["stage"] for t in ticks} & {"discovery", "health-check"}


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("plan", "--json", "missing.yaml"), "missing.yaml"),
        (("plan", "--json", "--bogus", "x.yaml"), "No such option '--bogus'"),
        (("plan", "--json"), "Missing argument 'SPEC'"),
        (("--talosconfig", "missing", "plan", "--json", "x.yaml"), "'--talosconfig'"),
        (("apply", "--json", "--auto-approve", "missing.plan.json"), "missing.plan.json"),
        (("apply", "--json", "--auto-approve", "--parallelism", "0", "p.json"), "--parallelism"),
        (("rollback", "--json", "--auto-approve", "missing.rollback.json"), "missing.rollback"),
        (("abort", "--json", "--auto-approve", "lab"), "Missing option '--spec'"),
        (("unlock", "--json", "--auto-approve", "lab"), "--spec SPEC"),
    ],
    ids=[
        "plan-missing-spec",
        "plan-bad-flag",
        "plan-no-spec",
        "bad-global-flag",
        "apply-missing-plan",
        "apply-bad-value",
        "rollback-missing-file",
        "abort-missing-option",
        "unlock-no-access",
    ],
)
def test_early_errors_are_in_the_stream(world, args, said):
    done = world.cli(*args)
    assert done.code == 1
    last = ends_in_error(events(done.out))
    assert said in last["@message"], last
    assert "Traceback" not in done.err


def test_refused_approval_is_in_the_stream(world):
    assert world.cli("plan", "-o", str(world.plan), str(world.spec)).code == 0
    before = world.snapshot()
    done = world.cli("apply", "--json", str(world.plan))
    assert done.code == 1
    last = ends_in_error(events(done.out))
    assert "--auto-approve" in last["@message"]
    assert last["diagnostic"]["fix"] == "review first, then pass --auto-approve"
    assert world.snapshot() == before  # nothing changed


def test_document_commands_keep_plain_errors(world):
    """show --json prints one JSON document; its failures stay on stderr only."""
    done = world.cli("show", "--json", "missing.plan.json")
    assert done.code == 1 and done.out == ""
    assert done.err.startswith("Error: ")
