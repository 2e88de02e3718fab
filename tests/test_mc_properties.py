"""Properties of the machine-config engine, checked with hypothesis on mutated real configs.

- ``apply(original, diff(original, mutated)) == mutated``, on data and through YAML text;
- equal configs give no patch;
- redaction never lets a secret through, in rendered documents or in verify findings;
- malformed input only ever raises ``ConfigError``;
- ``parse(emit(documents))`` gives the documents back.
"""

from __future__ import annotations

import json
import string
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from omniport.planner.machineconfig.diff import diff
from omniport.planner.machineconfig.document import (
    ConfigError,
    Document,
    copy_tree,
    emit,
    parse,
)
from omniport.planner.machineconfig.merge import apply_patches, load_patch
from omniport.planner.machineconfig.redact import redact
from omniport.planner.machineconfig.rules import Identity, rules_for
from omniport.planner.machineconfig.verify import verify
from tests.paths import TALOS_FIXTURES

FIXTURE_CONFIGS = [
    "configdiff/original.yaml",
    "configdiff/modified.yaml",
    "configpatcher/patchdelete/controlplane_orig.yaml",
    "configpatcher/multidoc/config.yaml",
    "v1alpha1/stability/v1.3/overrides-controlplane.yaml",
    "v1alpha1/stability/v1.8/base-worker.yaml",
    "v1alpha1/stability/v1.12/overrides-controlplane.yaml",
    "v1alpha1/stability/v1.14/overrides-controlplane.yaml",
    "v1alpha1/stability/v1.14/base-worker.yaml",
]
# A config of our own, so the properties run even without the fixtures.
BUILTIN = """\
version: v1alpha1
machine:
  type: controlplane
  token: abc.def
  network:
    hostname: n1
    interfaces:
      - interface: eth0
        addresses: [10.0.0.2/24]
        vlans: [{vlanId: 10, mtu: 1500}, {vlanId: 20}]
      - deviceSelector: {driver: virtio}
        dhcp: true
  kubelet:
    extraArgs: {rotate-server-certificates: "true"}
cluster:
  controlPlane: {endpoint: "https://cp:6443"}
  network: {podSubnets: [10.244.0.0/16], serviceSubnets: [10.96.0.0/12]}
  apiServer:
    admissionControl: [{name: PodSecurity, configuration: {defaults: {enforce: baseline}}}]
    auditPolicy: {apiVersion: audit.k8s.io/v1, kind: Policy, rules: [{level: Metadata}]}
---
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: foo
configFiles: [{content: hello, mountPath: /etc/foo}]
environment: [A=B]
"""
SOURCES = ["builtin", *FIXTURE_CONFIGS]


@cache
def _load(source: str) -> tuple[Document, ...]:
    if source == "builtin":
        return parse(BUILTIN).documents
    path = TALOS_FIXTURES / source
    if not path.exists():
        return ()
    return parse(path.read_bytes(), source).documents


def load(source: str) -> list[Document]:
    docs = _load(source)
    assume(docs)  # fixtures absent: this example is not usable
    return [Document(copy_tree(d.data)) for d in docs]


def exact(docs) -> str:
    """Documents by key with exact data and types (1, 1.0 and true stay distinct)."""
    return json.dumps({str(d.key): d.data for d in docs}, sort_keys=True)


