"""``talos.nodes`` is optional: without it, plan takes the nodes from Talos discovery ``Members``
(omni#1301: users should not list nodes by hand) and the plan says which nodes it found and how.

Runs against the session's shared lab (read only) and one lab of its own whose control plane
has cluster discovery turned off.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from omniport.lab import control
from omniport.planner import planfile
from omniport.planner.cli import run
from omniport.planner.discover import node_addresses
from omniport.planner.errors import PlanningError
from omniport.planner.facts import Member
from omniport.planner.spec import load_spec, parse_spec
from tests.test_plan_lab import plan, spec_variant


def without_nodes(data: dict) -> None:
    del data["talos"]["nodes"]


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run(list(args))
    return code, out.getvalue(), err.getvalue()


def test_plan_without_nodes_reads_the_discovery_members(lab, tmp_path):
    spec = spec_variant(lab, tmp_path / "discovered", without_nodes)
    result = plan(spec, tmp_path / "discovered.plan.json")
    assert result.code == 0, result.err
    assert result.data["nodes_source"] == "discovery"
    assert sorted(n["address"] for n in result.data["nodes"]) == sorted(lab.nodes)
    assert "MEMBERS_MISMATCH" not in result.codes
    assert "3 node(s) discovered from the Talos discovery members" in result.out
    assert "Reading the nodes Talos discovery lists" in result.err
    # the saved plan says it too, in show and show --json
    code, shown, _ = cli("show", str(result.path))
    assert code == 0
    assert "discovered from the Talos discovery members" in shown
    assert planfile.read(result.path).nodes_source == "discovery"


def test_plan_with_nodes_says_they_came_from_the_spec(lab, tmp_path):
    spec = spec_variant(lab, tmp_path / "listed")
    result = plan(spec, tmp_path / "listed.plan.json")
    assert result.code == 0, result.err
    assert result.data["nodes_source"] == "spec"
    assert "3 node(s) listed in talos.nodes" in result.out


def test_validate_accepts_a_spec_without_nodes(lab, tmp_path):
    spec = spec_variant(lab, tmp_path / "v", without_nodes)
    code, out, err = cli("validate", str(spec))
    assert code == 0, err
    assert "valid import spec for the nodes Talos discovery lists at plan time" in out
    assert load_spec(spec).talos.nodes == ()


def test_an_empty_node_list_is_still_refused():
    """Leaving the key out means "discover"; an empty list is a mistake, said as before."""
    from omniport.planner.spec import SpecError

    with pytest.raises(SpecError, match="talos.nodes must not be empty"):
        parse_spec("version: 1\ntalos: {nodes: []}\nomni: {url: https://omni.example}\n")


SPEC = "version: 1\ntalos: {}\nomni: {url: https://omni.example}\n"


@pytest.mark.parametrize(
    ("members", "error", "says"),
    [
        (None, "127.0.0.1: PermissionDenied", "discovery members could not be read"),
        ((), None, "cluster discovery is disabled"),
        ((Member("cp-1", "cp-1", (), "controlplane"),), None, "cluster discovery is disabled"),
    ],
    ids=["unreadable", "disabled", "no-address"],
)
def test_no_nodes_and_no_members_is_a_clear_error(members, error, says):
    spec = parse_spec(SPEC, file="import.yaml", path=Path("import.yaml"))
    with pytest.raises(PlanningError, match=says) as raised:
        node_addresses(spec, members, error)
    assert "talos.nodes" in str(raised.value)


def test_discovery_takes_each_members_first_address_once():
    spec = parse_spec(SPEC)
    members = (
        Member("cp-1", "cp-1", ("10.0.0.1", "fd00::1"), "controlplane"),
        Member("w-1", "w-1", ("10.0.0.2",), "worker"),
    )
    assert node_addresses(spec, members, None) == (("10.0.0.1", "10.0.0.2"), "discovery")
    listed = parse_spec(SPEC.replace("talos: {}", "talos: {nodes: [10.0.0.9]}"))
    assert node_addresses(listed, members, None) == (("10.0.0.9",), "spec")


def test_discovery_off_and_no_nodes_refuses_to_plan(lab_factory, tmp_path):
    handle = lab_factory("--nodes", "2", name="discovery-off")
    control.patch(
        handle.dir, handle.controlplanes[0], "cluster:\n  discovery:\n    enabled: false\n"
    )
    spec = spec_variant(handle, tmp_path / "off", without_nodes)
    out = tmp_path / "off.plan.json"
    result = plan(spec, out)
    assert result.code == 1
    assert "cluster discovery is disabled" in result.err
    assert "list the cluster's node addresses under talos.nodes" in result.err
    assert "Traceback" not in result.err
    assert not out.exists()


def test_apply_and_abort_of_a_spec_without_nodes(world):
    """Apply re-discovers the same members and accepts the plan; abort finds the nodes the
    same way and takes the join documents off every one of them."""
    from omniport.planner.machineconfig import document as mcdoc

    data = yaml.safe_load(world.spec.read_text())
    del data["talos"]["nodes"]
    world.spec.write_text(yaml.safe_dump(data, sort_keys=False))
    world.make_plan()
    assert planfile.read(world.plan).nodes_source == "discovery"
    before = world.snapshot()
    applied = world.apply()
    assert applied.code == 0, applied.text
    result = world.cli("abort", "lab", "--spec", str(world.spec), "--auto-approve")
    assert result.code == 0, result.text
    after = world.snapshot()
    for address, config in after.configs.items():
        kinds = {d.key.kind for d in mcdoc.parse(config).documents}
        assert not kinds & {"SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig"}, address
    assert after.resources == before.resources
