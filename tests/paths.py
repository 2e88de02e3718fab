"""Where the tests find files that are not test modules: the repository and ``../shared``.

``../shared`` (beside the repository) holds data too large or too foreign to commit: the Talos
fixtures written by ``talosctl`` (``talos-fixtures/``) and reference notes. Every test module
takes these paths from here, so the layout is written down once; tests that need the fixtures
skip cleanly when the folder is absent (see :func:`talos_fixture` and the ``talos_fixtures``
fixture in ``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
"""The repository's root (pyproject.toml, examples/, lab/, ...)."""
SHARED = REPO.parent / "shared"
"""Data shared by every checkout on this machine, outside the repository."""
TALOS_FIXTURES = SHARED / "talos-fixtures"
"""Files written by Talos's own tools (talosctl gen config, secrets bundles, ...)."""


def talos_fixture(*parts: str) -> Path:
    """The Talos fixture file at ``parts``, or a clean skip when it is not on this machine."""
    path = TALOS_FIXTURES.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"Talos fixture {'/'.join(parts)} is not available")
    return path
