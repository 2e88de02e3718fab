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

from omniport.planner import files
from omniport.planner.errors import UsageProblem
from omniport.planner.machineconfig.contracts import parse_contract
from omniport.planner.machineconfig.document import MachineConfig, emit, parse
from omniport.planner.machineconfig.generate import GenerateOptions, generate
from omniport.planner.machineconfig.secrets import SecretsBundle, bundle_from_config


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
        request.machine_type,  # type: ignore[arg-type]  # generate() refuses other values
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


def read_config_file(path: str) -> MachineConfig:
    """A machine-config file, parsed by :func:`planner.machineconfig.document.parse`."""
    return parse(_read_text(path, "machine config"), source=path)


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


def dump_documents(documents: list[dict[str, Any]]) -> str:
    """Multi-document YAML in Talos's layout (see :func:`planner.machineconfig.document.emit`)."""
    return emit(documents)


def _read_text(path: str, what: str) -> str:
    """Read without blocking on a FIFO, and within the size cap of a config file."""
    try:
        return files.read_text(Path(path), files.CONFIG_LIMIT)
    except FileNotFoundError:
        raise UsageProblem(f"{what} {path} does not exist", "check the path") from None
    except files.Unreadable as err:
        if err.reason == "is not UTF-8 text":
            raise UsageProblem(f"{what} {path} is not UTF-8 text", "pass a YAML file") from None
        if err.reason == "is a directory, not a file":
            raise UsageProblem(f"{what} {path} is a directory", "pass a file") from None
        raise UsageProblem(f"{what} {path} {err.reason}", "pass a regular YAML file") from None
