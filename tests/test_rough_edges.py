"""Rough edges met on the way from a real cluster to a merged pull request (issue 15 item 10).

Each test drives the command as a user would (a process per command, against a lab started
for the test and stopped by its pid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.reliability.labkit import World


def insecure_spec(world: World) -> None:
    data: dict[str, Any] = yaml.safe_load(world.spec.read_text())
    data["omni"].pop("caFile", None)
    data["omni"]["insecureSkipTLSVerify"] = True
    world.spec.write_text(yaml.safe_dump(data, sort_keys=False))


def test_insecure_tls_is_a_formatted_warning_for_every_command(world: World):
    """plan reports OMNI_TLS_UNVERIFIED as a finding; commands without findings (abort here)
    print one formatted line, never Python's ``file:line: InsecureTLSWarning`` text."""
    insecure_spec(world)
    planned = world.cli("plan", str(world.spec), "-o", str(world.plan))
    assert planned.code == 0, planned.text
    assert "Warning: [OMNI_TLS_UNVERIFIED]" in planned.out
    assert "InsecureTLSWarning" not in planned.text and ".py:" not in planned.err
    aborted = world.cli("abort", "lab", "--spec", str(world.spec), "--auto-approve")
    assert "InsecureTLSWarning" not in aborted.text and ".py:" not in aborted.err, aborted.err
    warnings = [ln for ln in aborted.err.splitlines() if ln.startswith("Warning: ")]
    assert len(warnings) == 1, aborted.err
    assert "TLS certificate verification for Omni at" in warnings[0]
    assert "is OFF" in warnings[0]


def lab_processes_for(directory: Path) -> list[int]:
    """Pids of lab servers whose command line names ``directory`` (read from /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"omniport.lab.server" in argv and str(directory).encode() in argv:
            found.append(int(proc.name))
    return found


def test_the_lab_process_itself_refuses_bad_options_before_it_daemonises(tmp_path):
    """Any caller of ``lab.control.up`` (the demo, tests) gets the same sentence."""
    from omniport.lab import control

    directory = tmp_path / "lab"
    with pytest.raises(control.LabError) as err:
        control.up(directory, control.UpOptions(nodes=2, controlplanes=3))
    assert err.value.message == "--controlplanes must be at least 1 and at most --nodes"
    assert not (directory / control.LAB_JSON).exists()
    assert lab_processes_for(directory) == []
