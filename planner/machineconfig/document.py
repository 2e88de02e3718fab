"""Machine-config documents: parse, identify, emit and compare them.

A Talos machine config is a YAML stream of documents. Each one is identified by
``(apiVersion, kind, name)``; the legacy ``v1alpha1`` document has no kind and is recognised by
``version: v1alpha1`` or a ``machine``/``cluster``/``debug``/``persist`` key. Documents are kept
as plain data (``dict``/``list``/scalars, as YAML gives them) so that merge, diff and sanitize
work on any kind, including kinds newer than this code.

YAML is read with YAML 1.2 core-schema scalars (as Go's yaml decoder does): ``yes``/``on`` stay
strings, timestamps stay strings, ``0644`` is octal. Everything here is pure: no file or network
I/O. Callers treat ``Document.data`` as read-only; every function returns new data.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import yaml

from omniport.planner.errors import OmniportError

LEGACY_VERSION = "v1alpha1"
LEGACY_FIELDS = ("version", "debug", "persist", "machine", "cluster")
_LEGACY_MARKERS = ("machine", "cluster", "debug", "persist")
PATCH_KEY = "$patch"

_MAX_NODES = 1_000_000
_MAX_DEPTH = 200


class ConfigError(OmniportError):
    """A machine config or patch that cannot be read or applied, said in one sentence."""


class DocumentKey(NamedTuple):
    """What Talos matches documents on. The legacy document is ``("", "v1alpha1", "")``."""

    api_version: str
    kind: str
    name: str = ""

    @property
    def is_legacy(self) -> bool:
        return self == LEGACY_KEY

    def meta(self) -> dict[str, str]:
        """The header a patch document needs to address this document."""
        if self.is_legacy:
            return {"version": LEGACY_VERSION}
        meta = {"apiVersion": self.api_version, "kind": self.kind}
        if self.name:
            meta["name"] = self.name
        return meta

    def __str__(self) -> str:
        if self.is_legacy:
            return LEGACY_VERSION
        return "/".join(part for part in self if part)


LEGACY_KEY = DocumentKey("", LEGACY_VERSION, "")


@dataclass(frozen=True)
class Document:
    """One config document as plain data; ``key`` is what strategic merge matches on."""

    data: dict[str, Any]

    @property
    def key(self) -> DocumentKey:
        return key_of(self.data)

    @property
    def is_legacy(self) -> bool:
        return "kind" not in self.data and "apiVersion" not in self.data

    @property
    def kind(self) -> str:
        return self.key.kind


@dataclass(frozen=True)
class MachineConfig:
    """A parsed config with the exact bytes it came from, so hashes never depend on re-encoding."""

    documents: tuple[Document, ...]
    raw: bytes = field(repr=False)
    sha256: str

    @classmethod
    def from_documents(cls, documents: Iterable[Document | Mapping[str, Any]]) -> MachineConfig:
        """Build a config from documents; its bytes are :func:`emit`'s output."""
        docs = as_documents(documents)
        raw = emit(docs).encode()
        return cls(documents=docs, raw=raw, sha256=hashlib.sha256(raw).hexdigest())

    @property
    def v1alpha1(self) -> Document | None:
        """The legacy document, if the config has one."""
        return self.get(LEGACY_VERSION)

    def get(self, kind: str, name: str | None = None) -> Document | None:
        """The first document of ``kind`` (and ``name`` when given), or None."""
        for doc in self.documents:
            key = doc.key
            if key.kind == kind and (name is None or key.name == name):
                return doc
        return None

    def keys(self) -> tuple[DocumentKey, ...]:
        return tuple(doc.key for doc in self.documents)


def key_of(data: Mapping[str, Any]) -> DocumentKey:
    """The key of a document's data; a document without kind or apiVersion is the legacy one."""
    if "kind" not in data and "apiVersion" not in data:
        return LEGACY_KEY
    return DocumentKey(
        _text(data.get("apiVersion", "")), _text(data.get("kind", "")), _text(data.get("name", ""))
    )


def as_documents(
    documents: MachineConfig | Iterable[Document | Mapping[str, Any]],
) -> tuple[Document, ...]:
    """Accept a config, documents or plain mappings, and give documents."""
    if isinstance(documents, MachineConfig):
        return documents.documents
    out = []
    for doc in documents:
        if isinstance(doc, Document):
            out.append(doc)
        elif isinstance(doc, Mapping):
            out.append(Document(dict(doc)))
        else:
            raise ConfigError(f"a config document must be a mapping, not {_type_name(doc)}")
    return tuple(out)


# --- reading -------------------------------------------------------------------------------

