"""Fuzz targets: the readers of every file a user hands omniport, fed arbitrary bytes.

Each target takes raw bytes and must end in a parsed object or an ``OmniportError`` (one sentence
naming the place and the fix). Any other exception is a crash: the fuzzer keeps the input, and
once fixed it joins ``tests/fuzz/corpus/<target>/``, which every test run replays.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from omniport.planner import planfile
from omniport.planner.errors import OmniportError
from omniport.planner.execute import rollbackfile
from omniport.planner.machineconfig import document
from omniport.planner.spec import parse_spec


def _text(data: bytes) -> str | None:
    """UTF-8 text, as the file readers decode it; other bytes are refused before any parser."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# The files the example specs name, so that fuzzed specs get past the file checks into the rest
SPEC_FILES = ("talosconfig", "omniconfig", "internal-ca.pem")


@cache
def _spec_base() -> Path:
    base = Path(tempfile.mkdtemp(prefix="omniport-fuzz-spec-"))
    for name in SPEC_FILES:
        (base / name).write_text("x\n")
    return base


def spec(data: bytes) -> None:
    text = _text(data)
    if text is not None:
        parse_spec(text, file="import.yaml", base=_spec_base())


def plan(data: bytes) -> None:
    text = _text(data)
    if text is not None:
        planfile.parse(text)


def rollback(data: bytes) -> None:
    text = _text(data)
    if text is not None:
        rollbackfile.parse(text)


def config(data: bytes) -> None:
    """A machine config (what `config validate`, `config patch` and the lab read)."""
    document.parse(data)


def patch(data: bytes) -> None:
    """A strategic-merge patch, read as `config patch` reads one."""
    document.parse(data, patch=True)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "spec": spec,
    "plan": plan,
    "rollback": rollback,
    "config": config,
    "patch": patch,
}


def canary(data: bytes) -> None:
    """A target with a planted bug, to prove the harness reports crashes (not in TARGETS)."""
    if data[:4] == b"FUZZ":
        raise ValueError("planted crash")


def run_one(target: str, data: bytes) -> None:
    """Run one input; our own refusals are the expected outcome, anything else propagates."""
    try:
        (canary if target == "canary" else TARGETS[target])(data)
    except OmniportError as err:
        if not str(err).strip():
            raise AssertionError(f"{target}: an empty error message") from err
