"""Counts of interop cases tried and agreed, printed at the end of the pytest run.

Each check records what it compared (``record("gen", "1.11", tried=240, agreed=240)``); the
interop conftest prints the table in pytest's terminal summary, so a CI log shows how much was
proven, not only that the tests passed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Count:
    tried: int = 0
    agreed: int = 0


TABLE: dict[tuple[str, str], Count] = {}


def record(check: str, scope: str, *, tried: int, agreed: int) -> None:
    """Add ``tried``/``agreed`` cases of ``check`` for ``scope`` (a Talos minor, or "omni")."""
    count = TABLE.setdefault((check, scope), Count())
    count.tried += tried
    count.agreed += agreed


def lines() -> list[str]:
    if not TABLE:
        return []
    out = [f"{'check':<28} {'scope':<8} {'tried':>7} {'agreed':>7}"]
    for (check, scope), count in sorted(TABLE.items()):
        out.append(f"{check:<28} {scope:<8} {count.tried:>7} {count.agreed:>7}")
    return out
