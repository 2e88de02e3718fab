"""Fuzzing the three files a user hands omniport: import specs, plan files, rollback plans.

Inputs are arbitrary text and bytes, structured mutations of valid files (keys dropped or
renamed, types swapped, unicode injected, huge numbers, deep nesting) and byte-level
mutations of sealed files. For each, the reader gives a valid object or our own one-line
error, never another exception, and the working folder is left exactly as it was. Valid
inputs go through the same code as positive controls, so the properties cannot pass by
refusing everything.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omniport.planner import planfile
from omniport.planner.cli import run
from omniport.planner.execute import rollbackfile
from omniport.planner.sealed import canonical, checksum
from omniport.planner.spec import Spec, SpecError, parse_spec
from tests.reliability.conftest import (
    EXAMPLES,
    Outcome,
    assert_one_clear_error,
    assert_unchanged,
    plan_text,
    rollback_text,
    snapshot,
)

pytestmark = pytest.mark.reliability


# No example database: it would write .hypothesis/ into the folder whose stillness we check.
def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


FILES_SPEC_NEEDS = ("talosconfig", "omniconfig", "internal-ca.pem")


# --- a quiet, isolated place to run in -----------------------------------------------------------


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the files the example specs name; the current directory while used."""
    root = tmp_path_factory.mktemp("fuzz")
    for name in FILES_SPEC_NEEDS:
        (root / name).write_text("x\n")
    return root


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def omniport(*args: str) -> Outcome:
    """Run the real entry point with stdout and stderr captured (no pytest fixture needed)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(args))
    return Outcome(code, out.getvalue(), err.getvalue())


def write_input(folder: Path, name: str, content: str | bytes) -> None:
    path = folder / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)


def remove_input(folder: Path, name: str) -> None:
    (folder / name).unlink(missing_ok=True)


# --- strategies ----------------------------------------------------------------------------------

SPEC_WORDS = [
    "version",
    "talos",
    "talosconfig",
    "context",
    "endpoints",
    "nodes",
    "omni",
    "url",
    "omniconfig",
    "serviceAccountKeyFile",
    "caFile",
    "insecureSkipTLSVerify",
    "imageFactory",
    "versions",
    "initialTalos",
    "kubernetes",
    "findings",
    "accept",
    "force",
    "healthCheck",
    "timeout",
    "apply",
    "parallelism",
    "waitTimeout",
    "backup",
    "directory",
    "1",
    "1.11.5",
    "v1.9.0",
    "5m",
    "0s",
    "1h30m",
    "https://omni.example.com",
    "10.0.0.1",
    "./talosconfig",
    "true",
    "null",
    "~",
    ".nan",
    "-.inf",
    "0x1F",
    "0o17",
    "1_000",
    "2024-13-45",
    "2001-12-14t21:59:43.10-05:00",
    "9" * 5000,
    "!!binary YQ==",
    "!!set",
    "!!python/object:os.system",
    "!!timestamp",
    "&a",
    "*a",
    "<<",
    "---",
    "...",
    "%YAML 1.1",
    "? ",
    "é",
    "日本",
    "😀",
    "\u2028",
    "\x85",
    "\ufeff",
    "\x00",
    "\x07",
    '"\\UFFFFFFFF"',
    '"\\U0010FFFF"',
    '"\\ud800"',
    '"\\x00"',
    "\\",
    '"',
    "'",
]
YAML_PUNCTUATION = list(":-[]{},#&*!|>?%@` \n\t\r\n  ")
yamlish_text = st.lists(
    st.sampled_from(SPEC_WORDS) | st.sampled_from(YAML_PUNCTUATION) | st.text(max_size=3),
    max_size=60,
).map("".join)

WEIRD_VALUES = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        2**63,
        -(2**64),
        10**4000,
        1.5,
        1e308,
        float("inf"),
        float("nan"),
        "",
        " ",
        "x",
        "\u2028",
        "é" * 3,
        "😀",
        "a\nb",
        "\x7f",
        "1.11.5",
        "5m",
        "https://",
        "9" * 4000,
        [],
        {},
        [None],
        {"": None},
        {"version": 1},
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _parent(data: Any, path: tuple) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def _nest(value: Any, depth: int, as_list: bool) -> Any:
    for _ in range(depth):
        value = [value] if as_list else {"k": value}
    return value


MUTATIONS = ("drop", "rename", "retype", "unicode", "huge", "nest", "duplicate")


def mutate(draw: st.DrawFn, data: Any) -> Any:
    """One structured mutation of JSON-like ``data`` (a fresh copy); the root stays a mapping."""
    data = json.loads(json.dumps(data))
    paths = [p for p in _paths(data) if p]
    if not paths:
        return {draw(st.text(max_size=5)): draw(WEIRD_VALUES)}
    path = draw(st.sampled_from(paths))
    parent, last = _parent(data, path), path[-1]
    kind = draw(st.sampled_from(MUTATIONS))
    if kind == "drop":
        del parent[last]
    elif kind == "rename" and isinstance(parent, dict):
        new = draw(
            st.sampled_from(
                [last + "s", last[:-1], last.upper(), last.replace("i", "ı"), " " + last]
            )
            | st.text(max_size=8)
        )
        parent[new] = parent.pop(last)
    elif kind == "unicode":
        parent[last] = draw(st.text(min_size=1, max_size=20))
    elif kind == "huge":
        parent[last] = draw(st.sampled_from([10**4000, -(10**300), 1e308, 2**64, -0.0]))
    elif kind == "nest":
        depth = draw(st.integers(1, 200))
        parent[last] = _nest(parent[last], depth, draw(st.booleans()))
    elif kind == "duplicate" and isinstance(parent, list):
        parent.append(parent[last])
    else:
        parent[last] = draw(WEIRD_VALUES | json_values)
    return data


@st.composite
def mutated(draw: st.DrawFn, data: Any) -> Any:
    for _ in range(draw(st.integers(1, 3))):
        data = mutate(draw, data)
    return data


def _example_data() -> list[tuple[str, dict]]:
    return [(e.name, yaml.safe_load(e.read_text())) for e in EXAMPLES]


def dump_spec(data: Any, style: str) -> str:
    """``data`` as spec text; deep values go out as JSON (which YAML reads) when YAML cannot."""
    if style == "yaml":
        try:
            return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
        except (RecursionError, yaml.YAMLError, ValueError):
            style = "json"
    return json.dumps(data, ensure_ascii=style == "json-ascii", allow_nan=True)


@st.composite
def text_mutation(draw: st.DrawFn, text: str) -> str:
    """Insert, delete or replace a fragment somewhere in ``text``."""
    at = draw(st.integers(0, len(text)))
    end = draw(st.integers(at, min(len(text), at + 12)))
    fragment = draw(st.sampled_from(SPEC_WORDS) | st.sampled_from(YAML_PUNCTUATION) | st.text())
    return text[:at] + fragment + text[end:] if draw(st.booleans()) else text[:at] + text[end:]


# --- specs ---------------------------------------------------------------------------------------


def assert_spec_outcome(text: str, folder: Path, *, valid: bool = False) -> Spec | None:
    """parse_spec gives a Spec or a SpecError of well-formed one-line problems; nothing else."""
    before = snapshot(folder)
    try:
        spec = parse_spec(text, file="fuzz.yaml", base=folder)
    except SpecError as err:
        assert not valid, f"a valid spec was refused: {err}"
        assert err.problems
        for problem in err.problems:
            line = str(problem)
            assert "\n" not in line and "\r" not in line, line
            assert line.startswith("fuzz.yaml:") and problem.line >= 1 and problem.column >= 1
            assert problem.message.strip()
        spec = None
    else:
        assert len(spec.sha256) == 64
        json.dumps(spec.normalized)  # what the plan file will record must be JSON
    assert_unchanged(before, snapshot(folder))
    return spec


@pytest.mark.parametrize("name", [e.name for e in EXAMPLES])
def test_the_example_specs_are_the_positive_control(name: str, place: Path) -> None:
    text = next(e for e in EXAMPLES if e.name == name).read_text()
    for style in ("yaml", "json", "json-ascii"):
        source = text if style == "yaml" else dump_spec(yaml.safe_load(text), style)
        assert assert_spec_outcome(source, place, valid=True) is not None


@fuzz(600)
@given(st.text(max_size=300) | yamlish_text)
def test_any_yamlish_text_gives_a_spec_or_spec_problems(place: Path, text: str) -> None:
    assert_spec_outcome(text, place)


@fuzz(500)
@given(st.data())
def test_mutated_example_specs_give_a_spec_or_spec_problems(place: Path, data: st.DataObject):
    _, example = data.draw(st.sampled_from(_example_data()), label="example")
    changed = data.draw(mutated(example), label="mutated")
    style = data.draw(st.sampled_from(["yaml", "json", "json-ascii"]), label="style")
    text = dump_spec(changed, style)
    if data.draw(st.booleans(), label="also a text mutation"):
        text = data.draw(text_mutation(text), label="text")
    assert_spec_outcome(text, place)


@fuzz(80)
@given(st.data())
def test_validate_on_fuzzed_files_is_ok_or_one_clear_error(place: Path, data: st.DataObject):
    _, example = data.draw(st.sampled_from(_example_data()), label="example")
    choice = data.draw(st.sampled_from(["mutated", "text", "bytes"]), label="kind")
    if choice == "mutated":
        content: str | bytes = dump_spec(data.draw(mutated(example)), "yaml")
    elif choice == "text":
        content = data.draw(yamlish_text)
    else:
        content = data.draw(st.binary(max_size=200))
    write_input(place, "fuzz.yaml", content)
    try:
        before = snapshot(place)
        with inside(place):
            result = omniport("validate", "fuzz.yaml")
        assert_unchanged(before, snapshot(place))
    finally:
        remove_input(place, "fuzz.yaml")
    if result.code == 0:
        assert "valid import spec" in result.out and result.err == ""
    else:
        assert_one_clear_error(result, "fuzz.yaml", spec_lines=True)


# --- plan files and rollback plans ---------------------------------------------------------------

KINDS = {
    "plan": (plan_text, planfile.parse, planfile.PlanFileError),
    "rollback": (rollback_text, rollbackfile.parse, rollbackfile.RollbackFileError),
}


def _to_dict(kind: str, value: Any) -> dict:
    if kind == "plan":
        return planfile.to_dict(value)
    return rollbackfile.to_dict(value)


@st.composite
def byte_mutation(draw: st.DrawFn, blob: bytes) -> bytes:
    """Flip a bit, replace, delete, insert, truncate or repeat bytes of ``blob``."""
    kind = draw(st.sampled_from(["flip", "replace", "delete", "insert", "truncate", "repeat"]))
    at = draw(st.integers(0, len(blob) - 1))
    if kind == "flip":
        bit = 1 << draw(st.integers(0, 7))
        return blob[:at] + bytes([blob[at] ^ bit]) + blob[at + 1 :]
    if kind == "replace":
        return blob[:at] + draw(st.binary(min_size=1, max_size=4)) + blob[at + 4 :]
    if kind == "delete":
        return blob[:at] + blob[at + draw(st.integers(1, 16)) :]
    if kind == "insert":
        fragment = draw(
            st.binary(min_size=1, max_size=8)
            | st.sampled_from([b" ", b"\n", b"\t", b"  ", b"\r\n", b"0", b"\\u0041", b'"', b","])
        )
        return blob[:at] + fragment + blob[at:]
    if kind == "truncate":
        return blob[:at]
    length = draw(st.integers(1, 32))
    return blob[:at] + blob[at : at + length] * 2 + blob[at + length :]


def assert_reader_outcome(kind: str, text: str, original: dict | None) -> Any:
    """The reader gives an object or its own error; an accepted mutation changed nothing."""
    _, parse, error = KINDS[kind]
    try:
        value = parse(text, source="fuzz.json")
    except error as err:
        message = str(err)
        assert "\n" not in message and message.startswith("fuzz.json"), message
        return None
    if original is not None:
        assert _to_dict(kind, value) == original, "a changed file was read as different content"
    return value


def assert_show_outcome(folder: Path, content: bytes, *, expect_ok: bool | None) -> Outcome:
    write_input(folder, "fuzz.json", content)
    try:
        before = snapshot(folder)
        with inside(folder):
            result = omniport("show", "fuzz.json")
            as_json = omniport("show", "--json", "fuzz.json")
        assert_unchanged(before, snapshot(folder))
    finally:
        remove_input(folder, "fuzz.json")
    assert (result.code, bool(result.out)) == (as_json.code, bool(as_json.out))
    if result.code == 0:
        assert expect_ok is not False, result.out
        assert result.out and result.err == "" and as_json.err == ""
        json.loads(as_json.out)
    else:
        assert expect_ok is not True, result.err
        assert_one_clear_error(result, "fuzz.json")
        assert_one_clear_error(as_json, "fuzz.json")
    return result


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_sealed_files_are_the_positive_control(kind: str, place: Path) -> None:
    text = KINDS[kind][0]()
    original = json.loads(text)
    assert assert_reader_outcome(kind, text, original) is not None
    assert_show_outcome(place, text.encode(), expect_ok=True)


@fuzz(300)
@given(kind=st.sampled_from(sorted(KINDS)), blob=st.binary(max_size=400))
def test_any_bytes_give_an_object_or_one_clear_error(place: Path, kind: str, blob: bytes):
    text = blob.decode("utf-8", "replace")
    assert assert_reader_outcome(kind, text, None) is None  # random bytes are never sealed
    assert_show_outcome(place, blob, expect_ok=False)


@fuzz(300)
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_byte_mutations_of_a_sealed_file_are_refused_or_harmless(
    place: Path, kind: str, data: st.DataObject
) -> None:
    text = KINDS[kind][0]()
    original = json.loads(text)
    blob = data.draw(byte_mutation(text.encode("utf-8")), label="mutated bytes")
    try:
        decoded = blob.decode("utf-8")
    except UnicodeDecodeError:
        decoded = None
    if decoded is not None:
        assert_reader_outcome(kind, decoded, original)
    result = assert_show_outcome(place, blob, expect_ok=None)
    if result.code == 0:  # only whitespace-level changes survive the checksum
        with inside(place):
            write_input(place, "same.json", text)
            try:
                assert result.out == omniport("show", "same.json").out
            finally:
                remove_input(place, "same.json")


@fuzz(400)
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_resealed_structural_mutations_give_an_object_or_one_clear_error(
    place: Path, kind: str, data: st.DataObject
) -> None:
    """Mutations behind a valid checksum reach the version checks, the schema and the loader."""
    original = json.loads(KINDS[kind][0]())
    changed = data.draw(mutated(original), label="mutated")
    if isinstance(changed, dict):
        changed.pop("checksum", None)
        changed["checksum"] = checksum(changed)
    text = canonical(changed)
    value = assert_reader_outcome(kind, text, None)
    assert_show_outcome(place, text.encode("utf-8"), expect_ok=None if value is None else True)
