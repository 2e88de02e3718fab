"""The document model: parse, identify, emit and compare machine-config documents."""

from __future__ import annotations

import hashlib

import pytest

from omniport.planner.errors import OmniportError
from omniport.planner.machineconfig.document import (
    LEGACY_KEY,
    ConfigError,
    Document,
    DocumentKey,
    MachineConfig,
    canonical,
    emit,
    parse,
)
from tests.paths import TALOS_FIXTURES

MULTIDOC = b"""\
version: v1alpha1
machine:
  network:
    hostname: node-1
---
apiVersion: v1alpha1
kind: SideroLinkConfig
apiUrl: https://siderolink.example/join?jointoken=abc
---
apiVersion: v1alpha1
kind: KmsgLogConfig
name: omni-kmsg
url: tcp://[fdae:41e4::1]:8092
"""


def test_parse_keys_documents_and_keeps_bytes():
    mc = parse(MULTIDOC, "node.yaml")
    assert mc.keys() == (
        LEGACY_KEY,
        DocumentKey("v1alpha1", "SideroLinkConfig"),
        DocumentKey("v1alpha1", "KmsgLogConfig", "omni-kmsg"),
    )
    assert mc.raw == MULTIDOC
    assert mc.sha256 == hashlib.sha256(MULTIDOC).hexdigest()
    assert (
        mc.v1alpha1 is not None and mc.v1alpha1.data["machine"]["network"]["hostname"] == "node-1"
    )
    assert mc.get("KmsgLogConfig", "omni-kmsg") is not None
    assert mc.get("KmsgLogConfig", "other") is None
    assert str(mc.documents[2].key) == "v1alpha1/KmsgLogConfig/omni-kmsg"
    assert str(LEGACY_KEY) == "v1alpha1"


@pytest.mark.parametrize(
    "text",
    ["machine: {}\n", "cluster: {}\n", "debug: true\n", "persist: true\n", "version: v1alpha1\n"],
    ids=["machine", "cluster", "debug", "persist", "version"],
)
def test_legacy_document_is_recognised(text):
    assert parse(text).documents[0].key == LEGACY_KEY


def test_yaml_12_scalars_like_go():
    doc = parse(
        "machine:\n  env: {a: yes, b: on, c: 2024-01-01, d: 0644, e: 0x1f, f: 1_000, g: ~,"
        " h: 1.5}\n"
    ).documents[0]
    assert doc.data["machine"]["env"] == {
        "a": "yes",
        "b": "on",
        "c": "2024-01-01",
        "d": 0o644,
        "e": 31,
        "f": 1000,
        "g": None,
        "h": 1.5,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: v1alpha1\nmachine: {}\nfoo: 1\n",
            "cfg: document 1 has unknown field 'foo'; the v1alpha1 document allows only "
            "version, debug, persist, machine, cluster",
        ),
        (
            "apiVersion: v1alpha1\nkind: A\nname: x\n---\napiVersion: v1alpha1\nkind: A\nname: x\n",
            "cfg: document 2 repeats v1alpha1/A/x; each document may appear once in a config; "
            "merge the two",
        ),
        (
            "machine: {}\n---\ncluster: {}\n",
            "cfg: document 2 repeats v1alpha1; each document may appear once in a config; "
            "merge the two",
        ),
        (
            "kind: HostnameConfig\nauto: stable\n",
            "cfg: document 1 has no apiVersion; a multi-document config needs both apiVersion "
            "and kind",
        ),
        (
            "foo: bar\n",
            "cfg: document 1 has no kind; add apiVersion and kind, or machine/cluster for the "
            "v1alpha1 document",
        ),
        ("- a\n- b\n", "cfg: document 1 is a list, not a mapping of fields"),
        (
            "version: v1alpha2\nmachine: {}\n",
            "cfg: document 1 has version 'v1alpha2'; "
            "the legacy document's version must be v1alpha1",
        ),
        (
            "machine:\n  a: 1\n  a: 2\n",
            "cfg is not valid YAML at line 3, column 3: mapping key 'a' is defined twice",
        ),
        (
            "machine: [\n",
            "cfg is not valid YAML at line 2, column 1: did not find expected node content",
        ),
        (
            "machine:\n  network:\n    hostname:\n      $patch: delete\n",
            "cfg: document 1 (v1alpha1) contains a $patch directive; $patch belongs in patches, "
            "not in configs",
        ),
        (
            b"machine: {hostname: \xff}\n",
            "cfg is not UTF-8 text (byte 21 is invalid); save it as UTF-8",
        ),
        ("a: &x [*x]\n", None),
        (
            "machine: {hostname: \x01}\n",
            "cfg holds a character YAML does not allow (U+0001 at character 21); remove it, or "
            "write it as an escape in a double-quoted string",
        ),
    ],
    ids=[
        "unknown-field",
        "duplicate-named",
        "duplicate-legacy",
        "no-apiversion",
        "no-kind",
        "not-a-mapping",
        "bad-version",
        "duplicate-key",
        "invalid-yaml",
        "patch-in-config",
        "not-utf8",
        "recursive-alias",
        "control-character",
    ],
)
def test_bad_input_is_one_clear_error(text, message):
    with pytest.raises(ConfigError) as info:
        parse(text, "cfg")
    assert isinstance(info.value, OmniportError)
    if message is not None:
        assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_patch_mode_allows_duplicates_and_directives():
    text = (
        "apiVersion: v1alpha1\nkind: A\nname: x\nendpoints: {$patch: delete}\n---\n"
        "apiVersion: v1alpha1\nkind: A\nname: x\nskip: true\n"
    )
    assert len(parse(text, patch=True).documents) == 2


