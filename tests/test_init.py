"""``omniport init`` against the lab: a commented spec from a live cluster that validates, plans
from discovery, holds no secret, and never replaces a file.

Every run is its own process with an environment built here (a HOME without Talos or Omni
files), so what init infers comes only from the flags and variables each test gives.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from omniport.lab import control
from omniport.planner.spec import load_spec
from tests.paths import REPO


def omniport(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    home = cwd / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "omniport.planner.cli", *args],
        cwd=cwd,
        env={"HOME": str(home), "PATH": os.environ["PATH"], "NO_COLOR": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def secrets(lab) -> list[str]:
    """The key material a spec must never hold: the talosconfig's and the service account's."""
    config = yaml.safe_load((lab.dir / "talosconfig").read_text())
    out = [(lab.dir / "service-account.key").read_text().strip()]
    for ctx in config["contexts"].values():
        out += [ctx["key"], ctx["crt"]]
    return out


def test_init_from_flags_writes_a_spec_that_validates_and_plans(lab, tmp_path):
    result = omniport(
        tmp_path,
        "init",
        "--talosconfig",
        str(lab.dir / "talosconfig"),
        "--context",
        "lab",
        "--omniconfig",
        str(lab.dir / "omniconfig"),
        "--omni-ca-file",
        str(lab.dir / "lab-ca.pem"),
    )
    assert result.returncode == 0, result.stderr
    spec = tmp_path / "import.yaml"
    assert result.stdout == "Wrote import.yaml. Review it, then: omniport plan import.yaml\n"
    assert "3 node(s) from Talos discovery (1 control plane(s)), Talos 1.11.5" in result.stderr
    assert stat.S_IMODE(spec.stat().st_mode) == 0o644
    text = spec.read_text()
    for secret in secrets(lab):
        assert secret not in text
    data = yaml.safe_load(text)
    assert "nodes" not in data["talos"]  # discovered at plan time, listed in a comment
    for address in lab.nodes:
        assert f"#   {address}  " in text
    assert data["talos"]["talosconfig"] == str((lab.dir / "talosconfig").resolve())
    assert data["talos"]["context"] == "lab"
    assert data["omni"]["omniconfig"] == str((lab.dir / "omniconfig").resolve())
    omni_url = yaml.safe_load((lab.dir / "omniconfig").read_text())["contexts"]["lab"]["url"]
    assert data["omni"]["url"] == omni_url
    assert data["versions"] == {"talos": "1.11.5", "kubernetes": "1.34.1"}
    assert load_spec(spec).talos.nodes == ()

    checked = omniport(tmp_path, "validate", "import.yaml")
    assert checked.returncode == 0, checked.stderr
    assert omniport(tmp_path, "validate", "--offline", "import.yaml").returncode == 0

    # plan reads it: the user key of the omniconfig's identity signs, the nodes are discovered
    planned = omniport(
        tmp_path,
        "plan",
        "import.yaml",
        "-o",
        "p.json",
        env={"SIDEROV1_KEYS_DIR": str(lab.dir / "keys")},
    )
    assert planned.returncode in (0, 1), planned.stderr  # 1: findings of this lab's factory
    plan = json.loads((tmp_path / "p.json").read_text())
    assert plan["nodes_source"] == "discovery"
    assert sorted(n["address"] for n in plan["nodes"]) == sorted(lab.nodes)
    assert "3 node(s) discovered from the Talos discovery members" in planned.stdout


def test_init_from_the_environment_keeps_the_key_out(lab, tmp_path):
    """CI's way: TALOSCONFIG, OMNI_ENDPOINT and OMNI_SERVICE_ACCOUNT_KEY in the environment."""
    key = (lab.dir / "service-account.key").read_text().strip()
    omni_url = yaml.safe_load((lab.dir / "omniconfig").read_text())["contexts"]["lab"]["url"]
    env = {
        "TALOSCONFIG": str(lab.dir / "talosconfig"),
        "OMNI_ENDPOINT": omni_url,
        "OMNI_SERVICE_ACCOUNT_KEY": key,
    }
    (tmp_path / "ci").mkdir()
    result = omniport(
        tmp_path,
        "init",
        "ci/cluster.yaml",
        "--omni-ca-file",
        str(lab.dir / "lab-ca.pem"),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "ci" / "cluster.yaml").read_text()
    for secret in secrets(lab):
        assert secret not in text
        assert secret not in result.stdout + result.stderr
    data = yaml.safe_load(text)
    assert "talosconfig" not in data["talos"]  # found through $TALOSCONFIG; plan does the same
    assert "(the talosconfig's selected context now)" in text
    assert data["omni"] == {"url": omni_url, "caFile": str((lab.dir / "lab-ca.pem").resolve())}
    assert "# from $OMNI_ENDPOINT" in text
    assert "comes from $OMNI_SERVICE_ACCOUNT_KEY at plan and apply time (set now)" in text
    planned = omniport(tmp_path, "plan", "ci/cluster.yaml", "-o", "p.json", env=env)
    assert planned.returncode in (0, 1), planned.stderr
    assert json.loads((tmp_path / "p.json").read_text())["nodes_source"] == "discovery"


