"""``omniport plan`` against labs over real sockets: the acceptance of issue 5.

A plan of a 3-node and a 50-node lab is schema-valid, exits 2 with ``--detailed-exitcode``,
and leaves Talos, Omni and the Image Factory as they were (config hashes and Omni resources
from ``lab status`` before and after; the factory's request log holds GETs and no POST). Two
plans of an unchanged world differ only in ``created_at`` (and the checksum that seals it),
also when nodes answer in another order. Bad specs and unreachable endpoints give one line and
exit 1.

The helpers here (``plan``, ``spec_variant``, ``world``) are shared with
``test_plan_lab_findings.py``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from omniport import schemas
from omniport.planner import planfile
from omniport.planner.cli import run

# --- helpers ---------------------------------------------------------------------------------


@dataclass
class PlanRun:
    """One ``omniport plan`` run through the CLI entry point, with what it printed."""

    code: int
    out: str
    err: str
    path: Path
    _data: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.path.read_text())
        return self._data

    @property
    def codes(self) -> set[str]:
        return {f["code"] for f in self.data["findings"]}

    def findings(self, code: str) -> list[dict[str, Any]]:
        return [f for f in self.data["findings"] if f["code"] == code]


def plan(spec: Path, out: Path, *flags: str) -> PlanRun:
    """Run ``omniport plan SPEC -o OUT FLAGS`` in this process and capture its output."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = run(["plan", str(spec), "-o", str(out), *flags])
    return PlanRun(code, stdout.getvalue(), stderr.getvalue(), out)


_PATHS = (
    ("talos", "talosconfig"),
    ("omni", "caFile"),
    ("omni", "serviceAccountKeyFile"),
    ("imageFactory", "caFile"),
    ("backup", "directory"),
)


def spec_variant(
    lab: Any, directory: Path, mutate: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """The lab's import.yaml with absolute paths, changed by ``mutate``, written to DIR."""
    data = yaml.safe_load((lab.dir / "import.yaml").read_text())
    for section, key in _PATHS:
        if key in data.get(section, {}):
            data[section][key] = str((lab.dir / data[section][key]).resolve())
    if mutate is not None:
        mutate(data)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "import.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def world(lab: Any) -> dict[str, Any]:
    """What plan must not change: every node's config hash and Omni's resources."""
    status = lab.status()
    return {
        "nodes": [
            (n["address"], n["config_sha256"], n["connected"], n["talos_version"])
            for n in status["nodes"]
        ],
        "omni": status["omni"]["resources"],
    }


def factory_requests(lab: Any) -> list[dict[str, Any]]:
    return list(lab.status()["factory"]["requests"])


def check_plan_file(result: PlanRun) -> dict[str, Any]:
    """The plan file is canonical, sealed and valid against schemas/plan.schema.json."""
    data = result.data
    jsonschema.Draft202012Validator(schemas.load("plan")).validate(data)
    loaded = planfile.read(result.path)  # checksum, versions, schema
    assert planfile.dumps(loaded) == result.path.read_text()
    return data


def without_created_at(text: str) -> dict[str, Any]:
    data = json.loads(text)
    data.pop("created_at")
    data.pop("checksum")  # it seals created_at too
    data.pop("seal")  # the HMAC over the whole plan covers created_at as well
    return data


# --- the 3-node and 50-node labs ------------------------------------------------------------


@pytest.fixture(scope="module")
def lab50(lab_factory):
    return lab_factory("--nodes", "50", "--controlplanes", "3", "--seed", "1", name="lab50")


@pytest.fixture(params=["lab", "lab50"])
def any_lab(request):
    return request.getfixturevalue(request.param)


def test_plan_writes_a_valid_plan_exits_2_and_changes_nothing(any_lab, tmp_path):
    lab = any_lab
    before = world(lab)
    requests_before = factory_requests(lab)

    result = plan(lab.dir / "import.yaml", tmp_path / "plan.json", "--detailed-exitcode")

    assert result.code == 2, result.err
    data = check_plan_file(result)
    assert [n["address"] for n in data["nodes"]] == lab.nodes
    assert {n["machine_uuid"] for n in data["nodes"]} == {
        n["machine_id"] for n in lab.info["nodes"]
    }
    assert data["cluster"]["name"] == lab.info["cluster"]
    assert not [f for f in data["findings"] if f["severity"] == "error"]
    # every node gets a MachineSetNode and its join; the cluster-wide resources once each
    types = [c["resource_type"] for c in data["changes"]]
    assert types.count("MachineSetNodes.omni.sidero.dev") == len(lab.nodes)
    assert types.count("MachineConfigs.config.talos.dev") == len(lab.nodes)
    assert types.count("Clusters.omni.sidero.dev") == 1
    assert "Plan: " in result.out and f"omniport apply {result.path}" in result.out

    assert world(lab) == before
    new = factory_requests(lab)[len(requests_before) :]
    assert [r for r in new if r["method"] != "GET"] == []
    assert any(r["path"].startswith("/schematics/") for r in new), new


def test_json_stream_is_terraform_shaped(lab, tmp_path):
    result = plan(lab.dir / "import.yaml", tmp_path / "plan.json", "--json")
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.out.splitlines()]
    assert all({"@level", "@message", "@timestamp", "type"} <= set(e) for e in events)
    assert events[0]["type"] == "version" and events[-1]["type"] == "change_summary"
    data = result.data
    diagnostics = [e for e in events if e["type"] == "diagnostic"]
    assert [d["diagnostic"]["code"] for d in diagnostics] == [f["code"] for f in data["findings"]]
    planned = [e["change"]["resource"]["addr"] for e in events if e["type"] == "planned_change"]
    assert planned == [c["address"] for c in data["changes"]]
    add = sum(1 for c in data["changes"] if c["action"] == "create")
    assert events[-1]["changes"]["add"] == add > 0


