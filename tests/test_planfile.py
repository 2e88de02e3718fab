"""Plan files: canonical, schema-valid, sealed; refusals name the reason."""

import dataclasses
import json
import os
import stat

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from omniport.planner import __version__, planfile, render
from omniport.planner.cli import cli
from omniport.planner.plan import (
    Action,
    Change,
    ClusterInfo,
    Finding,
    NodePlan,
    Patch,
    Plan,
    Severity,
    SpecLocation,
)

SHA = "a" * 64


def sample_plan(**overrides) -> Plan:
    values = dict(
        tool_version=__version__,
        created_at="2026-11-23T20:00:00Z",
        spec={"version": 1, "talos": {"nodes": ["127.1.0.1"]}},
        spec_sha256=SHA,
        cluster=ClusterInfo("base", "1.11.5", "1.34.1", "1.9.5", "1.32.3", "https://omni", None),
        nodes=(
            NodePlan(
                address="127.1.0.1",
                hostname="cp-1",
                machine_uuid="0b6f6e2c-0000-4000-8000-000000000001",
                role="controlplane",
                talos_version="1.11.5",
                schematic_id="b" * 64,
                config_sha256=SHA,
                patches=(
                    Patch(
                        "10-0b6f6e2c-0000-4000-8000-000000000001",
                        SHA,
                        "machine:\n  token: (sensitive value)\n",
                    ),
                ),
                removed=("machine.token",),
            ),
        ),
        findings=(
            Finding("SCHEMATIC_MISSING", Severity.ERROR, "no schematic", "accept it", "127.1.0.1"),
            Finding("ETCD_LEARNER", Severity.WARNING, "learner present"),
        ),
        changes=(
            Change(
                "omni_cluster.base", Action.CREATE, "Clusters.omni.sidero.dev", "base", {"a": 1}
            ),
            Change(
                "talos_join.127.1.0.1",
                Action.UPDATE,
                "MachineConfigs.config.talos.dev",
                "v1alpha1",
                {"documents": "SideroLinkConfig\nEventSinkConfig\n"},
                "127.1.0.1",
            ),
        ),
        secrets_sha256=SHA,
        fingerprint=SHA,
    )
    values.update(overrides)
    return Plan(**values)


def test_round_trip_and_mode(tmp_path):
    path = tmp_path / "p.plan.json"
    planfile.write(sample_plan(), path)
    assert planfile.read(path) == sample_plan()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # unless asked: --file-mode
    planfile.write(sample_plan(), path, mode=0o644)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    text = path.read_text()
    assert text == planfile.dumps(sample_plan())  # deterministic
    data = json.loads(text)
    assert list(data) == sorted(data)


def test_one_changed_byte_is_refused(tmp_path):
    path = tmp_path / "p.plan.json"
    planfile.write(sample_plan(), path)
    text = path.read_text()
    tampered = text.replace('"base"', '"bass"', 1)
    path.write_text(tampered)
    with pytest.raises(planfile.PlanFileError, match="modified after it was written"):
        planfile.read(path)


def _resealed(data):
    data["checksum"] = planfile.checksum(data)
    return planfile.canonical(data)


def test_foreign_version_and_format_are_named():
    data = planfile.to_dict(sample_plan())
    data["tool_version"] = "9.9.9"
    with pytest.raises(planfile.PlanFileError, match=r"made by omniport 9\.9\.9, this is omniport"):
        planfile.parse(_resealed(data))
    data = planfile.to_dict(sample_plan())
    data["format_version"] = 7
    with pytest.raises(planfile.PlanFileError, match="plan format 7"):
        planfile.parse(_resealed(data))


def test_schema_violation_is_refused():
    data = planfile.to_dict(sample_plan())
    data["nodes"][0]["role"] = "boss"
    with pytest.raises(planfile.PlanFileError, match="nodes/0/role"):
        planfile.parse(_resealed(data))


@pytest.mark.parametrize(
    "text,needle",
    [("", "invalid JSON"), ("[]", "not an omniport plan file"), ("{", "invalid JSON")],
)
def test_garbage_is_refused(text, needle):
    with pytest.raises(planfile.PlanFileError, match=needle):
        planfile.parse(text)


