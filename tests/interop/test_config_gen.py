"""The config generator against Talos's own: ``generate`` versus machinery's ``generate.Input``.

For each Talos minor 1.9-1.14, 240 seeded inputs (``mc_cases.gen_cases``: cluster names,
endpoints on DNS names, IPv4 and bracketed IPv6 hosts with and without ports, Kubernetes
versions the minor supports, bundles machinery made, and random generator options) go to
machinery in one oracle process and to the engine in-process. One in five cases asks for an
older contract, as ``talosctl gen config --talos-version`` does.

Comparison: the documents machinery wrote, read back as plain data, must equal the engine's
documents: same documents in the same order, same keys *in the same order*, same values and
types. No normalization. Where machinery refuses an input, the engine must refuse it too.

A few cases per minor go through the real CLI (``omniport config gen`` via ``planner.cli.run``)
with the options it has flags for, and the file it writes must hold the same documents.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from omniport.planner.cli import run
from omniport.planner.errors import OmniportError
from tests.interop import counts, mc_cases, oracles
from tests.test_gen_helpers import key_order


def _verdict(case: mc_cases.GenCase, answer: dict[str, Any]) -> str | None:
    """None when engine and machinery agree on ``case``, else what differs."""
    try:
        got = case.engine()
    except OmniportError as err:
        if answer.get("error"):
            return None
        return f"engine refused what machinery accepted: {err}"
    if answer.get("error"):
        return f"machinery refused ({answer['error']}) what the engine accepted"
    want = mc_cases.parse_docs(answer["config"])
    if got != want:
        return _first_difference(want, got)
    if key_order(got) != key_order(want):
        return "same documents, different key order"
    return None


def _first_difference(want: Any, got: Any, path: str = "") -> str:
    if isinstance(want, dict) and isinstance(got, dict):
        for key in [*want, *(k for k in got if k not in want)]:
            if key not in got:
                return f"{path}.{key}: engine lacks it (machinery: {want[key]!r:.120})"
            if key not in want:
                return f"{path}.{key}: engine adds {got[key]!r:.120}"
            if want[key] != got[key]:
                return _first_difference(want[key], got[key], f"{path}.{key}")
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            if w != g:
                return _first_difference(w, g, f"{path}[{i}]")
    return f"{path or '(documents)'}: machinery {want!r:.200}, engine {got!r:.200}"


def test_generate_equals_machinery(oracle: oracles.Oracle) -> None:
    cases = mc_cases.gen_cases(oracle.minor)
    answers = mc_cases.machinery_gen(oracle.minor)
    failures = {}
    for case in cases:
        problem = _verdict(case, answers[case.id])
        if problem:
            failures[case.id] = problem
    counts.record("config gen", oracle.minor, tried=len(cases), agreed=len(cases) - len(failures))
    assert not failures, "\n".join(f"{k}: {v}" for k, v in list(failures.items())[:20])


# --- the CLI ----------------------------------------------------------------------------------

CLI_CASES_PER_MINOR = 5


def _cli_args(case: mc_cases.GenCase, secrets: str, out: str) -> list[str]:
    opts = case.options
    args = [
        "config",
        "gen",
        "--talos-version",
        f"{case.contract}.0",
        "--kubernetes-version",
        case.kubernetes_version,
        "--cluster-name",
        case.cluster_name,
        "--endpoint",
        case.endpoint,
        "--secrets",
        secrets,
        "--type",
        case.machine_type,
        "-o",
        out,
    ]
    for san in opts.get("additional_sans", ()):
        args += ["--additional-sans", san]
    for name, flag in (
        ("install_disk", "--install-disk"),
        ("install_image", "--install-image"),
        ("dns_domain", "--dns-domain"),
        ("kube_prism_port", "--kubeprism-port"),
        ("local_api_server_port", "--local-api-server-port"),
    ):
        if name in opts:
            args += [flag, str(opts[name])]
    if opts.get("allow_scheduling_on_control_planes"):
        args.append("--allow-scheduling-on-control-planes")
    if "discovery" in opts:
        args.append(
            "--with-cluster-discovery" if opts["discovery"] else "--without-cluster-discovery"
        )
    for host, endpoints in opts.get("registry_mirrors", {}).items():
        args += ["--registry-mirror", f"{host}={','.join(endpoints)}"]
    if "kubespan" in opts:
        args.append("--with-kubespan" if opts["kubespan"] else "--without-kubespan")
    return args


# Options `omniport config gen` has flags for (the rest stay library-only, as in talosctl).
CLI_OPTIONS = frozenset(
    {
        "additional_sans",
        "install_disk",
        "install_image",
        "dns_domain",
        "kube_prism_port",
        "local_api_server_port",
        "allow_scheduling_on_control_planes",
        "discovery",
        "registry_mirrors",
        "kubespan",
    }
)


def test_cli_config_gen_equals_machinery(oracle: oracles.Oracle, tmp_path) -> None:
    answers = mc_cases.machinery_gen(oracle.minor)
    eligible = [
        c
        for c in mc_cases.gen_cases(oracle.minor)
        if set(c.options) <= CLI_OPTIONS and not answers[c.id].get("error")
    ]
    # Prefer cases with options, so the flags are exercised.
    rng = random.Random(f"cli-{oracle.minor}")
    eligible.sort(key=lambda c: -len(c.options))
    picked = rng.sample(eligible[: CLI_CASES_PER_MINOR * 4], CLI_CASES_PER_MINOR)
    failures = []
    for i, case in enumerate(picked):
        secrets = tmp_path / f"secrets-{i}.yaml"
        secrets.write_text(mc_cases.bundle_texts(oracle.minor)[case.bundle])
        out = tmp_path / f"config-{i}.yaml"
        code = run(_cli_args(case, str(secrets), str(out)))
        if code != 0:
            failures.append(f"{case.id}: exit {code}")
            continue
        got = mc_cases.parse_docs(out.read_text())
        want = mc_cases.parse_docs(answers[case.id]["config"])
        if key_order(got) != key_order(want):
            failures.append(f"{case.id}: {_first_difference(want, got)}")
    counts.record(
        "config gen (CLI)", oracle.minor, tried=len(picked), agreed=len(picked) - len(failures)
    )
    assert len(picked) == CLI_CASES_PER_MINOR
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("minor", mc_cases.MINORS)
def test_cases_cover_the_inputs_the_brief_names(minor: str) -> None:
    """The seeded inputs really vary: a generator that drew the same case would prove little."""
    cases = mc_cases.gen_cases(minor)
    hosts = [c.endpoint.split("//")[1] for c in cases]
    assert any(h.startswith("[") for h in hosts)
    assert any(h[0].isdigit() for h in hosts)
    assert any(h[0].isalpha() for h in hosts)
    assert {c.machine_type for c in cases} == {"controlplane", "worker", "init"}
    assert len({c.kubernetes_version.rsplit(".", 1)[0] for c in cases}) == 6
    assert len({c.contract for c in cases}) > 1
    named = {k for c in cases for k in c.options}
    assert {"discovery", "kube_prism_port", "registry_mirrors", "sysctls", "cni_url"} <= named
