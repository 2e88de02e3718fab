"""The wheel as a user installs it: one import name, its licence, and no clash with other packages.

Before the `omniport` namespace, the wheel installed `planner`, `providers`, `lab` and `schemas`
as top-level packages, names that other distributions also use; installing one of those next to
omniport broke `omniport --version`. These tests build the real wheel, install it into a fresh
virtualenv that already holds packages with those four names, and run the demo from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from omniport.planner import __version__

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("planner", "providers", "lab", "schemas")
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")


def _run(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # a copy, because setuptools builds inside the source tree (build/, *.egg-info)
    source = tmp_path_factory.mktemp("source") / "omniport"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source, timeout=900)
    (built,) = out.glob("omniport-*.whl")
    return built


def test_pyproject_lists_every_package_folder():
    """A subpackage folder missing from `packages` would be left out of the wheel silently."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        "omniport." + ".".join(init.parent.relative_to(REPO).parts)
        for folder in FOLDERS
        for init in (REPO / folder).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert listed == on_disk
    assert config["package-dir"] == {f"omniport.{f}": f for f in FOLDERS}


def test_wheel_installs_one_top_level_name_with_its_licence(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = f"omniport-{__version__}.dist-info"
        tops = {name.split("/")[0] for name in names}
        assert tops == {"omniport", dist_info}
        # an implicit namespace: no omniport/__init__.py, one folder per subpackage
        assert "omniport/__init__.py" not in names
        assert {n.split("/")[1] for n in names if n.startswith("omniport/")} == set(FOLDERS)
        assert f"{dist_info}/licenses/LICENSE" in names
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        assert archive.read(f"{dist_info}/licenses/LICENSE").startswith(b"Mozilla Public License")
    assert "License-Expression: MPL-2.0" in metadata
    assert f"Version: {__version__}" in metadata
    assert "omniport/schemas/import-spec.schema.json" in names
    assert all(f"omniport/{f}/py.typed" in names for f in FOLDERS)
    assert "omniport/providers/wire/machine/machine_pb2.pyi" in names
    # no test, bench or proto source rides along
    assert not any(n.startswith(("omniport/tests", "tests/", "bench/")) for n in names)


def test_imports_name_only_what_is_declared():
    """Every third-party module the package imports is a declared dependency (and back)."""
    import ast

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip() for d in declared}
    module_of = {"pyyaml": "yaml", "protobuf": "google", "standard-imghdr": None}
    wanted = {module_of.get(n, n) for n in names} - {None}
    stdlib = set(sys.stdlib_module_names)
    imported = set()
    for folder in FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module.split(".")[0])
    third_party = imported - stdlib - {"omniport"}
    assert third_party == wanted


def test_wheel_works_beside_packages_named_like_its_folders(wheel: Path, tmp_path: Path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    )
    # other distributions' top-level packages with the names of omniport's folders
    for name in FOLDERS:
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(
            f"raise ImportError('this is another project\\'s {name}, not omniport\\'s')\n"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(NO_COLOR="1", TMPDIR=str(tmp_path))
    _run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, env=env)
    omniport = env_dir / "bin" / "omniport"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    version = _run(omniport, "--version", cwd=elsewhere, env=env).stdout
    assert version.strip() == f"omniport, version {__version__}"
    where = _run(python, "-c", "import omniport.planner as p; print(p.__file__)", cwd=elsewhere)
    assert where.stdout.startswith(str(site))
    demo = _run(omniport, "demo", cwd=elsewhere, env=env, timeout=600).stdout
    assert "Apply complete!" in demo
    assert "Rollback complete!" in demo
    assert "Omni resources left from the import: 0" in demo
