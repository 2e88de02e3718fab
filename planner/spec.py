"""The import spec: a YAML file checked against ``schemas/import-spec.schema.json``.

Every problem is reported as ``file:line:col: message`` — the place a user has to edit — so the
loader keeps the YAML position of every key and value while it builds plain data. Structural
problems come from the JSON Schema (one source of truth, also used to document the spec); the
semantic ones (versions out of order, files that cannot be read) are checked here. Nothing in
this module touches the network.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from omniport import schemas
from omniport.planner import files
from omniport.planner.errors import OmniportError
from omniport.planner.finding_codes import CHECKS

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class SpecProblem:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class SpecError(OmniportError):
    """One or more problems in a spec; each printed on its own line as file:line:col: message."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class TalosAccess:
    talosconfig: Path | None
    context: str | None
    endpoints: tuple[str, ...]
    nodes: tuple[str, ...]
    """Empty when the spec lists none: plan then discovers them (Talos discovery Members)."""


@dataclass(frozen=True)
class OmniAccess:
    omniconfig: Path | None
    context: str | None
    url: str | None
    service_account_key_file: Path | None
    ca_file: Path | None
    insecure_skip_tls_verify: bool


@dataclass(frozen=True)
class FactoryAccess:
    url: str | None
    ca_file: Path | None


@dataclass(frozen=True)
class Versions:
    """Versions without a leading "v"; ``None`` means "detect from the cluster"."""

    talos: str | None
    kubernetes: str | None
    initial_talos: str | None
    initial_kubernetes: str | None


