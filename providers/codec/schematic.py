"""Image Factory schematics: the closed data model, a strict reader and the canonical writer.

A schematic's ID is the lowercase hex SHA-256 of its *canonical text*, which the factory
produces with Go's ``yaml.Marshal`` (``go.yaml.in/yaml/v4``) of its ``schematic.Schematic``
struct. To compute IDs offline, and to let the lab's factory answer like the real one, this
module reproduces both halves of that Go library for this one schema:

* reading (:func:`parse_schematic`): YAML or JSON is parsed into nodes by PyYAML, then each
  scalar is resolved and converted with go-yaml's rules (YAML 1.2 core types, raw text for
  string fields, uint8 META keys, the bootloader enum, unknown fields rejected with go-yaml's
  wording, e.g. ``field foo not found in type schematic.Schematic``);
* writing (:func:`canonical_yaml`): a small port of go-yaml's representer, desolver and block
  emitter with the ``Marshal`` settings (4-space indent, sequences indented under their key,
  no wrapping, legacy quoting, literal blocks for multi-line strings, Go struct field order,
  map keys in go-yaml's natural order).

Quoting follows the go-yaml snapshot the factory builds against: strings that would read back
as another type (``"10"``, ``"true"``, ``""``) are double-quoted, YAML 1.1 booleans and base-60
numbers (``'yes'``, ``'1:20'``) single-quoted, strings that cannot be plain (``'{}'``, ``'-'``)
single-quoted. Older factories built on yaml.v3 double-quoted the YAML 1.1 booleans, so IDs of
schematics holding such strings may differ between factory versions: treat the offline ID as a
pre-check and the factory's answer as authoritative.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from yaml import nodes as ynodes

__all__ = [
    "BOOTLOADERS",
    "Customization",
    "DiskImage",
    "ExtensionInfo",
    "GoMap",
    "GoTimestamp",
    "InvalidSchematic",
    "MetaValue",
    "Overlay",
    "SCHEMATIC_ID_RE",
    "Schematic",
    "SecureBoot",
    "SystemExtensions",
    "canonical_yaml",
    "dump_go_yaml",
    "is_schematic_id",
    "parse_schematic",
    "schematic_id",
]

SCHEMATIC_ID_RE = re.compile(r"[0-9a-f]{64}")
"""A schematic ID: 64 lowercase hex digits."""

BOOTLOADERS = ("dual-boot", "sd-boot", "grub")
"""Bootloader values that appear in canonical text (``none`` is the unset value)."""

_BOOTLOADER_NAMES = ("none",) + BOOTLOADERS
_UINT8_MAX = 0xFF
_UINT64_MAX = 0xFFFFFFFFFFFFFFFF
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class InvalidSchematic(ValueError):
    """The text is not a schematic the factory would accept; the message is go-yaml's wording."""


def is_schematic_id(value: str) -> bool:
    return bool(SCHEMATIC_ID_RE.fullmatch(value))


# --------------------------------------------------------------------------------------------
# Data model (Go struct order is the field order below; it is the order of the canonical text)


@dataclass(frozen=True, order=True)
class GoTimestamp:
    """A YAML timestamp read into an overlay option; written back in Go's RFC 3339 form."""

    year: int
    month: int
    day: int
    hour: int = 0
    minute: int = 0
    second: int = 0
    nanosecond: int = 0
    offset_seconds: int = 0

    def __str__(self) -> str:
        text = (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d}"
            f"T{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
        )
        if self.nanosecond:
            text += "." + f"{self.nanosecond:09d}".rstrip("0")
        if self.offset_seconds == 0:
            return text + "Z"
        minutes = abs(self.offset_seconds) // 60
        sign = "-" if self.offset_seconds < 0 else "+"
        return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class GoMap(Mapping[Any, Any]):
    """A YAML mapping whose keys are not all strings, kept as Go keeps it: ``1``, ``1.0`` and
    ``true`` are three different keys (Python's dict would merge them)."""

    def __init__(self, pairs: Iterable[tuple[Any, Any]] = ()) -> None:
        self._items: dict[tuple[int, Any], tuple[Any, Any]] = {}
        for key, value in pairs:
            self._items[(_kind(key), key)] = (key, value)

    def __getitem__(self, key: Any) -> Any:
        return self._items[(_kind(key), key)][1]

    def __contains__(self, key: object) -> bool:
        try:
            return (_kind(key), key) in self._items
        except TypeError:
            return False

    def __iter__(self) -> Iterator[Any]:
        return (key for key, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GoMap):
            return {k: v for k, (_, v) in self._items.items()} == {
                k: v for k, (_, v) in other._items.items()
            }
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GoMap({list(self.items())!r})"


@dataclass(frozen=True)
class Overlay:
    image: str = ""
    name: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Free-form, passed to the overlay; written with keys in go-yaml's natural order."""

    def __post_init__(self) -> None:
        bad = [key for key in self.options if not isinstance(key, str)]
        if bad:
            raise ValueError(f"overlay option keys must be strings, not {bad[0]!r}")

    def is_zero(self) -> bool:
        return not (self.image or self.name or self.options)


@dataclass(frozen=True)
class MetaValue:
    key: int = 0
    """A Talos META key, 0..255 (written in decimal)."""
    value: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.key, int) or not 0 <= self.key <= _UINT8_MAX:
            raise ValueError(f"META key {self.key!r} is outside 0..255")


@dataclass(frozen=True)
class SystemExtensions:
    official_extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "official_extensions", tuple(self.official_extensions))


@dataclass(frozen=True)
class SecureBoot:
    enroll_keys: str = ""
    """``off``, ``manual``, ``if-safe`` or ``force``; the factory does not check the value."""
    include_well_known_certificates: bool = False


