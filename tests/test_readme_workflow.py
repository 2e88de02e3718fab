"""What a newcomer meets first: the set-up script's first run, and the hints after the demo.

The README's first commands run ``scripts/_venv.sh``; its first run installs dependencies for
about a minute, so it must say what it is doing as it goes. After it, ``omniport`` lives in a
virtualenv that is not on ``PATH``: every command the demo tells the user to run next must run
when pasted into a shell that has not activated it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

from omniport.lab import control
from tests.paths import REPO

# A stand-in for python3: `-m venv DIR` makes DIR/bin/python, a fake whose pip prints the
# "Collecting" lines a real pip prints, then waits before finishing, so the test can see
# whether the set-up script's progress reached the terminal while the install still ran.
FAKE_PYTHON = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
      mkdir -p "$3/bin"
      cp "$0" "$3/bin/python"
      exit 0
    fi
    echo "$*" >> "$(dirname "$0")/calls"
    case "$*" in
      *" -e "*)
        echo "Collecting click>=8.1"
        echo "  Downloading click-8.1.7-py3-none-any.whl (97 kB)"
        echo "Collecting grpclib>=0.4.7"
        sleep 3
        echo "Successfully installed click grpclib" ;;
    esac
    """
)


def test_first_install_is_not_silent(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    env = {**os.environ, "PYTHON": str(fake), "OMNIPORT_VENV": str(venv), "OMNIPORT_FRESH": "0"}
    proc = subprocess.Popen(
        ["bash", "-c", f"source {shlex.quote(str(REPO / 'scripts' / '_venv.sh'))}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    while not any("fetching grpclib" in line for line in seen):
        line = proc.stderr.readline()
        assert line, f"the set-up script ended before naming what it installs: {seen}"
        seen.append(line)
    # the package lines arrived while pip was still working, not all at the end
    assert proc.poll() is None
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    lines = [*seen, *rest.splitlines()]
    text = "".join(seen) + rest
    assert "creating the virtualenv" in lines[0]
    assert "installing omniport and its dependencies" in text
    assert "fetching click>=8.1" in text
    assert "Downloading" not in text  # pip's chatter stays out
    assert re.search(r"installed in \d+ s; to use `omniport` in this shell: \. .*/activate", text)
    calls = (venv / "bin" / "calls").read_text()
    assert "-e " + str(REPO) + "[test]" in calls
    # the second run is quiet: nothing to install, nothing to say
    again = subprocess.run(
        ["bash", "-c", f"source {shlex.quote(str(REPO / 'scripts' / '_venv.sh'))}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert again.stderr == ""


def _demo_keep(tmp_path: Path, path: str) -> tuple[str, Path]:
    omniport = Path(sys.executable).parent / "omniport"
    env = {**os.environ, "PATH": path, "TMPDIR": str(tmp_path), "NO_COLOR": "1"}
    done = subprocess.run(
        [str(omniport), "demo", "--keep"], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"The lab is still running in (\S+)\. Try:", done.stdout)
    assert match, done.stdout
    return done.stdout, Path(match.group(1))


def _stop_lab(lab_dir: Path) -> None:
    if control.running_pid(lab_dir) is not None:
        control.down(lab_dir)


def test_demo_keep_hints_run_without_activating_the_virtualenv(tmp_path: Path) -> None:
    bare_path = "/usr/bin:/bin"  # a shell that never activated the virtualenv
    out, lab_dir = _demo_keep(tmp_path, bare_path)
    try:
        hints = [line.strip() for line in out.split("Try:", 1)[1].splitlines() if line.strip()]
        commands = [h for h in hints if " lab " in h or " plan " in h]
        assert len(commands) == 3, hints
        assert not any(c.startswith("omniport ") for c in commands)
        assert any("is not on your PATH" in h and "/activate" in h for h in hints)
        env = {**os.environ, "PATH": bare_path}
        status = subprocess.run(commands[0], shell=True, capture_output=True, text=True, env=env)
        assert status.returncode == 0, status.stderr
        assert "127.1.0.1" in status.stdout
        down = subprocess.run(commands[2], shell=True, capture_output=True, text=True, env=env)
        assert down.returncode == 0, down.stderr
        assert control.running_pid(lab_dir) is None
    finally:
        _stop_lab(lab_dir)


def test_demo_keep_says_plain_omniport_when_it_is_on_path(tmp_path: Path) -> None:
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    out, lab_dir = _demo_keep(tmp_path, path)
    try:
        assert f"  omniport lab down --dir {lab_dir}" in out
        assert "is not on your PATH" not in out
    finally:
        _stop_lab(lab_dir)


def test_readme_says_how_to_install_and_activate() -> None:
    readme = (REPO / "README.md").read_text()
    assert ". .venv/bin/activate" in readme
    for installer in ("pipx install", "uv tool install", "pip install"):
        assert installer in readme, installer
    for heading in ("## Install", "## Before a real cluster", "## Limits"):
        assert heading in readme, heading