def test_missing_file(tmp_path):
    with pytest.raises(planfile.PlanFileError, match="no plan file at"):
        planfile.read(tmp_path / "nope.json")


def test_render_text_has_terraform_shape():
    data = planfile.to_dict(sample_plan())
    text = render.render_plan(data, path="p.plan.json")
    assert "  # omni_cluster.base will be created" in text
    assert "  # talos_join.127.1.0.1 will be updated in-place" in text
    assert "Plan: 1 to add, 1 to change, 0 to destroy." in text
    assert "Error: [SCHEMATIC_MISSING] on 127.1.0.1: no schematic" in text
    assert text.index("Error:") < text.index("Warning:")
    assert "Apply is blocked by 1 error finding(s) (SCHEMATIC_MISSING)" in text
    assert "    omniport apply p.plan.json" in text
    assert "\x1b[" not in text
    assert "\x1b[" in render.render_plan(data, color=True)


def test_json_events():
    events = list(render.plan_events(planfile.to_dict(sample_plan())))
    assert [e["type"] for e in events] == [
        "version",
        "diagnostic",
        "diagnostic",
        "planned_change",
        "planned_change",
        "change_summary",
    ]
    for e in events:
        assert {"@level", "@message", "@timestamp", "type"} <= set(e)
    assert events[-1]["changes"] == {"add": 1, "change": 1, "remove": 0, "operation": "plan"}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_canonical_json_reserializes_byte_for_byte(value):
    text = planfile.canonical(value)
    assert planfile.canonical(json.loads(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_plan_or_a_plan_file_error(blob):
    try:
        planfile.parse(blob.decode("utf-8", "replace"))
    except planfile.PlanFileError:
        pass


def test_show_escapes_control_characters_of_a_validly_sealed_plan(tmp_path):
    """The seal proves integrity, not authorship: a crafted plan (or a node's hostname) must
    not drive the terminal through `show`."""
    nasty = "cp-1\x1b]0;owned\x07\x1b[2J\r\x9b"
    plan = sample_plan()
    node = dataclasses.replace(plan.nodes[0], hostname=nasty)
    path = tmp_path / "p.plan.json"
    planfile.write(dataclasses.replace(plan, nodes=(node,)), path)
    result = CliRunner().invoke(cli, ["show", str(path)])
    assert result.exit_code == 0, result.output
    assert not any(ch in result.output for ch in "\x1b\x07\r\x9b")
    assert "cp-1\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x9b" in result.output
    as_json = CliRunner().invoke(cli, ["show", "--json", str(path)])
    assert "\x1b" not in as_json.output  # JSON escapes them itself


def test_printable_keeps_newlines_tabs_and_text():
    assert render.printable("a\tb\nc é ✓") == "a\tb\nc é ✓"
    assert render.printable("\x00\x7f") == "\\x00\\x7f"


def test_the_seal_covers_every_field_and_needs_the_secrets():
    """(issue 15 item 10) A seal made with the secrets verifies; any edit, or other secrets,
    and it does not; the seal is not the plan's secrets_sha256 (which anyone can read)."""
    secrets = "cluster:\n  secret: s3cr3t\n"
    plan = planfile.sealed(sample_plan(), secrets)
    assert plan.seal and plan.seal != plan.secrets_sha256
    assert planfile.seal_verifies(plan, secrets)
    assert not planfile.seal_verifies(plan, secrets + " ")
    assert not planfile.seal_verifies(dataclasses.replace(plan, seal=None), secrets)
    location = SpecLocation("clusters/prod/import.yaml", in_repository=True)
    for edited in (
        dataclasses.replace(plan, fingerprint="0" * 64),
        dataclasses.replace(plan, created_at="2030-01-01T00:00:00Z"),
        dataclasses.replace(plan, spec_location=location),
    ):
        assert not planfile.seal_verifies(edited, secrets)
    # both new fields survive the file, and the self-checksum covers them
    located = planfile.sealed(dataclasses.replace(plan, spec_location=location), secrets)
    again = planfile.parse(planfile.dumps(located))
    assert again == located and planfile.seal_verifies(again, secrets)
    data = json.loads(planfile.dumps(located))
    data["spec_location"]["path"] = "elsewhere/import.yaml"
    with pytest.raises(planfile.PlanFileError, match="checksum mismatch"):
        planfile.parse(json.dumps(data))