def test_emit_writes_talos_layout():
    docs = [
        Document(
            {
                "version": "v1alpha1",
                "machine": {
                    "certSANs": [],
                    "network": {
                        "interfaces": [
                            {"interface": "eth0", "addresses": ["10.0.0.2/24"], "vip": {"ip": "x"}}
                        ]
                    },
                    "nodeLabels": {"a": "", "b": "yes", "c": "10"},
                    "files": [{"content": "line1\nline2\n", "path": "/etc/x"}],
                },
            }
        ),
        Document({"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"}),
    ]
    assert emit(docs) == (
        "version: v1alpha1\n"
        "machine:\n"
        "    certSANs: []\n"
        "    network:\n"
        "        interfaces:\n"
        "            - interface: eth0\n"
        "              addresses:\n"
        "                - 10.0.0.2/24\n"
        "              vip:\n"
        "                ip: x\n"
        "    nodeLabels:\n"
        '        a: ""\n'
        '        b: "yes"\n'
        '        c: "10"\n'
        "    files:\n"
        "        - content: |\n"
        "            line1\n"
        "            line2\n"
        "          path: /etc/x\n"
        "---\n"
        "apiVersion: v1alpha1\n"
        "kind: HostnameConfig\n"
        "auto: stable\n"
    )


def test_from_documents_hashes_emitted_bytes():
    mc = MachineConfig.from_documents([{"machine": {"type": "worker"}}])
    assert mc.raw == b"machine:\n    type: worker\n"
    assert mc.sha256 == hashlib.sha256(mc.raw).hexdigest()


def test_canonical_folds_typed_zero_values_and_order():
    a = parse("machine:\n  type: ''\n  certSANs: []\n  network: {hostname: x}\ncluster: null\n")
    b = parse("version: v1alpha1\nmachine:\n  network:\n    hostname: x\n")
    assert canonical(a) == canonical(b)
    assert canonical(parse("machine: {network: {hostname: y}}\n")) != canonical(b)


def _stability_files():
    if not TALOS_FIXTURES.is_dir():
        return []
    return sorted((TALOS_FIXTURES / "v1alpha1" / "stability").glob("v*/*.yaml"))


@pytest.mark.parametrize("path", _stability_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_emit_reproduces_talos_bytes(path):
    # Talos's own generated configs come back byte for byte: same layout, same quoting.
    raw = path.read_bytes()
    assert emit(parse(raw, path.name)).encode() == raw


def test_fixtures_present_or_skipped():
    if not TALOS_FIXTURES.is_dir():
        pytest.skip("talos fixtures not found beside the repo")
    assert _stability_files()
