# Sourced by scripts/*: create (or reuse) the project's virtualenv and install omniport into it.
# OMNIPORT_VENV overrides the location; OMNIPORT_FRESH=1 recreates it from scratch.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${OMNIPORT_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [ "${OMNIPORT_FRESH:-0}" = "1" ]; then rm -rf "$venv"; fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.omniport-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