def test_init_refuses_to_overwrite(lab, tmp_path):
    spec = tmp_path / "import.yaml"
    spec.write_text("# mine\n")
    result = omniport(
        tmp_path,
        "init",
        "--talosconfig",
        str(lab.dir / "talosconfig"),
        "--omni-url",
        "https://omni.example.com",
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: import.yaml already exists, and init never overwrites a file; name another "
        "file (omniport init PATH) or move this one away first"
    )
    assert spec.read_text() == "# mine\n"


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (
            [],
            {},
            "Error: no Omni to point the spec at: no --omni-url, no $OMNI_ENDPOINT and no "
            "omniconfig; set OMNI_ENDPOINT",
        ),
        (["--omni-url", "https://o.example", "--endpoints", "127.0.0.1:9"], {}, "127.0.0.1:9"),
        (["--omni-url", "https://o.example", "--context", "nope"], {}, "nope"),
        (
            ["--omni-url", "https://o.example"],
            {"OMNI_SERVICE_ACCOUNT_KEY": ""},
            "OMNI_SERVICE_ACCOUNT_KEY is set but empty",
        ),
        (["--omniconfig", "missing"], {}, "missing"),
        (["--omni-url", "ftp://o.example"], {}, "--omni-url: Omni URL 'ftp://o.example' must"),
        ([], {"OMNI_ENDPOINT": "o.example:443"}, "$OMNI_ENDPOINT: Omni URL 'o.example:443'"),
        (
            ["--omni-url", "https://ci:hunter2@o.example"],
            {},
            "the Omni URL from --omni-url carries credentials",
        ),
    ],
    ids=[
        "no-omni",
        "dead-endpoint",
        "no-such-context",
        "empty-key",
        "no-omniconfig",
        "bad-url",
        "bad-env-url",
        "url-with-password",
    ],
)
def test_init_errors_are_one_sentence_and_write_nothing(lab, tmp_path, args, env, says):
    result = omniport(
        tmp_path, "init", "--talosconfig", str(lab.dir / "talosconfig"), *args, env=env
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("Error: ") and says in last, result.stderr
    assert "hunter2" not in result.stderr
    assert not (tmp_path / "import.yaml").exists()


def test_init_without_discovery_says_how_to_go_on(lab_factory, tmp_path):
    handle = lab_factory("--nodes", "2", name="init-no-discovery")
    control.patch(
        handle.dir, handle.controlplanes[0], "cluster:\n  discovery:\n    enabled: false\n"
    )
    result = omniport(
        tmp_path,
        "init",
        "--talosconfig",
        str(handle.dir / "talosconfig"),
        "--omni-url",
        "https://omni.example.com",
    )
    assert result.returncode == 1
    assert "Talos discovery lists no members (cluster discovery is disabled)" in result.stderr
    assert "with every node under talos.nodes" in result.stderr
    assert not (tmp_path / "import.yaml").exists()


def test_init_is_in_the_help():
    result = subprocess.run(
        [sys.executable, "-m", "omniport.planner.cli", "init", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    for flag in ("--talosconfig", "--context", "--endpoints", "--omniconfig", "--omni-url"):
        assert flag in result.stdout