@dataclass(frozen=True)
class Spec:
    """A validated import spec with defaults applied and paths resolved against its directory."""

    path: Path
    talos: TalosAccess
    omni: OmniAccess
    image_factory: FactoryAccess
    versions: Versions
    accepted_findings: frozenset[str]
    force: bool
    health_check: bool
    health_check_timeout: float
    backup_directory: Path | None
    parallelism: int
    wait_timeout: float
    normalized: dict[str, Any]
    """The spec as plain data with every default filled in: what the plan file records."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.normalized).encode()).hexdigest()


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- YAML with positions -------------------------------------------------------------------


_TAG_NAMES = {"int": "a number", "float": "a number", "timestamp": "a date", "bool": "true/false"}
_TOO_DEEP = "invalid YAML: the spec is nested too deeply to read"
_MAX_VALUES = 200_000
_TOO_BIG = f"the spec holds more than {_MAX_VALUES} values"
_TOO_BIG_ALIASES = (
    f"{_TOO_BIG} once its aliases are expanded; write the values out instead of nesting aliases"
)
_STANDARD_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")
)
"""Tags a plain-YAML spec can carry (PyYAML resolves untagged values to these)."""


@dataclass
class _Located:
    data: Any
    marks: dict[Path_, tuple[int, int]]  # value positions (1-based line, column)
    key_marks: dict[Path_, tuple[int, int]]  # positions of mapping keys


def _compose(text: str, file: str) -> _Located:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = err.problem or err.context or "invalid YAML"
        raise SpecError([SpecProblem(file, line, col, f"invalid YAML: {what}")]) from None
    except yaml.reader.ReaderError as err:  # a control character; its text spans two lines
        line = text.count("\n", 0, err.position) + 1
        col = err.position - text.rfind("\n", 0, err.position)
        code = err.character if isinstance(err.character, int) else ord(err.character)
        problem = f"invalid YAML: the control character U+{code:04X} is not allowed here"
        raise SpecError([SpecProblem(file, line, col, problem)]) from None
    except yaml.YAMLError as err:
        problem = "invalid YAML: " + " ".join(str(err).split())
        raise SpecError([SpecProblem(file, 1, 1, problem)]) from None
    except RecursionError:
        raise SpecError([SpecProblem(file, 1, 1, _TOO_DEEP)]) from None
    except (ValueError, OverflowError):  # PyYAML's scanner: chr() of a \U escape past U+10FFFF
        raise SpecError([_bad_escape(text, file)]) from None
    if node is None:
        raise SpecError([SpecProblem(file, 1, 1, "the spec is empty; start from examples/")])
    located = _Located(None, {}, {})
    loader = yaml.SafeLoader("")
    open_nodes: set[int] = set()  # collections being built: an alias to one is a cycle
    seen: set[int] = set()  # nodes built so far: meeting one again means an alias
    alias = [False]
    budget = [_MAX_VALUES]

    def construct(n: yaml.Node) -> Any:
        try:
            value = loader.construct_object(n, deep=True)
            if isinstance(value, str):
                value.encode("utf-8")  # a "\ud800" escape gives a lone surrogate
            return value
        except UnicodeEncodeError as err:
            line, col = n.start_mark.line + 1, n.start_mark.column + 1
            code = ord(err.object[err.start])
            problem = (
                f"invalid YAML: the escape for U+{code:04X} is half of a UTF-16 pair; "
                "write the character itself"
            )
            raise SpecError([SpecProblem(file, line, col, problem)]) from None
        # PyYAML's constructors fail in their own ways on values that do not fit the tag:
        # a 5000-digit integer, a 13th month, `!!bool maybe`, `!!timestamp x`, `!!float ""`.
        except (ValueError, OverflowError, KeyError, AttributeError, IndexError, TypeError):
            shown = _shown(n.value) if n.value else "an empty value"
            what = _TAG_NAMES.get(n.tag.rsplit(":", 1)[-1], f"a {n.tag.rsplit(':', 1)[-1]}")
            line, col = n.start_mark.line + 1, n.start_mark.column + 1
            problem = f"invalid YAML: cannot read {shown} as {what}; quote it to make it a string"
            raise SpecError([SpecProblem(file, line, col, problem)]) from None

    def check_tag(n: yaml.Node) -> None:
        """Only plain YAML: a ``!!python/...`` or ``!!binary`` tag is refused, not half-read."""
        if n.tag in _STANDARD_TAGS:
            return
        shown = n.tag.replace("tag:yaml.org,2002:", "!!", 1)
        line, col = n.start_mark.line + 1, n.start_mark.column + 1
        problem = f"unsupported YAML tag {_shown(shown)}; remove it (a spec is plain YAML)"
        raise SpecError([SpecProblem(file, line, col, problem)])

    def build(n: yaml.Node, path: Path_) -> Any:
        located.marks[path] = (n.start_mark.line + 1, n.start_mark.column + 1)
        check_tag(n)
        budget[0] -= 1
        if budget[0] < 0:
            raise SpecError([SpecProblem(file, 1, 1, _TOO_BIG_ALIASES if alias[0] else _TOO_BIG)])
        if id(n) in seen:
            alias[0] = True
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode | yaml.SequenceNode):
            if id(n) in open_nodes:
                line, col = n.start_mark.line + 1, n.start_mark.column + 1
                problem = "invalid YAML: an alias refers to itself (the node that contains it)"
                raise SpecError([SpecProblem(file, line, col, problem)])
            open_nodes.add(id(n))
            try:
                return build_collection(n, path)
            finally:
                open_nodes.discard(id(n))
        return construct(n)

    def build_collection(n: yaml.MappingNode | yaml.SequenceNode, path: Path_) -> Any:
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                check_tag(key_node)
                key = construct(key_node)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                    raise SpecError([SpecProblem(file, line, col, f"duplicate key {key!r}")])
                located.key_marks[path + (key,)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                out[key] = build(value_node, path + (key,))
            return out
        return [build(item, path + (i,)) for i, item in enumerate(n.value)]

    try:
        located.data = build(node, ())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = err.problem or err.context or "invalid YAML"
        raise SpecError([SpecProblem(file, line, col, f"invalid YAML: {what}")]) from None
    except RecursionError:
        raise SpecError([SpecProblem(file, 1, 1, _TOO_DEEP)]) from None
    return located


def _bad_escape(text: str, file: str) -> SpecProblem:
    problem = "invalid YAML: a \\U escape names no Unicode character (the last is \\U0010FFFF)"
    for match in re.finditer(r"\\U([0-9A-Fa-f]{8})", text):
        if int(match.group(1), 16) > 0x10FFFF:
            line = text.count("\n", 0, match.start()) + 1
            return SpecProblem(
                file, line, match.start() - text.rfind("\n", 0, match.start()), problem
            )
    return SpecProblem(file, 1, 1, problem)


# --- schema errors as one sentence each ----------------------------------------------------

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
    "number": "a number",
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, date):
        return "a date"
    return type(value).__name__


def _shown(value: Any) -> str:
    """``repr(value)``, cut in the middle when long (a 5000-digit version fills no screen)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}…{text[-12:]}"


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the spec"


