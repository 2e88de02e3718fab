"""The two-pass strategic diff: apply(original, diff(original, modified)) == modified."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from omniport.planner.cli import run
from omniport.planner.machineconfig.diff import diff
from omniport.planner.machineconfig.document import ConfigError, canonical, emit, parse
from omniport.planner.machineconfig.merge import apply_patches, load_patch
from tests.paths import TALOS_FIXTURES


def fixture(name: str) -> Path:
    if not TALOS_FIXTURES.is_dir():
        pytest.skip("talos fixtures not found beside the repo")
    return TALOS_FIXTURES / name


def exact(docs) -> dict:
    """Documents by key with their exact data (key and document order carry no meaning)."""
    return {str(d.key): d.data for d in docs}


def test_configdiff_fixture_through_the_cli(tmp_path, capsys):
    original = fixture("configdiff/original.yaml")
    modified = fixture("configdiff/modified.yaml")
    assert run(["config", "diff", str(original), str(modified), "-o", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["10-patch.yaml", "20-patch.yaml"]
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in tmp_path.iterdir())
    out = tmp_path / "out.yaml"
    args = ["config", "patch", str(original), "-o", str(out)]
    args += ["-p", f"@{tmp_path / '10-patch.yaml'}", "-p", f"@{tmp_path / '20-patch.yaml'}"]
    assert run(args) == 0, capsys.readouterr().err
    result = parse(out.read_bytes(), "out")
    assert exact(result.documents) == exact(parse(modified.read_bytes()).documents)


def test_configdiff_patches_are_talos_shaped():
    patches = diff(
        parse(fixture("configdiff/original.yaml").read_bytes()),
        parse(fixture("configdiff/modified.yaml").read_bytes()),
    )
    assert len(patches) == 2
    first, second = patches
    assert first[0].data == {
        "apiVersion": "v1alpha1",
        "kind": "KmsgLogConfig",
        "name": "apiSink",
        "$patch": "delete",
    }
    legacy = first[1].data
    assert legacy["version"] == "v1alpha1"
    assert legacy["cluster"]["apiServer"] == {
        "certSANs": {"$patch": "delete"},
        "admissionControl": {"$patch": "delete"},
    }
    assert "version" not in second[0].data and second[0].data["kind"] == "ExtensionServiceConfig"
    assert second[0].data["environment"] == ["FOO=BAR", "BAR=FOO"]


def test_diff_printed_to_stdout_is_one_applicable_stream(tmp_path, capsys):
    original = fixture("configdiff/original.yaml")
    modified = fixture("configdiff/modified.yaml")
    assert run(["config", "diff", str(original), str(modified)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# 10-patch.yaml\n") and "# 20-patch.yaml\n" in printed
    result = apply_patches(parse(original.read_bytes()), [load_patch(printed)])
    assert exact(result) == exact(parse(modified.read_bytes()).documents)


def test_equal_configs_give_no_patch(tmp_path, capsys):
    config = fixture("configdiff/original.yaml")
    (tmp_path / "20-patch.yaml").write_text("stale\n")
    assert run(["config", "diff", str(config), str(config), "-o", str(tmp_path)]) == 0
    assert list(tmp_path.iterdir()) == []
    assert "same" in capsys.readouterr().err
    assert run(["config", "diff", str(config), str(config)]) == 0
    assert capsys.readouterr().out == ""


def _stability():
    if not TALOS_FIXTURES.is_dir():
        return []
    return sorted((TALOS_FIXTURES / "v1alpha1" / "stability").glob("v*/*.yaml"))


def _pairs():
    files = _stability()
    # every version's base -> overrides, and each config to the next version's same config
    pairs = [
        (f, f.parent / f.name.replace("base-", "overrides-")) for f in files if "base-" in f.name
    ]
    by_name = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f)
    for versions in by_name.values():
        pairs += list(itertools.pairwise(sorted(versions, key=lambda p: p.parent.name)))
    return pairs


@pytest.mark.parametrize(
    ("a", "b"),
    _pairs(),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_round_trip_between_generated_configs(a, b):
    before, after = parse(a.read_bytes()), parse(b.read_bytes())
    patches = diff(before, after)
    assert len(patches) <= 2
    assert (patches == ()) == (a.read_bytes() == b.read_bytes())  # 1.3 = 1.4, 1.8 = ... = 1.11
    assert exact(apply_patches(before, patches)) == exact(after.documents)
    # and the same through YAML text, as the patches travel to Omni
    texts = [load_patch(emit(p)) for p in patches]
    assert exact(apply_patches(before, texts)) == exact(after.documents)
    assert diff(after, parse(emit(after))) == ()


def test_values_a_merge_cannot_overwrite_go_through_pass_two():
    before = parse(
        "version: v1alpha1\nmachine:\n  install: {disk: /dev/sda, image: x}\n"
        "  kubelet: {image: k}\n"
        "  network: {hostname: h}\n"
        "cluster:\n  controlPlane: {endpoint: 'https://a:6443/path'}\n"
        "  apiServer: {auditPolicy: {rules: [a]}}\n"
    )
    after = parse(
        "version: v1alpha1\nmachine:\n  install: {disk: '', image: 0}\n  kubelet: [k]\n"
        "  network: {hostname: null}\n"
        "cluster:\n  controlPlane: {endpoint: 'https://b:6443'}\n  apiServer: {auditPolicy: {}}\n"
    )
    patches = diff(before, after)
    assert len(patches) == 2
    assert exact(apply_patches(before, patches)) == exact(after.documents)


def test_removing_the_legacy_document_is_refused():
    with pytest.raises(ConfigError) as info:
        diff(parse("machine: {}\n"), parse("apiVersion: v1alpha1\nkind: A\n"))
    assert str(info.value) == (
        "the modified config has no v1alpha1 document, and a patch cannot remove it; "
        "keep the v1alpha1 document in the modified config"
    )


def test_canonically_equal_but_not_identical():
    # Talos sees no difference; diff still reproduces the exact data.
    a = parse("machine: {certSANs: [], type: worker}\n")
    b = parse("machine: {type: worker}\n")
    assert canonical(a) == canonical(b)
    assert exact(apply_patches(a, diff(a, b))) == exact(b.documents)


def test_a_pem_pair_losing_its_key_is_replaced_whole():
    # A delete inside machine.ca fails in Talos, so the differ deletes and re-sets the pair.
    original = parse("machine:\n  type: controlplane\n  ca: {crt: YQ==, key: Yg==}\n")
    modified = parse("machine:\n  type: worker\n  ca: {crt: YQ==, key: ''}\n")
    patches = diff(original, modified)
    assert patches[0][0].data["machine"]["ca"] == {"$patch": "delete"}
    assert patches[1][0].data["machine"]["ca"] == {"crt": "YQ==", "key": ""}
    out = apply_patches(original, [load_patch(emit(p)) for p in patches])
    assert canonical(out) == canonical(modified)


@pytest.mark.parametrize(
    "interfaces",
    [
        "[{interface: eth0, mtu: 1}, {interface: eth0, dhcp: true}]",
        "[{interface: eth0, vlans: [{vlanId: 5, mtu: 1}, {vlanId: 5, mtu: 2}]}]",
    ],
)
def test_repeated_list_identities_are_written_with_their_section(interfaces):
    # Set into an existing machine.network, Talos would merge the repeated eth0 (or VLAN 5).
    original = parse("machine:\n  network:\n    hostname: a\n    interfaces: [{interface: eth1}]\n")
    modified = parse(f"machine:\n  network:\n    hostname: a\n    interfaces: {interfaces}\n")
    patches = diff(original, modified)
    assert patches[0][0].data["machine"]["network"] == {"$patch": "delete"}
    out = apply_patches(original, [load_patch(emit(p)) for p in patches])
    assert canonical(out) == canonical(modified)
