"""A corpus of bad inputs through the real CLI entry point.

Every case is a user mistake (a wrong path, a broken file, a file of the wrong kind, an
unreachable cluster). Each must end the same way: exit code 1, nothing on stdout, one
``Error: `` line on stderr that names the problem (spec validation may add one
``file:line:col: message`` line per further problem), never a traceback, and the working
folder exactly as it was: no file created, changed or removed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from omniport.planner import planfile
from omniport.planner.cli import run
from omniport.planner.execute import rollbackfile
from omniport.planner.machineconfig import pki
from omniport.providers.codec import siderov1
from tests.paths import talos_fixture
from tests.reliability.conftest import (
    Outcome,
    assert_one_clear_error,
    assert_unchanged,
    plan_text,
    resealed,
    rollback_text,
    snapshot,
)

pytestmark = pytest.mark.reliability


# --- material: valid files the bad cases are made from ----------------------------------------


def _closed_port() -> int:
    """A loopback port that was just bound and closed: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Material:
    port: int
    talosconfig: str
    service_account: str
    plan: str
    rollback: str

    def spec(self, *, talosconfig: str | None = "./talosconfig", extra: str = "") -> str:
        """A valid spec for one node behind the closed port, Omni behind the same port."""
        access = f"  talosconfig: {talosconfig}\n" if talosconfig else ""
        return (
            f"version: 1\ntalos:\n{access}  endpoints: ['127.0.0.1:{self.port}']\n"
            f"  nodes: [127.0.0.1]\nomni:\n  url: https://127.0.0.1:{self.port}\n{extra}"
        )

    def talosconfig_with(self, **context: object) -> str:
        data = yaml.safe_load(self.talosconfig)
        data["contexts"]["lab"].update(context)
        return yaml.safe_dump(data)


@pytest.fixture(scope="module")
def material() -> Material:
    return make_material()


def make_material() -> Material:
    """Valid key material and sealed files, made fresh (no credential of the developer)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca = pki.talos_os_ca(now)
    admin = pki.admin_client_cert(ca, now)
    port = _closed_port()
    talosconfig = yaml.safe_dump(
        {
            "context": "lab",
            "contexts": {
                "lab": {
                    "endpoints": [f"127.0.0.1:{port}"],
                    "ca": ca.crt_b64,
                    "crt": admin.crt_b64,
                    "key": admin.key_b64,
                }
            },
        }
    )
    account = siderov1.generate_service_account("ci-bot", now=time.time() - 60)
    return Material(port, talosconfig, account.env_value, plan_text(), rollback_text())


# --- the table ----------------------------------------------------------------------------------

Content = str | bytes | Callable[[Material], str | bytes] | None  # None: make a directory


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    needle: str
    files: Mapping[str, Content] = field(default_factory=dict)
    env: Mapping[str, Callable[[Material], str]] = field(default_factory=dict)
    spec_lines: bool = False


MINIMAL = """\
version: 1
talos:
  nodes: [10.0.0.1, 10.0.0.2]
omni:
  url: https://omni.example.com