def test_two_plans_of_an_unchanged_world_differ_only_in_created_at(lab50, tmp_path):
    first = plan(lab50.dir / "import.yaml", tmp_path / "1.json")
    # the second run sees the nodes answer in another order: the first ones are now slowest
    slow = lab50.nodes[:12]
    for i, node in enumerate(slow):
        lab50.fault(kind="latency", node=node, ms=float(60 - 4 * i))
    try:
        second = plan(lab50.dir / "import.yaml", tmp_path / "2.json")
    finally:
        lab50.fault(kind="clear")
    third = plan(lab50.dir / "import.yaml", tmp_path / "3.json")
    assert first.code == second.code == third.code == 0, (first.err, second.err, third.err)
    texts = [r.path.read_text() for r in (first, second, third)]
    assert without_created_at(texts[0]) == without_created_at(texts[1])
    assert without_created_at(texts[0]) == without_created_at(texts[2])
    # byte for byte once the timestamp and its seal are set aside
    strip = [
        "\n".join(
            line
            for line in text.splitlines()
            if not any(f'"{key}"' in line for key in ("created_at", "checksum", "seal"))
        )
        for text in texts
    ]
    assert strip[0] == strip[1] == strip[2]
    # and the human view, drawn from the same data, is identical too
    assert first.out.replace(str(first.path), "X") == third.out.replace(str(third.path), "X")


# --- bad specs and unreachable endpoints: one line, exit 1 ---------------------------------


def one_line_error(result: PlanRun) -> str:
    """The run failed with exit 1 and said why in one line (besides the progress line)."""
    assert result.code == 1, (result.out, result.err)
    assert result.out == ""
    progress = re.compile(r"^(Reading |.*\.\.\. \[\d+s elapsed\])")  # planner/progress.py
    lines = [line for line in result.err.splitlines() if not progress.match(line)]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    assert not result.path.exists()
    return lines[0]


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return mutate


BAD_SPECS = [
    ("missing-file", None, ["nope.yaml:1:1", "no such file"]),
    (
        "invalid-yaml",
        lambda text: text.replace("talos:\n", "talos: [\n", 1),
        ["import.yaml:", "invalid YAML"],
    ),
    (
        "unknown-key",
        lambda text: text.replace("talos:\n", "talos:\n  contxt: lab\n", 1),
        ["import.yaml:3:3: unknown key 'contxt' in talos; did you mean 'context'?"],
    ),
    (
        "wrong-type",
        lambda text: text.replace("  enabled: true", "  enabled: sometimes", 1),
        ["healthCheck.enabled must be true or false, not a string"],
    ),
]


