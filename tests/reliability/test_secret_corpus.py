"""Secrets in user content never reach the terminal, the plan file, the journal or rollback.

A corpus of secret-bearing node configs, each secret a fresh random marker, is patched onto the
lab's nodes; then plan (text and --json), show (text and --json), apply and rollback run as a
user runs them, and every byte they print or write is scanned for every marker. The scan uses
the markers themselves, not omniport's redaction, so a secret redaction misses is found. Node
backups hold whole configs by design (rollback restores from them): they are checked to be
owner-only instead.
"""

from __future__ import annotations

import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.labkit import Result, start_world

pytestmark = pytest.mark.reliability


@dataclass(frozen=True)
class Case:
    name: str
    role: str  # which node gets it: "controlplane" or "worker"
    patch: str  # a strategic patch with {secret} where the marker goes


CORPUS = (
    Case(
        "inlineManifests Secret",
        "controlplane",
        """
cluster:
  inlineManifests:
    - name: app-credentials
      contents: |
        apiVersion: v1
        kind: Secret
        metadata: {{name: app}}
        stringData: {{password: {secret}}}
""",
    ),
    Case(
        "extraManifestHeaders bearer token",
        "controlplane",
        """
cluster:
  extraManifestHeaders:
    Authorization: Bearer {secret}
""",
    ),
    Case(
        "https_proxy with credentials",
        "worker",
        """
machine:
  env:
    https_proxy: http://proxyuser:{secret}@proxy.lab.internal:3128
""",
    ),
    Case(
        "machine.files with an API key",
        "worker",
        """
machine:
  files:
    - path: /var/etc/app.conf
      op: create
      permissions: 0o600
      content: |
        endpoint = https://api.example.com
        api_key = {secret}
""",
    ),
    Case(
        "registry mirror URL with userinfo",
        "worker",
        """
machine:
  registries:
    mirrors:
      quay.io:
        endpoints: ["https://robot:{secret}@mirror.lab.internal"]
""",
    ),
    Case(
        "kubelet extraArgs token",
        "worker",
        """
machine:
  kubelet:
    extraArgs:
      bootstrap-token: {secret}
""",
    ),
)


COMMANDS = ("plan", "plan --json", "show", "show --json", "apply", "rollback")
"""Every command a user runs on a plan, as run here; its stdout and stderr are scanned."""
FILES = ("plan file", "plan file (--json run)", "rollback plan", "journal")
"""Every file those commands write but the backup zip (which holds whole configs, 0600)."""


def _marker() -> str:
    return "Zc" + secrets.token_hex(12)


def test_secret_corpus_stays_out_of_every_output(tmp_path: Path):
    world = start_world(tmp_path / "lab")
    try:
        status = world.status()
        by_role: dict[str, list[str]] = {}
        for node in status["nodes"]:
            by_role.setdefault(node["role"], []).append(node["address"])
        markers: dict[str, str] = {}
        for index, case in enumerate(CORPUS):
            marker = _marker()
            markers[case.name] = marker
            nodes = by_role[case.role]
            world.patch(nodes[index % len(nodes)], case.patch.format(secret=marker))
        outputs: dict[str, Result] = {
            "plan": world.cli("plan", "-o", str(world.plan), str(world.spec)),
        }
        assert outputs["plan"].code == 0, outputs["plan"].text
        outputs["plan --json"] = world.cli(
            "plan", "--json", "-o", str(world.dir / "json.plan"), str(world.spec)
        )
        outputs["show"] = world.cli("show", str(world.plan))
        outputs["show --json"] = world.cli("show", "--json", str(world.plan))
        outputs["apply"] = world.apply()
        assert outputs["apply"].code == 0, outputs["apply"].text
        outputs["rollback"] = world.roll_back()
        assert outputs["rollback"].code == 0, outputs["rollback"].text

        assert tuple(outputs) == COMMANDS
        # the patched content did reach the plan (as redacted text): the corpus is exercised
        assert "(sensitive value)" in outputs["show"].out

        written = {
            p: p.read_bytes()
            for p in (world.plan, world.dir / "json.plan", world.rollback, world.journal)
        }
        assert len(written) == len(FILES)
        leaks = [
            f"{case} in {where}"
            for case, marker in markers.items()
            for where, text in [
                *((f"{k} stdout", r.out) for k, r in outputs.items()),
                *((f"{k} stderr", r.err) for k, r in outputs.items()),
                *((p.name, data.decode(errors="replace")) for p, data in written.items()),
            ]
            if marker in text
        ]
        assert leaks == []
        for path in written:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        backups = [p for p in world.dir.rglob("*backup*") if p.is_file()]
        assert backups, "apply wrote no backup"
        for backup in backups:
            assert stat.S_IMODE(backup.stat().st_mode) == 0o600, backup
            assert stat.S_IMODE(backup.parent.stat().st_mode) & 0o077 == 0, backup.parent
    finally:
        world.stop()
