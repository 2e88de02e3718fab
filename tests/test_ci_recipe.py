"""docs/ci.md, run: its GitHub Actions workflow and its GitLab CI file, against the lab.

The two YAML files are taken from the page as written and run job by job (plan on a pull
request, apply on merge, the manual rollback) with bash, ``-eo pipefail`` as both services run
scripts. Each job gets its own ``git clone`` of a cluster repository at its own path, as
runners do, and the secrets as the CI systems hand them over (GitHub: a string; GitLab's File
variable: a path). What the services themselves do is done here, small and strict:

- ``uses:`` steps: checkout (the clone), setup-python (this interpreter), upload-artifact and
  download-artifact (files kept between jobs, by run id and name; paths inside the artifact as
  upload-artifact keeps them: relative to the search paths' least common ancestor, the part of
  each pattern before its first wildcard), the sticky comment (its file is read and must fit a
  GitHub comment); any other action fails the test;
- ``gh`` and ``curl`` are stubs on PATH answering exactly the API calls the page makes (each
  call must be one the stub knows, with the token) with what GitHub's or GitLab's API returns;
- the install line is not run (no network here): the ``omniport`` on PATH is this checkout's.

Then the lab is checked: imported after apply, byte-identical after rollback, and no secret in
any comment or artifact (the backup is uploaded encrypted only).
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from omniport.planner import planfile
from omniport.planner.render_markdown import GITHUB_COMMENT_LIMIT
from tests.paths import REPO
from tests.reliability.labkit import World, assert_restored, secrets_of

DOC = REPO / "docs" / "ci.md"
GITHUB_FILE = ".github/workflows/omniport.yml"
GITLAB_FILE = ".gitlab-ci.yml"
GITLAB_API = "https://gitlab.example/api/v4/projects/42"

_MISSING = [tool for tool in ("bash", "git", "openssl") if shutil.which(tool) is None]
if _MISSING and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
    pytest.skip(
        f"the CI recipe needs {', '.join(_MISSING)} on PATH (with CI=true: a failure)",
        allow_module_level=True,
    )


def documented(name: str) -> dict[str, Any]:
    """The YAML block of docs/ci.md whose first line is ``# NAME``."""
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S):
        if block.startswith(f"# {name}\n"):
            return yaml.safe_load(block)
    raise AssertionError(f"docs/ci.md has no yaml block starting with '# {name}'")


# ---- the stubs of the services' command-line clients ---------------------------------------

STUB = """#!{python}
import json, os, sys
state_path = os.environ["CI_RECIPE_STUB_STATE"]
state = json.load(open(state_path))
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
def fail(why):
    sys.stderr.write(f"{{tool}} stub: {{why}}: {{args}}\\n")
    sys.exit(22)
if tool == "gh":
    if not os.environ.get("GH_TOKEN"):
        fail("no GH_TOKEN")
    key = " ".join(args)
    if key not in state["gh"]:
        fail("a call the recipe test does not expect")
    print(state["gh"][key])
    sys.exit(0)
headers, output, data, method, url = [], None, [], None, None
i = 0
while i < len(args):
    a = args[i]
    if a in ("--header", "-H"):
        headers.append(args[i + 1]); i += 2; continue
    if a in ("--output", "-o"):
        output = args[i + 1]; i += 2; continue
    if a == "--data-urlencode":
        data.append(args[i + 1]); i += 2; continue
    if a in ("--request", "-X"):
        method = args[i + 1]; i += 2; continue
    if a in ("--fail", "--silent", "--show-error", "--location"):
        i += 1; continue
    if a.startswith("https://") and url is None:
        url = a; i += 1; continue
    fail("an option the stub does not know")
method = method or ("POST" if data else "GET")
if "PRIVATE-TOKEN: " + state["token"] not in headers:
    fail("no PRIVATE-TOKEN header with the project access token")
if method == "POST" and url.endswith("/notes"):
    (body,) = data
    assert body.startswith("body@"), body
    state["comments"].append(open(body[5:]).read())
    json.dump(state, open(state_path, "w"))
    print(json.dumps({{"id": len(state["comments"])}}))
    sys.exit(0)
answer = state["curl"].get(method + " " + url)
if answer is None:
    fail("a call the recipe test does not expect")
if answer.startswith("file:"):
    if output is None:
        fail("a binary answer without --output")
    with open(answer[5:], "rb") as src, open(output, "wb") as dst:
        dst.write(src.read())
else:
    sys.stdout.write(answer)
"""