_BASE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):
    """A safe loader with YAML 1.2 core-schema scalars and strict mappings."""


_Loader.yaml_implicit_resolvers = {}
_Loader.yaml_constructors = dict(yaml.SafeLoader.yaml_constructors)
_INT_RE = re.compile(
    r"""^(?:[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0[0-7_]+
        |[-+]?0o[0-7_]+
        |[-+]?0x[0-9a-fA-F_]+
        |[-+]?0b[01_]+)$""",
    re.X,
)
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_RE, list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_RE, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL_RE, ["~", "n", "N", ""])
_Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^<<$"), ["<"])


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    text = str(node.value).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    if text[:2] in ("0x", "0o", "0b"):
        return sign * int(text, 0)
    if len(text) > 1 and text.startswith("0"):
        return sign * int(text, 8)
    return sign * int(text)


def _construct_float(loader: Any, node: yaml.ScalarNode) -> float:
    text = str(node.value).lower()
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if text == ".nan":
        return math.nan
    return float(text)


def _construct_bool(loader: Any, node: yaml.ScalarNode) -> bool:
    return str(node.value).lower() == "true"


def _construct_text(loader: Any, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported YAML tag {_short_tag(node.tag)}", node.start_mark
        )
    return str(node.value)


def _construct_map(loader: Any, node: yaml.MappingNode) -> Iterator[dict[str, Any]]:
    data: dict[str, Any] = {}
    yield data
    explicit: set[str] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in explicit:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"mapping key {key_node.value!r} is defined twice",
                    key_node.start_mark,
                )
            explicit.add(key_node.value)
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        data[str(key_node.value)] = loader.construct_object(value_node, deep=False)


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:python/name:x`` as written in the file: ``!!python/name:x``."""
    return repr(tag.replace("tag:yaml.org,2002:", "!!", 1))


def _reject(loader: Any, node: yaml.Node) -> None:
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f"unsupported YAML tag {_short_tag(node.tag)} (a machine config is plain YAML)",
        node.start_mark,
    )


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_text)
_Loader.add_constructor("tag:yaml.org,2002:binary", _construct_text)
for _tag in ("set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _reject)
_Loader.add_constructor(None, _reject)


def load_yaml_stream(raw: bytes | str, source: str = "config") -> list[Any]:
    """Every document of a YAML stream as plain data (null documents included).

    Raises ConfigError naming ``source`` and the line for anything that is not clean YAML.
    """
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{source} is not UTF-8 text (byte {err.start + 1} is invalid)",
                "save it as UTF-8",
            ) from None
    elif isinstance(raw, str):
        text = raw.removeprefix("\ufeff")
    else:
        raise ConfigError(f"{source} must be text, not {_type_name(raw)}")
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = err.problem or err.context or "malformed YAML"
        raise ConfigError(f"{source} is not valid YAML{where}: {problem}") from None
    except yaml.reader.ReaderError as err:
        raise ConfigError(
            f"{source} holds a character YAML does not allow "
            f"(U+{int(err.character) if isinstance(err.character, int) else 0:04X} "
            f"at character {err.position + 1})",
            "remove it, or write it as an escape in a double-quoted string",
        ) from None
    except yaml.YAMLError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else "malformed YAML"
        raise ConfigError(f"{source} is not valid YAML: {first_line}") from None
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply to be a machine config") from None
    except (ValueError, OverflowError) as err:
        raise ConfigError(f"{source} holds a value that cannot be read: {err}") from None
    budget = [_MAX_NODES]
    return [_plain(doc, source, budget, 0, set()) for doc in docs]


def _plain(value: Any, source: str, budget: list[int], depth: int, stack: set[int]) -> Any:
    """A fresh tree copy: breaks YAML alias sharing, refuses cycles, huge or deep trees."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(f"{source} is too large (its aliases expand past {_MAX_NODES} values)")
    if depth > _MAX_DEPTH:
        raise ConfigError(f"{source} is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, dict | list):
        ident = id(value)
        if ident in stack:
            raise ConfigError(f"{source} contains a YAML alias that refers to itself")
        stack.add(ident)
        if isinstance(value, dict):
            out: Any = {k: _plain(v, source, budget, depth + 1, stack) for k, v in value.items()}
        else:
            out = [_plain(v, source, budget, depth + 1, stack) for v in value]
        stack.discard(ident)
        return out
    return value


def parse(raw: bytes | str, source: str = "config", *, patch: bool = False) -> MachineConfig:
    """Parse a machine config (or, with ``patch=True``, a strategic-merge patch).

    Configs reject unknown top-level fields of the legacy document, duplicate documents and
    ``$patch`` directives; patches allow duplicates and ``$patch: delete``, as talosctl does.
    """
    raw_bytes = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    data = load_yaml_stream(raw_bytes, source)
    docs: list[Document] = []
    seen: set[DocumentKey] = set()
    for index, item in enumerate(data, start=1):
        if item is None:
            continue
        doc = check_document(item, source, index, patch=patch)
        key = doc.key
        if not patch and key in seen:
            raise ConfigError(
                f"{source}: document {index} repeats {key}",
                "each document may appear once in a config; merge the two",
            )
        seen.add(key)
        docs.append(doc)
    return MachineConfig(
        documents=tuple(docs), raw=raw_bytes, sha256=hashlib.sha256(raw_bytes).hexdigest()
    )


def check_document(data: Any, source: str, index: int, *, patch: bool = False) -> Document:
    """Validate one document's shape and header; return it as a Document."""
    where = f"{source}: document {index}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} is {_type_name(data)}, not a mapping of fields")
    if "kind" in data or "apiVersion" in data:
        for field_name in ("apiVersion", "kind"):
            value = data.get(field_name)
            if not isinstance(value, str) or not value:
                raise ConfigError(
                    f"{where} has no {field_name}",
                    "a multi-document config needs both apiVersion and kind",
                )
        name = data.get("name")
        if name is not None and isinstance(name, dict | list):
            raise ConfigError(f"{where} ({data['kind']}) has a name that is not a plain value")
    elif any(marker in data for marker in _LEGACY_MARKERS) or "version" in data:
        version = data.get("version")
        if version is not None and version != LEGACY_VERSION:
            raise ConfigError(
                f"{where} has version {_text(version)!r}",
                f"the legacy document's version must be {LEGACY_VERSION}",
            )
        allowed = (*LEGACY_FIELDS, PATCH_KEY) if patch else LEGACY_FIELDS
        for key in data:
            if key not in allowed:
                raise ConfigError(
                    f"{where} has unknown field {key!r}",
                    f"the v1alpha1 document allows only {', '.join(LEGACY_FIELDS)}",
                )
    else:
        raise ConfigError(
            f"{where} has no kind",
            "add apiVersion and kind, or machine/cluster for the v1alpha1 document",
        )
    if not patch and _has_patch_directive(data):
        raise ConfigError(
            f"{where} ({key_of(data)}) contains a $patch directive",
            "$patch belongs in patches, not in configs",
        )
    return Document(data)


