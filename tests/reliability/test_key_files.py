"""Files holding private keys that others may read get an ssh-style warning (issue 16, item 7).

``plan`` warns about the talosconfig and the service-account key file (the KEY_FILE_EXPOSED
finding, tests/test_plan_lab_findings.py). The CA keys reach omniport in ``config gen
--secrets`` (a secrets bundle) and ``config secrets --from-controlplane-config`` (a control
plane's machine config): both warn, on stderr, once the file proved to hold them, and say how
to fix it; an owner-only file, or a file that is not what it claims, gets no warning.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from omniport.planner.cli import run
from tests.paths import talos_fixture

pytestmark = pytest.mark.reliability

GEN = (
    "config",
    "gen",
    "--talos-version",
    "v1.11.5",
    "--kubernetes-version",
    "1.34.1",
    "--cluster-name",
    "prod",
    "--endpoint",
    "https://prod:6443",
    "--type",
    "worker",
)


def _secrets(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.yaml"
    path.write_bytes(talos_fixture("v1alpha1", "stability", "secrets.yaml").read_bytes())
    return path


def _controlplane(tmp_path: Path) -> Path:
    path = tmp_path / "cp.yaml"
    source = talos_fixture("v1alpha1", "stability", "v1.11", "base-controlplane.yaml")
    path.write_bytes(source.read_bytes())
    return path


def _invoke(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


CASES = [
    ("config-gen-secrets", _secrets, lambda p: (*GEN, "--secrets", str(p)), "CA keys"),
    (
        "config-secrets-controlplane",
        _controlplane,
        lambda p: ("config", "secrets", "--from-controlplane-config", str(p)),
        "CA keys (a control-plane config)",
    ),
]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["world", "group", "others-only"])
@pytest.mark.parametrize(
    ("make", "args", "holds"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_key_file_readable_by_others_is_warned_about(tmp_path, capsys, make, args, holds, mode):
    path = make(tmp_path)
    path.chmod(mode)
    code, out, err = _invoke(capsys, *args(path))
    assert code == 0, err
    assert out, "the command still does its work"
    assert err == (
        f"Warning: {path} holds the cluster's {holds} and is readable by others "
        f"(mode {mode:04o}); make it owner-only: chmod 600 {path}\n"
    )
    assert path.stat().st_mode & 0o777 == mode, "the warning changes nothing"


@pytest.mark.parametrize(
    ("make", "args", "holds"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_an_owner_only_key_file_gets_no_warning(tmp_path, capsys, make, args, holds):
    path = make(tmp_path)
    path.chmod(0o600)
    code, out, err = _invoke(capsys, *args(path))
    assert code == 0 and out and err == "", err


def test_a_file_that_is_not_a_secrets_bundle_gets_its_error_not_a_warning(tmp_path, capsys):
    path = tmp_path / "secrets.yaml"
    path.write_text("- a\n- b\n")
    path.chmod(0o644)
    code, out, err = _invoke(capsys, *GEN, "--secrets", str(path))
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and "Warning" not in err
