"""``omniport validate --offline``: a spec checked in a pull-request job, which has the spec
but not the talosconfig, keys or CA files it names, and no network.

Each run is a separate process with an environment that holds no Talos or Omni settings and a
HOME without any, as a CI runner has."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

LAB_SPEC = """\
version: 1
talos:
  talosconfig: ./talosconfig
  context: prod
omni:
  url: https://omni.example.com
  caFile: ./ca.pem
  serviceAccountKeyFile: ./service-account.key
versions:
  initialTalos: 1.9.5
findings:
  accept: [DENYLISTED_VALUES]
"""


def validate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "omniport.planner.cli", "validate", *args],
        cwd=tmp_path,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_spec_whose_files_are_not_here_passes_offline(tmp_path):
    (tmp_path / "import.yaml").write_text(LAB_SPEC)
    online = validate(tmp_path, "import.yaml")
    assert online.returncode == 1
    assert "import.yaml:3:16: talos.talosconfig names './talosconfig', which is not a readable" in (
        online.stderr
    )
    offline = validate(tmp_path, "--offline", "import.yaml")
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.startswith(
        "import.yaml: valid import spec for the nodes Talos discovery lists at plan time"
    )
    assert (
        "Offline: not read: talos.talosconfig (./talosconfig), omni.serviceAccountKeyFile "
        "(./service-account.key), omni.caFile (./ca.pem)." in offline.stderr
    )
    # nothing written beside the spec
    assert {p.name for p in tmp_path.iterdir()} == {"import.yaml", "home"}


BAD = [
    (
        "talos: {}\nomni: {url: https://x}\n",
        ["s.yaml:1:1: the spec is missing the required key 'version'"],
    ),
    (
        "version: 1\ntalos: {nodes: [10.0.0.1, 10.0.0.1]}\nomni: {url: ftp://x}\n",
        [
            "s.yaml:2:27: talos.nodes lists '10.0.0.1' twice",
            "s.yaml:3:13: omni.url is 'ftp://x', which is not a URL like https://host[:port]",
        ],
    ),
    (
        "version: 1\ntalos: {}\nomni: {url: https://x}\n"
        "findings: {accept: [CLUSTER_EXIST, NODE_UNREACHABLE]}\n"
        "versions: {talos: 1.9.0, initialTalos: 1.10.0}\n"
        "healthCheck: {timeout: 0s}\n",
        [
            "s.yaml:4:21: unknown finding code CLUSTER_EXIST; did you mean CLUSTER_EXISTS?",
            "s.yaml:4:36: finding code NODE_UNREACHABLE cannot be accepted",
            "s.yaml:5:40: versions.initialTalos (1.10.0) is newer than versions.talos (1.9.0)",
            "s.yaml:6:24: healthCheck.timeout must be longer than 0s",
        ],
    ),
    (
        "version: 1\ntalos: {talosconfig: ./tc}\n"
        "omni: {url: https://x, caFile: ./ca, insecureSkipTLSVerify: true}\n",
        ["s.yaml:3:32: omni.caFile and omni.insecureSkipTLSVerify contradict each other"],
    ),
    ("version: 1\ntalos: [\n", ["s.yaml:3:1: invalid YAML"]),
]


@pytest.mark.parametrize(
    ("text", "expected"), BAD, ids=["required", "shapes", "refs", "tls", "yaml"]
)
def test_errors_are_file_line_col_and_exit_1(tmp_path, text, expected):
    (tmp_path / "s.yaml").write_text(text)
    result = validate(tmp_path, "--offline", "s.yaml")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.removeprefix("Error: ").splitlines()
    assert len(lines) == len(expected), result.stderr
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(want), (line, want)


@pytest.mark.parametrize(
    "example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_example_passes_offline(tmp_path, example):
    result = validate(tmp_path, "--offline", str(example))
    assert result.returncode == 0, result.stderr
