"""`omniport config gen` and `omniport config secrets` on real files, through cli.run."""

from __future__ import annotations

import stat

import pytest
import yaml

from omniport.planner.cli import run
from omniport.planner.machineconfig.contracts import SUPPORTED
from tests.test_gen_helpers import MACHINE_TYPES, fixture, key_order, load_documents, stability

VERSIONS = [f"{c.major}.{c.minor}" for c in SUPPORTED]


def gen_args(version: str, machine_type: str, secrets: str, *extra: str) -> list[str]:
    return [
        "config",
        "gen",
        "--talos-version",
        f"v{version}.0",
        "--kubernetes-version",
        "1.28.0",
        "--cluster-name",
        "base",
        "--endpoint",
        "https://base:6443",
        "--secrets",
        secrets,
        "--type",
        machine_type,
        *extra,
    ]


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("machine_type", MACHINE_TYPES)
@pytest.mark.parametrize("version", VERSIONS)
def test_config_gen_equals_the_talos_fixture(version, machine_type, tmp_path, capsys):
    secrets = str(fixture("v1alpha1", "stability", "secrets.yaml"))
    out = tmp_path / "config.yaml"
    assert run(gen_args(version, machine_type, secrets, "-o", str(out))) == 0
    assert mode(out) == 0o600
    expected = load_documents(stability(version, f"base-{machine_type}"))
    got = load_documents(out)
    assert got == expected
    assert key_order(got) == key_order(expected)
    # With the engine's Talos-layout emitter the file is even byte-identical.
    assert out.read_bytes() == stability(version, f"base-{machine_type}").read_bytes()
    assert f"to {out}" in capsys.readouterr().err


def test_config_gen_prints_to_stdout_without_output(capsys):
    secrets = str(fixture("v1alpha1", "stability", "secrets.yaml"))
    assert run(gen_args("1.14", "worker", secrets)) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert printed == load_documents(stability("1.14", "base-worker"))


def test_config_gen_options_reach_the_generator(capsys):
    secrets = str(fixture("v1alpha1", "stability", "secrets.yaml"))
    extra = [
        "--additional-sans",
        "foo",
        "--additional-sans",
        "bar",
        "--install-disk",
        "/dev/vda",
        "--dns-domain",
        "example.com",
        "--allow-scheduling-on-control-planes",
        "--local-api-server-port",
        "5443",
        "--kubeprism-port",
        "0",
    ]
    assert run(gen_args("1.8", "controlplane", secrets, *extra)) == 0
    (doc,) = yaml.safe_load_all(capsys.readouterr().out)
    assert doc["machine"]["certSANs"] == ["foo", "bar"]
    assert doc["machine"]["install"]["disk"] == "/dev/vda"
    assert "kubePrism" not in doc["machine"]["features"]
    assert doc["cluster"]["network"]["dnsDomain"] == "example.com"
    assert doc["cluster"]["controlPlane"]["localAPIServerPort"] == 5443
    assert doc["cluster"]["allowSchedulingOnControlPlanes"] is True


def test_config_gen_discovery_mirror_and_kubespan_flags(capsys):
    secrets = str(fixture("v1alpha1", "stability", "secrets.yaml"))
    extra = [
        "--without-cluster-discovery",
        "--registry-mirror",
        "docker.io=https://a.example.com,https://b.example.com",
        "--registry-mirror",
        "ghcr.io=https://c.example.com",
        "--with-kubespan",
    ]
    assert run(gen_args("1.11", "worker", secrets, *extra)) == 0
    (doc,) = yaml.safe_load_all(capsys.readouterr().out)
    assert doc["cluster"]["discovery"]["enabled"] is False
    assert doc["machine"]["registries"]["mirrors"] == {
        "docker.io": {"endpoints": ["https://a.example.com", "https://b.example.com"]},
        "ghcr.io": {"endpoints": ["https://c.example.com"]},
    }
    assert doc["machine"]["network"] == {"kubespan": {"enabled": True}}


@pytest.mark.parametrize("value", ["docker.io", "=https://m.example.com", "docker.io="])
def test_config_gen_bad_registry_mirror_flag_names_the_option(value, capsys):
    secrets = str(fixture("v1alpha1", "stability", "secrets.yaml"))
    assert run(gen_args("1.11", "worker", secrets, "--registry-mirror", value)) == 1
    assert "--registry-mirror" in capsys.readouterr().err


