"""Strategic patches that turn one config into another (Talos ``configdiff.Patch``).

Two passes, so that ``apply_patches(original, diff(original, modified))`` equals ``modified``:

1. Documents only in the original are deleted (header + ``$patch: delete``); documents only in
   the modified config are added whole; shared documents get a recursive patch that sets new or
   changed values and deletes keys the modified config lacks. A list that differs is deleted
   here, because strategic merge appends lists.
2. Those lists are set to their modified values.

Talos's second pass handles only lists. Values a merge cannot write over the old one (``""``,
``0``, ``null``, a URL losing a part, a value changing between mapping, list and scalar, a
``merge:"replace"`` mapping emptied, a changed PEM pair that Talos cannot patch inside) are
handled the same way here: deleted in the first pass, set in the second. A document's header
appears only when its patch is not empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from omniport.planner.machineconfig.document import (
    PATCH_KEY,
    ConfigError,
    Document,
    DocumentKey,
    MachineConfig,
    as_documents,
    copy_tree,
)
from omniport.planner.machineconfig.merge import merge_scalar
from omniport.planner.machineconfig.rules import Identity, Opaque, Path, Replace, Rule, rules_for

Documents = MachineConfig | Iterable[Document | Mapping[str, Any]]

_DELETE = PATCH_KEY, "delete"


def diff(original: Documents, modified: Documents) -> tuple[tuple[Document, ...], ...]:
    """At most two strategic patches (each a tuple of documents) from original to modified.

    Equal configs give no patch at all. Raises ConfigError when the modified config drops the
    v1alpha1 document, which no patch can do.
    """
    before = as_documents(original)
    after = as_documents(modified)
    before_index = {doc.key: doc for doc in before}
    after_index = {doc.key: doc for doc in after}
    first: list[Document] = []
    second: list[Document] = []
    for doc in before:
        if doc.key not in after_index:
            if doc.key.is_legacy:
                raise ConfigError(
                    "the modified config has no v1alpha1 document, and a patch cannot remove it",
                    "keep the v1alpha1 document in the modified config",
                )
            first.append(Document({**doc.key.meta(), PATCH_KEY: "delete"}))
    for doc in after:
        if doc.key not in before_index:
            first.append(Document(copy_tree(doc.data)))
    for doc in after:
        old = before_index.get(doc.key)
        if old is None:
            continue
        set_now, set_later = _diff_document(old.data, doc.data, doc.key)
        meta = doc.key.meta()
        if set_now:
            first.append(Document({**meta, **set_now}))
        if set_later:
            second.append(Document({**meta, **set_later}))
    return tuple(tuple(patch) for patch in (first, second) if patch)


def _diff_document(
    old: dict[str, Any], new: dict[str, Any], key: DocumentKey
) -> tuple[dict[str, Any], dict[str, Any]]:
    meta = key.meta().keys() | ({"version"} if key.is_legacy else set())
    return _diff_map(
        {k: v for k, v in old.items() if k not in meta},
        {k: v for k, v in new.items() if k not in meta},
        (),
        rules_for(key),
    )


def _diff_map(
    old: Mapping[str, Any], new: Mapping[str, Any], path: Path, rules: dict[Path, Rule]
) -> tuple[dict[str, Any], dict[str, Any]]:
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}
    for key, after in new.items():
        sub = (*path, key)
        rule = rules.get(sub) if rules else None
        if key not in old or old[key] is None:
            if key not in old or after is not None:
                first[key] = copy_tree(after)
            continue
        before = old[key]
        if _same(before, after):
            continue
        if _shape(before) != _shape(after) or isinstance(rule, Opaque):
            # Opaque values cannot be patched in part (nor cleared by a merge): replace whole.
            first[key] = dict([_DELETE])
            second[key] = copy_tree(after)
        elif isinstance(after, dict):
            if isinstance(rule, Replace):
                # A replaced mapping cannot be patched in part: write it whole.
                if after:
                    first[key] = copy_tree(after)
                else:
                    first[key] = dict([_DELETE])
                    second[key] = {}
                continue
            if _repeats_identities(after, sub, rules):
                # Written into an existing section, Talos merges list elements that share an
                # identity; written with their section, they are kept as they are.
                first[key] = dict([_DELETE])
                second[key] = copy_tree(after)
                continue
            sub_first, sub_second = _diff_map(before, after, sub, rules)
            if sub_first:
                first[key] = sub_first
            if sub_second:
                second[key] = sub_second
        elif isinstance(after, list):
            first[key] = dict([_DELETE])
            second[key] = copy_tree(after)
        elif _same(merge_scalar(before, after, rule), after):
            first[key] = after
        else:
            first[key] = dict([_DELETE])
            second[key] = after
    for key in old:
        if key not in new:
            first[key] = dict([_DELETE])
    return first, second


def _repeats_identities(mapping: Mapping[str, Any], path: Path, rules: dict[Path, Rule]) -> bool:
    """Whether an identity-keyed list directly in ``mapping`` (or in its elements) repeats one."""
    for key, value in mapping.items():
        rule = rules.get((*path, key)) if rules else None
        if isinstance(rule, Identity) and isinstance(value, list):
            if _list_repeats(value, (*path, key), rule, rules):
                return True
    return False


def _list_repeats(items: list[Any], path: Path, rule: Identity, rules: dict[Path, Rule]) -> bool:
    seen = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        identity = rule.identify(item)
        if identity is not None:
            if identity in seen:
                return True
            seen.add(identity)
        if _repeats_identities(item, (*path, "[]"), rules):
            return True
    return False


def _shape(value: Any) -> type:
    if isinstance(value, dict):
        return dict
    if isinstance(value, list):
        return list
    return object


def _same(a: Any, b: Any) -> bool:
    """Equal with types, so that ``1``, ``1.0`` and ``True`` stay distinct."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