def _schema_problem(
    err: jsonschema.ValidationError, located: _Located, file: str
) -> list[SpecProblem]:
    path: Path_ = tuple(err.absolute_path)
    where = _dotted(path)
    # jsonschema types these as possibly unset (or a boolean schema); for the errors of a
    # mapping schema checking a loaded spec they are always set
    schema: Mapping[str, Any] = err.schema if isinstance(err.schema, Mapping) else {}
    instance: Any = err.instance
    line, col = located.marks.get(path, (1, 1))
    if err.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        problems = []
        for key in sorted(set(instance) - set(allowed)):
            kline, kcol = located.key_marks.get(path + (key,), (line, col))
            hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            fix = f"did you mean '{hint[0]}'?" if hint else f"allowed keys: {', '.join(allowed)}"
            problems.append(
                SpecProblem(file, kline, kcol, f"unknown key {key!r} in {where}; {fix}")
            )
        return problems
    if err.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        key = missing[0] if missing else "?"
        line, col = located.key_marks.get(path, (line, col))
        return [SpecProblem(file, line, col, f"{where} is missing the required key '{key}'")]
    if err.validator == "type":
        expected: Any = err.validator_value
        names: list[str] = [expected] if isinstance(expected, str) else list(expected)
        want = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        return [SpecProblem(file, line, col, f"{where} must be {want}, not {_describe(instance)}")]
    if err.validator == "const":
        return [SpecProblem(file, line, col, f"{where} must be {err.validator_value!r}")]
    if err.validator == "pattern":
        desc = schema.get("description") or ""
        shapes = {
            "version": "a version like 1.11.5",
            "duration": "a duration like 90s, 5m or 1h30m",
        }
        kind = (
            "duration"
            if "duration" in desc.lower() or where.lower().endswith(("timeout",))
            else "version"
            if where.startswith("versions.")
            else None
        )
        if kind:
            msg = f"{where} is {_shown(instance)}, which is not {shapes[kind]}"
        elif where.endswith("url"):
            msg = f"{where} is {_shown(instance)}, which is not a URL like https://host[:port]"
        else:
            msg = f"{where} is {_shown(instance)}, which does not match {err.validator_value}"
        return [SpecProblem(file, line, col, msg)]
    if err.validator == "uniqueItems":
        seen: set[str] = set()
        for i, item in enumerate(instance):
            key = json.dumps(item, sort_keys=True, default=repr)  # YAML can give dates, bytes
            if key in seen:
                iline, icol = located.marks.get(path + (i,), (line, col))
                return [SpecProblem(file, iline, icol, f"{where} lists {item!r} twice")]
            seen.add(key)
    if err.validator in ("minItems", "minLength"):
        return [SpecProblem(file, line, col, f"{where} must not be empty")]
    if err.validator in ("minimum", "maximum"):
        return [
            SpecProblem(
                file,
                line,
                col,
                f"{where} is {err.instance}, must be "
                f"{'at least' if err.validator == 'minimum' else 'at most'} {err.validator_value}",
            )
        ]
    return [SpecProblem(file, line, col, f"{where}: {err.message}")]