@dataclass
class Services:
    """What GitHub or GitLab keep between jobs: artifacts, API answers, posted comments."""

    root: Path
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    artifacts: dict[tuple[str, str], Path] = field(default_factory=dict)
    gh: dict[str, str] = field(default_factory=dict)
    curl: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bin = self.root / "bin"
        self.bin.mkdir(parents=True)
        for tool in ("gh", "curl"):
            stub = self.bin / tool
            stub.write_text(STUB.format(python=sys.executable))
            stub.chmod(0o755)
        self.state = self.root / "state.json"
        self.save([])

    def save(self, comments: list[str]) -> None:
        state = {"gh": self.gh, "curl": self.curl, "token": self.token, "comments": comments}
        self.state.write_text(json.dumps(state))

    def comments(self) -> list[str]:
        return json.loads(self.state.read_text())["comments"]


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def base_env(world: World, services: Services, temp: Path) -> dict[str, str]:
    """A runner's environment: this checkout's omniport and the stubs first on PATH. Nothing
    of the developer's: no state directory (the page's jobs set one; else it, and the lock, go
    under the runner's HOME)."""
    path = os.pathsep.join(
        [str(services.bin), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    )
    return {
        "PATH": path,
        "HOME": str(temp / "home"),
        "TMPDIR": str(temp),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "CI_RECIPE_STUB_STATE": str(services.state),
    }


@dataclass
class Repo:
    """The cluster repository (the spec of the lab, no key file in it) and its clones."""

    origin: Path
    spec_path: str

    def clone(self, where: Path) -> Path:
        where.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "-q", str(self.origin), str(where)], check=True)
        return where


