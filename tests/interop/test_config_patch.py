"""The patcher against Talos's own: ``apply_patches`` versus machinery's ``configpatcher``.

For each Talos minor 1.9-1.14, 300 seeded cases (``mc_patches.patch_cases``): a config that
machinery generated, sometimes cut to its v1alpha1 document, and one to three patches as
talosctl reads them (``configpatcher.LoadPatches`` + ``Apply``; the engine's ``load_patches`` +
``apply_patches``): strategic merge with several documents, new and matched documents,
``$patch: delete`` on documents, keys and list elements, lists, maps, zero values, URLs, and
JSON 6902 (JSON or YAML) on single-document and multi-document configs.

Verdicts must agree: when machinery rejects a case, the engine must raise a ConfigError, and
the other way round. When both accept, the configs must be equal as machinery reads them:
the engine's result is emitted and loaded by machinery (op ``parse``), and that must equal
machinery's own result, document for document, key for key (in order).

Normalization, and why: the engine merges plain YAML data and keeps what the patch wrote
(``null``, an integer in a string field, key order of the patch), where machinery merges typed
structs and writes them back in struct order with empty fields left out. What Talos applies
is the typed config, so the check compares the two after machinery has read both. Nothing
else is normalized.

One oracle process per minor: machinery's patch cases and the parses of the engine's
results go in one batch, after the engine ran in-process.

Known differences (``KNOWN`` below) are not normalized away: each is one narrow input asked
of every minor, a strict xfail where machinery differs and a pass where it agrees, and the
seeded cases stay clear of exactly those inputs on exactly those minors: an absent document
deleted, or a document named twice in one patch (before 1.14); a delete inside an unstructured
value (before 1.12); '' in extraArgs (before 1.13); a JSON patch after a strategic one, a patch
merged into a document holding a CEL disk selector, a delete of a key a map lacks or of a
field Talos does not know (every minor).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from omniport.planner.errors import OmniportError
from omniport.planner.machineconfig.document import emit, parse
from omniport.planner.machineconfig.merge import apply_patches, load_patches
from tests.interop import counts, mc_cases, mc_patches, oracles
from tests.test_gen_helpers import key_order


def engine_patch(case: mc_patches.PatchCase) -> tuple[str | None, str | None]:
    """(emitted result, None) or (None, the engine's refusal)."""
    try:
        patches = load_patches((f"patch-{i}", text) for i, text in enumerate(case.patches))
        result = apply_patches(parse(case.config, "config"), patches)
    except OmniportError as err:
        return None, str(err)
    return emit(result), None


def compare(
    machinery: dict[str, Any], engine_parsed: dict[str, Any] | None, engine_error: str | None
) -> str | None:
    if machinery.get("error"):
        if engine_error is not None:
            return None
        return f"machinery refused ({machinery['error']}), the engine accepted"
    if engine_error is not None:
        return f"the engine refused ({engine_error}), machinery accepted"
    assert engine_parsed is not None
    if engine_parsed.get("error"):
        return f"machinery cannot read the engine's result: {engine_parsed['error']}"
    want = mc_cases.parse_docs(machinery["config"])
    got = mc_cases.parse_docs(engine_parsed["config"])
    if key_order(got) != key_order(want):
        return first_difference(want, got)
    return None


def first_difference(want: Any, got: Any, path: str = "") -> str:
    if isinstance(want, dict) and isinstance(got, dict):
        for key in [*want, *(k for k in got if k not in want)]:
            if key not in got:
                return f"{path}.{key}: engine lacks it (machinery: {want[key]!r:.150})"
            if key not in want:
                return f"{path}.{key}: engine adds {got[key]!r:.150}"
            if want[key] != got[key]:
                return first_difference(want[key], got[key], f"{path}.{key}")
        return f"{path}: key order differs: machinery {list(want)}, engine {list(got)}"
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            if key_order(w) != key_order(g):
                return first_difference(w, g, f"{path}[{i}]")
    return f"{path or '(documents)'}: machinery {want!r:.300}, engine {got!r:.300}"


def test_apply_patches_equals_configpatcher(oracle: oracles.Oracle) -> None:
    cases = mc_patches.patch_cases(oracle.minor)
    engine = {c.id: engine_patch(c) for c in cases}
    batch = [c.oracle_case() for c in cases]
    batch += [
        {"id": f"{c.id}/engine", "op": "parse", "config": engine[c.id][0]}
        for c in cases
        if engine[c.id][0] is not None
    ]
    answers = {a["id"]: a for a in oracle.ask(batch)}
    failures = {}
    rejected = 0
    for case in cases:
        text, error = engine[case.id]
        machinery = answers[case.id]
        rejected += bool(machinery.get("error"))
        problem = compare(machinery, answers.get(f"{case.id}/engine"), error)
        if problem:
            failures[case.id] = problem
    counts.record("config patch", oracle.minor, tried=len(cases), agreed=len(cases) - len(failures))
    counts.record(
        "config patch (rejected)",
        oracle.minor,
        tried=rejected,
        agreed=rejected - sum(1 for k in failures if answers[k].get("error")),
    )
    assert not failures, "\n".join(f"{k}: {v}" for k, v in list(failures.items())[:25])
    # Both verdicts are exercised: a check where everything fails, or nothing does, proves less.
    assert 0.1 * len(cases) < rejected < 0.5 * len(cases)


@pytest.mark.parametrize("minor", mc_cases.MINORS)
def test_patch_cases_cover_what_the_brief_names(minor: str, interop_built: None) -> None:
    cases = mc_patches.patch_cases(minor)
    texts = [t for c in cases for t in c.patches]
    json_patches = [t for t in texts if t.lstrip().startswith(("[", "- op", "- from"))]
    strategic = [t for t in texts if t not in json_patches]
    assert len(json_patches) > 20 and len(strategic) > 200
    assert any("---" in t for t in strategic), "multi-document patches"
    assert any(re.search(r"^kind: .*\n(name: .*\n)?\$patch: delete", t, re.M) for t in texts)
    assert any(re.search(r"^    +\$patch: delete", t, re.M) for t in texts), "key deletes"
    assert any(re.search(r"^ *- (interface|name): .*\n +\$patch: delete", t, re.M) for t in texts)
    multidoc = sum("\n---\n" in c.config for c in cases)
    assert multidoc > 50 if mc_cases.minor_number(minor) >= 12 else multidoc == 0
    assert any(len(c.patches) == 3 for c in cases)


# --- known differences --------------------------------------------------------------------
# Each is one narrow input, asked of every minor: strict xfail where machinery differs (so a
# fixed machinery, or a changed engine, turns the xfail into a failure), a pass elsewhere.


@dataclass(frozen=True)
class Known:
    name: str
    patches: tuple[str, ...]
    minors: frozenset[str]  # where machinery differs from the engine
    reason: str
    single_document: bool = False  # cut the config to its v1alpha1 document


_PRE_114 = frozenset({"1.9", "1.10", "1.11", "1.12", "1.13"})
KNOWN = (
    Known(
        "delete-absent-document",
        ("apiVersion: v1alpha1\nkind: WatchdogTimerConfig\n$patch: delete\n",),
        _PRE_114,
        "machinery before 1.14 leaves an empty document '{}' behind when a patch deletes a "
        "document the config lacks, and cannot read its own result back (duplicate document); "
        "1.14 and the engine skip the delete",
    ),
    Known(
        "document-twice-in-one-patch",
        (
            "apiVersion: v1alpha1\nkind: WatchdogTimerConfig\ndevice: /dev/watchdog0\n---\n"
            "apiVersion: v1alpha1\nkind: WatchdogTimerConfig\ntimeout: 2m0s\n",
        ),
        _PRE_114,
        "machinery before 1.14 refuses a patch naming one document twice; 1.14 and the engine "
        "merge both in order",
    ),
    Known(
        "delete-inside-unstructured",
        ("cluster:\n  apiServer:\n    auditPolicy:\n      rules:\n        $patch: delete\n",),
        frozenset({"1.9", "1.10", "1.11"}),
        "machinery before 1.12 cannot walk into unstructured values (no ',inline' support in "
        "its delete), 'lookup failed'; 1.12+ and the engine delete the key",
    ),
    Known(
        "empty-extra-arg",
        (
            "cluster:\n  apiServer:\n    extraArgs:\n      v: '2'\n",
            "cluster:\n  apiServer:\n    extraArgs:\n      v: ''\n",
        ),
        frozenset({"1.9", "1.10", "1.11", "1.12"}),
        "before 1.13 extraArgs is a plain string map, whose merge never overwrites with ''; "
        "from 1.13 (meta.Args) and in the engine each patch key is copied, '' included",
    ),
    Known(
        "cel-disk-selector-dropped",
        (
            "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nprovisioning:\n"
            "  diskSelector:\n    match: disk.size > 10u * GB\n",
            "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nprovisioning:\n"
            "  maxSize: 10GiB\n",
        ),
        frozenset(mc_cases.MINORS),
        "machinery bug (every minor, 1.14.1 included): merging a patch into a document that "
        "holds a CEL disk selector (VolumeConfig, UnattendedInstallConfig "
        "provisioning.diskSelector.match) drops the selector, even when the patch does not "
        "mention it; the engine keeps it",
    ),
    Known(
        "delete-absent-map-key",
        (
            "machine:\n  sysctls:\n    a.b: '1'\n",
            "machine:\n  sysctls:\n    c.d:\n      $patch: delete\n",
        ),
        frozenset(mc_cases.MINORS),
        "machinery refuses to delete a key a map lacks ('lookup failed'), yet deletes an "
        "absent field of a struct; telling the two apart needs Talos's schema, so the engine "
        "skips every delete of an absent key (its own diff never writes one)",
    ),
    Known(
        "delete-unknown-field",
        ("machine:\n  features:\n    noSuchField:\n      $patch: delete\n",),
        frozenset(mc_cases.MINORS),
        "machinery refuses to delete a field its struct does not have ('lookup failed'); the "
        "engine keeps no schema, sees an absent key and skips the delete",
    ),
    Known(
        "json-patch-after-strategic",
        (
            '[{"op": "remove", "path": "/machine/certSANs"}]',
            "machine:\n  network:\n    hostname: a\n",
            '[{"op": "remove", "path": "/machine/certSANs"}]',
        ),
        frozenset(mc_cases.MINORS),
        "after a strategic patch machinery re-encodes the typed config, so a later JSON patch "
        "sees fields its encoder always writes (certSANs: []) that the engine's plain data "
        "no longer has; the engine keeps no Talos schema to re-create them",
        single_document=True,
    ),
)


def _known_params() -> list[Any]:
    params = []
    for known in KNOWN:
        for minor in mc_cases.MINORS:
            marks = ()
            if minor in known.minors:
                marks = (pytest.mark.xfail(reason=known.reason, strict=True),)
            params.append(pytest.param(known, minor, marks=marks, id=f"{known.name}-{minor}"))
    return params


def _known_case(known: Known, minor: str) -> mc_patches.PatchCase:
    base = next(
        c
        for c in mc_cases.gen_cases(minor)
        if c.machine_type == "controlplane" and c.contract == f"v{minor}"
    )
    config = mc_cases.machinery_gen(minor)[base.id]["config"]
    if known.single_document:
        config = mc_patches.documents_text(config)[0]
    return mc_patches.PatchCase(f"known-{known.name}", minor, config, known.patches)


@cache
def _known_answers(minor: str) -> dict[str, Any]:
    """Machinery's answers to every known case of one minor (one oracle process)."""
    batch = []
    for known in KNOWN:
        case = _known_case(known, minor)
        batch.append(case.oracle_case())
        text, _ = engine_patch(case)
        if text is not None:
            batch.append({"id": f"{case.id}/engine", "op": "parse", "config": text})
    return {a["id"]: a for a in oracles.Oracle(minor).ask(batch)}


@pytest.mark.parametrize(("known", "minor"), _known_params())
def test_known_difference(known: Known, minor: str, interop_built: None) -> None:
    case = _known_case(known, minor)
    _, error = engine_patch(case)
    answers = _known_answers(minor)
    try:
        problem = compare(answers[case.id], answers.get(f"{case.id}/engine"), error)
    except Exception as err:  # machinery's own output may not even parse (the '{}' document)
        problem = f"machinery's result cannot be read: {err}"
    assert problem is None, problem
