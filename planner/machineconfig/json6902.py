"""JSON6902 patches on machine configs, as talosctl applies them.

Talos converts the config's YAML to JSON, applies the operations and reads the result back as a
config, so a JSON patch only works on a config made of a single document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer

from omniport.planner.machineconfig.document import (
    ConfigError,
    Document,
    MachineConfig,
    as_documents,
    check_document,
)

_OPERATIONS = {
    "add": ("path", "value"),
    "remove": ("path",),
    "replace": ("path", "value"),
    "move": ("from", "path"),
    "copy": ("from", "path"),
    "test": ("path", "value"),
}


@dataclass(frozen=True)
class JsonPatch:
    """A list of RFC 6902 operations."""

    operations: tuple[dict[str, Any], ...]
    source: str = "patch"


# Marks a ``test`` against ``null`` read from YAML: Talos converts YAML to JSON text, so its
# null is a value there, and testing an absent key against it fails (JSON's null passes).
YAML_NULL = "x-omniport-yaml-null"


def check_operations(
    operations: Any, source: str, *, from_yaml: bool = False
) -> tuple[dict[str, Any], ...]:
    """Validate a decoded JSON patch: a list of operations with the fields each one needs."""
    if not isinstance(operations, list):
        raise ConfigError(f"{source}: a JSON patch must be a list of operations")
    checked = []
    for number, operation in enumerate(operations, start=1):
        where = f"{source}: JSON patch operation {number}"
        if not isinstance(operation, dict):
            raise ConfigError(f"{where} is not a mapping", 'write it as {"op": ..., "path": ...}')
        op = operation.get("op")
        if op not in _OPERATIONS:
            raise ConfigError(
                f"{where} has op {op!r}", f"use one of {', '.join(sorted(_OPERATIONS))}"
            )
        for field in _OPERATIONS[op]:
            if field not in operation:
                raise ConfigError(f"{where} ({op}) has no {field!r}")
            if field in ("path", "from") and not isinstance(operation[field], str):
                raise ConfigError(f"{where} ({op}) has a {field!r} that is not a string")
        checked.append(dict(operation))
        if from_yaml and op == "test" and operation["value"] is None:
            checked[-1][YAML_NULL] = True
    return tuple(checked)


def apply_json_patch(
    config: MachineConfig | Iterable[Document | Mapping[str, Any]],
    operations: Iterable[Mapping[str, Any]],
    source: str = "patch",
) -> tuple[Document, ...]:
    """Apply JSON6902 operations to a single-document config."""
    docs = as_documents(config)
    if len(docs) != 1:
        raise ConfigError(
            f"{source} is a JSON patch, which applies only to a single-document config, "
            f"and this config has {len(docs)} documents",
            "write it as a strategic merge patch",
        )
    try:
        result: Any = docs[0].data
        for operation in operations:
            op = _as_talos_applies(result, dict(operation))
            if op is not None:
                result = jsonpatch.apply_patch(result, [op])
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as err:
        raise ConfigError(f"{source}: JSON patch failed: {_reason(err)}") from None
    except (TypeError, ValueError, KeyError, IndexError) as err:
        raise ConfigError(f"{source}: JSON patch failed: {_reason(err)}") from None
    return (check_document(result, source, 1),)


def _as_talos_applies(doc: Any, op: dict[str, Any]) -> dict[str, Any] | None:
    """The operation as Talos's JSON-patch library (evanphx/json-patch) carries it out.

    That library reads an absent key of an existing object as ``null`` instead of failing:
    ``replace`` of an absent key adds it, ``copy`` from an absent key copies ``null``, and
    ``test`` of an absent key against JSON's ``null`` passes. None means "nothing to do".
    """
    kind = op.get("op")
    if kind == "replace" and _absent_key(doc, op["path"]):
        return {**op, "op": "add"}
    if kind == "copy" and _absent_key(doc, op["from"]):
        return {"op": "add", "path": op["path"], "value": None}
    if kind == "test" and op.get("value") is None and not op.get(YAML_NULL):
        if _absent_key(doc, op["path"]):
            return None
    op.pop(YAML_NULL, None)
    return op


def _absent_key(doc: Any, pointer: str) -> bool:
    """Whether ``pointer`` names a missing key of an object that exists."""
    try:
        parts = jsonpointer.JsonPointer(pointer).parts
    except jsonpointer.JsonPointerException:
        return False
    if not parts:
        return False
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return isinstance(node, dict) and parts[-1] not in node


def _reason(err: Exception) -> str:
    """jsonpatch's message without the config values it quotes: configs hold private keys."""
    if isinstance(err, jsonpatch.JsonPatchTestFailed):
        return "a test operation found a different value at its path"
    text = str(err)
    if " not found in " in text:  # jsonpointer appends the whole document it searched
        return text.split(" not found in ", 1)[0] + " not found"
    return text
