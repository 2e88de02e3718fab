"""Apply and rollback pieces that need no lab: stale detection, secrets scrubbing, the journal
crash hook, write-ahead paths, refusals before any change, Ctrl-C handling and rendering."""

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from omniport.planner import planfile, render
from omniport.planner.cli.console import ConsoleUi, require_approval_channel
from omniport.planner.execute import journal
from omniport.planner.execute.apply import (
    journal_path,
    load_plan,
    retire_previous,
    rollback_path,
    stale_reasons,
)
from omniport.planner.execute.errors import ApplyError
from omniport.planner.execute.secrets import Scrubber, config_secrets, os_ca_sha256
from omniport.planner.execute.session import KILL_ENV, Interrupts, Recorder, StepRef, lock_scope
from omniport.planner.plan import (
    Action,
    Change,
    ClusterInfo,
    Finding,
    NodePlan,
    Patch,
    Plan,
    Severity,
)
from tests.paths import TALOS_FIXTURES

SHA_A, SHA_B = "a" * 64, "b" * 64


def sample_plan(**changes) -> Plan:
    plan = Plan(
        tool_version="0.1.0",
        created_at="2026-11-23T20:00:00Z",
        spec={"version": 1},
        spec_sha256=SHA_A,
        cluster=ClusterInfo("prod", "1.11.5", "1.34.1", "1.9.5", "1.32.9", "https://omni", None),
        nodes=(
            NodePlan("10.0.0.1", "cp-1", "u1", "controlplane", "1.11.5", None, SHA_A),
            NodePlan(
                "10.0.0.2",
                "w-1",
                "u2",
                "worker",
                "1.11.5",
                None,
                SHA_A,
                patches=(Patch("10-u2", SHA_B, "machine: {}"),),
            ),
        ),
        findings=(),
        changes=(Change("omni_cluster.prod", Action.CREATE, "Clusters.omni.sidero.dev", "prod"),),
        secrets_sha256=SHA_A,
        fingerprint=SHA_A,
    )
    return dataclasses.replace(plan, **changes)


def test_a_fresh_plan_is_not_stale():
    assert stale_reasons(sample_plan(), sample_plan(created_at="later")) == []


@pytest.mark.parametrize(
    "change, reason",
    [
        (
            lambda p: p.nodes[0].__class__(
                **{**dataclasses.asdict(p.nodes[0]), "config_sha256": SHA_B}
            ),
            "node 10.0.0.1's config changed since the plan",
        ),
        (
            lambda p: dataclasses.replace(p.nodes[0], machine_uuid="other"),
            "node 10.0.0.1's machine UUID changed since the plan (u1 -> other)",
        ),
        (
            lambda p: dataclasses.replace(p.nodes[0], talos_version="1.11.6"),
            "node 10.0.0.1's Talos version changed since the plan (1.11.5 -> 1.11.6)",
        ),
    ],
    ids=["config", "uuid", "talos-version"],
)
def test_a_changed_node_is_named(change, reason):
    plan = sample_plan()
    now = sample_plan(nodes=(change(plan), plan.nodes[1]))
    assert stale_reasons(plan, now)[0] == reason


def test_patches_secrets_findings_and_omni_are_named():
    plan = sample_plan()
    worker = dataclasses.replace(plan.nodes[1], patches=(Patch("10-u2", SHA_A, "x"),))
    assert stale_reasons(plan, sample_plan(nodes=(plan.nodes[0], worker))) == [
        "node 10.0.0.2's patches would differ from the plan"
    ]
    assert stale_reasons(plan, sample_plan(secrets_sha256=SHA_B)) == [
        "the cluster's secrets bundle changed since the plan"
    ]
    exists = Finding("CLUSTER_EXISTS", Severity.ERROR, "Omni already has cluster prod")
    assert stale_reasons(plan, sample_plan(findings=(exists,))) == [
        "a new blocking finding CLUSTER_EXISTS: Omni already has cluster prod"
    ]
    assert "Omni's state changed" in stale_reasons(plan, sample_plan(fingerprint=SHA_B))[0]


def test_paths_beside_the_plan():
    plan = Path("/x/import.plan.json")
    assert rollback_path(plan) == Path("/x/import.plan.rollback.json")
    assert journal_path(plan) == Path("/x/import.plan.journal.jsonl")
    assert lock_scope("https://omni.example:8443", "prod") == "omni.example:8443/prod"


