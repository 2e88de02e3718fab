"""`omniport demo`: the newcomer's first command, end to end against a real lab process."""

import re

from omniport.planner.cli import run


def test_demo_plans_applies_rolls_back_and_proves_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert run(["--no-color", "demo"]) == 0
    out = capsys.readouterr().out
    # 11 Omni resources and 3 factory schematic registrations added, 3 nodes joined
    assert "Plan: 14 to add, 3 to change, 0 to destroy." in out
    assert "Apply complete!" in out
    assert "Rollback complete!" in out
    assert len(re.findall(r"byte-identical", out)) == 3
    assert "Omni resources left from the import: 0" in out
    assert "Traceback" not in out
    # the throwaway directory is removed and no lab is left behind
    assert not any(tmp_path.glob("omniport-demo-*"))