# --- semantic checks and the Spec value ----------------------------------------------------

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``1h30m`` or ``90s``."""
    match = _DURATION.match(text)
    if not match or not text:
        raise ValueError(f"not a duration: {text!r}")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def version_tuple(version: str) -> tuple[int, int, int]:
    core = version.lstrip("v").split("-", 1)[0]
    major, minor, patch = (int(p) for p in core.split("."))
    return major, minor, patch


def _strip_v(version: str | None) -> str | None:
    return version[1:] if version and version.startswith("v") else version


_DEFAULTS: dict[str, Any] = {
    "findings": {"accept": [], "force": False},
    "healthCheck": {"enabled": True, "timeout": "5m"},
    "apply": {"parallelism": 10, "waitTimeout": "5m"},
}


def _with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    for section, defaults in _DEFAULTS.items():
        merged = dict(defaults)
        merged.update(out.get(section) or {})
        out[section] = merged
    out["findings"]["accept"] = sorted(out["findings"]["accept"])
    for key in ("talos", "kubernetes", "initialTalos", "initialKubernetes"):
        if key in out.get("versions", {}):
            out["versions"][key] = _strip_v(out["versions"][key])
    out.setdefault("omni", {}).setdefault("insecureSkipTLSVerify", False)
    return out


def _semantic_problems(
    located: _Located, file: str, base: Path, offline: bool = False
) -> list[SpecProblem]:
    """``offline``: the referenced files are not looked at (a PR job has no keys), only
    whether their names can be paths."""
    data = located.data
    problems: list[SpecProblem] = []

    def at(path: Path_, message: str) -> None:
        line, col = located.marks.get(path, (1, 1))
        problems.append(SpecProblem(file, line, col, message))

    for index, code in enumerate(data.get("findings", {}).get("accept", [])):
        check = CHECKS.get(code)
        if check is None:
            near = difflib.get_close_matches(code, CHECKS, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else "; omniport reports no such code"
            at(("findings", "accept", index), f"unknown finding code {code}{hint}")
        elif not check.acceptable:
            at(
                ("findings", "accept", index),
                f"finding code {code} cannot be accepted: {check.fix}",
            )
    versions = data.get("versions", {})
    for current, initial in (("talos", "initialTalos"), ("kubernetes", "initialKubernetes")):
        if current in versions and initial in versions:
            if version_tuple(versions[initial]) > version_tuple(versions[current]):
                at(
                    ("versions", initial),
                    f"versions.{initial} ({versions[initial]}) is newer than versions.{current} "
                    f"({versions[current]}); the initial version must not be greater",
                )
    for path in _NAMED_FILES:
        section = data.get(path[0], {})
        if path[1] in section:
            try:
                local = _local_path(base, section[path[1]])
                readable = offline or local.is_file()
            except (OSError, ValueError, RuntimeError):  # too long, a NUL byte, ~nosuchuser
                readable = False
            if not readable and offline:
                at(path, f"{_dotted(path)} names {_shown(section[path[1]])}, which is not a path")
            elif not readable:
                at(
                    path,
                    f"{_dotted(path)} names {_shown(section[path[1]])}, which is not a readable "
                    "file",
                )
    directory = data.get("backup", {}).get("directory")
    if isinstance(directory, str):
        try:
            _local_path(base, directory)
        except (OSError, ValueError, RuntimeError):
            at(
                ("backup", "directory"),
                f"backup.directory names {_shown(directory)}, which is not a usable path",
            )
    for path in (("healthCheck", "timeout"), ("apply", "waitTimeout")):
        value = data.get(path[0], {}).get(path[1])
        if isinstance(value, str) and _DURATION.match(value) and parse_duration(value) == 0:
            at(path, f"{_dotted(path)} must be longer than 0s")
    omni = data.get("omni", {})
    if omni.get("insecureSkipTLSVerify") and "caFile" in omni:
        at(("omni", "caFile"), "omni.caFile and omni.insecureSkipTLSVerify contradict each other")
    return problems


_NAMED_FILES = (
    ("talos", "talosconfig"),
    ("omni", "omniconfig"),
    ("omni", "serviceAccountKeyFile"),
    ("omni", "caFile"),
    ("imageFactory", "caFile"),
)


def named_files(spec: Spec) -> list[str]:
    """``key (value)`` for every file the spec names: what an offline check did not read."""
    data = spec.normalized
    return [
        f"{section}.{key} ({data[section][key]})"
        for section, key in _NAMED_FILES
        if key in (data.get(section) or {})
    ]


def load_spec(path: str | Path, *, offline: bool = False) -> Spec:
    """Read, check and normalize an import spec; raises SpecError listing every problem.

    ``offline`` leaves out what needs more than the spec itself (the files it names exist and
    can be read), for a check in a pull-request job without the keys."""
    path = Path(path)
    file = str(path)
    try:
        text = files.read_text(path, files.SPEC_LIMIT)
    except FileNotFoundError:
        raise SpecError([SpecProblem(file, 1, 1, "no such file; check the path")]) from None
    except files.Unreadable as err:
        raise SpecError([SpecProblem(file, 1, 1, err.reason)]) from None
    return parse_spec(text, file=file, base=path.resolve().parent, path=path, offline=offline)


def parse_spec(
    text: str,
    *,
    file: str = "import.yaml",
    base: Path | None = None,
    path: Path | None = None,
    offline: bool = False,
) -> Spec:
    located = _compose(text, file)
    if not isinstance(located.data, dict):
        raise SpecError(
            [SpecProblem(file, 1, 1, f"the spec must be a mapping, not {_describe(located.data)}")]
        )
    validator = jsonschema.Draft202012Validator(schemas.load("import-spec"))
    problems: list[SpecProblem] = []
    for err in sorted(validator.iter_errors(located.data), key=lambda e: list(e.absolute_path)):
        problems.extend(_schema_problem(err, located, file))
    base = base or Path.cwd()
    if not problems:
        problems = _semantic_problems(located, file, base, offline)
    if problems:
        problems.sort(key=lambda p: (p.line, p.column))
        raise SpecError(problems)
    return _build(_with_defaults(located.data), base, path or Path(file))


def _local_path(base: Path, value: str) -> Path:
    return (base / Path(value).expanduser()).resolve()


def _opt_path(base: Path, value: str | None) -> Path | None:
    return _local_path(base, value) if value else None


def _build(data: dict[str, Any], base: Path, path: Path) -> Spec:
    talos, omni = data["talos"], data["omni"]
    factory, versions = data.get("imageFactory", {}), data.get("versions", {})
    return Spec(
        path=path,
        talos=TalosAccess(
            talosconfig=_opt_path(base, talos.get("talosconfig")),
            context=talos.get("context"),
            endpoints=tuple(talos.get("endpoints", ())),
            nodes=tuple(talos.get("nodes", ())),
        ),
        omni=OmniAccess(
            omniconfig=_opt_path(base, omni.get("omniconfig")),
            context=omni.get("context"),
            url=omni.get("url"),
            service_account_key_file=_opt_path(base, omni.get("serviceAccountKeyFile")),
            ca_file=_opt_path(base, omni.get("caFile")),
            insecure_skip_tls_verify=bool(omni["insecureSkipTLSVerify"]),
        ),
        image_factory=FactoryAccess(
            url=factory.get("url"), ca_file=_opt_path(base, factory.get("caFile"))
        ),
        versions=Versions(
            talos=versions.get("talos"),
            kubernetes=versions.get("kubernetes"),
            initial_talos=versions.get("initialTalos"),
            initial_kubernetes=versions.get("initialKubernetes"),
        ),
        accepted_findings=frozenset(data["findings"]["accept"]),
        force=bool(data["findings"]["force"]),
        health_check=bool(data["healthCheck"]["enabled"]),
        health_check_timeout=parse_duration(data["healthCheck"]["timeout"]),
        backup_directory=_opt_path(base, data.get("backup", {}).get("directory")),
        parallelism=int(data["apply"]["parallelism"]),
        wait_timeout=parse_duration(data["apply"]["waitTimeout"]),
        normalized=data,
    )
