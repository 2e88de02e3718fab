"""Drive the Go programs under tests/interop from pytest.

Each ``talos-X.Y`` program answers machine-config cases with machinery's own code for that Talos
minor (see ``oracle/``): one process per batch, cases and answers as JSON Lines, in order. The
programs are built by ``tests/interop/build`` into ``tests/interop/.build/bin``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INTEROP = Path(__file__).resolve().parent
BIN = INTEROP / ".build" / "bin"
BUILD = INTEROP / "build"

# Talos minor -> the machinery release its oracle is built with (go.mod pins the same).
MACHINERY = {
    "1.9": "v1.9.5",
    "1.10": "v1.10.9",
    "1.11": "v1.11.6",
    "1.12": "v1.12.7",
    "1.13": "v1.13.8",
    "1.14": "v1.14.1",
}
# Omni's client release the `omni` program is built with, and the machinery it pairs with.
OMNI_CLIENT = "v1.9.3"


class GoMissing(RuntimeError):
    """No Go toolchain: a skip on a developer machine, a failure in CI (CI=true)."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def build(*names: str) -> None:
    """Build the named programs (all when none), reusing Go's build cache."""
    if shutil.which("go") is None:
        raise GoMissing("'go' is not on PATH")
    proc = subprocess.run(
        ["bash", str(BUILD), *names], capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tests/interop/build failed:\n{proc.stdout}\n{proc.stderr}")


@dataclass(frozen=True)
class Oracle:
    """One Talos minor's oracle program."""

    minor: str

    @property
    def path(self) -> Path:
        return BIN / f"talos-{self.minor}"

    def version(self) -> str:
        out = subprocess.run([self.path, "version"], capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def ask(self, cases: Iterable[Mapping[str, Any]], timeout: float = 600) -> list[dict[str, Any]]:
        """Answers for ``cases``, in order. Every case needs a unique ``id``."""
        cases = list(cases)
        payload = "".join(json.dumps(c, separators=(",", ":")) + "\n" for c in cases)
        proc = subprocess.run(
            [self.path], input=payload, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(f"oracle {self.minor} failed: {proc.stderr.strip()}")
        answers = [json.loads(line) for line in proc.stdout.splitlines() if line]
        if [a["id"] for a in answers] != [c["id"] for c in cases]:
            raise RuntimeError(f"oracle {self.minor} answered out of order or short")
        return answers
