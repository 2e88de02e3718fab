"""`omniport config patch` and `omniport config diff` on files: results and one-line errors."""

from __future__ import annotations

import os

import pytest

from omniport.planner.cli import run
from omniport.planner.machineconfig.document import parse

CONFIG = "version: v1alpha1\nmachine:\n  network:\n    hostname: a\n"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(CONFIG)
    return tmp_path


def test_inline_and_file_patches_like_talosctl(workdir, capsys):
    (workdir / "p.yaml").write_text("machine:\n  network:\n    hostname: b\n")
    (workdir / "j.json").write_text('[{"op": "add", "path": "/machine/certSANs", "value": ["x"]}]')
    args = ["config", "patch", "config.yaml", "-p", "@p.yaml", "-p", "j.json"]
    args += ["--patch", "machine:\n  install: {image: i}\n"]
    args += ["--patch", '[{"op": "replace", "path": "/machine/install/image", "value": "j"}]']
    assert run(args) == 0
    out = capsys.readouterr().out
    assert parse(out).documents[0].data == {
        "version": "v1alpha1",
        "machine": {"network": {"hostname": "b"}, "certSANs": ["x"], "install": {"image": "j"}},
    }


def test_output_file_is_owner_only(workdir, capsys):
    assert (
        run(["config", "patch", "config.yaml", "-p", "{machine: {type: worker}}", "-o", "o.yaml"])
        == 0
    )
    assert capsys.readouterr().out == ""
    assert (workdir / "o.yaml").stat().st_mode & 0o777 == 0o600
    assert "type: worker" in (workdir / "o.yaml").read_text()


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        (
            {},
            ["config", "patch", "missing.yaml", "-p", "{}"],
            "config file 'missing.yaml' does not exist; check the path",
        ),
        (
            {},
            ["config", "patch", "config.yaml", "-p", "@nope.yaml"],
            "patch file 'nope.yaml' does not exist; check the path",
        ),
        (
            {},
            ["config", "patch", "config.yaml", "-p", "nope.yaml"],
            "patch file 'nope.yaml' does not exist; check the path",
        ),
        (
            {"bad.yaml": "machine: [\n"},
            ["config", "patch", "bad.yaml", "-p", "{}"],
            "bad.yaml is not valid YAML at line 2, column 1: did not find expected node content",
        ),
        (
            {"bad.yaml": "machine: {}\nfrob: 1\n"},
            ["config", "diff", "bad.yaml", "config.yaml"],
            "bad.yaml: document 1 has unknown field 'frob'; the v1alpha1 document allows only "
            "version, debug, persist, machine, cluster",
        ),
        (
            {"dup.yaml": "machine: {}\n---\nversion: v1alpha1\n"},
            ["config", "diff", "config.yaml", "dup.yaml"],
            "dup.yaml: document 2 repeats v1alpha1; each document may appear once in a config; "
            "merge the two",
        ),
        (
            {"multi.yaml": CONFIG + "---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\n"},
            ["config", "patch", "multi.yaml", "-p", '[{"op": "remove", "path": "/machine"}]'],
            "inline patch is a JSON patch, which applies only to a single-document config, and "
            "this config has 2 documents; write it as a strategic merge patch",
        ),
        (
            {},
            ["config", "patch", "config.yaml", "-p", "machine:\n  network: [a]\n"],
            # refused as talosctl refuses it: machinery decodes the patch first (issue 15 item 10)
            "inline patch: Talos 1.14 refuses this patch: error decoding document /v1alpha1/ "
            "(line 1): error decoding  to *v1alpha1.Config: yaml: construct errors: line 2: "
            "cannot construct !!seq into v1alpha1.NetworkConfig; fix the key or the value "
            "(Talos's v1alpha1 reference lists the fields and types)",
        ),
    ],
    ids=[
        "missing-config",
        "missing-patch",
        "missing-bare-patch",
        "invalid-yaml",
        "unknown-field",
        "duplicate-document",
        "json-on-multidoc",
        "shape-mismatch",
    ],
)
def test_bad_input_is_one_line_exit_1(workdir, capsys, files, args, message):
    for name, text in files.items():
        (workdir / name).write_text(text)
    assert run(args) == 1
    captured = capsys.readouterr()
    assert captured.err == f"Error: {message}\n"
    assert captured.out == ""


def test_output_dir_that_is_a_file(workdir, capsys):
    (workdir / "f").write_text("x")
    assert run(["config", "diff", "config.yaml", "config.yaml", "-o", "f"]) == 1
    assert "Directory 'f' is a file" in capsys.readouterr().err


def test_patch_needs_at_least_one_patch(workdir, capsys):
    assert run(["config", "patch", "config.yaml"]) == 1
    assert "Missing option '-p' / '--patch'" in capsys.readouterr().err


def test_unreadable_config(workdir, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    (workdir / "config.yaml").chmod(0)
    assert run(["config", "diff", "config.yaml", "config.yaml"]) == 1
    assert "permission denied" in capsys.readouterr().err


def test_diff_then_patch_round_trip(workdir, capsys):
    (workdir / "new.yaml").write_text(
        "version: v1alpha1\nmachine:\n  network:\n    hostname: ''\n"
        "    interfaces: [{interface: eth0}]\n"
        "---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n"
    )
    assert run(["config", "diff", "config.yaml", "new.yaml", "-o", "out"]) == 0
    written = sorted(p.name for p in (workdir / "out").iterdir())
    assert written == ["10-patch.yaml", "20-patch.yaml"]
    assert "wrote out/10-patch.yaml" in capsys.readouterr().err
    args = [
        "config",
        "patch",
        "config.yaml",
        "-p",
        "@out/10-patch.yaml",
        "-p",
        "@out/20-patch.yaml",
    ]
    assert run(args) == 0
    result = parse(capsys.readouterr().out)
    expected = parse((workdir / "new.yaml").read_bytes())
    assert {str(d.key): d.data for d in result.documents} == {
        str(d.key): d.data for d in expected.documents
    }