META = {"version", "apiVersion", "kind", "name"}
KEYS = st.text(string.ascii_letters + string.digits + "-_./", min_size=1, max_size=10).filter(
    lambda k: k not in META
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70000),
    st.just(""),
    st.just(0),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=24),
    st.sampled_from(["yes", "on", "0644", "1_000", "~", "2024-01-01", "a: b", "- x", "#c", "\n"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)


def _entries(value: Any, top: bool) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) below ``value``; document headers excluded."""
    out: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not (top and key in META):
                out.append((value, key))
                out.extend(_entries(item, False))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.append((value, index))
            out.extend(_entries(item, False))
    return out


def _containers(value: Any, kind: type, top: bool) -> list[Any]:
    found = [value] if isinstance(value, kind) and not top else []
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    )
    for child in children:
        found += _containers(child, kind, False)
    return found


def mutate(data: st.DataObject, docs: list[Document]) -> list[Document]:
    """Apply 1..6 random edits: scalars, maps, lists, identity-keyed lists, documents."""
    counter = iter(range(10_000))
    for _ in range(data.draw(st.integers(1, 6), label="edits")):
        doc = data.draw(st.sampled_from(docs), label="document")
        root = doc.data
        action = data.draw(
            st.sampled_from(
                ["set", "add", "delete", "list", "interface", "plugin", "add-doc", "drop-doc"]
            ),
            label="action",
        )
        entries = _entries(root, True)
        if action == "set" and entries:
            parent, key = data.draw(st.sampled_from(entries))
            parent[key] = data.draw(VALUES)
        elif action == "add":
            maps = _containers(root, dict, doc.key.is_legacy)
            if not doc.key.is_legacy:
                maps.append(root)
            if maps:
                target = data.draw(st.sampled_from(maps))
                target[data.draw(KEYS)] = data.draw(VALUES)
        elif action == "delete" and entries:
            parent, key = data.draw(st.sampled_from(entries))
            del parent[key]
        elif action == "list":
            lists = _containers(root, list, False)
            if lists:
                target = data.draw(st.sampled_from(lists))
                edit = data.draw(st.sampled_from(["append", "remove", "replace", "reverse"]))
                if edit == "append" or not target:
                    target.append(data.draw(VALUES))
                elif edit == "remove":
                    del target[data.draw(st.integers(0, len(target) - 1))]
                elif edit == "replace":
                    target[data.draw(st.integers(0, len(target) - 1))] = data.draw(VALUES)
                else:
                    target.reverse()
        elif action == "interface" and doc.key.is_legacy:
            machine = root.setdefault("machine", {})
            if isinstance(machine, dict):
                network = machine.setdefault("network", {})
                if isinstance(network, dict):
                    interfaces = network.setdefault("interfaces", [])
                    if isinstance(interfaces, list):
                        item = {"interface": f"if{next(counter)}x", "mtu": data.draw(SCALARS)}
                        if data.draw(st.booleans()):
                            item["vlans"] = [{"vlanId": 100 + next(counter), "mtu": 9000}]
                        interfaces.insert(data.draw(st.integers(0, len(interfaces))), item)
        elif action == "plugin" and doc.key.is_legacy:
            cluster = root.setdefault("cluster", {})
            if isinstance(cluster, dict):
                api = cluster.setdefault("apiServer", {})
                if isinstance(api, dict):
                    plugins = api.setdefault("admissionControl", [])
                    if isinstance(plugins, list):
                        plugins.append(
                            {"name": f"Plugin{next(counter)}", "configuration": data.draw(VALUES)}
                        )
        elif action == "add-doc":
            body = data.draw(st.dictionaries(KEYS, VALUES, max_size=4))
            header = {
                "apiVersion": "v1alpha1",
                "kind": data.draw(st.sampled_from(["AConfig", "B"])),
            }
            if data.draw(st.booleans()):
                header["name"] = f"n{next(counter)}"
            if all(d.key != Document(header).key for d in docs):
                docs.append(Document({**header, **body}))
        elif action == "drop-doc":
            others = [d for d in docs if not d.key.is_legacy]
            if others:
                docs.remove(data.draw(st.sampled_from(others)))
    return docs


def identities_unique(docs: list[Document]) -> bool:
    """Talos merges list elements with equal identities, so such configs cannot round-trip."""
    for doc in docs:
        for path, rule in rules_for(doc.key).items():
            if not isinstance(rule, Identity):
                continue
            for items in _at(doc.data, path):
                seen = [rule.identify(i) for i in items if isinstance(i, dict)]
                seen = [s for s in seen if s is not None]
                if len(seen) != len(set(seen)):
                    return False
    return True


def _at(value: Any, path: tuple[str, ...]) -> list[list[Any]]:
    if not path:
        return [value] if isinstance(value, list) else []
    head, rest = path[0], path[1:]
    if head == "[]":
        items = value if isinstance(value, list) else []
        return [found for item in items for found in _at(item, rest)]
    if isinstance(value, dict) and head in value:
        return _at(value[head], rest)
    return []


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@SETTINGS
@given(source=st.sampled_from(SOURCES), data=st.data())
def test_diff_then_apply_gives_the_mutated_config(source, data):
    original = load(source)
    mutated = mutate(data, [Document(copy_tree(d.data)) for d in original])
    assume(identities_unique(mutated))
    patches = diff(original, mutated)
    assert len(patches) <= 2
    assert exact(apply_patches(original, patches)) == exact(mutated)
    # The same patches as YAML text, which is how they are stored and sent.
    texts = [load_patch(emit(patch), f"patch {n}") for n, patch in enumerate(patches, 1)]
    assert exact(apply_patches(original, texts)) == exact(mutated)
    if exact(original) == exact(mutated):
        assert patches == ()


@SETTINGS
@given(source=st.sampled_from(SOURCES))
def test_equal_configs_give_no_patch(source):
    docs = load(source)
    assert diff(docs, [Document(copy_tree(d.data)) for d in docs]) == ()
    assert diff(docs, parse(emit(docs))) == ()


SECRET_PATHS = [
    ("machine", "token"),
    ("machine", "ca", "key"),
    ("cluster", "secret"),
    ("cluster", "token"),
    ("cluster", "aescbcEncryptionSecret"),
    ("cluster", "secretboxEncryptionSecret"),
    ("cluster", "ca", "key"),
    ("cluster", "aggregatorCA", "key"),
    ("cluster", "serviceAccount", "key"),
    ("cluster", "etcd", "ca", "key"),
    ("machine", "registries", "config", "r.io", "auth", "password"),
    ("machine", "registries", "config", "r.io", "auth", "auth"),
    ("machine", "registries", "config", "r.io", "auth", "identityToken"),
    ("machine", "registries", "config", "r.io", "tls", "clientIdentity", "key"),
    ("machine", "env", "API_TOKEN"),
]
SECRET_DOCS = [
    lambda s: {"apiVersion": "v1alpha1", "kind": "SideroLinkConfig", "uniqueToken": s},
    lambda s: {
        "apiVersion": "v1alpha1",
        "kind": "SideroLinkConfig",
        "apiUrl": f"https://omni.example:8090/?jointoken={s}",
    },
    lambda s: {"apiVersion": "v1alpha1", "kind": "DiscoveryIdentityConfig", "clusterSecret": s},
    lambda s: {
        "apiVersion": "v1alpha1",
        "kind": "KubeServiceAccountConfig",
        "issuer": {"privateKey": s},
    },
    lambda s: {"apiVersion": "v1alpha1", "kind": "RegistryAuthConfig", "name": "r", "password": s},
    lambda s: {
        "apiVersion": "v1alpha1",
        "kind": "WireguardConfig",
        "name": "wg0",
        "privateKey": s,
        "peers": [{"publicKey": "p", "presharedKey": s + "x"}],
    },
    lambda s: {"apiVersion": "v1alpha1", "kind": "HCloudVIPConfig", "name": "v", "apiToken": s},
    lambda s: {
        "apiVersion": "v1alpha1",
        "kind": "VolumeConfig",
        "name": "STATE",
        "encryption": {"keys": [{"slot": 0, "static": {"passphrase": s}}]},
    },
    lambda s: {
        "apiVersion": "v1alpha1",
        "kind": "KubeEtcdEncryptionConfig",
        "config": {
            "resources": [{"providers": [{"secretbox": {"keys": [{"name": "k", "secret": s}]}}]}]
        },
    },
]
SECRET_TEXT = st.text(string.ascii_letters + string.digits + "+/=", min_size=16, max_size=40)


def _put(data: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    for key in path[:-1]:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    data[path[-1]] = value


@SETTINGS
@given(source=st.sampled_from(SOURCES), data=st.data())
def test_redaction_never_leaks_a_secret(source, data):
    docs = load(source)
    clean = [Document(copy_tree(d.data)) for d in docs]
    legacy = next(d for d in docs if d.key.is_legacy)
    secrets = []
    for path in data.draw(st.lists(st.sampled_from(SECRET_PATHS), min_size=1, unique=True)):
        secret = "S" + data.draw(SECRET_TEXT)
        _put(legacy.data, path, secret)
        secrets.append(secret)
    for make in data.draw(st.lists(st.sampled_from(SECRET_DOCS), max_size=4, unique=True)):
        secret = "S" + data.draw(SECRET_TEXT)
        candidate = Document(make(secret))
        if all(d.key != candidate.key for d in docs):
            docs.append(candidate)
            secrets.append(secret)
    shown = emit(redact(docs))
    findings = " ".join(str(m) for m in verify(clean, [], docs))
    for secret in secrets:
        assert secret not in shown
        assert secret not in findings


YAMLISH = st.text(alphabet=":-[]{}#&*!|>'\"%@`\n\t abc01.~$<=?,\\", max_size=60)


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=120), YAMLISH))
def test_malformed_input_only_raises_config_error(raw):
    for attempt in (
        lambda: parse(raw),
        lambda: parse(raw, patch=True),
        lambda: apply_patches(parse(BUILTIN), [load_patch(raw)]),
    ):
        try:
            attempt()
        except ConfigError as err:
            assert "\n" not in str(err)


PLAIN = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(),
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=40), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(st.text(max_size=40).filter(lambda k: k not in META), PLAIN, max_size=5)
)
def test_emit_then_parse_gives_the_data_back(body):
    assume("$patch" not in json.dumps(body))
    doc = Document({"apiVersion": "v1alpha1", "kind": "Anything", **body})
    assert exact(parse(emit([doc])).documents) == exact([doc])


def test_fixture_sources_exist_or_are_skipped():
    if not TALOS_FIXTURES.is_dir():
        pytest.skip("talos fixtures not found beside the repo")
    assert all(_load(source) for source in FIXTURE_CONFIGS)


PATCH_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(KEYS | st.just("$patch"), inner | st.just("delete"), max_size=3)
    ),
    max_leaves=8,
)


@SETTINGS
@given(source=st.sampled_from(SOURCES), data=st.data())
def test_random_patches_only_raise_config_error(source, data):
    docs = load(source)
    before = exact(docs)
    header = data.draw(
        st.sampled_from(
            [
                {"version": "v1alpha1"},
                {"apiVersion": "v1alpha1", "kind": "ExtensionServiceConfig", "name": "foo"},
                {"apiVersion": "v1alpha1", "kind": "KubeletConfig"},
            ]
        )
    )
    body = data.draw(
        st.dictionaries(
            st.sampled_from(["machine", "cluster", "configFiles"]) | KEYS, PATCH_VALUES, max_size=3
        )
    )
    try:
        apply_patches(docs, [[Document({**header, **body})]])
    except ConfigError as err:
        assert "\n" not in str(err)
    assert exact(docs) == before  # inputs are never changed, even on failure