"""

# a million values from a few lines: each level repeats the one before ten times
ALIAS_BOMB = "x:\n  a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"  {k}: &{k} [" + ",".join([f"*{p}"] * 10) + "]\n"
    for p, k in zip("abcde", "bcdef", strict=True)
)

# (id, spec file content or None for "no file" / a directory marker, needle)
SPEC_INPUTS: list[tuple[str, Content | str, str]] = [
    ("missing-file", "<missing>", "no such file"),
    ("directory", None, "is a directory"),
    ("non-utf8", b"version: 1\ntalos:\n  nodes: [\xff\xfe]\n", "is not UTF-8 text"),
    ("invalid-yaml", "talos: [\n", "invalid YAML"),
    ("tab-indent", "talos:\n\tnodes: []\n", "invalid YAML"),
    ("empty", "", "the spec is empty"),
    ("comments-only", "# nothing here\n", "the spec is empty"),
    ("list", "- version: 1\n", "the spec must be a mapping, not a list"),
    ("scalar", "hello\n", "the spec must be a mapping, not a string"),
    ("unknown-key", MINIMAL.replace("  nodes:", "  nodse:"), "did you mean 'nodes'?"),
    ("unknown-top-key", MINIMAL + "aply: {parallelism: 3}\n", "did you mean 'apply'?"),
    ("wrong-type", MINIMAL + "apply:\n  parallelism: ten\n", "must be an integer"),
    ("wrong-type-nodes", MINIMAL.replace("[10.0.0.1, 10.0.0.2]", "10.0.0.1"), "must be a list"),
    ("out-of-range", MINIMAL + "apply: {parallelism: 0}\n", "must be at least 1"),
    ("bad-version", MINIMAL + "versions: {talos: 1.x}\n", "is not a version like 1.11.5"),
    (
        "unknown-accepted-code",
        MINIMAL + "findings: {accept: [SCHEMATIC_MISING]}\n",
        "unknown finding code SCHEMATIC_MISING; did you mean SCHEMATIC_MISSING?",
    ),
    (
        "unacceptable-code",
        MINIMAL + "findings: {accept: [CLUSTER_EXISTS]}\n",
        "finding code CLUSTER_EXISTS cannot be accepted",
    ),
    (
        "python-tag-on-a-list",
        MINIMAL.replace("[10.0.0.1, 10.0.0.2]", '!!python/object/apply:os.system ["id"]'),
        "unsupported YAML tag '!!python/object/apply:os.system'",
    ),
    ("local-tag-on-a-key", MINIMAL + "!x apply: {}\n", "unsupported YAML tag '!x'"),
    ("larger-than-1-mib", MINIMAL + "#" * (1024 * 1024) + "\n", "more than the 1 MiB allowed"),
    (
        "many-values-without-aliases",
        "talos: {nodes: [" + "1," * 200_001 + "]}\n",
        "holds more than 200000 values\n",  # no word about aliases when there are none
    ),
    ("bad-duration", MINIMAL + "apply: {waitTimeout: 5 minutes}\n", "not a duration"),
    ("zero-duration", MINIMAL + "healthCheck: {timeout: 0s}\n", "must be longer than 0s"),
    ("duplicate-node", MINIMAL.replace("10.0.0.2", "10.0.0.1"), "lists '10.0.0.1' twice"),
    ("duplicate-key", MINIMAL + "version: 1\n", "duplicate key 'version'"),
    (
        "initial-newer",
        MINIMAL + "versions: {talos: 1.9.0, initialTalos: 1.10.0}\n",
        "the initial version must not be greater",
    ),
    (
        "talosconfig-missing",
        MINIMAL.replace("talos:\n", "talos:\n  talosconfig: ./nope\n"),
        "talos.talosconfig names './nope', which is not a readable file",
    ),
    ("huge-integer", MINIMAL + "apply: {parallelism: " + "9" * 5000 + "}\n", "cannot read"),
    (
        "huge-version",
        MINIMAL + "versions: {talos: 1.2." + "9" * 5000 + ", initialTalos: 1.2.3}\n",
        "is not a version like 1.11.5",
    ),
    ("huge-duration", MINIMAL + "apply: {waitTimeout: " + "9" * 5000 + "s}\n", "not a duration"),
    ("impossible-date", MINIMAL + "versions: {talos: 2024-13-45}\n", "cannot read"),
    (
        "escape-past-unicode",
        MINIMAL.replace("omni.example.com", 'omni.example.com\n  context: "\\UFFFFFFFF"'),
        "names no Unicode character",
    ),
    (
        "lone-surrogate-escape",
        MINIMAL.replace("omni.example.com", 'omni.example.com\n  context: "\\ud800"'),
        "half of a UTF-16 pair",
    ),
    ("self-alias", MINIMAL + "backup: &b {directory: *b}\n", "refers to itself"),
    (
        "alias-bomb",
        MINIMAL + ALIAS_BOMB,
        "holds more than 200000 values once its aliases are expanded",
    ),
    ("deep-nesting", MINIMAL + "backup: " + "[" * 1000 + "]" * 1000 + "\n", "nested too deeply"),
    (
        "duplicate-binary-nodes",
        MINIMAL.replace("[10.0.0.1, 10.0.0.2]", "[!!binary YQ==, !!binary YQ==]"),
        "unsupported YAML tag '!!binary'",
    ),
    (
        "duplicate-date-accept",
        MINIMAL + "findings: {accept: [2024-01-01, 2024-01-01]}\n",
        "must be a string",
    ),
]


def _spec_cases(command: str) -> list[Case]:
    cases = []
    for name, content, needle in SPEC_INPUTS:
        files: dict[str, Content] = {}
        if content is None:
            files["import.yaml"] = None
        elif content != "<missing>":
            files["import.yaml"] = content
        cases.append(
            Case(f"{command}-{name}", (command, "import.yaml"), needle, files, spec_lines=True)
        )
    return cases


def _sa(m: Material) -> str:
    return m.service_account


PEM_GARBAGE = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n"
).decode()

PLAN_CASES = [
    Case(
        "plan-out-is-the-spec",
        ("plan", "import.yaml", "-o", "import.yaml"),
        "import.yaml is the spec being planned",
        {"import.yaml": lambda m: m.spec(), "talosconfig": lambda m: m.talosconfig},
    ),
    Case(
        "plan-out-would-replace-a-key-file",
        ("plan", "import.yaml", "-o", "talosconfig"),
        "talosconfig exists and is not an omniport plan file, so it is left alone",
        {"import.yaml": lambda m: m.spec(), "talosconfig": lambda m: m.talosconfig},
    ),
    Case(
        "plan-out-force-still-spares-the-spec",
        ("plan", "import.yaml", "-o", "link.json", "--force"),
        "link.json is the spec being planned",
        {
            "import.yaml": lambda m: m.spec(),
            "talosconfig": lambda m: m.talosconfig,
            "link.json": "<symlink:import.yaml>",
        },
    ),
    Case(
        "plan-talosconfig-garbage",
        ("plan", "import.yaml"),
        "the talosconfig is not valid YAML",
        {"import.yaml": lambda m: m.spec(), "talosconfig": ": : garbage [\n"},
        {"OMNI_SERVICE_ACCOUNT_KEY": _sa},
    ),
    Case(
        "plan-talosconfig-not-a-talosconfig",
        ("plan", "import.yaml"),
        "has no `contexts` map",
        {"import.yaml": lambda m: m.spec(), "talosconfig": "just: text\n"},
        {"OMNI_SERVICE_ACCOUNT_KEY": _sa},
    ),
    Case(
        "plan-talosconfig-binary",
        ("plan", "import.yaml"),
        "the talosconfig is not UTF-8 text",
        {"import.yaml": lambda m: m.spec(), "talosconfig": b"\x00\xff\xfe" * 50},
        {"OMNI_SERVICE_ACCOUNT_KEY": _sa},
    ),
    Case(
        "plan-talosconfig-huge-number",
        ("plan", "import.yaml"),
        "the talosconfig is not valid YAML",
        {"import.yaml": lambda m: m.spec(), "talosconfig": "contexts: {a: " + "9" * 5000 + "}\n"},
        {"OMNI_SERVICE_ACCOUNT_KEY": _sa},
    ),
    Case(
        "plan-talosconfig-escape-past-unicode",
        ("plan", "import.yaml"),
        "the talosconfig is not valid YAML",
        {"import.yaml": lambda m: m.spec(), "talosconfig": 'context: "\\UFFFFFFFF"\n'},
        {"OMNI_SERVICE_ACCOUNT_KEY": _sa},
    ),
    Case(
        "plan-unknown-context",
        ("plan", "import.yaml"),
        "context 'nope' is not in the talosconfig (available: lab)",
        {
            "import.yaml": lambda m: m.spec(extra="").replace(
                "talos:\n", "talos:\n  context: nope\n"
            ),
            "talosconfig": lambda m: m.talosconfig,
        },
        {"OMNI_SERVICE_ACCOUNT_KEY": _sa},
    ),
    Case(
        "plan-talosconfig-key-not-pem",
        ("plan", "import.yaml"),
        "field `key` is not base64-encoded PEM",
        {
            "import.yaml": lambda m: m.spec(),
            "talosconfig": lambda m: m.talosconfig_with(key="bm90IGEga2V5"),
        },
        {"OMNI_SERVICE_ACCOUNT_KEY": _sa},
    ),
    Case(
        "plan-talosconfig-ca-garbage-pem",
        ("plan", "import.yaml"),
        "the CA certificate is not a readable PEM certificate",
        {
            "import.yaml": lambda m: m.spec(),
            "talosconfig": lambda m: m.talosconfig_with(ca=PEM_GARBAGE),
        },
        {"OMNI_SERVICE_ACCOUNT_KEY": _sa},
    ),
    Case(
        "plan-endpoint-unreachable",
        ("plan", "import.yaml"),
        "connection refused",
        {"import.yaml": lambda m: m.spec(), "talosconfig": lambda m: m.talosconfig},
        {"OMNI_SERVICE_ACCOUNT_KEY": _sa},
    ),
    Case(
        "plan-endpoint-unreachable-explicit-out",
        ("plan", "import.yaml", "-o", "out.plan.json"),
        "so there is nothing to plan",
        {"import.yaml": lambda m: m.spec(), "talosconfig": lambda m: m.talosconfig},
        {"OMNI_SERVICE_ACCOUNT_KEY": _sa},
    ),
    Case(
        "plan-omniconfig-garbage",
        ("plan", "import.yaml"),
        "omniconfig",
        {
            "import.yaml": lambda m: m.spec(extra="  omniconfig: ./omniconfig\n"),
            "talosconfig": lambda m: m.talosconfig,
            "omniconfig": "contexts: [\n",
        },
    ),
    Case(
        "plan-omniconfig-bad-timestamp",
        ("plan", "import.yaml"),
        "omniconfig is not valid YAML",
        {
            "import.yaml": lambda m: m.spec(extra="  omniconfig: ./omniconfig\n"),
            "talosconfig": lambda m: m.talosconfig,
            "omniconfig": "context: !!timestamp x\n",
        },
    ),
    Case(
        "plan-omniconfig-unknown-context",
        ("plan", "import.yaml"),
        "nope",
        {
            "import.yaml": lambda m: m.spec(extra="  omniconfig: ./omniconfig\n  context: nope\n"),
            "talosconfig": lambda m: m.talosconfig,
            "omniconfig": "context: a\ncontexts:\n  a:\n    url: https://omni.example.com\n",
        },
    ),
    Case(
        "plan-service-account-garbage",
        ("plan", "import.yaml"),
        "OMNI_SERVICE_ACCOUNT_KEY",
        {"import.yaml": lambda m: m.spec(), "talosconfig": lambda m: m.talosconfig},
        {"OMNI_SERVICE_ACCOUNT_KEY": lambda m: "not-a-key"},
    ),
    Case(
        "plan-no-omni-credentials",
        ("plan", "import.yaml"),
        "no omniconfig found",
        {"import.yaml": lambda m: m.spec(), "talosconfig": lambda m: m.talosconfig},
    ),
]


def _tampered(m: Material) -> str:
    """The plan with one byte changed (the first character of the fingerprint)."""
    at = m.plan.index('"fingerprint": "') + len('"fingerprint": "')
    return m.plan[:at] + "e" + m.plan[at + 1 :]


def _json(text: str) -> dict:
    return json.loads(text)


def _plan_with(**changes: object) -> Callable[[Material], str]:
    return lambda m: resealed(_json(m.plan), **changes)


def _rollback_with(**changes: object) -> Callable[[Material], str]:
    return lambda m: resealed(_json(m.rollback), **changes)


def _rollback_tampered(m: Material) -> str:
    return m.rollback.replace('"prod"', '"dev"', 1)


SAVED_FILE_INPUTS: list[tuple[str, Content | str, str, str]] = [
    # (id, content, needle for a plan reader, needle for the rollback reader)
    ("missing-file", "<missing>", "no plan file at", "no rollback plan at"),
    ("directory", None, "is a directory", "is a directory"),
    ("non-utf8", b'{"checksum": "\xff"}', "not UTF-8", "not UTF-8"),
    ("empty", "", "invalid JSON", "invalid JSON"),
    ("invalid-json", "{", "invalid JSON", "invalid JSON"),
    ("json-list", "[]", "not an omniport plan file", "not an omniport rollback plan"),
    ("huge-number", '{"checksum": ' + "1" * 5000 + "}", "invalid JSON", "invalid JSON"),
    ("deep-nesting", "[" * 5000 + "]" * 5000, "invalid JSON", "invalid JSON"),
]


def _saved_files(content: Content | str) -> dict[str, Content]:
    if content == "<missing>":
        return {}
    return {"saved.json": content}


def _saved_cases(command: tuple[str, ...], reader: str) -> list[Case]:
    out = []
    for name, content, plan_needle, rollback_needle in SAVED_FILE_INPUTS:
        needle = plan_needle if reader == "plan" else rollback_needle
        out.append(
            Case(f"{command[0]}-{name}", (*command, "saved.json"), needle, _saved_files(content))
        )
    return out


SHOW_CASES = _saved_cases(("show",), "plan") + [
    Case(
        "show-plan-one-byte-changed",
        ("show", "p.plan.json"),
        "modified after it was written (checksum mismatch)",
        {"p.plan.json": _tampered},
    ),
    Case(
        "show-plan-other-tool-version",
        ("show", "p.plan.json"),
        "was made by omniport 9.9.9",
        {"p.plan.json": _plan_with(tool_version="9.9.9")},
    ),
    Case(
        "show-plan-other-format",
        ("show", "p.plan.json"),
        "has plan format 7",
        {"p.plan.json": _plan_with(format_version=7)},
    ),
    Case(
        "show-plan-schema-violation",
        ("show", "p.plan.json"),
        "does not match the plan schema",
        {"p.plan.json": _plan_with(nodes="all of them")},
    ),
    Case(
        "show-rollback-one-byte-changed",
        ("show", "r.rollback.json"),
        "modified after apply wrote it",
        {"r.rollback.json": _rollback_tampered},
    ),
    Case(
        "show-rollback-other-format",
        ("show", "r.rollback.json"),
        "has rollback format 2",
        {"r.rollback.json": _rollback_with(format_version=2)},
    ),
    Case(
        "show-rollback-schema-violation",
        ("show", "r.rollback.json"),
        "does not match the rollback schema",
        {"r.rollback.json": _rollback_with(nodes=[])},
    ),
]

APPLY = ("apply", "--auto-approve")
ROLLBACK = ("rollback", "--auto-approve")

APPLY_CASES = _saved_cases(APPLY, "plan") + [
    Case(
        "apply-plan-one-byte-changed",
        (*APPLY, "p.plan.json"),
        "modified after it was written (checksum mismatch)",
        {"p.plan.json": _tampered},
    ),
    Case(
        "apply-plan-other-tool-version",
        (*APPLY, "p.plan.json"),
        "was made by omniport 9.9.9",
        {"p.plan.json": _plan_with(tool_version="9.9.9")},
    ),
    Case(
        "apply-rollback-file",
        (*APPLY, "r.rollback.json"),
        "is a rollback plan, not a plan file",
        {"r.rollback.json": lambda m: m.rollback},
    ),
]


def _sparse(size: int) -> str:
    """A file of ``size`` bytes that takes no room (made by truncate): over a size cap."""
    return f"<sparse:{size}>"


MIB = 1024 * 1024

SIZE_CAP_CASES = [
    Case(
        "show-plan-larger-than-64-mib",
        ("show", "big.plan.json"),
        "is 65 MiB, more than the 64 MiB allowed",
        {"big.plan.json": _sparse(65 * MIB)},
    ),
    Case(
        "apply-plan-larger-than-64-mib",
        (*APPLY, "big.plan.json"),
        "is 67,108,865 bytes, more than the 64 MiB allowed",
        {"big.plan.json": _sparse(64 * MIB + 1)},
    ),
    Case(
        "rollback-file-larger-than-16-mib",
        (*ROLLBACK, "big.rollback.json"),
        "more than the 16 MiB allowed",
        {"big.rollback.json": _sparse(16 * MIB + 1)},
    ),
]

ROLLBACK_CASES = _saved_cases(ROLLBACK, "rollback") + [
    Case(
        "rollback-one-byte-changed",
        (*ROLLBACK, "r.rollback.json"),
        "modified after apply wrote it",
        {"r.rollback.json": _rollback_tampered},
    ),
    Case(
        "rollback-other-format",
        (*ROLLBACK, "r.rollback.json"),
        "has rollback format 2",
        {"r.rollback.json": _rollback_with(format_version=2)},
    ),
    Case(
        "rollback-plan-file",
        (*ROLLBACK, "p.plan.json"),
        "is a plan file, not a rollback plan",
        {"p.plan.json": lambda m: m.plan},
    ),
]

GEN = (
    "config",
    "gen",
    "--kubernetes-version",
    "1.34.1",
    "--cluster-name",
    "prod",
    "--endpoint",
    "https://prod:6443",
    "--type",
    "worker",
)
MULTIDOC = (
    "version: v1alpha1\nmachine:\n  type: worker\n---\n"
    "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: w-1\n"
)
SINGLE = "version: v1alpha1\nmachine:\n  type: worker\n  network:\n    hostname: w-1\n"
JSON_PATCH = '[{"op": "add", "path": "/machine/certSANs", "value": ["x"]}]'

CONFIG_CASES = [
    Case(
        "config-gen-missing-secrets",
        (*GEN, "--talos-version", "v1.11.5", "--secrets", "secrets.yaml"),
        "does not exist",
    ),
    Case(
        "config-gen-secrets-invalid-yaml",
        (*GEN, "--talos-version", "v1.11.5", "--secrets", "secrets.yaml"),
        "secrets.yaml",
        {"secrets.yaml": "cluster: [\n"},
    ),
    Case(
        "config-gen-secrets-not-a-mapping",
        (*GEN, "--talos-version", "v1.11.5", "--secrets", "secrets.yaml"),
        "secrets.yaml",
        {"secrets.yaml": "- a\n- b\n"},
    ),
    Case(
        "config-gen-secrets-non-utf8",
        (*GEN, "--talos-version", "v1.11.5", "--secrets", "secrets.yaml"),
        "not UTF-8",
        {"secrets.yaml": b"cluster: \xff\n"},
    ),
    Case(
        "config-gen-secrets-escape-past-unicode",
        (*GEN, "--talos-version", "v1.11.5", "--secrets", "secrets.yaml"),
        "secrets.yaml is not valid YAML",
        {"secrets.yaml": 'cluster: {id: "\\UFFFFFFFF"}\n'},
    ),
    Case(
        "config-gen-unknown-contract",
        (*GEN, "--talos-version", "v0.1.0", "--secrets", "secrets.yaml"),
        "is not supported",
        {"secrets.yaml": "cluster: {}\n"},
    ),
    Case(
        "config-gen-future-contract",
        (*GEN, "--talos-version", "v9.99.0", "--secrets", "secrets.yaml"),
        "is not supported",
        {"secrets.yaml": "cluster: {}\n"},
    ),
    Case(
        "config-gen-not-a-version",
        (*GEN, "--talos-version", "banana", "--secrets", "secrets.yaml"),
        "is not a version like",
        {"secrets.yaml": "cluster: {}\n"},
    ),
    Case(
        "config-gen-bad-type",
        ("config", "gen", "--type", "boss"),
        "'boss' is not one of",
    ),
    Case(
        "config-patch-missing-config", ("config", "patch", "c.yaml", "-p", "{}"), "does not exist"
    ),
    Case(
        "config-patch-config-directory",
        ("config", "patch", "c.yaml", "-p", "{}"),
        "is a directory",
        {"c.yaml": None},
    ),
    Case(
        "config-patch-invalid-yaml",
        ("config", "patch", "c.yaml", "-p", "{}"),
        "c.yaml",
        {"c.yaml": "machine: [\n"},
    ),
    Case(
        "config-patch-non-utf8",
        ("config", "patch", "c.yaml", "-p", "{}"),
        "c.yaml",
        {"c.yaml": b"machine:\n  type: \xff\xfe\n"},
    ),
    Case(
        "config-patch-missing-patch-file",
        ("config", "patch", "c.yaml", "-p", "@p.yaml"),
        "patch file 'p.yaml' does not exist",
        {"c.yaml": SINGLE},
    ),
    Case(
        "config-patch-invalid-inline-patch",
        ("config", "patch", "c.yaml", "-p", "machine: [\n"),
        "patch",
        {"c.yaml": SINGLE},
    ),
    Case(
        "config-patch-json-patch-on-multidoc",
        ("config", "patch", "c.yaml", "-p", JSON_PATCH),
        "JSON",
        {"c.yaml": MULTIDOC},
    ),
    Case(
        "config-patch-json-patch-missing-path",
        ("config", "patch", "c.yaml", "-p", '[{"op": "replace", "path": "/nope/x", "value": 1}]'),
        "nope",
        {"c.yaml": SINGLE},
    ),
    Case(
        "config-patch-output-folder-missing",
        ("config", "patch", "c.yaml", "-p", "{machine: {type: worker}}", "-o", "no/such/o.yaml"),
        "does not exist",
        {"c.yaml": SINGLE},
    ),
    Case(
        "config-diff-missing-original",
        ("config", "diff", "a.yaml", "b.yaml"),
        "'a.yaml' does not exist",
        {"b.yaml": SINGLE},
    ),
    Case(
        "config-diff-modified-invalid-yaml",
        ("config", "diff", "a.yaml", "b.yaml"),
        "b.yaml",
        {"a.yaml": SINGLE, "b.yaml": "machine: {\n"},
    ),
    Case(
        "config-diff-not-a-config",
        ("config", "diff", "a.yaml", "b.yaml"),
        "b.yaml",
        {"a.yaml": SINGLE, "b.yaml": "- 1\n- 2\n"},
    ),
    Case(
        "config-secrets-missing",
        ("config", "secrets", "--from-controlplane-config", "cp.yaml"),
        "does not exist",
    ),
    Case(
        "config-secrets-invalid-yaml",
        ("config", "secrets", "--from-controlplane-config", "cp.yaml"),
        "cp.yaml",
        {"cp.yaml": "machine: [\n"},
    ),
    Case(
        "config-secrets-empty",
        ("config", "secrets", "--from-controlplane-config", "cp.yaml"),
        "cp.yaml",
        {"cp.yaml": ""},
    ),
    Case(
        "config-secrets-handwritten-worker",
        ("config", "secrets", "--from-controlplane-config", "w.yaml"),
        "w.yaml",
        {"w.yaml": SINGLE},
    ),
]

USAGE_CASES = [
    Case("usage-missing-argument", ("plan",), "Missing argument 'SPEC'"),
    Case("usage-unknown-option", ("validate", "--bogus", "x"), "No such option '--bogus'"),
    Case("usage-unknown-command", ("valdate", "x"), "Did you mean 'validate'?"),
    Case("usage-parallelism-zero", ("apply", "--parallelism", "0", "p"), "--parallelism"),
    Case("usage-port-out-of-range", ("config", "gen", "--kubeprism-port", "70000"), "70000"),
    Case("usage-output-dir-is-a-file", ("config", "diff", "a", "b", "-o", "f"), "'f'", {"f": ""}),
]

CONFIG_CASES += [
    Case(
        "config-patch-larger-than-16-mib",
        ("config", "patch", "big.yaml", "-p", "{}"),
        "more than the 16 MiB allowed",
        {"big.yaml": _sparse(16 * MIB + 1)},
    ),
    Case(
        "config-gen-secrets-larger-than-16-mib",
        (*GEN, "--talos-version", "v1.11.5", "--secrets", "secrets.yaml"),
        "more than the 16 MiB allowed",
        {"secrets.yaml": _sparse(16 * MIB + 1)},
    ),
    Case(
        "config-patch-python-tag",
        ("config", "patch", "c.yaml", "-p", "{}"),
        "unsupported YAML tag '!!python/object/apply:os.system'",
        {"c.yaml": SINGLE.replace("worker", '!!python/object/apply:os.system ["id"]')},
    ),
    Case(
        "config-patch-python-tag-in-the-patch",
        ("config", "patch", "c.yaml", "-p", "machine: {type: !!python/name:os.system }"),
        "unsupported YAML tag '!!python/name:os.system'",
        {"c.yaml": SINGLE},
    ),
]

CASES = (
    USAGE_CASES
    + _spec_cases("validate")
    + _spec_cases("plan")
    + PLAN_CASES
    + SHOW_CASES
    + APPLY_CASES
    + ROLLBACK_CASES
    + SIZE_CAP_CASES
    + CONFIG_CASES
)


# --- running a case ----------------------------------------------------------------------------


@pytest.fixture
def omniport(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    def invoke(*args: str) -> Outcome:
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return invoke


def _materialize(case: Case, workdir: Path, material: Material, monkeypatch) -> None:
    for name, content in case.files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
            continue
        value = content(material) if callable(content) else content
        if isinstance(value, str) and value.startswith("<symlink:"):
            path.symlink_to(value.removeprefix("<symlink:").removesuffix(">"))
            continue
        if isinstance(value, str) and value.startswith("<sparse:"):
            with path.open("wb") as handle:
                handle.truncate(int(value.removeprefix("<sparse:").removesuffix(">")))
            continue
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            path.write_text(value, encoding="utf-8")
    for name, value in case.env.items():
        monkeypatch.setenv(name, value(material))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error_and_changes_nothing(
    case: Case, workdir: Path, material: Material, omniport, monkeypatch
) -> None:
    _materialize(case, workdir, material, monkeypatch)
    before = snapshot(workdir)
    result = omniport(*case.args)
    after = snapshot(workdir)
    assert_one_clear_error(result, case.needle, spec_lines=case.spec_lines)
    assert_unchanged(before, after)


def test_a_failing_json_patch_never_prints_config_values(workdir: Path, omniport) -> None:
    token = "s3cr3t-join-token-0123456789"
    (workdir / "c.yaml").write_text(SINGLE.replace("  network:", f"  token: {token}\n  network:"))
    before = snapshot(workdir)
    for patch in (
        '[{"op": "replace", "path": "/machine/nope/x", "value": 1}]',
        '[{"op": "test", "path": "/machine/token", "value": "guess"}]',
    ):
        result = omniport("config", "patch", "c.yaml", "-p", patch)
        assert_one_clear_error(result, "JSON patch failed")
        assert token not in result.err
    assert_unchanged(before, snapshot(workdir))


def test_config_secrets_refuses_a_real_worker_config(workdir: Path, omniport) -> None:
    worker = talos_fixture("v1alpha1", "stability", "v1.11", "base-worker.yaml")
    (workdir / "worker.yaml").write_bytes(worker.read_bytes())
    before = snapshot(workdir)
    result = omniport("config", "secrets", "--from-controlplane-config", "worker.yaml")
    assert_one_clear_error(result, "worker.yaml")
    assert_unchanged(before, snapshot(workdir))


def test_config_gen_output_into_a_missing_folder(workdir: Path, omniport) -> None:
    secrets = talos_fixture("v1alpha1", "stability", "secrets.yaml")
    (workdir / "secrets.yaml").write_bytes(secrets.read_bytes())
    before = snapshot(workdir)
    args = (*GEN, "--talos-version", "v1.11.5", "--secrets", "secrets.yaml")
    result = omniport(*args, "-o", "no/such/worker.yaml")
    assert_one_clear_error(result, "cannot write")
    assert_unchanged(before, snapshot(workdir))


def test_every_spec_problem_is_reported_on_its_own_line(workdir: Path, omniport) -> None:
    """Several problems at once: one line each, all in file:line:col form, sorted by place."""
    (workdir / "import.yaml").write_text(
        MINIMAL.replace("  nodes:", "  nodse:") + "apply: {parallelism: ten, waitTimeout: 1x}\n"
    )
    result = omniport("validate", "import.yaml")
    assert_one_clear_error(result, "did you mean 'nodes'?", spec_lines=True)
    lines = result.err.splitlines()
    assert len(lines) == 3  # the misspelling, parallelism, waitTimeout (talos.nodes is optional)
    places = [tuple(int(n) for n in line.split(":")[-3:-1]) for line in lines]
    assert places == sorted(places)


# --- a few through a real process: the console entry point, stderr as a user sees it -----------

SUBPROCESS_CASES = [
    ("validate-non-utf8", ("validate", "import.yaml"), {"import.yaml": b"\xff\xfe"}, "UTF-8"),
    ("show-invalid-json", ("show", "p.plan.json"), {"p.plan.json": "{"}, "invalid JSON"),
    ("config-secrets-missing", ("config", "secrets", "--from-controlplane-config", "x"), {}, "x"),
    ("validate-directory", ("validate", "d"), {"d": None}, "is a directory"),
]


@pytest.mark.parametrize(
    ("args", "files", "needle"),
    [c[1:] for c in SUBPROCESS_CASES],
    ids=[c[0] for c in SUBPROCESS_CASES],
)
def test_bad_input_through_a_real_process(
    args: tuple[str, ...], files: dict[str, Content], needle: str, workdir: Path
) -> None:
    for name, content in files.items():
        if content is None:
            (workdir / name).mkdir()
        elif isinstance(content, bytes):
            (workdir / name).write_bytes(content)
        else:
            (workdir / name).write_text(content)
    before = snapshot(workdir)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "omniport.planner.cli", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_clear_error(Outcome(proc.returncode, proc.stdout, proc.stderr), needle)
    assert_unchanged(before, snapshot(workdir))


def test_plan_file_and_rollback_file_material_is_valid(material: Material) -> None:
    """The corpus's "one byte changed" cases start from files the readers accept."""
    assert planfile.parse(material.plan).cluster.name == "prod"
    assert rollbackfile.parse(material.rollback).cluster_name == "prod"
