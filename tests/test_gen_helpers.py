"""Shared helpers for the test_gen_* suites: where the Talos fixtures are, and how to read them.

The fixtures live outside the repository (``../shared/talos-fixtures``); tests that need them
skip cleanly when the folder is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.paths import TALOS_FIXTURES

STABILITY = TALOS_FIXTURES / "v1alpha1" / "stability"
MACHINE_TYPES = ("controlplane", "worker")


def fixture(*parts: str) -> Path:
    """A fixture file, or a clean skip when the fixtures are not on this machine."""
    path = TALOS_FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"Talos fixture {'/'.join(parts)} is not available")
    return path


def stability(version: str, name: str) -> Path:
    return fixture("v1alpha1", "stability", f"v{version}", f"{name}.yaml")


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def key_order(value: Any) -> Any:
    """The value with every mapping turned into its ordered list of items (order-sensitive)."""
    if isinstance(value, dict):
        return [(key, key_order(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [key_order(item) for item in value]
    return value


def test_fixture_helper_skips_cleanly_when_absent():
    with pytest.raises(pytest.skip.Exception):
        fixture("no-such-dir", "nothing.yaml")
