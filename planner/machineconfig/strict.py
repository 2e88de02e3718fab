"""The v1alpha1 document decoded as strictly as Talos's machinery decodes it (talosctl too).

Talos decodes the legacy document into Go structs with yaml.v3 and then refuses keys no struct
field takes. So a config or a patch with a misspelled key or a value of the wrong shape is
refused with Talos's own text:

    unknown keys found during decoding:
    machine:
        foo: bar

    error decoding  to *v1alpha1.Config: yaml: unmarshal errors:
      line 13: cannot unmarshal !!str `abc` into bool

The fields and Go types come from :mod:`v1alpha1_fields` (generated from each Talos minor's
machinery by reflection; see ``tests/interop/v1alpha1_fields.py``). The type rules are
yaml.v3's: any scalar decodes into a string; a bool takes true/false (and yes/no/on/off/y/n
spelled as YAML 1.1 did); integers take integers and integral floats; a ``time.Duration``
takes a Go duration string; structs, slices and maps take mappings, sequences and mappings;
null decodes into anything. Types with their own YAML decoding (certificates, endpoints, disk
sizes, ...) are not looked into. Pure: text in, the error text (or None) out.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml

from omniport.planner.machineconfig.document import _Loader
from omniport.planner.machineconfig.v1alpha1_fields import NODES, ROOTS

LATEST_MINOR = max(ROOTS)
PATCH_KEY = "$patch"

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"

# yaml.v3 decodes these strings into a bool target (YAML 1.1 compatibility)
_YAML11_BOOLS = {
    "y", "Y", "yes", "Yes", "YES", "on", "On", "ON",
    "n", "N", "no", "No", "NO", "off", "Off", "OFF",
}  # fmt: skip
_DURATION = re.compile(r"^[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+$")


def root_for(minor: int) -> tuple[Any, ...]:
    """The v1alpha1.Config node of Talos 1.``minor`` (the nearest minor the table holds)."""
    known = sorted(ROOTS)
    pick = max((m for m in known if m <= minor), default=known[0])
    node: tuple[Any, ...] = NODES[ROOTS[pick]]
    return node


def decode_error(text: str, minor: int = LATEST_MINOR, *, patch: bool = False) -> str | None:
    """Talos 1.``minor``'s error for the v1alpha1 document in ``text`` (a config or a patch of
    one or more YAML documents; the others are not looked at), or None.

    Line numbers count in ``text`` as Talos counts them; from 1.12 the error names the
    document and its first line, and from 1.13 (go.yaml.in/yaml) type errors read
    "construct errors". ``patch``: a strategic-merge patch, where ``$patch`` keys are allowed
    (machinery's loader allows them for patches)."""
    try:
        docs = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError:
        return None  # not YAML at all: the caller's parser reports it
    starts = _document_lines(text)
    for index, node in enumerate(docs):
        if not isinstance(node, yaml.MappingNode) or any(
            isinstance(k, yaml.ScalarNode) and k.value in ("kind", "apiVersion")
            for k, _ in node.value
        ):
            continue
        problem = _document_error(node, minor, patch)
        if problem is None:
            return None
        if minor >= 12:
            line = starts[index] if index < len(starts) else 1
            return f"error decoding document /v1alpha1/ (line {line}): {problem}"
        return problem
    return None


def _document_error(node: yaml.Node, minor: int, patch: bool) -> str | None:
    root = root_for(minor)
    run = _Run(patch=patch)
    run.walk(node, root)
    if run.type_errors:
        # yaml.v3 (to 1.12) says "unmarshal"; go.yaml.in/yaml (1.13 on) says "construct", and
        # from 1.14 puts a lone error on the same line
        verb = "unmarshal" if minor < 13 else "construct"
        found = [f"line {line}: {m.replace('unmarshal', verb)}" for line, m in run.type_errors]
        if minor >= 14 and len(found) == 1:
            listed = " " + found[0]
        else:
            listed = "".join(f"\n  {line}" for line in found)
        return f"error decoding  to *v1alpha1.Config: yaml: {verb} errors:{listed}"
    unknown = run.unknown_of(node, root)
    if unknown:
        return "unknown keys found during decoding:\n" + _go_yaml(unknown)
    return None


def _document_lines(text: str) -> list[int]:
    """The first line of each YAML document in ``text`` (1-based), as Talos counts them."""
    lines = [1]
    for number, line in enumerate(text.split("\n"), start=1):
        if line.rstrip() == "---" and number > 1:
            lines.append(number + 1)
    return lines


class _Run:
    def __init__(self, *, patch: bool) -> None:
        self.patch = patch
        self.type_errors: list[tuple[int, str]] = []

    # -- types ---------------------------------------------------------------------------------

    def walk(self, node: yaml.Node, t: tuple[Any, ...]) -> None:
        kind, go, fields, elem, extra = t
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return
        if self._directive(node):
            return
        if kind in ("any", "bytes"):
            return
        if kind == "struct":
            if not isinstance(node, yaml.MappingNode):
                return self._wrong(node, go)
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name in (fields or {}):
                    self.walk(value, NODES[fields[name]])
                elif extra is not None:
                    self.walk(value, NODES[extra])
            return None
        if kind == "slice":
            if not isinstance(node, yaml.SequenceNode):
                return self._wrong(node, go)
            for item in node.value:
                self.walk(item, NODES[elem])
            return None
        if kind == "map":
            if not isinstance(node, yaml.MappingNode):
                return self._wrong(node, go)
            for _, value in node.value:
                self.walk(value, NODES[elem])
            return None
        if not isinstance(node, yaml.ScalarNode):
            return self._wrong(node, go)
        if not _scalar_fits(kind, node):
            self._wrong(node, go)
        return None

    def _directive(self, node: yaml.Node) -> bool:
        """In a patch, a mapping holding ``$patch`` (``delete``) stands for any value: the
        patcher consumes it before anything is decoded."""
        return (
            self.patch
            and isinstance(node, yaml.MappingNode)
            and any(isinstance(k, yaml.ScalarNode) and k.value == PATCH_KEY for k, _ in node.value)
        )

    def _wrong(self, node: yaml.Node, go: str) -> None:
        tag = node.tag
        if tag.startswith("tag:yaml.org,2002:"):
            tag = "!!" + tag.rsplit(":", 1)[-1]
        shown = f" `{node.value}`" if isinstance(node, yaml.ScalarNode) else ""
        self.type_errors.append(
            (node.start_mark.line + 1, f"cannot unmarshal {tag}{shown} into {go}")
        )

    # -- unknown keys --------------------------------------------------------------------------

    def unknown_of(self, node: yaml.Node, t: tuple[Any, ...]) -> Any:
        """The part of ``node`` no field of ``t`` takes, shaped as the input (None if none)."""
        kind, _, fields, elem, extra = t
        if self._directive(node):
            return None
        if kind == "struct" and isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
                if self.patch and name == PATCH_KEY:
                    continue
                if name in (fields or {}):
                    inner = self.unknown_of(value, NODES[fields[name]])
                    if inner:
                        out[name] = inner
                elif extra is not None:
                    inner = self.unknown_of(value, NODES[extra])
                    if inner:
                        out[name] = inner
                else:
                    out[name] = yaml.load(yaml.serialize(value), Loader=_Loader)
            return _sorted(out) or None
        if kind == "slice" and isinstance(node, yaml.SequenceNode):
            items = [self.unknown_of(item, NODES[elem]) for item in node.value]
            return [item for item in items if item] or None
        if kind == "map" and isinstance(node, yaml.MappingNode):
            found: dict[str, Any] = {}
            for key, value in node.value:
                if self.patch and key.value == PATCH_KEY:
                    continue
                inner = self.unknown_of(value, NODES[elem])
                if inner:
                    found[str(key.value)] = inner
            return _sorted(found) or None
        return None


def _sorted(mapping: dict[str, Any]) -> dict[str, Any]:
    """``mapping`` in the order yaml.v3 writes a Go map: its "natural" key order."""
    return {k: mapping[k] for k in sorted(mapping, key=functools.cmp_to_key(_natural))}


def _natural(a: str, b: str) -> int:
    """yaml.v3's keyList.Less as a comparison: runs of digits compare as numbers."""
    return -1 if _less(a, b) else (1 if _less(b, a) else 0)


def _less(a: str, b: str) -> bool:
    digits = False
    for i in range(min(len(a), len(b))):
        if a[i] == b[i]:
            digits = a[i].isdigit()
            continue
        al, bl = a[i].isalpha(), b[i].isalpha()
        if al and bl:
            return a[i] < b[i]
        if al or bl:
            return al if digits else bl
        an = bn = 0
        if a[i] == "0" or b[i] == "0":
            j = i - 1
            while j >= 0 and a[j].isdigit():
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and a[ai].isdigit():
            an = an * 10 + int(a[ai])
            ai += 1
        bi = i
        while bi < len(b) and b[bi].isdigit():
            bn = bn * 10 + int(b[bi])
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return a[i] < b[i]
    return len(a) < len(b)


def _scalar_fits(kind: str, node: yaml.ScalarNode) -> bool:
    tag, value = node.tag, node.value
    if kind == "string":
        return True
    if kind == "bool":
        return tag == _BOOL or (tag == _STR and value in _YAML11_BOOLS)
    if kind in ("int", "uint"):
        if tag == _INT:
            return not (kind == "uint" and value.lstrip().startswith("-"))
        if tag == _FLOAT:
            try:
                number = float(value)
            except ValueError:
                return False
            return number.is_integer() and not (kind == "uint" and number < 0)
        return False
    if kind == "float":
        return tag in (_INT, _FLOAT)
    if kind == "duration":
        return tag == _STR and (value == "0" or bool(_DURATION.match(value)))
    return True


def _go_yaml(value: Any) -> str:
    """``value`` as yaml.v3 writes it with 4-space indent (Talos's encoder): a sequence under a
    key is indented, and a mapping that is a sequence item has its keys two columns after the
    dash and its values' children four columns after it."""
    lines: list[str] = []
    _emit(value, 0, 4, lines, first_prefix=None)
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).rstrip("\n")
    return text.removesuffix("\n...").removesuffix("...").rstrip("\n")


def _emit(
    value: Any, key_col: int, child_col: int, lines: list[str], first_prefix: str | None
) -> None:
    """Write mapping or sequence ``value``; ``first_prefix`` starts its first line (a "- ")."""

    def put(col: int, text: str) -> None:
        nonlocal first_prefix
        if first_prefix is not None:
            lines.append(first_prefix + text)
            first_prefix = None
        else:
            lines.append(" " * col + text)

    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                put(key_col, f"{_scalar(key)}:")
                if isinstance(item, dict):
                    _emit(item, child_col, child_col + 4, lines, None)
                else:
                    _emit(item, child_col, child_col, lines, None)
            else:
                put(key_col, f"{_scalar(key)}: {_scalar(item) if item != {} else '{}'}")
        return
    for item in value:  # a sequence: dashes at key_col
        dash = " " * key_col + "- "
        if first_prefix is not None:
            dash, first_prefix = first_prefix + "- ", None
        if isinstance(item, dict) and item:
            _emit(item, key_col + 2, key_col + 4, lines, dash)
        elif isinstance(item, list) and item:
            _emit(item, key_col + 2, key_col + 2, lines, dash)
        else:
            lines.append(dash + _scalar(item))
