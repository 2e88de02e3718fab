# Sourced by scripts/*: create (or reuse) the project's virtualenv and install omniport into it.
# OMNIPORT_VENV overrides the location; OMNIPORT_FRESH=1 recreates it from scratch. The first run
# downloads the dependencies (~40 s): it says what it is doing on stderr, one line per package,
# so a newcomer never watches a silent terminal.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${OMNIPORT_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
say() { printf '%s\n' "$*" >&2; }
# fresh once: scripts sourced from here on (scripts/typecheck from scripts/test) reuse it
if [ "${OMNIPORT_FRESH:-0}" = "1" ]; then rm -rf "$venv"; export OMNIPORT_FRESH=0; fi
if [ ! -x "$venv/bin/python" ]; then
  say "omniport: creating the virtualenv $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.omniport-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  started=$SECONDS
  say "omniport: installing omniport and its dependencies into $venv (first run: about a minute)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  # pip's own "Collecting X" lines are the progress; everything else it says stays out of the way.
  "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -e "$root[test]" \
    | sed -u -n -e 's/^Collecting \([^ ]*\).*/omniport:   fetching \1/p' >&2
  touch "$stamp"
  say "omniport: installed in $((SECONDS - started)) s; to use \`omniport\` in this shell: . $venv/bin/activate"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