@dataclass(frozen=True)
class DiskImage:
    sector_size: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.sector_size <= _UINT64_MAX:
            raise ValueError(f"sector size {self.sector_size!r} is not an unsigned integer")


@dataclass(frozen=True)
class Customization:
    embedded_machine_configuration: str = ""
    extra_kernel_args: tuple[str, ...] = ()
    meta: tuple[MetaValue, ...] = ()
    system_extensions: SystemExtensions = field(default_factory=SystemExtensions)
    bootloader: str = ""
    """``""`` (automatic), or one of :data:`BOOTLOADERS`."""
    secureboot: SecureBoot = field(default_factory=SecureBoot)
    disk_image: DiskImage = field(default_factory=DiskImage)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_kernel_args", tuple(self.extra_kernel_args))
        object.__setattr__(self, "meta", tuple(self.meta))
        if self.bootloader == "none":
            object.__setattr__(self, "bootloader", "")
        if self.bootloader and self.bootloader not in BOOTLOADERS:
            raise ValueError(
                f"bootloader {self.bootloader!r} is not one of {', '.join(_BOOTLOADER_NAMES)}"
            )


@dataclass(frozen=True)
class Schematic:
    """What the Image Factory builds an image from. ``owner`` exists only on Enterprise."""

    owner: str = ""
    overlay: Overlay = field(default_factory=Overlay)
    customization: Customization = field(default_factory=Customization)

    def canonical_yaml(self) -> str:
        return canonical_yaml(self)

    @property
    def id(self) -> str:
        return schematic_id(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form with the wire field names, empty fields left out."""
        return _to_plain(_represent(self))


@dataclass(frozen=True)
class ExtensionInfo:
    """One entry of ``GET /version/{v}/extensions/official``."""

    name: str
    ref: str
    digest: str
    author: str = ""
    description: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "ref": self.ref,
            "digest": self.digest,
            "author": self.author,
            "description": self.description,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExtensionInfo:
        def text(key: str) -> str:
            value = data.get(key, "")
            if not isinstance(value, str):
                raise ValueError(f"extension field {key!r} is not a string")
            return value

        return cls(text("name"), text("ref"), text("digest"), text("author"), text("description"))


# --------------------------------------------------------------------------------------------
# Public functions


def parse_schematic(data: str | bytes) -> Schematic:
    """Read a schematic from YAML or JSON as the factory does (first document only).

    Raises :class:`InvalidSchematic` with go-yaml's message for anything the factory would
    answer 400 to: bad syntax, unknown fields, wrong types, META keys outside 0..255.
    """
    return _Reader().read(data)


def canonical_yaml(schematic: Schematic, *, yaml_v3: bool = False) -> str:
    """The factory's canonical text for ``schematic`` (what its ID hashes).

    ``yaml_v3`` writes it as factories built on yaml.v3 did (YAML 1.1 booleans such as ``yes``
    double-quoted instead of single-quoted): the lab uses it to play an older factory, whose
    IDs for such schematics differ from the ones computed here.
    """
    emitter = _Emitter(yaml_v3=yaml_v3)
    emitter.document(_represent(schematic))
    return emitter.text()


def schematic_id(schematic: Schematic | str | bytes) -> str:
    """The schematic ID: SHA-256 of the canonical text. Text input is parsed first."""
    if not isinstance(schematic, Schematic):
        schematic = parse_schematic(schematic)
    return hashlib.sha256(canonical_yaml(schematic).encode("utf-8")).hexdigest()


def dump_go_yaml(value: Any) -> str:
    """Go ``yaml.Marshal`` of a value: dicts are Go maps (sorted keys), :class:`_Fields`
    are structs (given order), lists are slices, and str/bool/int/float/None/GoTimestamp are
    scalars."""
    emitter = _Emitter()
    emitter.document(value)
    return emitter.text()


# --------------------------------------------------------------------------------------------
# Representation: Schematic -> Go value tree (omitempty applied)


class _Fields(tuple):
    """A Go struct's fields, as (name, value) pairs in declaration order."""


def _represent(s: Schematic) -> _Fields:
    c = s.customization
    cust: list[tuple[str, Any]] = []
    if c.embedded_machine_configuration:
        cust.append(("embeddedMachineConfiguration", c.embedded_machine_configuration))
    if c.extra_kernel_args:
        cust.append(("extraKernelArgs", list(c.extra_kernel_args)))
    if c.meta:
        metas = [_Fields((("key", m.key), ("value", m.value))) for m in c.meta]
        cust.append(("meta", metas))
    if c.system_extensions.official_extensions:
        exts = list(c.system_extensions.official_extensions)
        cust.append(("systemExtensions", _Fields((("officialExtensions", exts),))))
    if c.bootloader:
        cust.append(("bootloader", c.bootloader))
    sb: list[tuple[str, Any]] = []
    if c.secureboot.enroll_keys:
        sb.append(("enrollKeys", c.secureboot.enroll_keys))
    if c.secureboot.include_well_known_certificates:
        sb.append(("includeWellKnownCertificates", True))
    if sb:
        cust.append(("secureboot", _Fields(sb)))
    if c.disk_image.sector_size:
        cust.append(("diskImage", _Fields((("sectorSize", c.disk_image.sector_size),))))

    root: list[tuple[str, Any]] = []
    if s.owner:
        root.append(("owner", s.owner))
    if not s.overlay.is_zero():
        ov: list[tuple[str, Any]] = [("image", s.overlay.image), ("name", s.overlay.name)]
        if s.overlay.options:
            ov.append(("options", dict(s.overlay.options)))
        root.append(("overlay", _Fields(ov)))
    root.append(("customization", _Fields(cust)))
    return _Fields(root)


def _to_plain(value: Any) -> Any:
    if isinstance(value, _Fields):
        return {k: _to_plain(v) for k, v in value}
    if isinstance(value, GoMap):
        return {_scalar_text(k)[0]: _to_plain(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, GoTimestamp):
        return str(value)
    return value


# --------------------------------------------------------------------------------------------
# go-yaml's resolver for plain scalars (YAML 1.2 core schema plus go-yaml's extras)

_STR, _INT, _FLOAT, _BOOL, _NULL = "!!str", "!!int", "!!float", "!!bool", "!!null"
_TIMESTAMP, _MERGE, _SEQ, _MAP, _BINARY = "!!timestamp", "!!merge", "!!seq", "!!map", "!!binary"
_RESOLVABLE = {"", _STR, _BOOL, _INT, _FLOAT, _NULL, _TIMESTAMP}

_RESOLVE_MAP: dict[str, tuple[str, Any]] = {}
for _tag, _val, _words in (
    (_BOOL, True, ("true", "True", "TRUE")),
    (_BOOL, False, ("false", "False", "FALSE")),
    (_NULL, None, ("", "~", "null", "Null", "NULL")),
    (_FLOAT, math.nan, (".nan", ".NaN", ".NAN")),
    (_FLOAT, math.inf, (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")),
    (_FLOAT, -math.inf, ("-.inf", "-.Inf", "-.INF")),
    (_FLOAT, -0.0, ("-0", "-0.0")),
    (_MERGE, "<<", ("<<",)),
):
    for _word in _words:
        _RESOLVE_MAP[_word] = (_tag, _val)

_YAML_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?")
_BASE60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_OLD_BOOLS = frozenset("y Y yes Yes YES on On ON n N no No NO off Off OFF".split())
_D = "[0-9]"
_TS_DATE = re.compile(rf"({_D}{{4}})-({_D}{{1,2}})-({_D}{{1,2}})")
_TS_CLOCK = rf"({_D}{{1,2}}):({_D}{{1,2}}):({_D}{{1,2}})(?:[.,]({_D}+))?"
_TS_ZONED = re.compile(rf"{_TS_DATE.pattern}[Tt]{_TS_CLOCK}(Z|[+-]{_D}{{2}}:{_D}{{2}})")
_TS_SPACED = re.compile(rf"{_TS_DATE.pattern} +{_TS_CLOCK}")


def _go_parse_uint(s: str) -> int | None:
    """strconv.ParseUint(s, 0, 64) on text without underscores; None on any error."""
    if not s:
        return None
    base, digits = 10, s
    if s[0] == "0":
        prefix = s[1:2].lower()
        if len(s) >= 3 and prefix in ("b", "o", "x"):
            base, digits = {"b": 2, "o": 8, "x": 16}[prefix], s[2:]
        else:
            base, digits = 8, s[1:]
    value = 0
    for ch in digits:
        low = ch.lower()
        if "0" <= ch <= "9":
            d = ord(ch) - 48
        elif "a" <= low <= "z":
            d = ord(low) - 87
        else:
            return None
        if d >= base:
            return None
        value = value * base + d
    return value if value <= _UINT64_MAX else None


def _go_parse_int(s: str) -> int | None:
    """strconv.ParseInt(s, 0, 64) on text without underscores; None on any error."""
    neg = False
    if s[:1] in ("+", "-"):
        neg, s = s[0] == "-", s[1:]
    value = _go_parse_uint(s)
    if value is None:
        return None
    value = -value if neg else value
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _go_parse_float(s: str) -> float | None:
    """strconv.ParseFloat for the decimal forms go-yaml passes it; None on error or overflow."""
    try:
        value = float(s)
    except ValueError:
        return None
    return None if math.isinf(value) else value


def _underscores_ok(s: str) -> bool:
    """Go's rule: underscores only between digits."""
    saw = "^"
    if s[:1] in ("+", "-"):
        s = s[1:]
    for ch in s:
        if "0" <= ch <= "9":
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _days_in(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _parse_timestamp(s: str) -> GoTimestamp | None:
    """The four layouts go-yaml tries with Go's time.Parse."""
    if len(s) < 5 or not s[:4].isascii() or not s[:4].isdigit() or s[4] != "-":
        return None
    for pattern in (_TS_ZONED, _TS_SPACED, _TS_DATE):
        m = pattern.fullmatch(s)
        if m is None:
            continue
        groups = m.groups()
        year, month, day = (int(g) for g in groups[:3])
        if not 1 <= month <= 12 or not 1 <= day <= _days_in(year, month):
            return None
        if pattern is _TS_DATE:
            return GoTimestamp(year, month, day)
        hour, minute, second = (int(g) for g in groups[3:6])
        if hour >= 24 or minute >= 60 or second >= 60:
            return None
        nanos = int((groups[6] or "0")[:9].ljust(9, "0"))
        offset = 0
        if pattern is _TS_ZONED and groups[7] != "Z":
            zone = groups[7]
            zh, zm = int(zone[1:3]), int(zone[4:6])
            if zh > 24 or zm > 60:
                return None
            offset = (zh * 3600 + zm * 60) * (-1 if zone[0] == "-" else 1)
        return GoTimestamp(year, month, day, hour, minute, second, nanos, offset)
    return None


def _resolve(tag: str, text: str) -> tuple[str, Any]:
    """go-yaml's resolve(): the tag and value a scalar stands for. ``tag`` is "" for plain."""
    if tag not in _RESOLVABLE:
        return tag, text
    rtag, value = _STR, text
    if tag != _STR:
        rtag, value = _resolve_untyped(text, timestamps=tag in ("", _TIMESTAMP))
    if tag in ("", rtag, _STR):
        return rtag, value
    if tag == _FLOAT and rtag == _INT:
        return _FLOAT, float(value)
    raise _Fatal(f"cannot construct {rtag} `{text}` as a {tag}")


def _resolve_untyped(text: str, *, timestamps: bool = True) -> tuple[str, Any]:
    first = text[:1]
    if first == "" or first in "yYnNtTfFoO~<":
        return _RESOLVE_MAP.get(text, (_STR, text))
    if first == ".":
        if text in _RESOLVE_MAP:
            return _RESOLVE_MAP[text]
        if _underscores_ok(text) and _DOT_FLOAT.fullmatch(text.replace("_", "")):
            value = _go_parse_float(text.replace("_", ""))
            if value is not None:
                return _FLOAT, value
        return _STR, text
    if first in "+-" or "0" <= first <= "9":
        if text in _RESOLVE_MAP:
            return _RESOLVE_MAP[text]
        stamp = _parse_timestamp(text) if timestamps else None
        if stamp is not None:
            return _TIMESTAMP, stamp
        plain = text.replace("_", "")
        for parse in (_go_parse_int, _go_parse_uint):
            number = parse(plain)
            if number is not None:
                return _INT, number
        if _YAML_FLOAT.fullmatch(plain):
            value = _go_parse_float(plain)
            if value is not None:
                return _FLOAT, value
    return _STR, text


def _is_base60(s: str) -> bool:
    return (
        bool(s) and (s[0] in "+-" or "0" <= s[0] <= "9") and ":" in s and bool(_BASE60.fullmatch(s))
    )


# --------------------------------------------------------------------------------------------
# Reader: PyYAML nodes -> Schematic with go-yaml's construction rules


class _Fatal(Exception):
    """Stops reading at once (go-yaml's Fail), unlike construct errors which are collected."""


_PLAIN_TAG = "!omniport/plain"
_YAML_TAG_PREFIX = "tag:yaml.org,2002:"
_SKIP = object()  # "construct returned false": the target keeps its zero value
_MAX_CONSTRUCTS = 200_000


class _NodeResolver(yaml.resolver.BaseResolver):
    """Leaves plain scalars unresolved so that go-yaml's resolver can decide their type."""

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is ynodes.ScalarNode:
            return _PLAIN_TAG if implicit[0] else _YAML_TAG_PREFIX + "str"
        return super().resolve(kind, value, implicit)


class _Composer(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _NodeResolver,
):
    def __init__(self, stream: str | bytes) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _NodeResolver.__init__(self)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML_TAG_PREFIX) :] if tag.startswith(_YAML_TAG_PREFIX) else tag


def _line(node: ynodes.Node) -> int:
    return node.start_mark.line + 1


_GO_TYPES = {
    Schematic: "schematic.Schematic",
    Overlay: "schematic.Overlay",
    Customization: "schematic.Customization",
    MetaValue: "schematic.MetaValue",
    SystemExtensions: "schematic.SystemExtensions",
    SecureBoot: "schematic.SecureBootCustomization",
    DiskImage: "schematic.DiskImageCustomization",
}


class _Reader:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.constructs = 0

    def read(self, data: str | bytes) -> Schematic:
        loader = _Composer(data)
        try:
            node = loader.get_node() if loader.check_node() else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"line {mark.line + 1}: " if mark else ""
            problem = exc.problem or exc.context or "invalid YAML"
            raise InvalidSchematic(f"yaml: {where}{problem}") from None
        except yaml.YAMLError as exc:
            raise InvalidSchematic(f"yaml: {exc}") from None
        except RecursionError:
            raise InvalidSchematic("yaml: document is nested too deeply") from None
        finally:
            loader.dispose()
        if node is None:
            raise InvalidSchematic("EOF")
        try:
            result = self.struct(node, Schematic)
        except _Fatal as exc:
            raise InvalidSchematic(f"yaml: {exc}") from None
        except RecursionError:
            raise InvalidSchematic("yaml: document is nested too deeply") from None
        if self.errors:
            raise InvalidSchematic("yaml: construct errors: " + "; ".join(self.errors))
        return result if isinstance(result, Schematic) else Schematic()

    # -- helpers ---------------------------------------------------------------------------

    def error(self, node: ynodes.Node, message: str) -> None:
        self.errors.append(f"line {_line(node)}: {message}")

    def count(self) -> None:
        self.constructs += 1
        if self.constructs > _MAX_CONSTRUCTS:
            raise _Fatal("document is too large (too many aliases or nodes)")

    def node_tag(self, node: ynodes.Node) -> str:
        if isinstance(node, ynodes.ScalarNode):
            return self.scalar(node)[0]
        return _short_tag(node.tag)

    def scalar(self, node: ynodes.ScalarNode) -> tuple[str, Any]:
        if node.tag == _PLAIN_TAG:
            return _resolve("", node.value)
        tag = _short_tag(node.tag)
        if tag == _BINARY:
            raise _Fatal(f"line {_line(node)}: !!binary values are not supported in schematics")
        return _resolve(tag, node.value)

    def tag_error(self, node: ynodes.Node, tag: str, go_type: str) -> None:
        if isinstance(node, ynodes.ScalarNode):
            raw = node.value.encode("utf-8")
            text = raw[:7].decode("utf-8", "replace") + "..." if len(raw) > 10 else node.value
            self.error(node, f"cannot construct {tag} `{text}` into {go_type}")
        else:
            self.error(node, f"cannot construct {tag} into {go_type}")

    def pairs(self, node: ynodes.MappingNode) -> list[tuple[ynodes.Node, ynodes.Node, bool]] | None:
        """(key, value, merged) triples: the mapping's own pairs, then those pulled in by
        ``<<`` merges, which never override a key already set. None when go-yaml's
        duplicate-key check fails (the whole mapping is then skipped)."""
        before = len(self.errors)
        keys = node.value
        for i, (ki, _) in enumerate(keys):
            for kj, _ in keys[i + 1 :]:
                if type(ki) is type(kj) and _node_text(ki) == _node_text(kj):
                    self.error(
                        kj,
                        f"mapping key {_go_quote(_node_text(kj))} already defined "
                        f"at line {_line(ki)}",
                    )
        if len(self.errors) > before:
            return None
        own: list[tuple[ynodes.Node, ynodes.Node, bool]] = []
        merges: list[ynodes.Node] = []
        for key, value in keys:
            if isinstance(key, ynodes.ScalarNode) and self.node_tag(key) == _MERGE:
                merges.extend(value.value if isinstance(value, ynodes.SequenceNode) else [value])
            else:
                own.append((key, value, False))
        for merged in merges:
            if not isinstance(merged, ynodes.MappingNode):
                raise _Fatal(
                    f"line {_line(merged)}: map merge requires map or sequence of maps as the value"
                )
            own.extend((k, v, True) for k, v, _ in self.pairs(merged) or [])
        return own

    # -- targets ---------------------------------------------------------------------------

    def struct(self, node: ynodes.Node, cls: type) -> Any:
        self.count()
        go_type = _GO_TYPES[cls]
        if isinstance(node, ynodes.ScalarNode):
            tag, value = self.scalar(node)
            if value is None or tag == _MERGE:
                return _SKIP
            self.tag_error(node, tag, go_type)
            return _SKIP
        if isinstance(node, ynodes.SequenceNode):
            self.tag_error(node, self.node_tag(node), go_type)
            return _SKIP
        assert isinstance(node, ynodes.MappingNode)  # the composer makes no other kind of node
        pairs = self.pairs(node)
        if pairs is None:
            return _SKIP
        fields = _STRUCT_FIELDS[cls]
        values: dict[str, Any] = {}
        for key, value, merged in pairs:
            name = self.string(key, "string")
            if name is _SKIP or (merged and name in values):
                continue
            spec = fields.get(name)
            if spec is None:
                self.error(key, f"field {name} not found in type {go_type}")
                continue
            attr, build = spec
            result = build(self, value)
            values[name] = _SKIP if result is _SKIP else (attr, result)
        kwargs = dict(v for v in values.values() if v is not _SKIP)
        try:
            return cls(**kwargs)
        except ValueError as exc:  # only reached when a field check disagrees with go-yaml
            raise _Fatal(str(exc)) from None

    def string(self, node: ynodes.Node, go_type: str = "string") -> Any:
        self.count()
        if not isinstance(node, ynodes.ScalarNode):
            self.tag_error(node, self.node_tag(node), go_type)
            return _SKIP
        tag, value = self.scalar(node)
        if value is None or tag == _MERGE:
            return _SKIP
        if tag in (_STR, _INT, _FLOAT, _BOOL):
            return node.value
        self.tag_error(node, tag, go_type)
        return _SKIP

    def uint(self, node: ynodes.Node, limit: int, go_type: str) -> Any:
        self.count()
        if not isinstance(node, ynodes.ScalarNode):
            self.tag_error(node, self.node_tag(node), go_type)
            return _SKIP
        tag, value = self.scalar(node)
        if value is None or tag == _MERGE:
            return _SKIP
        if tag == _INT and 0 <= value <= limit:
            return value
        if (
            tag == _FLOAT
            and not math.isnan(value)
            and 0 <= value <= float(_UINT64_MAX)
            and float(int(value)) == value
            and int(value) <= limit
        ):
            return int(value)
        self.tag_error(node, tag, go_type)
        return _SKIP

    def boolean(self, node: ynodes.Node) -> Any:
        self.count()
        if not isinstance(node, ynodes.ScalarNode):
            self.tag_error(node, self.node_tag(node), "bool")
            return _SKIP
        tag, value = self.scalar(node)
        if value is None or tag == _MERGE:
            return _SKIP
        if tag == _BOOL:
            return value
        if tag == _STR and value in _OLD_BOOLS:
            return value in ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON")
        self.tag_error(node, tag, "bool")
        return _SKIP

    def bootloader(self, node: ynodes.Node) -> Any:
        self.count()
        if not isinstance(node, ynodes.ScalarNode):
            self.error(
                node,
                f"cannot construct {self.node_tag(node)} into "
                "imageropts.BootloaderKind (TextUnmarshaler)",
            )
            return _SKIP
        tag, value = self.scalar(node)
        if value is None:
            return _SKIP
        text = node.value
        for candidate in (text, text.lower()):
            if candidate in _BOOTLOADER_NAMES:
                return "" if candidate == "none" else candidate
        self.error(node, f"{text} does not belong to BootloaderKind values")
        return _SKIP

    def sequence(self, node: ynodes.Node, item: Any, go_type: str) -> Any:
        self.count()
        if isinstance(node, ynodes.ScalarNode):
            tag, value = self.scalar(node)
            if value is None:
                return ()
            if tag != _MERGE:
                self.tag_error(node, tag, go_type)
            return _SKIP
        if isinstance(node, ynodes.MappingNode):
            self.tag_error(node, self.node_tag(node), go_type)
            return _SKIP
        out = [item(self, child) for child in node.value]
        return tuple(v for v in out if v is not _SKIP)

    def options(self, node: ynodes.Node) -> Any:
        self.count()
        go_type = "map[string]interface {}"
        if isinstance(node, ynodes.ScalarNode):
            tag, value = self.scalar(node)
            if value is None:
                return {}
            if tag != _MERGE:
                self.tag_error(node, tag, go_type)
            return _SKIP
        if isinstance(node, ynodes.SequenceNode):
            self.tag_error(node, self.node_tag(node), go_type)
            return _SKIP
        assert isinstance(node, ynodes.MappingNode)  # the composer makes no other kind of node
        return self.mapping_any(node, string_keys=True)

    def mapping_any(self, node: ynodes.MappingNode, *, string_keys: bool) -> Any:
        pairs = self.pairs(node)
        if pairs is None:
            return _SKIP
        entries: dict[Any, tuple[Any, Any]] = {}  # slots keep 1, 1.0 and true apart
        for key, value, merged in pairs:
            if string_keys:
                k = self.string(key)
            else:
                k = self.any(key)
                if isinstance(k, list | dict | GoMap):
                    raise _Fatal(
                        f"line {_line(key)}: cannot use a collection as a map key; "
                        "try decoding into yaml.Node"
                    )
            if k is _SKIP:
                continue
            slot = k if string_keys else (_kind(k), k)
            if merged and slot in entries:
                continue
            v = self.any(value)
            if v is not _SKIP:
                entries[slot] = (k, v)
        if string_keys:
            return dict(entries.values())
        return GoMap(entries.values())

    def any(self, node: ynodes.Node) -> Any:
        """Construct into Go's interface{}."""
        self.count()
        if isinstance(node, ynodes.ScalarNode):
            tag, value = self.scalar(node)
            if tag == _MERGE:
                return _SKIP
            return value
        if isinstance(node, ynodes.SequenceNode):
            items = [self.any(child) for child in node.value]
            return [v for v in items if v is not _SKIP]
        assert isinstance(node, ynodes.MappingNode)  # the composer makes no other kind of node
        string_keys = all(
            isinstance(k, ynodes.ScalarNode) and self.node_tag(k) in (_STR, _MERGE)
            for k, _ in node.value
        )
        return self.mapping_any(node, string_keys=string_keys)


def _node_text(node: ynodes.Node) -> str:
    return node.value if isinstance(node, ynodes.ScalarNode) else ""


def _go_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def _metas(reader: _Reader, node: ynodes.Node) -> Any:
    return reader.sequence(node, lambda r, n: r.struct(n, MetaValue), "[]schematic.MetaValue")


def _strings(reader: _Reader, node: ynodes.Node) -> Any:
    return reader.sequence(node, lambda r, n: r.string(n), "[]string")


_STRUCT_FIELDS: dict[type, dict[str, tuple[str, Any]]] = {
    Schematic: {
        "owner": ("owner", lambda r, n: r.string(n)),
        "overlay": ("overlay", lambda r, n: r.struct(n, Overlay)),
        "customization": ("customization", lambda r, n: r.struct(n, Customization)),
    },
    Overlay: {
        "image": ("image", lambda r, n: r.string(n)),
        "name": ("name", lambda r, n: r.string(n)),
        "options": ("options", lambda r, n: r.options(n)),
    },
    Customization: {
        "embeddedMachineConfiguration": (
            "embedded_machine_configuration",
            lambda r, n: r.string(n),
        ),
        "extraKernelArgs": ("extra_kernel_args", _strings),
        "meta": ("meta", _metas),
        "systemExtensions": (
            "system_extensions",
            lambda r, n: r.struct(n, SystemExtensions),
        ),
        "bootloader": ("bootloader", lambda r, n: r.bootloader(n)),
        "secureboot": ("secureboot", lambda r, n: r.struct(n, SecureBoot)),
        "diskImage": ("disk_image", lambda r, n: r.struct(n, DiskImage)),
    },
    MetaValue: {
        "key": ("key", lambda r, n: r.uint(n, _UINT8_MAX, "uint8")),
        "value": ("value", lambda r, n: r.string(n)),
    },
    SystemExtensions: {"officialExtensions": ("official_extensions", _strings)},
    SecureBoot: {
        "enrollKeys": ("enroll_keys", lambda r, n: r.string(n)),
        "includeWellKnownCertificates": (
            "include_well_known_certificates",
            lambda r, n: r.boolean(n),
        ),
    },
    DiskImage: {"sectorSize": ("sector_size", lambda r, n: r.uint(n, _UINT64_MAX, "uint"))},
}

# --------------------------------------------------------------------------------------------
# Writer: a port of go-yaml's representer, desolver and block emitter (Marshal settings)

_BEST_INDENT = 4
_BREAKS = "\r\n\x85\u2028\u2029"
_BLANK_OR_ZERO = " \t\0" + _BREAKS
_GO_SPACES = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_ESCAPES = {
    "\0": "0",
    "\a": "a",
    "\b": "b",
    "\t": "t",
    "\n": "n",
    "\v": "v",
    "\f": "f",
    "\r": "r",
    "\x1b": "e",
    '"': '"',
    "\\": "\\",
    "\x85": "N",
    "\xa0": "_",
    "\u2028": "L",
    "\u2029": "P",
}


def _printable(ch: str) -> bool:
    """libyaml's is_printable, on code points (characters above U+FFFF are not)."""
    c = ord(ch)
    return (
        c == 0x0A
        or 0x20 <= c <= 0x7E
        or 0xA0 <= c <= 0xD7FF
        or (0xE000 <= c <= 0xFFFD and c != 0xFEFF)
    )


@dataclass
class _Analysis:
    multiline: bool
    block_plain: bool
    single: bool
    block: bool


def _analyze(value: str) -> _Analysis:
    """libyaml's analyze_scalar, for block context."""
    if not value:
        return _Analysis(multiline=False, block_plain=True, single=True, block=False)
    block_ind = value.startswith(("---", "..."))
    special = tabs = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = previous_space = previous_break = line_breaks = False
    preceded_by_ws = True
    last = len(value) - 1
    for i, ch in enumerate(value):
        followed_by_ws = i == last or value[i + 1] in " \t"
        if i == 0:
            if ch in "#,[]{}&*!|>'\"%@`":
                block_ind = True
            elif ch in "?:" or ch == "-":
                block_ind = block_ind or followed_by_ws
        elif ch == ":" and followed_by_ws or ch == "#" and preceded_by_ws:
            block_ind = True
        if ch == "\t":
            tabs = True
        elif not _printable(ch):
            special = True
        if ch == " ":
            leading_space = leading_space or i == 0
            trailing_space = trailing_space or i == last
            break_space = break_space or previous_break
            previous_space, previous_break = True, False
        elif ch in _BREAKS:
            line_breaks = True
            leading_break = leading_break or i == 0
            trailing_break = trailing_break or i == last
            space_break = space_break or previous_space
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_ws = ch in _BLANK_OR_ZERO
    block_plain = single = block = True
    if leading_space or leading_break or trailing_space or trailing_break:
        block_plain = False
    if trailing_space:
        block = False
    if break_space:
        block_plain = single = False
    if space_break or tabs or special:
        block_plain = single = False
    if space_break or special:
        block = False
    if line_breaks or block_ind:
        block_plain = False
    return _Analysis(multiline=line_breaks, block_plain=block_plain, single=single, block=block)


def _literal_worthy(value: str) -> bool:
    """go-yaml's shouldUseLiteralStyle: a newline, 2+ bytes and a non-space character."""
    if "\n" not in value or len(value.encode("utf-8")) < 2:
        return False
    return any(ch not in _GO_SPACES for ch in value)


def _string_style(value: str) -> str:
    """Representer + desolver: the style requested for a string scalar."""
    if "\n" in value:
        return "literal" if _literal_worthy(value) else "double"
    if _is_base60(value) or value in _OLD_BOOLS or value == "<<":
        return "single"
    if _resolve_untyped(value)[0] != _STR:
        return "double"
    return "plain"


def _go_float(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64) with YAML's spellings of the special values."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exponent = int(exponent) + len(digits) - len(stripped)
    digits = stripped
    nd = len(digits)
    dp = nd + exponent
    if dp - 1 < -4 or dp - 1 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if nd > 1 else "")
        e = dp - 1
        return f"{sign}{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= nd:
        return f"{sign}{digits}{'0' * (dp - nd)}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def _scalar_text(value: Any) -> tuple[str, str]:
    """(text, requested style) for a scalar value."""
    if isinstance(value, str):
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            raise ValueError("string holds an unpaired surrogate, which is not valid UTF-8")
        return value, _string_style(value)
    if value is None:
        return "null", "plain"
    if isinstance(value, bool):
        return ("true" if value else "false"), "plain"
    if isinstance(value, int):
        return str(value), "plain"
    if isinstance(value, float):
        return _go_float(value), "plain"
    if isinstance(value, GoTimestamp):
        return str(value), "plain"
    raise TypeError(f"cannot write a {type(value).__name__} as a schematic value")


_KIND_ORDER = {bool: 1, int: 2, "uint64": 11, float: 14, None: 20, str: 24, GoTimestamp: 25}


def _kind(value: Any) -> int:
    if value is None:
        return _KIND_ORDER[None]
    if isinstance(value, bool):
        return _KIND_ORDER[bool]
    if isinstance(value, int):
        return _KIND_ORDER["uint64"] if value > _INT64_MAX else _KIND_ORDER[int]
    for cls in (float, str, GoTimestamp):
        if isinstance(value, cls):
            return _KIND_ORDER[cls]
    raise TypeError(f"cannot use a {type(value).__name__} as a map key")


def _key_less(a: Any, b: Any) -> bool:
    """go-yaml's keyList.Less: numbers by value, strings in natural order, then by kind."""
    ak, bk = _kind(a), _kind(b)
    numeric = (_KIND_ORDER[bool], _KIND_ORDER[int], _KIND_ORDER["uint64"], _KIND_ORDER[float])
    if ak in numeric and bk in numeric:
        af, bf = float(a), float(b)
        if af != bf:
            return af < bf
        if ak != bk:
            return ak < bk
        return bool(a < b)
    if ak != _KIND_ORDER[str] or bk != _KIND_ORDER[str]:
        return ak < bk
    return _natural_less(a, b)


def _wrap64(value: int) -> int:
    """Go's int64 arithmetic wraps around."""
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


def _natural_less(a: str, b: str) -> bool:
    digits = False
    for i in range(min(len(a), len(b))):
        ca, cb = a[i], b[i]
        if ca == cb:
            digits = unicodedata.category(ca) == "Nd"
            continue
        al, bl = ca.isalpha(), cb.isalpha()
        if al and bl:
            return ca < cb
        if al or bl:
            return al if digits else bl
        an = bn = 0
        if ca == "0" or cb == "0":
            j = i - 1
            while j >= 0 and unicodedata.category(a[j]) == "Nd":
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and unicodedata.category(a[ai]) == "Nd":
            an = _wrap64(an * 10 + ord(a[ai]) - 48)
            ai += 1
        bi = i
        while bi < len(b) and unicodedata.category(b[bi]) == "Nd":
            bn = _wrap64(bn * 10 + ord(b[bi]) - 48)
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ca < cb
    return len(a) < len(b)


def _sorted_keys(keys: Iterable[Any]) -> list[Any]:
    def compare(a: Any, b: Any) -> int:
        return -1 if _key_less(a, b) else (1 if _key_less(b, a) else 0)

    return sorted(keys, key=functools.cmp_to_key(compare))


class _Emitter:
    """The subset of libyaml's emitter go-yaml's Marshal drives for block documents."""

    def __init__(self, *, yaml_v3: bool = False) -> None:
        self.yaml_v3 = yaml_v3
        self.out: list[str] = []
        self.column = 0
        self.indent = -1
        self.indents: list[int] = []
        self.whitespace = True
        self.indention = True

    def text(self) -> str:
        return "".join(self.out)

    # -- low level -------------------------------------------------------------------------

    def put(self, text: str) -> None:
        self.out.append(text)
        self.column += len(text)

    def put_break(self) -> None:
        self.out.append("\n")
        self.column = 0
        self.indention = True

    def write_break(self, ch: str) -> None:
        if ch == "\n":
            self.put_break()
        else:
            self.out.append(ch)
            self.column = 0
            self.indention = True

    def write_indent(self) -> None:
        indent = max(self.indent, 0)
        if (
            not self.indention
            or self.column > indent
            or (self.column == indent and not self.whitespace)
        ):
            self.put_break()
        if self.column < indent:
            self.put(" " * (indent - self.column))
        self.whitespace = True

    def indicator(self, text: str, need_ws: bool, is_ws: bool, is_indention: bool) -> None:
        if need_ws and not self.whitespace:
            self.put(" ")
        self.put(text)
        self.whitespace = is_ws
        self.indention = self.indention and is_indention

    def increase_indent(self, flow: bool, in_seq_item: bool) -> None:
        self.indents.append(self.indent)
        if self.indent < 0:
            self.indent = _BEST_INDENT if flow else 0
        elif in_seq_item:
            self.indent += 2
        else:
            self.indent = _BEST_INDENT * ((self.indent + _BEST_INDENT) // _BEST_INDENT)

    def pop_indent(self) -> None:
        self.indent = self.indents.pop()

    # -- structure -------------------------------------------------------------------------

    def document(self, value: Any) -> None:
        self.node(value, in_seq_item=False, simple_key=False)
        self.indent = -1
        self.write_indent()

    def node(self, value: Any, *, in_seq_item: bool, simple_key: bool) -> None:
        if isinstance(value, _Fields):
            self.mapping(list(value), in_seq_item)
        elif isinstance(value, Mapping):
            self.mapping([(k, value[k]) for k in _sorted_keys(value)], in_seq_item)
        elif isinstance(value, list | tuple):
            self.sequence(list(value), in_seq_item)
        else:
            self.scalar(value, in_seq_item=in_seq_item, simple_key=simple_key)

    def mapping(self, pairs: list[tuple[Any, Any]], in_seq_item: bool) -> None:
        if not pairs:
            self.indicator("{", True, True, False)
            self.indicator("}", False, False, False)
            return
        self.increase_indent(False, in_seq_item)
        for key, value in pairs:
            self.write_indent()
            text, _ = _scalar_text(key)
            if not _analyze(text).multiline and len(text.encode("utf-8")) <= 128:
                self.scalar(key, in_seq_item=False, simple_key=True)
                self.indicator(":", False, False, False)
            else:
                self.indicator("?", True, False, True)
                self.scalar(key, in_seq_item=False, simple_key=False)
                self.write_indent()
                self.indicator(":", True, False, True)
            self.node(value, in_seq_item=False, simple_key=False)
        self.pop_indent()

    def sequence(self, items: list[Any], in_seq_item: bool) -> None:
        if not items:
            self.indicator("[", True, True, False)
            self.indicator("]", False, False, False)
            return
        self.increase_indent(False, in_seq_item)
        for item in items:
            self.write_indent()
            self.indicator("-", True, False, True)
            self.node(item, in_seq_item=True, simple_key=False)
        self.pop_indent()

    # -- scalars ---------------------------------------------------------------------------

    def scalar(self, value: Any, *, in_seq_item: bool, simple_key: bool) -> None:
        text, style = _scalar_text(value)
        if self.yaml_v3 and style == "single" and text in _OLD_BOOLS:
            style = "double"
        info = _analyze(text)
        if simple_key and info.multiline:
            style = "double"
        if style == "plain" and (not info.block_plain or (not text and simple_key)):
            style = "single"
        if style == "single" and not info.single:
            style = "double"
        if style == "literal" and (not info.block or simple_key):
            style = "double"
        self.increase_indent(True, in_seq_item)
        getattr(self, f"write_{style}")(text)
        self.pop_indent()

    def write_plain(self, text: str) -> None:
        if text and not self.whitespace:
            self.put(" ")
        self.put(text)
        if text:
            self.whitespace = False
        self.indention = False

    def write_single(self, text: str) -> None:
        self.indicator("'", True, False, False)
        breaks = False
        for ch in text:
            if ch in _BREAKS:
                if not breaks and ch == "\n":
                    self.put_break()
                self.write_break(ch)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put("''" if ch == "'" else ch)
                self.indention = False
                breaks = False
        self.indicator("'", False, False, False)
        self.whitespace = False
        self.indention = False

    def write_double(self, text: str) -> None:
        self.indicator('"', True, False, False)
        bom = text.startswith("\ufeff")  # libyaml checks the first character, not the current one
        parts: list[str] = []
        for ch in text:
            if bom or not _printable(ch) or ch in _BREAKS or ch in '"\\':
                code = ord(ch)
                if ch in _ESCAPES:
                    parts.append("\\" + _ESCAPES[ch])
                elif code <= 0xFF:
                    parts.append(f"\\x{code:02X}")
                elif code <= 0xFFFF:
                    parts.append(f"\\u{code:04X}")
                else:
                    parts.append(f"\\U{code:08X}")
            else:
                parts.append(ch)
        self.put("".join(parts))
        self.indicator('"', False, False, False)
        self.whitespace = False
        self.indention = False

    def write_literal(self, text: str) -> None:
        self.indicator("|", True, False, False)
        if text.startswith(" "):
            self.indicator(str(_BEST_INDENT), False, False, False)
        chomp = ""
        if text[-1] not in _BREAKS:
            chomp = "-"
        elif len(text) == 1 or text[-2] in _BREAKS:
            chomp = "+"
        if chomp:
            self.indicator(chomp, False, False, False)
        self.put_break()
        self.whitespace = True
        breaks = True
        for ch in text:
            if ch in _BREAKS:
                self.write_break(ch)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(ch)
                self.indention = False
                breaks = False
