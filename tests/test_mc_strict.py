"""Strict decoding of the v1alpha1 document, and ``config patch`` refusing what talosctl refuses
(issue 15 item 10). The expected texts are machinery's own (each was answered by the oracle of
its minor; tests/interop/test_config_strict.py compares a larger corpus with every minor)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from omniport.planner.cli import run
from omniport.planner.machineconfig.strict import LATEST_MINOR, decode_error

STABILITY = Path(__file__).resolve().parents[2] / "shared" / "talos-fixtures" / "v1alpha1"
BASE = STABILITY / "stability" / "v1.11" / "base-controlplane.yaml"


@pytest.fixture(scope="module")
def base() -> dict:
    if not BASE.exists():
        pytest.skip(f"no Talos fixtures at {BASE}")
    return yaml.safe_load(BASE.read_text())


def mutated(base: dict, change) -> str:
    doc = copy.deepcopy(base)
    change(doc)
    return yaml.safe_dump(doc, sort_keys=False)


CASES = [
    (
        "unknown-key",
        lambda d: d["machine"].__setitem__("foo", "bar"),
        "unknown keys found during decoding:\nmachine:\n    foo: bar\n",
    ),
    (
        "unknown-keys-sorted-everywhere",
        lambda d: (
            d["machine"].__setitem__("foo", {"a": 1}),
            d["cluster"].__setitem__("bar", 2),
            d.__setitem__("baz", 3),
        ),
        "unknown keys found during decoding:\nbaz: 3\ncluster:\n    bar: 2\nmachine:\n"
        "    foo:\n        a: 1\n",
    ),
    (
        "unknown-in-list-items",
        lambda d: d["machine"].__setitem__(
            "network",
            {
                "interfaces": [
                    {"interface": "eth0", "bogus": 1, "a": {"b": {"c": 1}, "d": [1, 2]}},
                    {"interface": "eth1"},
                    {"interface": "eth2", "z": [{"q": 1, "r": 2}]},
                ]
            },
        ),
        "unknown keys found during decoding:\nmachine:\n    network:\n        interfaces:\n"
        "            - a:\n                b:\n                    c: 1\n                d:\n"
        "                    - 1\n                    - 2\n              bogus: 1\n"
        "            - z:\n                - q: 1\n                  r: 2\n",
    ),
    (
        "string-into-bool",
        lambda d: d["machine"]["kubelet"].__setitem__("defaultRuntimeSeccompProfileEnabled", "abc"),
        "error decoding  to *v1alpha1.Config: yaml: unmarshal errors:\n"
        "  line 13: cannot unmarshal !!str `abc` into bool",
    ),
    (
        "sequence-into-string",
        lambda d: d["machine"].__setitem__("network", {"hostname": ["x"]}),
        "error decoding  to *v1alpha1.Config: yaml: unmarshal errors:\n"
        "  line 17: cannot unmarshal !!seq into string",
    ),
    (
        "scalar-into-struct",
        lambda d: d["machine"].__setitem__("network", "eth0"),
        "error decoding  to *v1alpha1.Config: yaml: unmarshal errors:\n"
        "  line 15: cannot unmarshal !!str `eth0` into v1alpha1.NetworkConfig",
    ),
    (
        "sequence-into-map",
        lambda d: d["machine"]["kubelet"].__setitem__("extraArgs", ["a"]),
        "error decoding  to *v1alpha1.Config: yaml: unmarshal errors:\n"
        "  line 16: cannot unmarshal !!seq into map[string]string",
    ),
    (
        "scalar-into-list",
        lambda d: d["cluster"]["network"].__setitem__("podSubnets", "10.0.0.0/8"),
        "error decoding  to *v1alpha1.Config: yaml: unmarshal errors:\n"
        "  line 39: cannot unmarshal !!str `10.0.0.0/8` into []string",
    ),
    (
        "bad-duration",
        lambda d: d["machine"].__setitem__("time", {"bootTimeout": "abc"}),
        "error decoding  to *v1alpha1.Config: yaml: unmarshal errors:\n"
        "  line 32: cannot unmarshal !!str `abc` into time.Duration",
    ),
]


@pytest.mark.parametrize(("change", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_machinery_text(base, change, expected):
    assert decode_error(mutated(base, change), 11) == expected


@pytest.mark.parametrize(
    ("change"),
    [
        lambda d: d["machine"]["kubelet"].__setitem__("image", 5),  # any scalar into a string
        lambda d: d["machine"].__setitem__("sysctls", {"a": 1}),
        lambda d: d["machine"]["install"].__setitem__("wipe", "yes"),  # YAML 1.1 bool
        lambda d: d["machine"].__setitem__("time", {"bootTimeout": "1m30s"}),
        lambda d: d["machine"].__setitem__("network", None),  # null decodes into anything
        lambda d: d["cluster"]["apiServer"].__setitem__("admissionControl", []),
    ],
    ids=["int-into-string", "int-into-map-of-string", "yes-into-bool", "duration", "null", "empty"],
)
def test_what_machinery_accepts_is_accepted(base, change):
    assert decode_error(mutated(base, change), 11) is None


def test_every_generated_config_decodes_under_its_own_and_the_newest_minor():
    if not STABILITY.exists():
        pytest.skip(f"no Talos fixtures at {STABILITY}")
    files = sorted((STABILITY / "stability").glob("v1.*/*.yaml"))
    assert files
    for path in files:
        minor = int(path.parent.name.split(".")[1])
        text = path.read_text()
        for judge in {min(minor, LATEST_MINOR), LATEST_MINOR}:
            assert decode_error(text, judge) is None, (path, judge)


def test_from_1_12_the_error_names_the_document_and_its_line(base):
    text = "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: a\n---\n" + mutated(
        base, lambda d: d["machine"].__setitem__("foo", "bar")
    )
    assert decode_error(text, 12) == (
        "error decoding document /v1alpha1/ (line 5): unknown keys found during decoding:\n"
        "machine:\n    foo: bar\n"
    )


def test_a_patch_may_carry_patch_directives(base):
    patch = (
        "machine:\n  network:\n    $patch: delete\n  kubelet:\n    extraArgs:\n"
        "      $patch: delete\n"
    )
    assert decode_error(patch, 11, patch=True) is None
    assert decode_error(patch, 11) is not None


# --- the command -------------------------------------------------------------------------


def patch_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = run(["config", "patch", str(BASE), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_config_patch_refuses_an_unknown_key_in_a_patch(base, capsys, tmp_path):
    out = tmp_path / "out.yaml"
    code, stdout, err = patch_cli(
        capsys, "-p", "{machine: {foo: bar}}", "--talos-version", "1.11", "-o", str(out)
    )
    assert code == 1 and stdout == ""
    assert err == (
        "Error: inline patch: Talos 1.11 refuses this patch: unknown keys found during decoding:\n"
        "machine:\n    foo: bar; fix the key or the value (Talos's v1alpha1 reference lists the "
        "fields and types)\n"
    )
    assert not out.exists()


def test_config_patch_refuses_a_wrong_type_in_a_patch_file(base, capsys, tmp_path):
    patch = tmp_path / "p.yaml"
    patch.write_text("machine:\n  install:\n    wipe: maybe\n")
    code, _, err = patch_cli(capsys, "-p", f"@{patch}", "--talos-version", "v1.11.5")
    assert code == 1
    assert err.startswith(f"Error: {patch}: Talos 1.11 refuses this patch: error decoding  to ")
    assert "line 3: cannot unmarshal !!str `maybe` into bool" in err


def test_config_patch_checks_the_result_of_a_json_patch(base, capsys):
    code, _, err = patch_cli(
        capsys,
        "-p",
        '[{"op": "add", "path": "/machine/foo", "value": 1}]',
        "--talos-version",
        "1.11",
    )
    assert code == 1
    assert err.startswith("Error: the patched config: Talos 1.11 refuses it: unknown keys found")


def test_config_patch_still_patches_valid_input(base, capsys):
    code, out, _ = patch_cli(capsys, "-p", "{machine: {network: {hostname: n1}}}")
    assert code == 0
    assert yaml.safe_load(out)["machine"]["network"]["hostname"] == "n1"


def test_config_patch_refuses_a_bad_talos_version(capsys):
    code, _, err = patch_cli(capsys, "-p", "{}", "--talos-version", "2.1")
    assert code == 1 and "is not a Talos version like 1.11" in err
