"""How to spell ``omniport`` in a command the user is told to run next.

After ``scripts/demo`` the program lives in a virtualenv that is not on ``PATH``: a hint that
says ``omniport lab down`` would fail when pasted. Hints use :func:`program` instead: the bare
name when ``PATH`` finds this very program, else its full path (or ``python -m`` form).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def _running_script() -> Path | None:
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name != "omniport":
        return None
    found = shutil.which(argv0) if os.sep not in argv0 else argv0
    return Path(found).resolve() if found else None


def program() -> str:
    """The command that runs this omniport from the user's shell, as they would type it."""
    script = _running_script()
    on_path = shutil.which("omniport")
    if on_path and (script is None or Path(on_path).resolve() == script):
        return "omniport"
    if script is not None:
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m omniport.planner.cli"


def activation_hint() -> str | None:
    """One sentence saying how to put omniport on ``PATH``, or None when it already is there."""
    if program() == "omniport":
        return None
    activate = Path(sys.executable).parent / "activate"
    if activate.is_file():
        return f"omniport is not on your PATH; `. {shlex.quote(str(activate))}` puts it there."
    return "omniport is not on your PATH; see the README's install section (pipx, uv or pip)."