def _has_patch_directive(value: Any) -> bool:
    if isinstance(value, dict):
        return PATCH_KEY in value or any(_has_patch_directive(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_patch_directive(v) for v in value)
    return False


# --- writing -------------------------------------------------------------------------------


def emit(documents: MachineConfig | Iterable[Document | Mapping[str, Any]]) -> str:
    """Talos-like YAML: ``---`` between documents, keys in document order, block style.

    Mappings indent by four spaces and lists sit under their key, as Talos writes configs;
    multi-line strings become literal blocks. Reading the output back gives the same data.
    """
    parts = []
    for doc in as_documents(documents):
        lines: list[str] = []
        if doc.data:
            _emit_mapping(doc.data, 0, 0, lines)
        else:
            lines.append("{}")
        parts.append("\n".join(lines) + "\n")
    return "---\n".join(parts)


def _emit_mapping(data: Mapping[str, Any], key_col: int, level: int, lines: list[str]) -> None:
    pad = " " * key_col
    for key, value in data.items():
        head = f"{pad}{_scalar(str(key))}:"
        _emit_value(head, value, key_col, level + 4, lines)


def _emit_value(head: str, value: Any, key_col: int, child: int, lines: list[str]) -> None:
    if isinstance(value, dict) and value:
        lines.append(head)
        _emit_mapping(value, child, child, lines)
    elif isinstance(value, list) and value:
        lines.append(head)
        _emit_sequence(value, child, lines)
    elif isinstance(value, str) and _literal_ok(value):
        indicator = str(child - key_col) if value[0] in " \n" else ""
        chomp = "-" if not value.endswith("\n") else ("+" if value.endswith("\n\n") else "")
        lines.append(f"{head} |{indicator}{chomp}")
        body = value[:-1] if value.endswith("\n") else value
        pad = " " * child
        lines.extend(f"{pad}{line}" if line else "" for line in body.split("\n"))
    else:
        lines.append(f"{head} {_inline(value)}")


def _emit_sequence(items: list[Any], dash_col: int, lines: list[str]) -> None:
    pad = " " * dash_col
    for item in items:
        if isinstance(item, dict) and item:
            start = len(lines)
            _emit_mapping(item, dash_col + 2, dash_col, lines)
            lines[start] = f"{pad}- {lines[start][dash_col + 2 :]}"
        elif isinstance(item, list) and item:
            start = len(lines)
            _emit_sequence(item, dash_col + 2, lines)
            lines[start] = f"{pad}- {lines[start][dash_col + 2 :]}"
        else:
            _emit_value(f"{pad}-", item, dash_col, dash_col + 2, lines)


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    raise ConfigError(f"a config value must be plain data, not {_type_name(value)}")


_PLAIN_FIRST_BAD = set("?:,[]{}#&*!|>'\"%@`")
_YAML11_RESOLVER = yaml.SafeLoader  # strings YAML 1.1 readers would take as non-strings
_NON_PRINTABLE = re.compile(
    "[^\t\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)


@lru_cache(maxsize=8192)
def _string(text: str) -> str:
    if _plain_ok(text):
        return text
    return _double_quoted(text)


def _plain_ok(text: str) -> bool:
    if not text or text != text.strip() or not text.isprintable():
        return False
    first = text[0]
    if first in _PLAIN_FIRST_BAD:
        return False
    if first == "-" and (len(text) == 1 or text[1] == " " or text.startswith("---")):
        return False
    if text.startswith("...") or ": " in text or " #" in text or text.endswith(":"):
        return False
    return _resolves_to_str(text)


def _resolves_to_str(text: str) -> bool:
    for loader in (_Loader, _YAML11_RESOLVER):
        for tag, regexp in loader.yaml_implicit_resolvers.get(text[0], []):
            if tag != "tag:yaml.org,2002:str" and regexp.match(text):
                return False
    return text.lower() not in ("y", "n", "yes", "no", "on", "off")


def _double_quoted(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    return _NON_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _literal_ok(text: str) -> bool:
    if "\n" not in text or not text.strip("\n") or _NON_PRINTABLE.search(text.replace("\n", "")):
        return False
    if "\t" in text or "\r" in text:
        return False
    return all(line == line.rstrip(" ") for line in text.split("\n"))


# --- comparing -----------------------------------------------------------------------------


def canonical(
    documents: MachineConfig | Iterable[Document | Mapping[str, Any]],
) -> dict[str, Any]:
    """A form for semantic comparison: documents by key, with Talos's typed zero values folded.

    Talos decodes configs into typed structs, so an absent field, ``null``, ``""``, ``[]`` and
    ``{}`` mean the same, and document and key order carry no meaning. Two configs that Talos
    would load identically give equal canonical forms.
    """
    out: dict[str, Any] = {}
    for doc in as_documents(documents):
        key = doc.key
        data = _fold(doc.data)
        if not isinstance(data, dict):
            data = {}
        if key.is_legacy:
            data["version"] = LEGACY_VERSION
            _trim_inline_manifests(data)
        out[str(key)] = data
    return dict(sorted(out.items()))


def canonical_json(documents: MachineConfig | Iterable[Document | Mapping[str, Any]]) -> str:
    """:func:`canonical` as sorted JSON text, for hashing and byte comparison."""
    return json.dumps(canonical(documents), sort_keys=True, separators=(",", ":"))


def is_zero(value: Any) -> bool:
    """Whether Talos would read ``value`` as an unset field."""
    return value is None or (isinstance(value, str | list | dict) and not value)


def _fold(value: Any) -> Any:
    if isinstance(value, dict):
        folded = {}
        for key, item in value.items():
            item = _fold(item)
            if not is_zero(item):
                folded[key] = item
        return folded
    if isinstance(value, list):
        return [_fold(item) for item in value]
    return value


def _trim_inline_manifests(data: dict[str, Any]) -> None:
    # Talos trims leading line breaks and tabs from inline manifests when it loads them.
    cluster = data.get("cluster")
    manifests = cluster.get("inlineManifests") if isinstance(cluster, dict) else None
    if isinstance(manifests, list):
        for manifest in manifests:
            if isinstance(manifest, dict) and isinstance(manifest.get("contents"), str):
                manifest["contents"] = manifest["contents"].lstrip("\t\n\v\f\r")


# --- helpers -------------------------------------------------------------------------------


def copy_tree(value: Any) -> Any:
    """A deep copy of plain config data (much faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {k: copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_tree(v) for v in value]
    return value


def scalar_text(value: Any) -> str:
    """A scalar as YAML would spell it, for comparisons Talos makes on text."""
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _scalar(value)
    return json.dumps(value, sort_keys=True, default=str)


def _type_name(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"
