"""File side of ``omniport config gen`` and ``omniport config secrets``.

The engine in :mod:`planner.machineconfig` is pure; this module reads the files it needs,
calls it, and writes results. Everything written here may hold secrets (CA keys, tokens), so
files are created with mode 0600 and replaced atomically. Every failure is an
:class:`~planner.errors.OmniportError` that names the file and the fix.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from planner.errors import OmniportError, UsageProblem
from planner.machineconfig.contracts import parse_contract
from planner.machineconfig.generate import GenerateOptions, generate
from planner.machineconfig.secrets import SecretsBundle, bundle_from_config


class ConfigFileError(OmniportError):
    """A machine-config file that cannot be read as YAML documents."""


@dataclass(frozen=True)
class GenRequest:
    """What ``omniport config gen`` was asked for."""

    talos_version: str
    kubernetes_version: str
    cluster_name: str
    endpoint: str
    secrets_path: str
    machine_type: str
    options: GenerateOptions = field(default_factory=GenerateOptions)


def config_gen(request: GenRequest) -> str:
    """The generated config as YAML text (multi-document)."""
    contract = parse_contract(request.talos_version)
    bundle = read_secrets_file(request.secrets_path)
    documents = generate(
        request.machine_type,  # type: ignore[arg-type] - checked by generate
        contract=contract,
        cluster_name=request.cluster_name,
        endpoint=request.endpoint,
        kubernetes_version=request.kubernetes_version,
        secrets=bundle,
        options=request.options,
    )
    return dump_documents(documents)


def config_secrets(config_path: str) -> str:
    """The secrets bundle of a control-plane config file, as ``talosctl gen secrets`` YAML."""
    documents = read_config_file(config_path)
    return bundle_from_config(documents, source=config_path).to_yaml()


def read_secrets_file(path: str) -> SecretsBundle:
    """Load and fully validate a secrets bundle file."""
    text = _read_text(path, "secrets file")
    return SecretsBundle.from_yaml(text, source=path).validate(source=path)


def read_config_file(path: str) -> list[dict[str, Any]]:
    """The YAML documents of a machine-config file (empty documents dropped)."""
    text = _read_text(path, "machine config")
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "malformed YAML"
        raise ConfigFileError(
            f"{path}{where} is not valid YAML: {problem}", "pass a Talos machine config file"
        ) from None
    except (ValueError, RecursionError) as err:
        raise ConfigFileError(
            f"{path} is not valid YAML ({type(err).__name__})", "pass a Talos machine config file"
        ) from None
    for index, doc in enumerate(documents, 1):
        if not isinstance(doc, dict):
            raise ConfigFileError(
                f"{path}: document {index} is not a mapping", "pass a Talos machine config file"
            )
    return documents


def write_private_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (temp file, fsync, rename)."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    except OSError as err:
        raise UsageProblem(
            f"cannot write {path}: {err.strerror or err}", "choose a writable output path"
        ) from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise UsageProblem(
            f"cannot write {path}: {err.strerror or err}", "choose a writable output path"
        ) from None


class _TalosDumper(yaml.SafeDumper):
    """YAML close to Talos's: 4-space indent, lists indented under their key, PEM as ``|``."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # PyYAML falls back to a quoted style by itself when a block scalar cannot hold the text.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_TalosDumper.add_representer(str, _represent_str)


def dump_documents(documents: list[dict[str, Any]]) -> str:
    """Multi-document YAML in Talos's layout, keeping each document's key order."""
    return yaml.dump_all(
        documents,
        Dumper=_TalosDumper,
        sort_keys=False,
        indent=4,
        width=1 << 30,
        default_flow_style=False,
        allow_unicode=True,
    )


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageProblem(f"{what} {path} does not exist", "check the path") from None
    except IsADirectoryError:
        raise UsageProblem(f"{what} {path} is a directory", "pass a file") from None
    except UnicodeDecodeError:
        raise UsageProblem(f"{what} {path} is not UTF-8 text", "pass a YAML file") from None
    except OSError as err:
        raise UsageProblem(
            f"cannot read {what} {path}: {err.strerror or err}", "check the path and permissions"
        ) from None
