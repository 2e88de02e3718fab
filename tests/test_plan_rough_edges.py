"""Rough edges of issue 15 item 10 met on the way from a cluster to a spec:

* ``omni.omniconfig`` without ``omni.url`` takes Omni's URL from that omniconfig, also when
  the key comes from a service account (file or environment);
* ``plan --json`` reports spec errors (and other early failures) as ``diagnostic`` events on
  stdout, as ``apply --json`` does, and still exits 1 with the line on stderr.

(``plan`` after a successful apply is in tests/test_plan_lab_findings.py, with the other
findings' lab scenarios.)
"""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from omniport.planner.cli import run
from omniport.providers import omniconfig
from omniport.providers.codec import siderov1
from omniport.providers.errors import ConfigurationError
from tests.test_plan_lab import plan, spec_variant

NOW = time.time()

CONFIG = """\
context: prod
contexts:
  prod:
    url: https://acme.omni.example.com:8443
    auth:
      siderov1:
        identity: someone@example.com
  lab:
    url: grpc://127.0.0.1:8080
    auth:
      siderov1:
        identity: admin@lab
"""


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run(list(args))
    return code, out.getvalue(), err.getvalue()


# --- omni.omniconfig without omni.url ----------------------------------------------------------


@pytest.fixture(scope="module")
def account() -> siderov1.GeneratedServiceAccount:
    return siderov1.generate_service_account("ci-bot", now=NOW - 60)


def test_service_account_takes_the_url_of_a_named_omniconfig(tmp_path: Path, account) -> None:
    config = tmp_path / "omniconfig"
    config.write_text(CONFIG)
    env = {"OMNI_SERVICE_ACCOUNT_KEY": account.env_value}
    settings = omniconfig.resolve(omniconfig=config, environ=env, now=NOW)
    assert settings.endpoint.url == "https://acme.omni.example.com:8443"
    assert settings.identity == "ci-bot"  # the key is still the service account's
    lab = omniconfig.resolve(omniconfig=config, context="lab", environ=env, now=NOW)
    assert lab.endpoint.target == "127.0.0.1:8080"
    # what overrides it, in omnictl's order: the explicit URL, then OMNI_ENDPOINT
    env_url = {**env, "OMNI_ENDPOINT": "https://from-env.example"}
    assert (
        omniconfig.resolve(omniconfig=config, environ=env_url, now=NOW).endpoint.host
        == "from-env.example"
    )
    explicit = omniconfig.resolve(
        omniconfig=config, endpoint="https://spec.example", environ=env_url, now=NOW
    )
    assert explicit.endpoint.host == "spec.example"
    # no omniconfig named: the URL still has to come from somewhere, said as before
    with pytest.raises(ConfigurationError, match="OMNI_ENDPOINT is not set"):
        omniconfig.resolve(environ=env, now=NOW)


def test_plan_with_omniconfig_and_no_url(lab, tmp_path) -> None:
    """The lab spec with omni.url replaced by the lab's omniconfig, the key from a file."""

    def mutate(data: dict) -> None:
        del data["omni"]["url"]
        data["omni"]["omniconfig"] = str(lab.dir / "omniconfig")

    spec = spec_variant(lab, tmp_path / "oc", mutate)
    result = plan(spec, tmp_path / "oc.plan.json")
    assert result.code == 0, result.err
    url = yaml.safe_load((lab.dir / "omniconfig").read_text())["contexts"]["lab"]["url"]
    assert result.data["cluster"]["omni_url"].rstrip("/") == url.rstrip("/")


# --- plan --json and spec errors ---------------------------------------------------------------

BAD = "version: 1\ntalos:\n  nodes: [1]\nomni: {urll: https://x}\n"


def test_plan_json_reports_spec_errors_as_diagnostics(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD)
    out = tmp_path / "bad.plan.json"
    code, stdout, stderr = cli("plan", "--json", str(spec), "-o", str(out))
    assert code == 1
    events = [json.loads(line) for line in stdout.splitlines()]  # nothing but JSON on stdout
    assert events[0]["type"] == "version"
    diagnostics = [e["diagnostic"] for e in events[1:]]
    assert all(e["type"] == "diagnostic" and e["@level"] == "error" for e in events[1:])
    assert [(d["range"]["start"]["line"], d["range"]["start"]["column"]) for d in diagnostics] == [
        (3, 11),
        (4, 8),
    ]
    assert diagnostics[0]["range"]["filename"] == str(spec)
    assert diagnostics[1]["summary"] == "unknown key 'urll' in omni; did you mean 'url'?"
    assert f"{spec}:4:8: unknown key 'urll'" in stderr  # the human line is still there
    assert not out.exists()


def test_plan_json_reports_a_missing_spec_and_an_unreachable_endpoint(tmp_path: Path) -> None:
    code, stdout, _ = cli("plan", "--json", str(tmp_path / "nope.yaml"))
    assert code == 1
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events[-1]["diagnostic"]["summary"] == "no such file; check the path"
    # a spec that parses but names a talosconfig that is not there: a provider error
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "version: 1\ntalos: {nodes: [10.0.0.1]}\n"
        "omni: {url: https://127.0.0.1:9, serviceAccountKeyFile: key}\n"
    )
    (tmp_path / "key").write_text("not a key")
    code, stdout, stderr = cli("plan", "--json", str(spec))
    assert code == 1
    events = [json.loads(line) for line in stdout.splitlines()]
    assert [e["type"] for e in events] == ["version", "diagnostic"]
    assert events[1]["diagnostic"]["summary"] in stderr
    assert "Traceback" not in stderr
