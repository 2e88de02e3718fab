"""The round trip against Talos's own patcher: machinery applies our ``diff`` and gets the target.

For each Talos minor 1.9-1.14, 250 seeded cases. A baseline is a config machinery generated,
most often by an earlier minor (up to three back, with that minor's contract: a cluster
created then and upgraded since) and otherwise by this one. A seeded modification edits it
as a user or an upgrade would: values set, changed, zeroed or nulled, keys and subtrees
removed, map entries added, lists appended to, shortened, reordered, emptied or replaced,
interfaces and VLANs edited, a CA's key dropped, endpoints moved, documents added, changed
and removed. The engine's ``diff(baseline, modified)`` gives strategic patches; machinery's
``configpatcher`` (this minor's) applies them to the baseline's bytes.

Comparison: machinery's result must equal the modified config *as machinery parses it* (op
``parse`` of the emitted modified documents), document for document and key for key, keys in
order. Machinery must also accept every patch the engine wrote. Two normalizations:

- The target is the modified config as machinery reads it, not the plain data: the modified
  data is plain YAML (``null``s, zero values, any key order), and what a node runs is what
  machinery reads from it.
- Documents are compared in (apiVersion, kind, name) order, not file order. Talos identifies
  documents by that key and reads nothing from their order, and a strategic patch can only
  change a document in place or append one: a modification that removes a document and adds
  it back at the end has no patch that moves it, in Talos's differ as in ours.

One oracle process per minor for the check (baselines come from the generator check's cached
answers): the parses of the modified configs and the patch applications go in one batch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest

from omniport.planner.errors import OmniportError
from omniport.planner.machineconfig.diff import diff
from omniport.planner.machineconfig.document import copy_tree, emit
from tests.interop import counts, mc_cases, mc_patches, oracles
from tests.interop.test_config_patch import first_difference
from tests.test_gen_helpers import key_order

ROUNDTRIP_CASES_PER_MINOR = 250

Doc = dict[str, Any]


@dataclass(frozen=True)
class RoundTrip:
    id: str
    baseline_minor: str
    baseline: str  # machinery's YAML
    modified: tuple[Doc, ...]


# --- modifications ------------------------------------------------------------------------


def _get(doc: Doc, path: tuple[str, ...]) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _set(doc: Doc, path: tuple[str, ...], value: Any) -> None:
    node = doc
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def _paths(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every mapping key's path below ``node`` (lists are leaves)."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*path, key))
            out += _paths(value, (*path, key))
    return out


_LEGACY_TEXT = {
    ("machine", "install", "disk"): ("/dev/sdb", "/dev/nvme1n1", ""),
    ("machine", "install", "image"): ("ghcr.io/siderolabs/installer:v1.14.1", ""),
    ("machine", "kubelet", "image"): ("ghcr.io/siderolabs/kubelet:v1.34.2",),
    ("machine", "network", "hostname"): ("node-a", "worker-7", ""),
    ("machine", "type"): ("worker", "controlplane"),
    ("cluster", "clusterName"): ("renamed", ""),
    ("cluster", "network", "dnsDomain"): ("example.org", "cluster.local"),
    ("cluster", "apiServer", "image"): ("registry.k8s.io/kube-apiserver:v1.34.2",),
    ("cluster", "controlPlane", "endpoint"): (
        "https://moved.example.com:6443",
        "https://moved.example.com",
        "https://10.9.8.7:443",
        "https://[fd00::9]:6443",
        "",
    ),
    ("machine", "ca", "key"): ("",),
    ("cluster", "ca", "key"): ("",),
    ("cluster", "token"): ("abcdef.0123456789abcdef",),
}
_LEGACY_BOOL = (
    ("debug",),
    ("persist",),
    ("machine", "install", "wipe"),
    ("cluster", "discovery", "enabled"),
    ("cluster", "allowSchedulingOnControlPlanes"),
    ("machine", "features", "diskQuotaSupport"),
    ("machine", "features", "kubePrism", "enabled"),
    ("machine", "kubelet", "disableManifestsDirectory"),
    ("cluster", "proxy", "disabled"),
    ("cluster", "coreDNS", "disabled"),
)
_LEGACY_INT = (
    ("machine", "features", "kubePrism", "port"),
    ("cluster", "controlPlane", "localAPIServerPort"),
)
_LEGACY_LISTS = (
    (("machine", "certSANs"), lambda rng: [f"san-{rng.randint(0, 99)}.example.com"]),
    (("cluster", "apiServer", "certSANs"), lambda rng: [f"10.0.0.{rng.randint(1, 254)}"]),
    (("machine", "install", "extraKernelArgs"), lambda rng: ["console=ttyS0", "quiet"]),
    (("cluster", "network", "podSubnets"), lambda rng: ["10.200.0.0/16"]),
    (("cluster", "network", "serviceSubnets"), lambda rng: ["10.100.0.0/12"]),
    (("machine", "network", "nameservers"), lambda rng: ["1.1.1.1", "8.8.8.8"]),
    (("cluster", "extraManifests"), lambda rng: ["https://example.com/a.yaml"]),
)
_LEGACY_MAPS = (
    ("machine", "sysctls"),
    ("machine", "nodeLabels"),
    ("machine", "env"),
    ("machine", "kubelet", "extraArgs"),
    ("cluster", "apiServer", "extraArgs"),
    ("cluster", "proxy", "extraArgs"),
)


def _edit_legacy(rng: random.Random, legacy: Doc, minor: int) -> None:
    roll = rng.random()
    cp = _get(legacy, ("machine", "type")) in ("controlplane", "init")
    if roll < 0.15:
        path = rng.choice(list(_LEGACY_TEXT))
        _set(legacy, path, rng.choice(_LEGACY_TEXT[path]))
    elif roll < 0.25:
        path = rng.choice(_LEGACY_BOOL)
        _set(legacy, path, not _get(legacy, path))
    elif roll < 0.3:
        _set(legacy, rng.choice(_LEGACY_INT), rng.choice((0, 7446, 5443)))
    elif roll < 0.45:
        # Remove a key or subtree the config has (not the whole machine or cluster section).
        paths = [p for p in _paths(legacy) if len(p) > 1]
        path = rng.choice(paths)
        parent = _get(legacy, path[:-1])
        del parent[path[-1]]
    elif roll < 0.6:
        path, make = rng.choice(_LEGACY_LISTS)
        if path[1] == "apiServer" and not cp:
            return
        current = _get(legacy, path)
        action = rng.choice(("append", "replace", "empty", "shorten", "reverse"))
        if action == "append" or not isinstance(current, list):
            _set(legacy, path, [*(current or []), *make(rng)])
        elif action == "replace":
            _set(legacy, path, make(rng))
        elif action == "empty":
            _set(legacy, path, [])
        elif action == "shorten":
            _set(legacy, path, current[: len(current) // 2])
        else:
            _set(legacy, path, current[::-1])
    elif roll < 0.72:
        path = rng.choice(_LEGACY_MAPS)
        if path[0] == "cluster" and not cp:
            return
        current = dict(_get(legacy, path) or {})
        if current and rng.random() < 0.4:
            del current[rng.choice(list(current))]
        else:
            # Before 1.13 extraArgs is a plain map where "" means unset; "" appears only later.
            value = rng.choice(("1", "true", "") if minor >= 13 else ("1", "true"))
            current[f"k{rng.randint(0, 9)}.example"] = value
        _set(legacy, path, current)
    elif roll < 0.85:
        _edit_interfaces(rng, legacy)
    elif roll < 0.92:
        fragment = rng.choice(mc_patches.legacy_fragments())(
            rng, mc_patches.Context(minor, [legacy])
        )
        if fragment:
            for path in _leaf_paths(fragment):
                _set(legacy, path, copy_tree(_get(fragment, path)))
    else:
        path = rng.choice([p for p in _paths(legacy) if len(p) > 1])
        _set(legacy, path, None)


def _leaf_paths(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        out = []
        for key, value in node.items():
            out += _leaf_paths(value, (*path, key))
        return out
    return [path]


def _edit_interfaces(rng: random.Random, legacy: Doc) -> None:
    path = ("machine", "network", "interfaces")
    interfaces = copy_tree(_get(legacy, path) or [])
    action = rng.random()
    if not interfaces or action < 0.4:
        interfaces.append(mc_patches.interface_item(rng))
    elif action < 0.6:
        del interfaces[rng.randrange(len(interfaces))]
    elif action < 0.8:
        item = rng.choice(interfaces)
        item["mtu"] = rng.choice((1400, 9000))
        item.pop("dhcp", None)
        if item.get("vlans"):
            item["vlans"] = item["vlans"][1:]
    else:
        item = rng.choice(interfaces)
        item["vlans"] = [*item.get("vlans", []), {"vlanId": rng.randint(40, 50), "mtu": 1500}]
    _set(legacy, path, interfaces)


def _edit_documents(rng: random.Random, docs: list[Doc], minor: int) -> None:
    roll = rng.random()
    others = [d for d in docs[1:]]
    if roll < 0.4 or not others:
        ctx = mc_patches.Context(minor, docs)
        for new in mc_patches.new_documents(rng, ctx):
            key = (new.get("kind"), new.get("name"))
            match = [d for d in docs[1:] if (d.get("kind"), d.get("name")) == key]
            if match:
                match[0].update(copy_tree(new))
            else:
                docs.append(copy_tree(new))
    elif roll < 0.7:
        docs.remove(rng.choice(others))
    else:
        # Machinery drops a CEL disk selector from any document a patch merges into (a known
        # difference, see test_config_patch), so documents holding one are not edited.
        editable = [d for d in others if "diskSelector" not in str(d)]
        if not editable:
            return
        doc = rng.choice(editable)
        paths = [p for p in _paths(doc) if p[0] not in ("apiVersion", "kind", "name")]
        if paths:
            path = rng.choice(paths)
            value = _get(doc, path)
            if isinstance(value, bool):
                _set(doc, path, not value)
            elif isinstance(value, int):
                _set(doc, path, rng.choice((value + 1, 0)))
            elif isinstance(value, list):
                _set(doc, path, value[:-1])
            else:
                del _get(doc, path[:-1])[path[-1]]


def roundtrip_cases(minor: str, count: int = ROUNDTRIP_CASES_PER_MINOR, seed: int = 0):
    rng = random.Random(f"roundtrip-{minor}-{seed}")
    number = mc_cases.minor_number(minor)
    earlier = [m for m in mc_cases.MINORS if number - 3 <= mc_cases.minor_number(m) <= number]
    cases = []
    for i in range(count):
        source = rng.choice(earlier[:-1]) if len(earlier) > 1 and rng.random() < 0.6 else minor
        answers = mc_cases.machinery_gen(source)
        gen = rng.choice([c for c in mc_cases.gen_cases(source) if not answers[c.id].get("error")])
        baseline = answers[gen.id]["config"]
        docs = [copy_tree(d) for d in mc_cases.parse_docs(baseline)]
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.7:
                _edit_legacy(rng, docs[0], number)
            else:
                _edit_documents(rng, docs, number)
        cases.append(RoundTrip(f"roundtrip-{minor}-{i}", source, baseline, tuple(docs)))
    return cases


def _by_key(docs: list[Doc]) -> list[Doc]:
    """Documents in (apiVersion, kind, name) order; the v1alpha1 document has no kind: first."""
    return sorted(
        docs, key=lambda d: (d.get("apiVersion", ""), d.get("kind", ""), d.get("name", ""))
    )


def test_machinery_applies_our_diff_to_the_baseline(oracle: oracles.Oracle) -> None:
    cases = roundtrip_cases(oracle.minor)
    batch: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    patched: set[str] = set()
    for case in cases:
        modified = emit(case.modified)
        batch.append({"id": f"{case.id}/modified", "op": "parse", "config": modified})
        try:
            patches = diff(mc_cases.parse_docs(case.baseline), case.modified)
        except OmniportError as err:
            failures[case.id] = f"the engine could not diff: {err}"
            continue
        batch.append(
            {
                "id": case.id,
                "op": "patch",
                "config": case.baseline,
                "patches": [emit(p) for p in patches],
            }
        )
        patched.add(case.id)
    answers = {a["id"]: a for a in oracle.ask(batch)}
    invalid = 0
    for case in cases:
        target = answers[f"{case.id}/modified"]
        if target.get("error"):
            invalid += 1
            failures[case.id] = (
                f"the modification is not a config machinery reads: {target['error']}"
            )
            continue
        if case.id not in patched:
            continue
        result = answers[case.id]
        if result.get("error"):
            failures[case.id] = f"machinery refused the engine's patches: {result['error']}"
            continue
        want = _by_key(mc_cases.parse_docs(target["config"]))
        got = _by_key(mc_cases.parse_docs(result["config"]))
        if key_order(got) != key_order(want):
            failures[case.id] = first_difference(want, got)
    counts.record(
        "config diff round trip", oracle.minor, tried=len(cases), agreed=len(cases) - len(failures)
    )
    assert not failures, "\n".join(f"{k}: {v}" for k, v in list(failures.items())[:25])


@pytest.mark.parametrize("minor", mc_cases.MINORS)
def test_roundtrip_cases_are_varied(minor: str, interop_built: None) -> None:
    cases = roundtrip_cases(minor)
    baselines = [mc_cases.parse_docs(c.baseline) for c in cases]
    if minor != mc_cases.MINORS[0]:
        assert sum(c.baseline_minor != minor for c in cases) > len(cases) // 3
    assert any(len(c.modified) > len(b) for c, b in zip(cases, baselines, strict=True))
    if mc_cases.minor_number(minor) >= 12:  # earlier baselines have one document only
        assert any(len(c.modified) < len(b) for c, b in zip(cases, baselines, strict=True))
    assert sum(c.modified[0] != b[0] for c, b in zip(cases, baselines, strict=True)) > 150
