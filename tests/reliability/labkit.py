"""A lab seen from outside, for apply/rollback tests: start it, plan, run the CLI, snapshot.

Every command runs as its own process (``python -m planner.cli``), as a user would run it, so a
test can SIGKILL it or send it Ctrl-C. Apply's state (backups, rollback plan, journal, lock)
goes to ``<lab dir>/state/<cluster>/<omni>/`` (OMNIPORT_STATE_DIR), never the developer's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.paths import REPO

SEED_TYPES = {
    "DefaultJoinTokens.omni.sidero.dev",
    "FeaturesConfigs.omni.sidero.dev",
    "SiderolinkAPIConfigs.omni.sidero.dev",
    "SysVersions.system.sidero.dev",
    "TalosVersions.omni.sidero.dev",
}


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass(frozen=True)
class Snapshot:
    """Every node's config bytes and every Omni resource (type, id), from ``lab status``."""

    configs: dict[str, bytes]
    resources: frozenset[tuple[str, str]]

    def extra_resources(self, before: Snapshot) -> set[tuple[str, str]]:
        return set(self.resources - before.resources)


@dataclass
class World:
    """One running lab (stopped by :meth:`stop`), its spec and the plan made from it."""

    dir: Path
    info: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    handle: Any = None
    """The conftest ``LabHandle`` (stops the lab by its pid)."""

    @property
    def spec(self) -> Path:
        return self.dir / "import.yaml"

    @property
    def plan(self) -> Path:
        return self.dir / "import.plan.json"

    @property
    def state(self) -> Path:
        """The cluster's state directory apply writes to (``execute/statedir.py``)."""
        return self.state_in(Path(self.env["OMNIPORT_STATE_DIR"]))

    def state_in(self, base: Path) -> Path:
        """The cluster's state directory under the state base ``base`` (OMNIPORT_STATE_DIR)."""
        from omniport.planner.execute import statedir

        omni_url = yaml.safe_load(self.spec.read_text())["omni"]["url"]
        env = {"OMNIPORT_STATE_DIR": str(base)}
        return statedir.cluster_directory(self.info["cluster"], omni_url, None, env)

    @property
    def rollback(self) -> Path:
        return self.state / "import.plan.rollback.json"

    @property
    def journal(self) -> Path:
        return self.state / "import.plan.journal.jsonl"

    @property
    def nodes(self) -> list[str]:
        return [n["address"] for n in self.info["nodes"]]

    # -- the lab --

    def status(self, *, with_configs: bool = False) -> dict[str, Any]:
        from omniport.lab import control

        return control.status(self.dir, with_configs=with_configs)

    def fault(self, **change: Any) -> None:
        from omniport.lab import control

        control.fault(self.dir, change)

    def patch(self, node: str, text: str) -> dict[str, Any]:
        from omniport.lab import control

        return control.patch(self.dir, node, text)

    def snapshot(self) -> Snapshot:
        status = self.status(with_configs=True)
        return Snapshot(
            configs={n["address"]: n["config"].encode() for n in status["nodes"]},
            resources=frozenset((r["type"], r["id"]) for r in status["omni"]["resources"]),
        )

    def stop(self) -> None:
        self.handle.stop()

    # -- omniport --

    def tune(self, **sections: dict[str, Any]) -> None:
        """Merge settings into the lab's import spec (e.g. apply={"waitTimeout": "3s"})."""
        data = yaml.safe_load(self.spec.read_text())
        for key, value in sections.items():
            data.setdefault(key, {}).update(value)
        self.spec.write_text(yaml.safe_dump(data, sort_keys=False))

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Result:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "omniport.planner.cli", *args],
            cwd=REPO,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "omniport.planner.cli", *args],
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def make_plan(self) -> None:
        """Plan in this process (as ``omniport plan`` does), to keep crash matrices fast."""
        from omniport.planner import planfile
        from omniport.planner.planning import make_plan
        from omniport.planner.spec import load_spec

        computed = asyncio.run(make_plan(load_spec(self.spec), env=self.env))
        assert not computed.plan.blocking_findings, [
            f.code for f in computed.plan.blocking_findings
        ]
        planfile.write(computed.plan, self.plan)

    def apply(self, *extra: str, env: dict[str, str] | None = None) -> Result:
        return self.cli("apply", "--auto-approve", *extra, str(self.plan), env=env)

    def roll_back(self, *extra: str, env: dict[str, str] | None = None) -> Result:
        return self.cli("rollback", "--auto-approve", *extra, str(self.rollback), env=env)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line]

    def wait_for_record(self, predicate: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.journal.exists():
                try:
                    if any(predicate(r) for r in self.records()):
                        return
                except ValueError:
                    pass  # a record being written
            time.sleep(0.02)
        raise AssertionError("the journal never showed the awaited record")


def start_world(directory: Path, *args: str) -> World:
    """``omniport lab up --dir DIRECTORY ARGS`` (tests/conftest.py), ready to plan."""
    from tests.conftest import start_lab

    handle = start_lab(directory, *args)
    env = {
        **os.environ,
        "OMNIPORT_STATE_DIR": str(directory / "state"),
        "NO_COLOR": "1",
    }
    env.pop("OMNIPORT_TEST_KILL_AFTER_RECORD", None)
    env.pop("OMNIPORT_LOCK_DIR", None)
    return World(directory, handle.info, env, handle)


def assert_restored(world: World, before: Snapshot) -> None:
    """Every node byte-identical to ``before``, and nothing of the import left in Omni."""
    after = world.snapshot()
    changed = [a for a in before.configs if after.configs.get(a) != before.configs[a]]
    assert not changed, f"node configs differ from before: {changed}"
    extra = after.extra_resources(before)
    assert not extra, f"left in Omni: {sorted(extra)}"
    assert after.resources == before.resources


def secrets_of(*snapshots: Snapshot) -> set[str]:
    """Every secret string in the node configs of ``snapshots`` (what redaction hides)."""
    from omniport.planner.execute.secrets import config_secrets

    found: set[str] = set()
    for snapshot in snapshots:
        for config in snapshot.configs.values():
            found |= config_secrets(config)
    return found


def assert_no_secret(world: World, before: Snapshot, *texts: str) -> None:
    """No node secret in ``texts``, nor in the journal and rollback plan apply wrote."""
    files = [p.read_text() for p in (world.journal, world.rollback) if p.exists()]
    leaked = {s for s in secrets_of(before) for t in [*texts, *files] if s in t}
    assert not leaked, f"{len(leaked)} secret(s) leaked"


def interrupt(proc: subprocess.Popen[str], times: int = 1, gap: float = 0.3) -> tuple[str, str]:
    for n in range(times):
        if n:
            time.sleep(gap)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return out, err