def _write_plan(tmp_path, plan: Plan) -> Path:
    path = tmp_path / "p.plan.json"
    planfile.write(plan, path)
    return path


def test_blocking_findings_and_tampering_refuse_before_anything(tmp_path):
    blocked = sample_plan(findings=(Finding("NODE_UNREACHABLE", Severity.ERROR, "down", node="x"),))
    with pytest.raises(ApplyError, match=r"1 blocking finding\(s\) \(NODE_UNREACHABLE\)"):
        load_plan(_write_plan(tmp_path, blocked))
    path = _write_plan(tmp_path, sample_plan())
    text = path.read_text()
    path.write_text(text.replace('"prod"', '"prud"', 1))
    with pytest.raises(planfile.PlanFileError, match="modified after it was written"):
        load_plan(path)


def test_spec_paths_that_do_not_resolve_are_one_sentence(tmp_path):
    plan = sample_plan(
        spec={
            "version": 1,
            "talos": {"talosconfig": "./missing-talosconfig", "nodes": ["10.0.0.1"]},
            "omni": {"url": "https://omni"},
        }
    )
    with pytest.raises(ApplyError) as err:
        load_plan(_write_plan(tmp_path, plan))
    assert "missing-talosconfig" in str(err.value)
    assert "\n" not in str(err.value)


def test_scrubber_hides_every_secret_of_a_config():
    path = TALOS_FIXTURES / "v1alpha1" / "stability" / "v1.11" / "base-controlplane.yaml"
    if not path.exists():
        pytest.skip("talos fixtures not available")
    config = path.read_bytes()
    secrets = config_secrets(config)
    assert len(secrets) > 5
    scrub = Scrubber(secrets)
    leaked = scrub(f"server said: {config.decode()}")
    for secret in secrets:
        assert secret not in leaked
    assert os_ca_sha256(config) is not None


