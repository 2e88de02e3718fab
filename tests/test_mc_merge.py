"""Strategic merge and patch loading, checked against Talos's own patcher fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from omniport.planner.cli import run
from omniport.planner.machineconfig.document import ConfigError, canonical, parse
from omniport.planner.machineconfig.json6902 import JsonPatch
from omniport.planner.machineconfig.merge import (
    StrategicPatch,
    apply_patches,
    load_patch,
    load_patches,
    strategic_merge,
)
from tests.paths import TALOS_FIXTURES

CP = "configpatcher"

# (config, patches in order, expected) -- the cases of Talos's configpatcher and strategic tests.
CASES = [
    (
        f"{CP}/apply/config.yaml",
        [f"{CP}/apply/{n}.yaml" for n in ("strategic1", "jsonpatch1", "jsonpatch2")]
        + [f"{CP}/apply/{n}.yaml" for n in ("strategic2", "strategic3")],
        f"{CP}/apply/expected.yaml",
    ),
    (
        f"{CP}/apply/config.yaml",
        [f"{CP}/apply/strategic4.yaml"],
        f"{CP}/apply/expected_manifests.yaml",
    ),
    (
        f"{CP}/multidoc/config.yaml",
        [f"{CP}/multidoc/strategic{i}.yaml" for i in (1, 2, 3)],
        f"{CP}/multidoc/expected.yaml",
    ),
    (
        f"{CP}/auditpolicy/config.yaml",
        [f"{CP}/auditpolicy/patch1.yaml"],
        f"{CP}/auditpolicy/expected.yaml",
    ),
    (
        f"{CP}/patchdelete/config.yaml",
        [f"{CP}/patchdelete/strategic1.yaml"],
        f"{CP}/patchdelete/expected.yaml",
    ),
    (
        f"{CP}/patchdelete/controlplane_orig.yaml",
        [f"{CP}/patchdelete/strategic{i}.yaml" for i in (2, 3, 4)],
        f"{CP}/patchdelete/controlplane_expected.yaml",
    ),
    (f"{CP}/patchlink/base.yaml", [f"{CP}/patchlink/patch.yaml"], f"{CP}/patchlink/expected.yaml"),
    (
        f"{CP}/patchmixed/base.yaml",
        [f"{CP}/patchmixed/patch.yaml"],
        f"{CP}/patchmixed/expected.yaml",
    ),
] + [
    (
        f"v1alpha1/strategic/{n:03}/left.yaml",
        [f"v1alpha1/strategic/{n:03}/right.yaml"],
        f"v1alpha1/strategic/{n:03}/expected.yaml",
    )
    for n in range(1, 7)
]
IDS = [
    "apply",
    "apply-manifest-newline",
    "multidoc",
    "auditpolicy",
    "patchdelete",
    "patchdelete-controlplane",
    "patchlink",
    "patchmixed",
] + [f"strategic-{n:03}" for n in range(1, 7)]


def fixture(name: str) -> Path:
    if not TALOS_FIXTURES.is_dir():
        pytest.skip("talos fixtures not found beside the repo")
    return TALOS_FIXTURES / name


@pytest.mark.parametrize(("config", "patches", "expected"), CASES, ids=IDS)
def test_config_patch_reproduces_talos(config, patches, expected, tmp_path, capsys):
    out = tmp_path / "out.yaml"
    args = ["config", "patch", str(fixture(config)), "-o", str(out)]
    for patch in patches:
        args += ["--patch", f"@{fixture(patch)}"]
    assert run(args) == 0, capsys.readouterr().err
    want = parse(fixture(expected).read_bytes(), expected)
    assert canonical(parse(out.read_bytes(), "out")) == canonical(want)


@pytest.mark.parametrize(("config", "patches", "expected"), CASES, ids=IDS)
def test_library_matches_on_parsed_input(config, patches, expected):
    # Talos runs each case on bytes and on a parsed config; the library works on parsed data.
    base = parse(fixture(config).read_bytes(), config)
    loaded = load_patches((p, fixture(p).read_bytes()) for p in patches)
    result = apply_patches(base.documents, loaded)
    assert canonical(result) == canonical(parse(fixture(expected).read_bytes(), expected))
    assert canonical(base) == canonical(parse(fixture(config).read_bytes(), config))  # untouched


def test_json_patch_on_multidoc_fails_with_one_line(capsys):
    config = fixture(f"{CP}/multidoc/config.yaml")
    patch = fixture(f"{CP}/multidoc/jsonpatch.yaml")
    assert run(["config", "patch", str(config), "--patch", f"@{patch}"]) == 1
    assert capsys.readouterr().err == (
        f"Error: {patch} is a JSON patch, which applies only to a single-document config, and "
        "this config has 3 documents; write it as a strategic merge patch\n"
    )


def test_delete_of_missing_key_fails(capsys):
    config = fixture(f"{CP}/patchdeletemissing/config.yaml")
    patch = fixture(f"{CP}/patchdeletemissing/strategic1.yaml")
    assert run(["config", "patch", str(config), "--patch", f"@{patch}"]) == 1
    assert capsys.readouterr().err == (
        f"Error: {patch}: document 1 (v1alpha1) deletes 'machine.network.hostname', but "
        "'machine.network' is not in the config; remove that delete from the patch\n"
    )


def test_loading_follows_talosctl():
    assert isinstance(load_patch(fixture(f"{CP}/patch.json").read_bytes()), JsonPatch)
    assert isinstance(load_patch(fixture(f"{CP}/patch.yaml").read_bytes()), JsonPatch)
    assert isinstance(load_patch(fixture(f"{CP}/strategic.yaml").read_bytes()), StrategicPatch)
    joined = load_patches(
        [("a", '[{"op": "add", "path": "/a", "value": 1}]'), ("b", "- {op: remove, path: /a}\n")]
    )
    assert len(joined) == 1 and len(joined[0].operations) == 2


def test_patch_onto_an_empty_config():
    patch = load_patch(fixture(f"{CP}/multidoc/strategic2.yaml").read_bytes())
    assert [str(d.key) for d in apply_patches((), [patch])] == [
        "v1alpha1/SideroLinkConfig",
        "v1alpha1/ExtensionServiceConfig/foo",
    ]


def merged(config: str, *patches: str):
    docs = parse(config).documents
    for text in patches:
        docs = apply_patches(docs, [load_patch(text)])
    return [d.data for d in docs]


def test_scalars_zero_values_and_bools():
    out = merged(
        "machine:\n  install: {disk: /dev/sda, wipe: true, image: a}\n  kubelet: {nodeIP: {}}\n",
        "machine:\n  install: {disk: '', wipe: false, image: b}\n  env: {A: ''}\n",
    )
    assert out[0]["machine"]["install"] == {"disk": "/dev/sda", "wipe": False, "image": "b"}
    assert out[0]["machine"]["env"] == {"A": ""}


def test_lists_append_replace_and_identity():
    out = merged(
        "machine:\n  certSANs: [a]\n  network:\n    interfaces:\n"
        "      - {interface: eth0, addresses: [1.1.1.1/32], vlans: [{vlanId: 5, mtu: 1}]}\n"
        "cluster:\n  network: {podSubnets: [10.0.0.0/8]}\n"
        "  apiServer:\n    extraArgs: {a: '1', b: '2'}\n"
        "    admissionControl: [{name: P, configuration: {x: 1}}]\n",
        "machine:\n  certSANs: [b]\n  network:\n    interfaces:\n"
        "      - {interface: eth0, addresses: [2.2.2.2/32], vlans: [{vlanId: 5, mtu: 2}]}\n"
        "      - {interface: eth1}\n"
        "cluster:\n  network: {podSubnets: [10.1.0.0/16]}\n"
        "  apiServer:\n    extraArgs: {a: ''}\n"
        "    admissionControl: [{name: P, configuration: {y: 2}}]\n",
    )[0]
    assert out["machine"]["certSANs"] == ["a", "b"]
    assert out["machine"]["network"]["interfaces"] == [
        {
            "interface": "eth0",
            "addresses": ["1.1.1.1/32", "2.2.2.2/32"],
            "vlans": [{"vlanId": 5, "mtu": 2}],
        },
        {"interface": "eth1"},
    ]
    assert out["cluster"]["network"]["podSubnets"] == ["10.1.0.0/16"]
    assert out["cluster"]["apiServer"]["extraArgs"] == {"a": "", "b": "2"}
    assert out["cluster"]["apiServer"]["admissionControl"] == [
        {"name": "P", "configuration": {"x": 1, "y": 2}}
    ]


def test_url_fields_merge_by_part():
    out = merged(
        "cluster:\n  controlPlane: {endpoint: 'https://a:6443/'}\n",
        "cluster:\n  controlPlane: {endpoint: 'https://b'}\n",
    )
    assert out[0]["cluster"]["controlPlane"]["endpoint"] == "https://b/"


def test_documents_match_append_and_delete():
    out = merged(
        "machine: {}\n---\napiVersion: v1alpha1\nkind: A\nname: x\nv: 1\n",
        "apiVersion: v1alpha1\nkind: A\nname: x\nv: 2\n---\napiVersion: v1alpha1\nkind: A\n"
        "name: y\nv: 3\n---\napiVersion: v1alpha1\nkind: B\n$patch: delete\n",
        "apiVersion: v1alpha1\nkind: A\nname: x\n$patch: delete\n",
    )
    assert out == [{"machine": {}}, {"apiVersion": "v1alpha1", "kind": "A", "name": "y", "v": 3}]


def test_delete_then_readd_in_one_document():
    out = merged(
        "machine:\n  network:\n"
        "    interfaces: [{interface: eth0, dhcp: true}, {interface: eth1}]\n",
        "machine:\n  network:\n    interfaces:\n      - {interface: eth0, $patch: delete}\n"
        "      - {interface: eth0, mtu: 9000}\n",
    )
    assert out[0]["machine"]["network"]["interfaces"] == [
        {"interface": "eth1"},
        {"interface": "eth0", "mtu": 9000},
    ]


def test_inputs_are_never_mutated():
    base = parse("machine:\n  certSANs: [a]\n  network: {interfaces: [{interface: eth0}]}\n")
    before = canonical(base)
    patch = load_patch(
        "machine:\n  certSANs: [b]\n  network: {interfaces: [{interface: eth0, mtu: 1}]}\n"
    )
    strategic_merge(base, patch.documents)
    assert canonical(base) == before
    assert patch.documents[0].data["machine"]["certSANs"] == ["b"]


@pytest.mark.parametrize(
    ("config", "patch", "message"),
    [
        (
            "machine: {}\n",
            "version: v1alpha1\n$patch: delete\n",
            "p: document 1 (v1alpha1) deletes the v1alpha1 document; delete its fields instead; "
            "the legacy document itself cannot be removed",
        ),
        (
            "machine:\n  network: {interfaces: [{interface: eth0, vip: {ip: x}}]}\n",
            "machine:\n  network:\n    interfaces:\n      - interface: eth0\n"
            "        vip: {$patch: delete}\n",
            "p: document 1 (v1alpha1) deletes 'machine.network.interfaces[].vip', a key inside a "
            "list element; delete the whole element by its first field instead",
        ),
        (
            "machine:\n  certSANs: [a]\n",
            "machine:\n  certSANs:\n    - {$patch: delete}\n",
            "p: document 1 (v1alpha1) deletes an element of 'machine.certSANs' without naming "
            "it; add the element's first field next to $patch: delete",
        ),
        (
            "machine:\n  network: {interfaces: [{interface: eth0}]}\n",
            "machine:\n  network:\n    interfaces:\n      - {interface: eth9, $patch: delete}\n",
            "p: document 1 (v1alpha1) deletes the element of 'machine.network.interfaces' whose "
            "interface is 'eth9', but there is none; remove that delete from the patch",
        ),
        (
            "machine:\n  certSANs: [a]\n",
            "machine:\n  certSANs: {a: b}\n",
            "p: document 1 (v1alpha1) sets 'machine.certSANs' to a mapping, but the config holds "
            "a list there; make the patch value the same shape as the config's",
        ),
        (
            "machine: {}\n",
            "machine:\n  network: {$patch: replace}\n",
            "p: document 1 (v1alpha1) has $patch: 'replace' at 'machine.network'; the only "
            "directive is delete",
        ),
        (
            "machine: {}\n",
            "- op: remove\n  path: /machine/nothing\n",
            "p: JSON patch failed: can't remove a non-existent object 'nothing'",
        ),
        (
            "machine: {}\n",
            "- op: add\n  path: /foo\n  value: 1\n",
            "p: document 1 has unknown field 'foo'; the v1alpha1 document allows only version, "
            "debug, persist, machine, cluster",
        ),
        (
            "machine: {}\n",
            "- op: frob\n  path: /a\n",
            "p: JSON patch operation 1 has op 'frob'; use one of add, copy, move, remove, "
            "replace, test",
        ),
        (
            "machine: {}\n",
            "machine: [\n",
            "p is not valid YAML at line 2, column 1: did not find expected node content",
        ),
        (
            "machine: {}\n",
            '[{"op": "add"',
            "p is neither a config patch nor a JSON patch (JSON error: Expecting ',' delimiter "
            "at line 1, column 14)",
        ),
        (
            "machine: {}\n",
            "{}",
            "p: document 1 has no kind; add apiVersion and kind, or machine/cluster for the "
            "v1alpha1 document",
        ),
    ],
    ids=[
        "delete-legacy",
        "delete-inside-element",
        "unnamed-element",
        "missing-element",
        "shape-mismatch",
        "bad-directive",
        "json-remove-missing",
        "json-unknown-field",
        "json-bad-op",
        "invalid-yaml",
        "invalid-json",
        "empty-mapping",
    ],
)
def test_errors_are_pinned(config, patch, message):
    with pytest.raises(ConfigError) as info:
        apply_patches(parse(config), [load_patch(patch, "p")])
    assert str(info.value) == message


def test_a_new_list_element_is_appended_as_written_like_talos():
    # Talos appends an unmatched interface as it is: two VLANs with one ID inside it stay two.
    base = parse("machine:\n  network:\n    interfaces: [{interface: eth0}]\n")
    patch = (
        "machine:\n  network:\n    interfaces:\n      - interface: eth1\n"
        "        vlans: [{vlanId: 10, addresses: [10.0.0.1/24]}, {vlanId: 10, mtu: 9000}]\n"
    )
    out = apply_patches(base, [load_patch(patch)])
    assert out[0].data["machine"]["network"]["interfaces"][1]["vlans"] == [
        {"vlanId": 10, "addresses": ["10.0.0.1/24"]},
        {"vlanId": 10, "mtu": 9000},
    ]


def test_a_new_section_is_taken_as_written_but_an_existing_list_merges_by_identity():
    # No machine.network in the config: Talos sets the patch's section whole (nil pointer).
    bare = parse("machine:\n  type: worker\n")
    patch = load_patch(
        "machine:\n  network:\n    interfaces: [{interface: eth0, mtu: 1}, {interface: eth0}]\n"
    )
    out = apply_patches(bare, [patch])
    assert len(out[0].data["machine"]["network"]["interfaces"]) == 2
    # An existing (empty) machine.network: the list is merged element by element.
    empty = parse("machine:\n  network: {}\n")
    out = apply_patches(empty, [patch])
    assert out[0].data["machine"]["network"]["interfaces"] == [{"interface": "eth0", "mtu": 1}]


@pytest.mark.parametrize("path", ["machine.ca", "cluster.etcd.ca", "cluster.serviceAccount"])
def test_a_delete_inside_a_pem_pair_is_refused_like_talos(path):
    # Talos keeps these as x509 types whose fields have no YAML names: "lookup failed".
    base = parse("machine:\n  ca: {crt: YQ==, key: Yg==}\ncluster:\n  etcd: {ca: {crt: YQ==}}\n")
    parts = path.split(".")
    patch = "\n".join(f"{'  ' * i}{p}:" for i, p in enumerate(parts))
    patch += f"\n{'  ' * len(parts)}key:\n{'  ' * (len(parts) + 1)}$patch: delete\n"
    with pytest.raises(ConfigError, match="can only delete whole"):
        apply_patches(base, [load_patch(patch)])
    whole = apply_patches(base, [load_patch("machine:\n  ca:\n    $patch: delete\n")])
    assert "ca" not in whole[0].data["machine"]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("apiVersion: v1alpha1\nkind: KubeAPIServerConfig\n", "apiPort"),
        ("apiVersion: v1alpha1\nkind: KubeSpanConfig\n", "mtu"),
        ("apiVersion: v1alpha1\nkind: ZswapConfig\n", "maxPoolPercent"),
    ],
)
def test_zero_overwrites_a_number_talos_keeps_behind_a_pointer(document, field):
    # Talos merges *int fields through the pointer, where a zero value is written too.
    base = parse(f"machine:\n  type: worker\n---\n{document}{field}: 5443\n")
    out = apply_patches(base, [load_patch(f"{document}{field}: 0\n")])
    assert out[1].data[field] == 0


def test_zero_still_leaves_a_plain_number_alone():
    base = parse("cluster:\n  controlPlane:\n    localAPIServerPort: 5443\n")
    out = apply_patches(
        base, [load_patch("cluster:\n  controlPlane:\n    localAPIServerPort: 0\n")]
    )
    assert out[0].data["cluster"]["controlPlane"]["localAPIServerPort"] == 5443


@pytest.mark.parametrize(
    ("operations", "hostname"),
    [
        # Talos's JSON-patch library reads an absent key of an existing object as null.
        ('[{"op": "replace", "path": "/machine/network/hostname", "value": "a"}]', "a"),
        (
            '[{"op": "copy", "from": "/machine/network/nope", '
            '"path": "/machine/network/hostname"}]',
            None,
        ),
        ('[{"op": "test", "path": "/machine/network/hostname", "value": null}]', "absent"),
    ],
)
def test_json_patch_reads_an_absent_key_as_null_like_talos(operations, hostname):
    base = parse("machine:\n  network: {}\n")
    out = apply_patches(base, [load_patch(operations)])
    assert out[0].data["machine"]["network"].get("hostname", "absent") == hostname


def test_json_patch_still_fails_below_a_missing_object():
    base = parse("machine:\n  type: worker\n")
    operations = '[{"op": "replace", "path": "/machine/network/hostname", "value": "a"}]'
    with pytest.raises(ConfigError, match="JSON patch failed"):
        apply_patches(base, [load_patch(operations)])


def test_json_patch_test_against_yaml_null_fails_on_an_absent_key_like_talos():
    # Talos turns a YAML patch into JSON text first, where null is a value, not "no value".
    base = parse("machine:\n  network: {}\n")
    operations = "- op: test\n  path: /machine/network/hostname\n  value: null\n"
    with pytest.raises(ConfigError, match="JSON patch failed"):
        apply_patches(base, [load_patch(operations)])


def test_valid_json_python_cannot_read_is_a_config_error():
    """json.loads raises a plain ValueError, not JSONDecodeError, for an integer past Python's
    digit limit; the patch is still refused with a ConfigError, not an AttributeError."""
    with pytest.raises(ConfigError, match=r"nor a JSON patch \(JSON error: Exceeds the limit"):
        load_patch("[" + "1" * 5000 + "]", "p")