def test_config_gen_with_an_empty_endpoint(capsys):
    secrets = str(fixture("v1alpha1", "stability", "secrets.yaml"))
    args = gen_args("1.8", "worker", secrets)
    args[args.index("https://base:6443")] = ""
    assert run(args) == 0
    (doc,) = yaml.safe_load_all(capsys.readouterr().out)
    assert doc["cluster"]["controlPlane"] == {"endpoint": ""}


@pytest.mark.parametrize("version", VERSIONS)
def test_config_secrets_rebuilds_the_fixture_bundle(version, tmp_path, capsys):
    config = stability(version, "base-controlplane")
    out = tmp_path / "secrets.yaml"
    code = run(["config", "secrets", "--from-controlplane-config", str(config), "-o", str(out)])
    assert code == 0
    assert mode(out) == 0o600
    expected = yaml.safe_load(fixture("v1alpha1", "stability", "secrets.yaml").read_text())
    assert yaml.safe_load(out.read_text()) == expected


def test_config_secrets_replaces_an_existing_file_with_a_private_one(tmp_path, capsys):
    out = tmp_path / "secrets.yaml"
    out.write_text("old")
    out.chmod(0o644)
    config = str(stability("1.14", "base-controlplane"))
    assert run(["config", "secrets", "--from-controlplane-config", config, "-o", str(out)]) == 0
    assert mode(out) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.yaml"]


def test_secrets_then_gen_round_trip(tmp_path, capsys):
    config = stability("1.12", "base-controlplane")
    bundle = tmp_path / "s.yaml"
    run(["config", "secrets", "--from-controlplane-config", str(config), "-o", str(bundle)])
    out = tmp_path / "cp.yaml"
    assert run(gen_args("1.12", "controlplane", str(bundle), "-o", str(out))) == 0
    assert load_documents(out) == load_documents(config)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("version", ["1.3", "1.13", "1.14"])
def test_config_secrets_on_a_worker_is_one_clear_error(version, capsys):
    config = str(stability(version, "base-worker"))
    assert run(["config", "secrets", "--from-controlplane-config", config]) == 1
    assert one_line_error(capsys) == (
        f"Error: {config} is a worker config, and worker configs carry no CA private keys; "
        "pass a control-plane config (machine.type: controlplane) to rebuild the bundle"
    )


def test_config_gen_with_the_invalid_fixture_is_one_clear_error(capsys):
    secrets = str(fixture("secrets", "invalid-secrets.yaml"))
    assert run(gen_args("1.8", "worker", secrets)) == 1
    err = one_line_error(capsys)
    assert err.startswith(f"Error: {secrets} is invalid: cluster.secret is missing; ")
    assert "certs.os.key is invalid: unsupported key type 'CERTIFICATE'" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--talos-version": "v1.2.0"}, "Error: Talos version contract v1.2 is not supported"),
        ({"--kubernetes-version": "x"}, "Error: Kubernetes version 'x' is not a version"),
        ({"--endpoint": "base:6443"}, "Error: endpoint 'base:6443' is not a URL"),
        ({"--secrets": "missing.yaml"}, "Error: secrets file missing.yaml does not exist"),
    ],
)
def test_config_gen_bad_input_is_one_clear_error(change, message, capsys):
    args = gen_args("1.8", "worker", str(fixture("v1alpha1", "stability", "secrets.yaml")))
    for flag, value in change.items():
        args[args.index(flag) + 1] = value
    assert run(args) == 1
    assert one_line_error(capsys).startswith(message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("machine: [\n", "is not valid YAML"),
        ("- a\n", "document 1 is a list, not a mapping"),
        ("version: v1alpha1\nmachine:\n  type: controlplane\ncluster: {}\n", "does not carry a"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_config_secrets_bad_files_are_one_clear_error(content, message, tmp_path, capsys):
    path = tmp_path / "cp.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert run(["config", "secrets", "--from-controlplane-config", str(path)]) == 1
    assert message in one_line_error(capsys)


def test_config_secrets_unwritable_output_is_one_clear_error(tmp_path, capsys):
    config = str(stability("1.8", "base-controlplane"))
    out = tmp_path / "no-such-dir" / "s.yaml"
    assert run(["config", "secrets", "--from-controlplane-config", config, "-o", str(out)]) == 1
    assert one_line_error(capsys).startswith(f"Error: cannot write {out}: ")


def test_missing_required_flags_exit_1(capsys):
    assert run(["config", "gen", "--talos-version", "v1.8.0"]) == 1
    assert "Missing option" in capsys.readouterr().err