@pytest.mark.parametrize(("case", "edit", "says"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_is_one_line_and_exit_1(lab, tmp_path, case, edit, says):
    spec = spec_variant(lab, tmp_path / "spec")
    if edit is None:
        spec = tmp_path / "spec" / "nope.yaml"
    else:
        spec.write_text(edit(spec.read_text()))
    line = one_line_error(plan(spec, tmp_path / "plan.json", "--detailed-exitcode"))
    for fragment in says:
        assert fragment in line, line


UNREACHABLE = [
    (
        "talos-endpoint",
        _set(("talos", "endpoints"), ["127.0.0.1:1"]),
        ["cannot reach the Talos API", "127.0.0.1:1", "check talos.endpoints in"],
    ),
    (
        "omni-url",
        _set(("omni", "url"), "https://127.0.0.1:1"),
        ["cannot reach Omni at https://127.0.0.1:1", "check omni.url in"],
    ),
]


@pytest.mark.parametrize(("case", "mutate", "says"), UNREACHABLE, ids=[c[0] for c in UNREACHABLE])
def test_unreachable_endpoint_is_one_line_and_exit_1(lab, tmp_path, case, mutate, says):
    spec = spec_variant(lab, tmp_path / "spec", mutate)
    line = one_line_error(plan(spec, tmp_path / "plan.json", "--detailed-exitcode"))
    for fragment in says:
        assert fragment in line, line
    assert str(spec) in line


def test_talosconfig_of_another_cluster_is_one_line(lab, lab50, tmp_path):
    """A talosconfig whose CA does not sign this apid: TLS refuses, nothing can be read."""
    spec = spec_variant(
        lab, tmp_path / "spec", _set(("talos", "talosconfig"), str(lab50.dir / "talosconfig"))
    )
    # lab50's talosconfig names lab50's endpoint: point it at this lab's apid
    spec.write_text(
        spec.read_text().replace(
            "talos:\n", f"talos:\n  endpoints:\n  - {lab.info['endpoint']}\n", 1
        )
    )
    line = one_line_error(plan(spec, tmp_path / "plan.json"))
    assert "cannot reach the Talos API" in line and "certificate verification failed" in line
    assert f"use this cluster's talosconfig (talos.talosconfig and talos.context in {spec})" in line


# --- discovery: hints change the calls, not the facts; the critical path is as counted ------


def test_role_hints_change_calls_not_facts(aio, lab50):
    """A node read with the worker hint, the right hint or none gives the same facts; a control
    plane misreported as a worker gets its control-plane reads in a second round trip."""
    from omniport.planner.discover import read_node

    cp, worker = lab50.controlplanes[0], lab50.workers[0]

    async def go():
        async with lab50.client() as client:
            return {
                (node, hint): await read_node(client, node, hint)
                for node in (cp, worker)
                for hint in (None, "worker", "controlplane")
            }

    facts = aio(go())
    for node in (cp, worker):
        assert facts[node, None] == facts[node, "worker"] == facts[node, "controlplane"]
    assert facts[cp, "worker"].etcd_members and facts[cp, "worker"].apiserver_image
    assert facts[cp, "worker"].cluster_name == lab50.info["cluster"]
    assert facts[worker, None].cluster_name is None and facts[worker, None].etcd_members == ()


def test_discovery_waits_for_the_counted_round_trips_only(lab50, tmp_path):
    """With every call delayed by L, discovery takes the floor the bench divides by (3 round
    trips) and not one round trip more. Three nodes, no health check: the lab's own CPU per
    call (it serves every node from one process) stays far below L."""
    import asyncio
    import time

    from omniport.planner.discover import (
        DEFAULT_PARALLELISM,
        TLS_CLOSE_GRACE,
        critical_path_round_trips,
        discover,
    )
    from omniport.planner.spec import load_spec

    def three_nodes(data: dict[str, Any]) -> None:
        data["talos"]["nodes"] = [lab50.controlplanes[0], *lab50.workers[:2]]
        data["healthCheck"] = {"enabled": False}

    latency = 1.5  # one round trip more would cost far more than the CPU of 3 nodes
    trips = critical_path_round_trips(3, DEFAULT_PARALLELISM)
    assert trips == 3
    spec = load_spec(spec_variant(lab50, tmp_path, three_nodes))
    lab50.fault(kind="latency", ms=latency * 1000)
    try:
        started = time.perf_counter()
        facts = asyncio.run(discover(spec))
        wall = time.perf_counter() - started - TLS_CLOSE_GRACE
    finally:
        lab50.fault(kind="clear")
    assert all(n.error is None for n in facts.nodes) and facts.omni.error is None
    print(f"discovery of 3 nodes at {latency} s per call: {wall:.2f} s for {trips} round trips")
    assert trips * latency <= wall < (trips + 1) * latency, wall


# --- Omni's API version: checked as omnictl checks it -----------------------------------------


@pytest.mark.parametrize(
    ("api", "says"),
    [
        ("0", "reports no API version: it is older than the Omni client"),
        ("2", "speaks API version 2, omniport speaks API version 1"),
    ],
    ids=["too-old", "other"],
)
def test_an_omni_with_another_api_version_is_refused(lab_factory, tmp_path, api, says):
    other = lab_factory("--nodes", "1", "--omni-api-version", api, name=f"omni-api-{api}")
    result = plan(other.dir / "import.yaml", tmp_path / "plan.json")
    line = one_line_error(result)
    assert says in line, line
    assert "checks Omni's API version as omnictl does" in line, line