def test_recorder_kills_itself_after_the_nth_record(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from omniport.planner.execute.session import Recorder
        record = Recorder({str(tmp_path / "j.jsonl")!r})
        for n in range(10):
            record("start", f"step{{n}}")
        """
    )
    env = {**os.environ, KILL_ENV: "3"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert proc.returncode == -signal.SIGKILL
    records = journal.read(tmp_path / "j.jsonl")
    assert [r.step for r in records] == ["step0", "step1", "step2"]


def test_recorder_without_the_hook_never_kills(tmp_path):
    record = Recorder(tmp_path / "j.jsonl", environ={})
    for _ in range(3):
        record("start", "x")
    record.close()
    assert len(journal.read(tmp_path / "j.jsonl")) == 3


def test_an_unfinished_earlier_run_blocks_a_new_apply(tmp_path):
    jpath, rpath = tmp_path / "p.journal.jsonl", tmp_path / "p.rollback.json"
    retire_previous(jpath, rpath)  # nothing there: fine
    with journal.Journal(jpath) as j:
        j.append("begin", None, import_id="x")
        j.append("start", "omni_cluster.prod")
    rpath.write_text("{}")
    with pytest.raises(ApplyError, match="was not rolled back"):
        retire_previous(jpath, rpath)
    with journal.Journal(jpath) as j:
        j.append("rollback_complete", None)
    retire_previous(jpath, rpath)
    assert not jpath.exists() and not rpath.exists()
    assert len(list(tmp_path.iterdir())) == 2  # both moved aside, not deleted


def test_approval_needs_a_terminal_or_the_flag(monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(ApplyError, match="no terminal to ask on"):
        require_approval_channel(False, False, "apply")
    with pytest.raises(ApplyError, match="cannot ask for approval"):
        require_approval_channel(False, True, "apply")
    require_approval_channel(True, True, "apply")


class Lines:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        self.lines.append(text)


def test_first_interrupt_cancels_the_task_second_exits():
    out = Lines()
    ui = ConsoleUi(out, as_json=False, color=False)
    exits: list[int] = []
    interrupts = Interrupts(ui, exit_now=lambda: exits.append(1))
    interrupts.begun = True  # inside a transaction (after the journal's begin)

    async def main():
        task = asyncio.create_task(asyncio.sleep(10))
        interrupts.task = task
        interrupts.fire()
        with pytest.raises(asyncio.CancelledError):
            await task
        interrupts.fire()

    asyncio.run(main())
    assert exits == [1]
    assert any("rolling back" in line for line in out.lines)
    assert any("journal is intact" in line for line in out.lines)


def test_json_events_have_terraforms_hook_shape():
    out = Lines()
    ui = ConsoleUi(out, as_json=True, color=False)
    step = StepRef("omni_cluster.prod", "create", "Clusters.omni.sidero.dev", "prod")
    ui.start(step)
    ui.progress(step, "1/3 nodes", done=1, total=3, elapsed_seconds=0.5)
    ui.done(step, 0.25)
    ui.failed(step, "boom", 0.1)
    ui.summary("apply", "Apply complete!", 1, 0, 0)
    events = [json.loads(line) for line in out.lines]
    assert [e["type"] for e in events] == [
        "apply_start",
        "apply_progress",
        "apply_complete",
        "apply_errored",
        "change_summary",
    ]
    for e in events:
        assert {"@level", "@message", "@module", "@timestamp", "type"} <= set(e)
    assert events[0]["hook"]["resource"] == {
        "addr": "omni_cluster.prod",
        "resource_type": "Clusters.omni.sidero.dev",
        "resource_name": "prod",
    }
    assert events[2]["hook"]["elapsed_seconds"] == 0.25
    assert events[3]["@level"] == "error"
    assert events[4]["changes"]["operation"] == "apply"


def test_human_lines_read_like_terraform():
    out = Lines()
    ui = ConsoleUi(out, as_json=False, color=False)
    step = StepRef("omni_cluster.prod", "create", "Clusters.omni.sidero.dev", "prod")
    ui.start(step)
    ui.done(step, 0.25)
    assert out.lines == [
        "omni_cluster.prod: Creating...",
        "omni_cluster.prod: Creation complete after 0.2s",
    ]


def test_abort_and_unlock_render_plan_style():
    text = render.render_abort(
        {
            "cluster": "prod",
            "omni_url": "https://omni",
            "machines": ["u1", "u2"],
            "nodes": {"u1": "10.0.0.1"},
            "unmatched": ["u2"],
        }
    )
    assert '- Clusters.omni.sidero.dev "prod"' in text
    assert '- Links.omni.sidero.dev "u2"' in text
    assert "u2 is not among the spec's nodes" in text
    assert text.rstrip().endswith("Abort: 0 to add, 1 to change, 3 to destroy.")
    unlock = render.render_unlock(
        {
            "cluster": "prod",
            "omni_url": "https://omni",
            "locked": True,
            "importing": True,
            "machines": 3,
            "preview": [
                {"code": "UNLOCK_PREVIEW", "node": "10.0.0.1", "message": "m", "details": ["d"]}
            ],
        }
    )
    assert "[UNLOCK_PREVIEW] on 10.0.0.1: m" in unlock
    assert "cluster-import-is-in-progress" in unlock
    assert unlock.rstrip().endswith("Unlock: 0 to add, 1 to change, 0 to destroy.")


def test_show_renders_a_rollback_plan_with_its_links(tmp_path):
    from omniport.planner.cli.context import CliContext
    from omniport.planner.cli.plan import run_show
    from omniport.planner.execute import rollbackfile
    from omniport.planner.execute.rollbackfile import OmniRef, RollbackNode, RollbackPlan

    rb = RollbackPlan(
        created_at="2026-11-23T20:00:00Z",
        import_id="0b6f6e2c-0000-4000-8000-000000000001",
        plan_checksum=SHA_A,
        spec={"version": 1},
        cluster_name="prod",
        omni_url="https://omni",
        os_ca_sha256=SHA_A,
        k8s_ca_sha256=None,
        backup_path="prod-backup-20261123-200000.zip",
        backup_sha256=SHA_A,
        journal="p.journal.jsonl",
        nodes=(RollbackNode("10.0.0.1", "cp-1", "u1", "cp-1-10.0.0.1.yaml", SHA_A),),
        omni_resources=(OmniRef("Clusters.omni.sidero.dev", "prod"),),
        links=("u1",),
        spec_base=str(tmp_path),
    )
    path = tmp_path / "p.rollback.json"
    rollbackfile.write(rb, path)
    out = Lines()
    assert run_show(CliContext(color=False, echo=out), str(path)) == 0
    text = "\n".join(out.lines)
    assert "restore 10.0.0.1 (cp-1) to its backup cp-1-10.0.0.1.yaml" in text
    assert "destroy Links.omni.sidero.dev 'u1' if its node joined Omni" in text