def cluster_repo(world: World, root: Path, spec_path: str) -> Repo:
    origin = root / "origin"
    spec = yaml.safe_load(world.spec.read_text())
    del spec["talos"]["talosconfig"], spec["omni"]["serviceAccountKeyFile"]
    # the page's jobs choose where apply's state goes ($OMNIPORT_STATE_DIR): the spec must not
    assert "state" not in spec and "backup" not in spec, spec
    target = origin / spec_path
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy2(world.dir / "lab-ca.pem", target.parent / "lab-ca.pem")  # public: Omni's CA
    git = ["git", "-C", str(origin), "-c", "user.name=ci", "-c", "user.email=ci@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(origin)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "import prod"], check=True)
    return Repo(origin, spec_path)


def lab_secrets(world: World) -> dict[str, str]:
    return {
        "TALOSCONFIG": (world.dir / "talosconfig").read_text(),
        "OMNI_SERVICE_ACCOUNT_KEY": (world.dir / "service-account.key").read_text().strip(),
        "OMNIPORT_BACKUP_PASSPHRASE": secrets.token_urlsafe(24),
    }


def assert_secret_free(world: World, ci_secrets: dict[str, str], texts: list[str]) -> None:
    """No node secret, CI secret or talosconfig key in ``texts``."""
    contexts = yaml.safe_load(ci_secrets["TALOSCONFIG"])["contexts"].values()
    keys = {c["key"] for c in contexts if c.get("key")}
    assert keys, "the talosconfig holds a client key"
    leaked = [s for s in secrets_of(world.snapshot()) | keys for t in texts if s in t]
    leaked += [name for name, s in ci_secrets.items() for t in texts if s.strip() in t]
    assert not leaked, f"{len(leaked)} secret(s) in comments or artifacts"


def artifact_texts(files: list[Path]) -> list[str]:
    return [p.read_bytes().decode("utf-8", "replace") for p in files]


def state_folders(world: World) -> str:
    """``<cluster>/<omni>``: the cluster's state directory below the state base."""
    base = Path("/base")
    return world.state_in(base).relative_to(base).as_posix()


def state_files_in(directory: Path) -> list[str]:
    """Backups, rollback plans and journals anywhere below ``directory``."""
    names = ("*.rollback.json", "*.journal.jsonl", "*-backup-*")
    found = {p for name in names for p in directory.rglob(name) if p.is_file()}
    return sorted(p.relative_to(directory).as_posix() for p in found)


def expand(value: str, env: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` in a CI variable, as GitLab expands them (known names only)."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in env, f"the variable {value!r} uses ${name}, which the job does not have"
        return env[name]

    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lookup, value)


# ---- GitHub Actions ---------------------------------------------------------------------------

EXPRESSION = re.compile(r"\$\{\{\s*([\w.-]+)\s*\}\}")


def evaluate(value: Any, context: dict[str, Any]) -> str:
    def lookup(match: re.Match[str]) -> str:
        node: Any = context
        for part in match.group(1).split("."):
            assert isinstance(node, dict) and part in node, f"cannot evaluate {match.group(0)}"
            node = node[part]
        return str(node)

    return EXPRESSION.sub(lookup, str(value))


@dataclass
class GitHub:
    world: World
    repo: Repo
    services: Services
    ci_secrets: dict[str, str]
    workflow: dict[str, Any]
    runs: int = 0

    def job(self, name: str, event: str, inputs: dict[str, str] | None = None, **github: str):
        """Run one job on a fresh runner; returns (run id, workspace, step outputs)."""
        job = self.workflow["jobs"][name]
        assert job["if"] == f"github.event_name == '{event}'", job["if"]
        assert event in self.workflow.get("on", self.workflow.get(True))  # YAML 1.1: on = true
        self.runs += 1
        run_id = str(1000 + self.runs)
        runner = self.services.root / f"runner-{name}"
        workspace = self.repo.clone(runner / "work" / "clusters" / "clusters")
        temp = runner / "temp"
        (temp / "home").mkdir(parents=True)
        context: dict[str, Any] = {
            "secrets": self.ci_secrets,
            "github": {"token": "ghs_" + self.services.token, **github},
            "inputs": inputs or {},
            "runner": {"temp": str(temp)},
            "steps": {},
        }
        env = base_env(self.world, self.services, temp)
        # the workflow's env sees these contexts only (runner.temp is for steps: their env, with)
        top = {k: context[k] for k in ("github", "secrets", "inputs")}
        env.update({k: evaluate(v, top) for k, v in self.workflow["env"].items()})
        env.update(
            GITHUB_WORKSPACE=str(workspace),
            GITHUB_REPOSITORY="acme/clusters",
            GITHUB_SHA=github.get("sha", ""),
            RUNNER_TEMP=str(temp),
        )
        for i, step in enumerate(job["steps"]):
            assert step.get("if", "always()") == "always()", step  # every job here succeeds
            if "uses" in step:
                self.action(step, context, workspace, run_id)
                continue
            if step.get("name") == "Install omniport":
                assert step["run"].startswith("pip install "), step["run"]
                continue  # no network here: the omniport on PATH is this checkout's
            output = temp / f"output-{i}"
            output.touch()
            step_env = {k: evaluate(v, context) for k, v in (step.get("env") or {}).items()}
            result = bash(step["run"], workspace, {**env, **step_env, "GITHUB_OUTPUT": str(output)})
            assert result.returncode == 0, (name, step.get("name"), result.stdout + result.stderr)
            if "id" in step:
                pairs = [line.split("=", 1) for line in output.read_text().splitlines()]
                context["steps"][step["id"]] = {"outputs": dict(pairs)}
        return run_id, workspace

    def action(self, step: dict[str, Any], context: dict[str, Any], ws: Path, run_id: str):
        action = step["uses"].split("@", 1)[0]
        given = {k: evaluate(v, context) for k, v in (step.get("with") or {}).items()}
        if action in ("actions/checkout", "actions/setup-python"):
            return  # the runner's clone; this interpreter
        if action == "actions/upload-artifact":
            files: list[Path] = []
            searched: list[Path] = []
            for pattern in given["path"].splitlines():
                pattern = pattern.strip()
                if not pattern:
                    continue
                assert not pattern.startswith("!"), "the stub knows no exclude pattern"
                path = ws / pattern  # relative to the workspace; an absolute one stays
                parts = path.parts
                literal = next(
                    (i for i, part in enumerate(parts) if any(c in part for c in "*?[")),
                    len(parts),
                )
                searched.append(Path(*parts[:literal]))  # @actions/glob's search path
                for match in sorted(glob.glob(str(path), recursive=True)):
                    hit = Path(match)
                    files += [p for p in hit.rglob("*") if p.is_file()] if hit.is_dir() else [hit]
            assert files, f"upload-artifact {given['name']}: no file matches {given['path']}"
            # upload-artifact's root: one search path that is the one file found: its folder;
            # else the least common ancestor of the search paths (not of the files found)
            if len(set(searched)) == 1 and files == [searched[0]]:
                root = searched[0].parent
            else:
                root = Path(os.path.commonpath(searched))
            store = self.services.root / "artifacts" / run_id / given["name"]
            for p in files:
                (store / p.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, store / p.relative_to(root))
            self.services.artifacts[(run_id, given["name"])] = store
            return
        if action == "actions/download-artifact":
            assert given.get("github-token"), "a download from another run needs github-token"
            store = self.services.artifacts[(given["run-id"], given["name"])]
            shutil.copytree(store, ws / given["path"], dirs_exist_ok=True)
            return
        if action == "marocchino/sticky-pull-request-comment":
            body = (ws / given["path"]).read_text()
            assert len(body) <= GITHUB_COMMENT_LIMIT
            self.services.save([*self.services.comments(), body])
            return
        raise AssertionError(f"docs/ci.md uses {step['uses']}, which this test cannot run")


def test_github_actions_recipe(world: World, tmp_path: Path):
    workflow = documented(GITHUB_FILE)
    spec_path = workflow["env"]["SPEC"]
    services = Services(tmp_path / "github")
    ci_secrets = lab_secrets(world)
    gh = GitHub(world, cluster_repo(world, tmp_path, spec_path), services, ci_secrets, workflow)
    before = world.snapshot()

    head, merge = "a" * 40, "b" * 40
    plan_run, _ = gh.job("plan", "pull_request", sha=head)
    comment = services.comments()[-1]
    assert comment.startswith("## omniport plan: import cluster <code>lab</code> into Omni")
    assert "**Plan: 14 to add, 3 to change, 0 to destroy.**" in comment
    planned = services.artifacts[(plan_run, "omniport-plan")]
    plan = planfile.read(planned / "import.plan.json")
    assert plan.spec_location is not None and plan.spec_location.path == spec_path
    assert world.snapshot() == before  # planning changed nothing

    services.gh = {
        f"api repos/acme/clusters/commits/{merge}/pulls --jq .[0].head.sha": head,
        f"run list --workflow omniport.yml --event pull_request --commit {head} --status "
        "success --limit 1 --json databaseId --jq .[0].databaseId": plan_run,
    }
    services.save(services.comments())
    apply_run, applied = gh.job("apply", "push", sha=merge)
    assert not state_files_in(applied), "apply wrote state into the checkout (beside the plan)"
    imported = world.snapshot()
    assert imported.extra_resources(before), "apply imported nothing"
    state = state_folders(world)  # <cluster>/<omni>/, as upload-artifact keeps it
    store = services.artifacts[(apply_run, "omniport-rollback")]
    kept = sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file())
    assert kept[:2] == [f"{state}/import.plan.journal.jsonl", f"{state}/import.plan.rollback.json"]
    backup = rf"{re.escape(state)}/lab-backup-[\d-]+\.zip\.enc"  # encrypted: no .zip kept
    assert len(kept) == 3 and re.fullmatch(backup, kept[2]), kept

    gh.job("rollback", "workflow_dispatch", inputs={"apply_run_id": apply_run}, sha=merge)
    assert_restored(world, before)
    files = [p for p in (services.root / "artifacts").rglob("*") if p.is_file()]
    assert_secret_free(world, ci_secrets, services.comments() + artifact_texts(files))


# ---- GitLab CI --------------------------------------------------------------------------------


@dataclass
class GitLab:
    world: World
    repo: Repo
    services: Services
    ci_secrets: dict[str, str]
    pipeline: dict[str, Any]

    def workspace(self, name: str) -> Path:
        """Where the runner of job ``name`` clones the repository (``$CI_PROJECT_DIR``)."""
        return self.services.root / f"runner-{name}" / "builds" / "acme" / "clusters"

    def job(self, name: str, job_id: int, source: str, **variables: str) -> Path | None:
        """Run one job (before_script + script in one shell, after_script in another) and
        keep its artifacts as GitLab does, as a zip under the job's id."""
        job = self.pipeline[name]
        (rule,) = job["rules"]
        assert f'$CI_PIPELINE_SOURCE == "{source}"' in rule["if"], rule
        runner = self.services.root / f"runner-{name}"
        workspace = self.repo.clone(self.workspace(name))
        temp = runner / "tmp"
        (temp / "home").mkdir(parents=True)
        talosconfig = temp / "TALOSCONFIG"  # a File variable: GitLab writes it, passes the path
        talosconfig.write_text(self.ci_secrets["TALOSCONFIG"])
        talosconfig.chmod(0o600)
        env = base_env(self.world, self.services, temp)
        env.update(CI_PROJECT_DIR=str(workspace))
        for key, value in self.pipeline["variables"].items():
            env[key] = expand(str(value), env)
        env.update(
            TALOSCONFIG=str(talosconfig),
            OMNI_SERVICE_ACCOUNT_KEY=self.ci_secrets["OMNI_SERVICE_ACCOUNT_KEY"],
            OMNIPORT_BACKUP_PASSPHRASE=self.ci_secrets["OMNIPORT_BACKUP_PASSPHRASE"],
            OMNIPORT_GITLAB_TOKEN=self.services.token,
            CI_API_V4_URL="https://gitlab.example/api/v4",
            CI_PROJECT_ID="42",
            CI_PIPELINE_SOURCE=source,
            CI_DEFAULT_BRANCH="main",
            **variables,
        )
        before = self.pipeline["default"]["before_script"]
        installs = [line for line in before if line.startswith("pip install ")]
        assert len(installs) == 1  # not run (no network): the omniport on PATH is this checkout's
        lines = [line for line in before if line not in installs] + job["script"]
        result = bash("\n".join(lines), workspace, env)
        assert result.returncode == 0, (name, result.stdout + result.stderr)
        if "after_script" in job:
            after = bash("\n".join(job["after_script"]), workspace, env)
            assert after.returncode == 0, (name, after.stdout + after.stderr)
        if "artifacts" not in job:
            return None
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            for pattern in job["artifacts"]["paths"]:
                for path in sorted(workspace.glob(pattern.rstrip("/"))):
                    members = sorted(path.rglob("*")) if path.is_dir() else [path]
                    for member in members:
                        if member.is_file():
                            zipped.write(member, member.relative_to(workspace).as_posix())
        stored = self.services.root / "artifacts" / f"{job_id}.zip"
        stored.parent.mkdir(exist_ok=True)
        stored.write_bytes(archive.getvalue())
        return stored


def test_gitlab_ci_recipe(world: World, tmp_path: Path):
    pipeline = documented(GITLAB_FILE)
    spec_path = pipeline["variables"]["SPEC"]
    services = Services(tmp_path / "gitlab")
    ci_secrets = lab_secrets(world)
    gl = GitLab(world, cluster_repo(world, tmp_path, spec_path), services, ci_secrets, pipeline)
    before = world.snapshot()

    head, merge = "c" * 40, "d" * 40
    plan_zip = gl.job(
        "plan", 99, "merge_request_event", CI_COMMIT_SHA=head, CI_MERGE_REQUEST_IID="7"
    )
    assert plan_zip is not None
    (comment,) = services.comments()
    assert comment.startswith("## omniport plan: import cluster <code>lab</code> into Omni")
    with zipfile.ZipFile(plan_zip) as zipped:
        assert {"plan/import.plan.json", "plan/plan.md"} <= set(zipped.namelist())
    assert world.snapshot() == before

    services.curl = {
        f"GET {GITLAB_API}/repository/commits/{merge}/merge_requests": json.dumps([{"iid": 7}]),
        f"GET {GITLAB_API}/merge_requests/7": json.dumps(
            {"iid": 7, "sha": head, "head_pipeline": {"id": 41, "sha": head}}
        ),
        f"GET {GITLAB_API}/pipelines/41/jobs?scope[]=success": json.dumps(
            [{"id": 98, "name": "validate"}, {"id": 99, "name": "plan"}]
        ),
        f"GET {GITLAB_API}/jobs/99/artifacts": f"file:{plan_zip}",
    }
    services.save(services.comments())
    apply_zip = gl.job("apply", 120, "push", CI_COMMIT_SHA=merge, CI_COMMIT_BRANCH="main")
    strays = [
        f for f in state_files_in(gl.workspace("apply")) if not f.startswith("omniport-state/")
    ]
    assert not strays, f"apply wrote state beside the plan, not in $OMNIPORT_STATE_DIR: {strays}"
    assert apply_zip is not None
    assert world.snapshot().extra_resources(before), "apply imported nothing"
    with zipfile.ZipFile(apply_zip) as zipped:
        names = sorted(zipped.namelist())
        texts = [zipped.read(n).decode("utf-8", "replace") for n in names]
    state = f"omniport-state/{state_folders(world)}"  # $OMNIPORT_STATE_DIR/<cluster>/<omni>
    assert names[:2] == [f"{state}/import.plan.journal.jsonl", f"{state}/import.plan.rollback.json"]
    backup = rf"{re.escape(state)}/lab-backup-[\d-]+\.zip\.enc"  # encrypted: no .zip kept
    assert len(names) == 3 and re.fullmatch(backup, names[2]), names

    services.curl[f"GET {GITLAB_API}/jobs/120/artifacts"] = f"file:{apply_zip}"
    services.save(services.comments())
    gl.job("rollback", 130, "web", CI_COMMIT_SHA=merge, ROLLBACK_JOB_ID="120")
    assert_restored(world, before)
    with zipfile.ZipFile(plan_zip) as zipped:
        texts += [zipped.read(n).decode("utf-8", "replace") for n in zipped.namelist()]
    assert_secret_free(world, ci_secrets, services.comments() + texts)


def test_the_page_names_every_secret_it_uses():
    """Each secret the files read is one the page tells the user to create."""
    page = DOC.read_text()
    github = documented(GITHUB_FILE)
    used = set(re.findall(r"secrets\.(\w+)", json.dumps(github)))
    assert used == {"TALOSCONFIG", "OMNI_SERVICE_ACCOUNT_KEY", "OMNIPORT_BACKUP_PASSPHRASE"}
    for name in used | {"OMNIPORT_GITLAB_TOKEN"}:
        assert f"`{name}`" in page, name


@pytest.mark.parametrize("name", [GITHUB_FILE, GITLAB_FILE])
def test_plans_are_written_with_terraforms_out_spelling(name: str):
    text = json.dumps(documented(name))
    assert "-out=plan/import.plan.json" in text and "--detailed-exitcode" in text
