"""JSON Schemas shipped with omniport (import spec, plan file, rollback plan, --json events)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load(name: str) -> dict[str, Any]:
    """The parsed schema ``<name>.schema.json`` (e.g. ``load("import-spec")``)."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)
