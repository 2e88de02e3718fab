"""Talos strategic merge on plain config data, and patch loading as talosctl does it.

Merge rules (Talos ``configpatcher.StrategicMerge`` over ``merge.Merge``):

- Documents match on (apiVersion, kind, name); the legacy document on ``v1alpha1``. A matched
  document is merged, an unmatched one appended.
- Maps merge key by key. Lists append; an empty list changes nothing. What the config lacks
  (an absent section, an appended list element) is taken as written, not merged into itself.
  Fields tagged ``merge:"replace"`` are replaced whole, identity-keyed lists merge element by
  element, and ``extraArgs`` copy key by key (see :mod:`planner.machineconfig.rules`).
- Scalars overwrite, except that ``""`` and ``0`` never overwrite a set value (Talos's zero
  values; ``0`` does for the few numbers Talos keeps behind a pointer, ``Pointer``) and
  ``null`` overwrites nothing; booleans always overwrite.
- ``$patch: delete`` removes a whole document (skipped if absent), a key, or the first list
  element whose first other field equals the given value. A document's deletes run before its
  merge, so delete-then-re-add works. Deleting the v1alpha1 document, deleting a key inside a
  list element or inside a PEM pair (``Opaque``), or deleting below a missing key is an error.

JSON6902 patches (:mod:`planner.machineconfig.json6902`) apply only to single-document configs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from omniport.planner.machineconfig.document import (
    LEGACY_VERSION,
    PATCH_KEY,
    ConfigError,
    Document,
    DocumentKey,
    MachineConfig,
    as_documents,
    copy_tree,
    load_yaml_stream,
    parse,
    scalar_text,
)
from omniport.planner.machineconfig.json6902 import JsonPatch, apply_json_patch, check_operations
from omniport.planner.machineconfig.rules import (
    Args,
    Identity,
    Opaque,
    Path,
    Pointer,
    Replace,
    Rule,
    Url,
    rules_for,
)

_META_KEYS = frozenset(("version", "apiVersion", "kind", "name"))


@dataclass(frozen=True)
class StrategicPatch:
    """A strategic-merge patch: documents that may carry ``$patch: delete``."""

    documents: tuple[Document, ...]
    source: str = "patch"


Patch = StrategicPatch | JsonPatch


@dataclass(frozen=True)
class _Delete:
    path: Path
    field: str | None = None  # list-element delete: first other field of the element...
    value: str | None = None  # ...and the text it must equal


# --- loading -------------------------------------------------------------------------------


def load_patch(raw: bytes | str, source: str = "patch") -> Patch:
    """Read one patch as talosctl does: strategic merge first, else JSON6902 (JSON or YAML)."""
    try:
        return StrategicPatch(parse(raw, source, patch=True).documents, source)
    except ConfigError as err:
        strategic_error = err
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    try:
        operations = json.loads(text)
    except ValueError as err:
        # a JSONDecodeError has a position; other ValueErrors (an integer longer than Python's
        # digit limit) are raised by the conversion of a token that is valid JSON
        reason = (
            f"{err.msg} at line {err.lineno}, column {err.colno}"
            if isinstance(err, json.JSONDecodeError)
            else str(err)
        )
        json_error: ConfigError = ConfigError(
            f"{source} is neither a config patch nor a JSON patch (JSON error: {reason})"
        )
    else:
        if isinstance(operations, list):
            return JsonPatch(check_operations(operations, source), source)
        raise strategic_error
    try:
        data = load_yaml_stream(text, source)
    except ConfigError:
        data = []
    if len(data) == 1 and isinstance(data[0], list):
        return JsonPatch(check_operations(data[0], source, from_yaml=True), source)
    if text.strip().startswith("["):
        raise json_error
    raise strategic_error


def load_patches(items: Iterable[tuple[str, bytes | str]]) -> list[Patch]:
    """Load ``(source, contents)`` pairs in order; consecutive JSON patches are joined."""
    patches: list[Patch] = []
    for source, raw in items:
        patch = load_patch(raw, source)
        last = patches[-1] if patches else None
        if isinstance(patch, JsonPatch) and isinstance(last, JsonPatch):
            patches[-1] = JsonPatch(last.operations + patch.operations, last.source)
        else:
            patches.append(patch)
    return patches


# --- applying ------------------------------------------------------------------------------


def apply_patches(
    config: MachineConfig | Iterable[Document | Mapping[str, Any]],
    patches: Iterable[Patch | Iterable[Document | Mapping[str, Any]]],
) -> tuple[Document, ...]:
    """Apply patches in order; a plain sequence of documents is a strategic patch."""
    docs = as_documents(config)
    for patch in patches:
        if isinstance(patch, JsonPatch):
            docs = apply_json_patch(docs, patch.operations, patch.source)
        elif isinstance(patch, StrategicPatch):
            docs = strategic_merge(docs, patch.documents, patch.source)
        else:
            docs = strategic_merge(docs, as_documents(patch))
    return docs


def strategic_merge(
    config: MachineConfig | Iterable[Document | Mapping[str, Any]],
    patch: Iterable[Document | Mapping[str, Any]],
    source: str = "patch",
) -> tuple[Document, ...]:
    """Merge one strategic patch into a config; the inputs are left untouched."""
    left: list[Document | None] = list(as_documents(config))
    owned: set[int] = set()  # positions whose data is already a private copy
    index: dict[DocumentKey, int] = {}
    for at, doc in enumerate(left):
        if doc is not None:
            index.setdefault(doc.key, at)

    for number, patch_doc in enumerate(as_documents(patch), start=1):
        key = patch_doc.key
        where = f"{source}: document {number} ({key})"
        remaining, deletes, delete_document = _split_deletes(patch_doc.data, where)
        position = index.get(key)
        if delete_document:
            if key.kind == LEGACY_VERSION and not key.api_version:
                raise ConfigError(
                    f"{where} deletes the v1alpha1 document",
                    "delete its fields instead; the legacy document itself cannot be removed",
                )
            if position is not None:
                left[position] = None
                del index[key]
            continue
        rules = rules_for(key)
        for delete in deletes:
            _check_opaque(delete, rules, where)
        if position is not None:
            if position not in owned:
                current = left[position]
                assert current is not None
                left[position] = Document(copy_tree(current.data))
                owned.add(position)
            target = left[position]
            assert target is not None
            for delete in deletes:
                _apply_delete(target.data, delete, where)
        if remaining is None:
            continue
        if position is not None:
            target = left[position]
            assert target is not None
            _merge_map(target.data, remaining, (), rules, where)
        else:
            # Talos appends an unmatched document as it is, without merging it into anything.
            index[key] = len(left)
            owned.add(len(left))
            left.append(Document(copy_tree(remaining)))
    return tuple(doc for doc in left if doc is not None)


# --- $patch: delete ------------------------------------------------------------------------


def _split_deletes(
    data: dict[str, Any], where: str
) -> tuple[dict[str, Any] | None, list[_Delete], bool]:
    """Separate a patch document's deletes from what it merges.

    Returns the data to merge (None when nothing but the header is left after removing
    deletes), the deletes in document order, and whether the whole document is deleted.
    """
    if not _mentions_patch(data):
        return data, [], False
    if PATCH_KEY in data:
        _check_directive(data[PATCH_KEY], where, "")
        return None, [], True
    deletes: list[_Delete] = []
    remaining, _ = _strip(data, (), False, deletes, where)
    if remaining is None or all(k in _META_KEYS for k in remaining):
        return None, deletes, False
    return remaining, deletes, False


def _strip(
    value: Any, path: Path, in_list: bool, deletes: list[_Delete], where: str
) -> tuple[Any, bool]:
    """Copy ``value`` without its delete directives; the flag says "drop me from my parent"."""
    if isinstance(value, dict):
        if PATCH_KEY in value:
            _check_directive(value[PATCH_KEY], where, _dotted(path))
            if in_list:
                deletes.append(_element_delete(value, path, where))
            else:
                if "[]" in path:
                    raise ConfigError(
                        f"{where} deletes {_dotted(path)!r}, a key inside a list element",
                        "delete the whole element by its first field instead",
                    )
                deletes.append(_Delete(path))
            return None, True
        out: dict[str, Any] = {}
        emptied = False
        for key, item in value.items():
            kept, drop = _strip(item, (*path, key), False, deletes, where)
            if drop:
                emptied = True
            else:
                out[key] = kept
        return out, emptied and not out
    if isinstance(value, list):
        items: list[Any] = []
        emptied = False
        for item in value:
            kept, drop = _strip(item, (*path, "[]"), True, deletes, where)
            if drop:
                emptied = True
            else:
                items.append(kept)
        return items, emptied and not items
    return value, False


def _element_delete(element: dict[str, Any], path: Path, where: str) -> _Delete:
    list_path = path[:-1]
    if "[]" in list_path:
        raise ConfigError(
            f"{where} deletes an element of {_dotted(list_path)!r}, a list inside a list element",
            "delete the outer element instead",
        )
    for key, value in element.items():
        if key != PATCH_KEY:
            return _Delete(list_path, key, scalar_text(value))
    raise ConfigError(
        f"{where} deletes an element of {_dotted(list_path)!r} without naming it",
        "add the element's first field next to $patch: delete",
    )


def _check_directive(value: Any, where: str, path: str) -> None:
    if value != "delete":
        at = f" at {path!r}" if path else ""
        raise ConfigError(
            f"{where} has $patch: {scalar_text(value)!r}{at}", "the only directive is delete"
        )


def _apply_delete(data: dict[str, Any], delete: _Delete, where: str) -> None:
    node: Any = data
    for depth, key in enumerate(delete.path[:-1]):
        if not isinstance(node, dict) or node.get(key) is None:
            missing = _dotted(delete.path[: depth + 1])
            raise ConfigError(
                f"{where} deletes {_dotted(delete.path)!r}, but {missing!r} is not in the config",
                "remove that delete from the patch",
            )
        node = node[key]
    last = delete.path[-1]
    if not isinstance(node, dict):
        raise ConfigError(
            f"{where} deletes {_dotted(delete.path)!r}, but its parent is not a mapping",
            "check the path",
        )
    if delete.field is None:
        node.pop(last, None)
        return
    items = node.get(last)
    if isinstance(items, list):
        for position, item in enumerate(items):
            if (
                isinstance(item, dict)
                and delete.field in item
                and scalar_text(item[delete.field]) == delete.value
            ):
                del items[position]
                return
    raise ConfigError(
        f"{where} deletes the element of {_dotted(delete.path)!r} whose {delete.field} is "
        f"{delete.value!r}, but there is none",
        "remove that delete from the patch",
    )


def _check_opaque(delete: _Delete, rules: dict[Path, Rule], where: str) -> None:
    for depth in range(1, len(delete.path)):
        if isinstance(rules.get(delete.path[:depth]), Opaque):
            raise ConfigError(
                f"{where} deletes {_dotted(delete.path)!r}, inside "
                f"{_dotted(delete.path[:depth])!r}, which Talos can only delete whole",
                f"delete {_dotted(delete.path[:depth])!r} and set it again",
            )


def _mentions_patch(value: Any) -> bool:
    if isinstance(value, dict):
        return PATCH_KEY in value or any(_mentions_patch(v) for v in value.values())
    if isinstance(value, list):
        return any(_mentions_patch(v) for v in value)
    return False


# --- merging values ------------------------------------------------------------------------


def _merge_map(
    target: dict[str, Any],
    patch: Mapping[str, Any],
    path: Path,
    rules: dict[Path, Rule],
    where: str,
) -> None:
    """Merge ``patch`` into ``target`` in place; ``target`` must be a private copy."""
    for key, new in patch.items():
        sub = (*path, key)
        rule = rules.get(sub) if rules else None
        old = target.get(key)
        if old is None:
            if new is None:
                target.setdefault(key, None)
            elif isinstance(new, list) and isinstance(rule, Identity):
                # An absent identity-keyed list is still merged into, so its elements dedupe.
                fresh_list: list[Any] = []
                _merge_list(fresh_list, new, sub, rule, rules, where)
                target[key] = fresh_list
            else:
                # Talos sets an absent section (a nil pointer or map entry) as written.
                target[key] = copy_tree(new)
            continue
        if new is None:
            continue
        if isinstance(rule, Replace):
            if not _empty(new):
                target[key] = copy_tree(new)
            continue
        if isinstance(rule, Args) and isinstance(old, dict) and isinstance(new, dict):
            for arg, value in new.items():
                old[arg] = copy_tree(value)
            continue
        if isinstance(new, dict):
            if not isinstance(old, dict):
                raise _mismatch(where, sub, old, new)
            _merge_map(old, new, sub, rules, where)
        elif isinstance(new, list):
            if not isinstance(old, list):
                raise _mismatch(where, sub, old, new)
            _merge_list(old, new, sub, rule, rules, where)
        else:
            if isinstance(old, dict | list):
                raise _mismatch(where, sub, old, new)
            target[key] = merge_scalar(old, new, rule)


def _merge_list(
    target: list[Any],
    patch: list[Any],
    path: Path,
    rule: Rule | None,
    rules: dict[Path, Rule],
    where: str,
) -> None:
    if isinstance(rule, Replace):
        if patch:
            target[:] = copy_tree(patch)
        return
    element_path = (*path, "[]")
    if not isinstance(rule, Identity):
        target.extend(copy_tree(item) for item in patch)
        return
    for item in patch:
        identity = rule.identify(item) if isinstance(item, dict) else None
        match = None
        if identity is not None:
            for position, existing in enumerate(target):
                if isinstance(existing, dict) and rule.identify(existing) == identity:
                    match = position
                    break
        if match is None:
            # Talos appends an unmatched element as written, without merging inside it.
            target.append(copy_tree(item))
        elif rule.replace:
            target[match] = copy_tree(item)
        else:
            _merge_map(target[match], item, element_path, rules, where)


def merge_scalar(old: Any, new: Any, rule: Rule | None = None) -> Any:
    """What a scalar field holds after merging ``new`` over ``old``."""
    if new is None:
        return old
    if isinstance(rule, Url) and isinstance(old, str) and isinstance(new, str):
        return _merge_url(old, new)
    if isinstance(rule, Pointer):
        return new
    if isinstance(new, bool):
        return new
    if new == "" or (isinstance(new, int | float) and new == 0):
        return old
    return new


def _merge_url(old: str, new: str) -> str:
    # Talos keeps URLs as url.URL structs, which merge field by field: empty parts keep theirs.
    if not new:
        return old
    a, b = urlsplit(old), urlsplit(new)
    return urlunsplit(
        (
            b.scheme or a.scheme,
            b.netloc or a.netloc,
            b.path or a.path,
            b.query or a.query,
            b.fragment or a.fragment,
        )
    )


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


def _mismatch(where: str, path: Path, old: Any, new: Any) -> ConfigError:
    return ConfigError(
        f"{where} sets {_dotted(path)!r} to {_kind(new)}, but the config holds {_kind(old)} there",
        "make the patch value the same shape as the config's",
    )


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "a single value"


def _dotted(path: Sequence[str]) -> str:
    out = ""
    for part in path:
        if part == "[]":
            out += "[]"
        else:
            out += ("." if out else "") + part
    return out
