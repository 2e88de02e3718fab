"""The import spec: schema + semantic checks, each problem as file:line:col: message."""

import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniport.planner.cli import run
from omniport.planner.spec import SpecError, load_spec, parse_spec
from tests.paths import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

MINIMAL = """\
version: 1
talos:
  nodes: [10.0.0.1, 10.0.0.2]
omni:
  url: https://omni.example.com
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="s.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_examples_are_valid(example, tmp_path):
    spec_path = tmp_path / example.name
    shutil.copy(example, spec_path)
    for name in ("talosconfig", "omniconfig", "internal-ca.pem"):
        (tmp_path / name).write_text("x")
    spec = load_spec(spec_path)
    assert spec.talos.nodes
    assert len(spec.sha256) == 64


def test_examples_exist():
    assert {e.name for e in EXAMPLES} >= {"single-node.yaml", "ha.yaml", "private-network.yaml"}


def test_defaults_are_filled_in_and_hash_is_stable():
    spec = parse_spec(MINIMAL)
    assert spec.parallelism == 10
    assert spec.wait_timeout == 300.0
    assert spec.health_check is True
    assert spec.force is False
    assert spec.normalized["apply"] == {"parallelism": 10, "waitTimeout": "5m"}
    assert parse_spec(MINIMAL).sha256 == spec.sha256
    # same meaning, different text: same hash
    reordered = "omni: {url: 'https://omni.example.com'}\ntalos: {nodes: [10.0.0.1, 10.0.0.2]}\n"
    assert parse_spec("version: 1\n" + reordered).sha256 == spec.sha256


def test_versions_lose_their_v():
    spec = parse_spec(MINIMAL + "versions: {talos: v1.11.5, initialTalos: 1.9.0}\n")
    assert spec.versions.talos == "1.11.5"
    assert spec.versions.initial_talos == "1.9.0"


def test_unknown_key_names_place_and_suggests():
    text = MINIMAL.replace("  nodes:", "  nodse:")
    # talos.nodes is optional (discovered at plan time), so only the misspelling is reported
    assert _problems(text) == [
        "s.yaml:3:3: unknown key 'nodse' in talos; did you mean 'nodes'?",
    ]


def test_unknown_top_level_key():
    assert _problems(MINIMAL + "aply: {parallelism: 3}\n") == [
        "s.yaml:6:1: unknown key 'aply' in the spec; did you mean 'apply'?"
    ]


def test_wrong_type():
    assert _problems(MINIMAL + "apply:\n  parallelism: ten\n") == [
        "s.yaml:7:16: apply.parallelism must be an integer, not a string"
    ]


def test_bad_version_and_duration():
    problems = _problems(MINIMAL + "versions: {talos: 1.x}\napply: {waitTimeout: 5 minutes}\n")
    assert problems == [
        "s.yaml:6:19: versions.talos is '1.x', which is not a version like 1.11.5",
        "s.yaml:7:22: apply.waitTimeout is '5 minutes', which is not a duration like 90s, 5m or "
        "1h30m",
    ]


def test_initial_newer_than_current():
    text = MINIMAL + "versions:\n  talos: 1.9.0\n  initialTalos: 1.10.0\n"
    assert _problems(text) == [
        "s.yaml:8:17: versions.initialTalos (1.10.0) is newer than versions.talos (1.9.0); the "
        "initial version must not be greater"
    ]


def test_duplicate_node_and_key():
    assert _problems(MINIMAL.replace("10.0.0.2", "10.0.0.1")) == [
        "s.yaml:3:21: talos.nodes lists '10.0.0.1' twice"
    ]
    assert _problems(MINIMAL + "version: 1\n") == ["s.yaml:6:1: duplicate key 'version'"]


def test_invalid_yaml_and_empty():
    assert _problems("talos: [\n")[0].startswith("s.yaml:2:1: invalid YAML")
    assert _problems("") == ["s.yaml:1:1: the spec is empty; start from examples/"]
    assert _problems("- a\n") == ["s.yaml:1:1: the spec must be a mapping, not a list"]


def test_missing_referenced_file(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(MINIMAL.replace("talos:\n", "talos:\n  talosconfig: ./nope\n"))
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert str(info.value).endswith(
        "s.yaml:3:16: talos.talosconfig names './nope', which is not a readable file"
    )


def test_validate_cli(tmp_path, capsys):
    spec = tmp_path / "import.yaml"
    spec.write_text(MINIMAL)
    assert run(["validate", str(spec)]) == 0
    assert "valid import spec for 2 node(s)" in capsys.readouterr().out

    assert run(["validate", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"Error: {tmp_path / 'missing.yaml'}:1:1: no such file; check the path"

    spec.write_text(MINIMAL + "aply: {}\n")
    assert run(["validate", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "did you mean 'apply'?" in err and "Traceback" not in err


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_spec_or_a_spec_error(text):
    try:
        parse_spec(text)
    except SpecError as err:
        assert err.problems and all(p.line >= 1 for p in err.problems)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["version", "talos", "omni", "apply", "versions", "x"]), _values
    )
)
def test_any_structure_gives_a_spec_or_a_spec_error(data):
    import yaml

    try:
        parse_spec(yaml.safe_dump(data))
    except SpecError as err:
        assert err.problems


def test_readme_spec_reference_is_current():
    from omniport.planner import specdoc

    readme = (REPO / "README.md").read_text()
    assert specdoc.replace_section(readme) == readme, (
        "README's spec reference is stale: run python -m omniport.planner.specdoc --write README.md"
    )
