"""``planner.machineconfig.strict`` decodes the v1alpha1 document as machinery does (issue 15
item 10: ``config patch`` refuses unknown keys and wrong types as talosctl does).

The type table it reads is a fresh reflection of each minor's ``v1alpha1.Config`` (drift test),
and on a corpus of mutated configs its text equals machinery's ``configloader`` error exactly:
unknown keys at every depth (inside lists too), and a value of the wrong type for fields of
every kind the table holds.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from omniport.planner.machineconfig import strict
from omniport.planner.machineconfig.v1alpha1_fields import NODES
from tests.interop import counts, v1alpha1_fields
from tests.interop.oracles import Oracle

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "talos-fixtures" / "v1alpha1"
DECODE_FORMS = ("unknown keys found", "error decoding  to", "error decoding document /v1alpha1/")

WRONG = {  # a value yaml.v3 refuses for each kind (strings take any scalar)
    "bool": "maybe",
    "int": "many",
    "uint": -1,
    "float": "much",
    "duration": "soon",
    "struct": "plain",
    "slice": "plain",
    "map": ["a", "list"],
    "string": {"a": "map"},
}


def test_the_committed_table_is_a_fresh_reflection(interop_built):
    assert v1alpha1_fields.generate() == v1alpha1_fields.TARGET.read_text(), (
        "run `python -m tests.interop.v1alpha1_fields --write`"
    )


def base_documents(minor: str) -> list[Any]:
    path = FIXTURES / "stability" / f"v{minor}" / "overrides-controlplane.yaml"
    if not path.exists():
        pytest.skip(f"no Talos fixtures at {path}")
    return list(yaml.safe_load_all(path.read_text()))


def typed_paths(node: tuple[Any, ...], path: tuple[Any, ...] = ()) -> list[tuple[tuple, str]]:
    """(path through mappings, kind) for every field reachable through structs only."""
    kind, _, fields, _, _ = node
    out = [(path, kind)] if path else []
    if kind == "struct" and fields:
        for name, index in fields.items():
            out += typed_paths(NODES[index], (*path, name))
    return out


def put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    where = doc
    for key in path[:-1]:
        nxt = where.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            where[key] = nxt
        where = nxt
    where[path[-1]] = value


def corpus(minor: str) -> list[tuple[str, str]]:
    docs = base_documents(minor)
    legacy = next(i for i, d in enumerate(docs) if "kind" not in d)
    root = strict.root_for(int(minor.split(".")[1]))
    paths = typed_paths(root)
    rng = random.Random(f"strict-{minor}")
    cases: list[tuple[str, str]] = [("as-is", yaml.safe_dump_all(docs, sort_keys=False))]
    structs = [p for p, k in paths if k == "struct" and len(p) < 5]
    for n in range(40):  # unknown keys, one to three at a time, at struct depths
        mutated = copy.deepcopy(docs)
        for _ in range(1 + n % 3):
            where = rng.choice(structs)
            put(
                mutated[legacy],
                (*where, f"bogus{rng.randrange(100)}"),
                rng.choice([1, "x", {"k": [1]}]),
            )
        cases.append((f"unknown-{n}", yaml.safe_dump_all(mutated, sort_keys=False)))
    for kind, bad in WRONG.items():  # one wrong value per kind, at several fields of that kind
        fields = [p for p, k in paths if k == kind and len(p) < 6]
        for n, where in enumerate(rng.sample(fields, min(6, len(fields)))):
            mutated = copy.deepcopy(docs)
            put(mutated[legacy], where, bad)
            cases.append((f"wrong-{kind}-{n}", yaml.safe_dump_all(mutated, sort_keys=False)))
    interfaces = copy.deepcopy(docs)  # unknown keys inside list items, some items clean
    put(
        interfaces[legacy],
        ("machine", "network", "interfaces"),
        [
            {"interface": "eth0", "zz": 1, "aa": {"b": [1, 2]}},
            {"interface": "eth1"},
            {"x": {"y": 1}},
        ],
    )
    cases.append(("unknown-in-list", yaml.safe_dump_all(interfaces, sort_keys=False)))
    return cases


def test_strict_decoding_matches_machinery(oracle: Oracle):
    minor = oracle.minor
    cases = corpus(minor)
    answers = oracle.ask({"id": name, "op": "parse", "config": text} for name, text in cases)
    agreed = 0
    for (name, text), answer in zip(cases, answers, strict=True):
        ours = strict.decode_error(text, int(minor.split(".")[1]))
        theirs = answer.get("error") or ""
        if ours is not None:
            assert ours == theirs, f"{minor} {name}:\nours:   {ours!r}\ntheirs: {theirs!r}"
        else:
            assert not theirs.startswith(DECODE_FORMS), f"{minor} {name}: missed {theirs!r}"
        agreed += 1
    counts.record("strict decode", minor, tried=len(cases), agreed=agreed)
    refused = sum(1 for name, _ in cases if name != "as-is")
    assert refused >= 40
