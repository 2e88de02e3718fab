"""Talos's validator in the engine: rules per version, omni#3424, the unlock preview, the CLI.

Machinery itself judges the same rules in ``tests/interop/test_validate.py``; these tests pin
behaviour without Go.
"""

from __future__ import annotations

import datetime as dt

import pytest

from omniport.planner.cli import run
from omniport.planner.machineconfig import document as mcdoc
from omniport.planner.machineconfig.generate import GenerateOptions, generate, import_baseline
from omniport.planner.machineconfig.merge import apply_patches
from omniport.planner.machineconfig.secrets import SecretsBundle, new_bundle
from omniport.planner.machineconfig.validate import (
    ValidateError,
    endpoint_problem,
    validate,
    validate_bytes,
)
from omniport.planner.machineconfig.verify import compare, node_patches, pushed_config_verdict

MINORS = ("1.9", "1.10", "1.11", "1.12", "1.13", "1.14")
K8S = {"1.9": "1.32.3", "1.10": "1.33.1", "1.11": "1.34.1", "1.12": "1.35.0"}
K8S |= {"1.13": "1.36.0", "1.14": "1.37.0"}
OMNI_LB = "https://[fdae:41e4:649b:9303::1]:10000"


@pytest.fixture(scope="module")
def bundle() -> SecretsBundle:
    return new_bundle("v1.12", dt.datetime(2026, 1, 1), rsa_key_size=2048)


def config(bundle, minor, role="controlplane", endpoint="https://10.0.0.1:6443", **options):
    options.setdefault("install_disk", "/dev/sda")
    return generate(
        role,
        contract=f"v{minor}",
        cluster_name="c",
        endpoint=endpoint,
        kubernetes_version=K8S[minor],
        secrets=bundle,
        options=GenerateOptions(**options),
    )


def copied(docs):
    return [mcdoc.Document(mcdoc.copy_tree(d.data)) for d in mcdoc.as_documents(docs)]


def errors(verdict):
    return [(e.where, e.path) for e in verdict.errors]


@pytest.mark.parametrize("minor", MINORS)
@pytest.mark.parametrize("role", ["controlplane", "worker"])
def test_generated_configs_are_valid(bundle, minor, role):
    verdict = validate(config(bundle, minor, role), minor)
    assert verdict.valid, verdict.errors


@pytest.mark.parametrize(
    ("minor", "expected"),
    [
        ("1.12", [("v1alpha1", "cluster.controlPlane.endpoint")]),
        ("1.13", [("v1alpha1", "cluster.controlPlane.endpoint")]),
        (
            "1.14",
            [("KubeClusterConfig", "endpoint"), ("KubeServiceAccountConfig", "issuer.issuerURL")],
        ),
    ],
)
def test_omnis_baseline_has_no_endpoint_and_is_not_valid_alone(bundle, minor, expected):
    baseline = import_baseline(
        "controlplane",
        talos_version=minor,
        kubernetes_version=K8S[minor],
        cluster_name="c",
        secrets=bundle,
    )
    assert errors(validate(baseline, minor, mode="cloud")) == expected


def test_install_section_required_in_metal_mode_until_1_14(bundle):
    docs = copied(config(bundle, "1.13"))
    del docs[0].data["machine"]["install"]
    assert errors(validate(docs, "1.13")) == [("v1alpha1", "machine.install")]
    assert validate(docs, "1.13", mode="cloud").valid
    legacy_only = [d for d in docs if d.key.is_legacy]
    assert validate(legacy_only, "1.14").valid


def test_1_14_needs_an_endpoint_only_when_control_plane_section_is_there(bundle):
    docs = copied(config(bundle, "1.12"))
    legacy = docs[0].data
    legacy["cluster"]["controlPlane"] = {}
    assert errors(validate(docs, "1.14")) == [
        ("v1alpha1", "cluster.controlPlane.endpoint"),
        ("config", ""),  # a Kubernetes CA (.cluster.ca) without any endpoint
    ]
    assert errors(validate(docs, "1.13")) == [("v1alpha1", "cluster.controlPlane.endpoint")]
    del legacy["cluster"]["controlPlane"]
    # no endpoint anywhere: the legacy service account needs it, and so does the Kubernetes CA
    assert errors(validate(docs, "1.14")) == [
        ("v1alpha1", "cluster.serviceAccount"),
        ("config", ""),
    ]
    assert errors(validate(docs, "1.12")) == [("v1alpha1", "cluster.controlPlane.endpoint")]


def test_duplicate_documents_are_one_load_error(bundle):
    text = mcdoc.emit(config(bundle, "1.14"))
    doubled = text + "---\napiVersion: v1alpha1\nkind: KubePrismConfig\nport: 7445\n"
    verdict = validate_bytes(doubled, "1.14")
    assert [(e.where, e.path) for e in verdict.errors] == [("config", "")]
    assert "repeats" in verdict.errors[0].message


def test_strict_applies_to_v1alpha1_warnings_only(bundle):
    docs = copied(config(bundle, "1.12"))
    docs[0].data["cluster"]["network"]["cni"] = {"name": "custom"}
    assert validate(docs, "1.12").valid
    assert len(validate(docs, "1.12").warnings) == 1
    assert errors(validate(docs, "1.12", strict=True)) == [("v1alpha1", "cluster.network.cni")]
    fresh = config(bundle, "1.14", install_image="")
    assert validate(fresh, "1.14", strict=True).warnings  # UnattendedInstallConfig's stays


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://10.0.0.1:6443", None),
        ("https://[fd00::1]:6443", None),
        ("https://cp.example.com", None),
        ("", "hostname must not be blank"),
        ("cp.example.com", "hostname must not be blank"),
        ("10.0.0.1:6443", "first path segment in URL cannot contain colon"),
        ("https://fd00::1:6443", "IPv6 addresses MUST be enclosed by square brackets"),
        ("https://10.0.0.1:99999", "port number must be between 1 and 65535"),
        ("https://10.0.0.1:http", "invalid port ':http' after host"),
    ],
)
def test_endpoint_uri_rules(url, problem):
    assert endpoint_problem(url) == problem


def test_versions_and_modes_outside_the_rules_are_refused(bundle):
    docs = config(bundle, "1.12")
    with pytest.raises(ValidateError, match="Talos 1.8.0 has no validation rules"):
        validate(docs, "1.8.0")
    with pytest.raises(ValidateError, match="unknown validation mode"):
        validate(docs, "1.12", mode="vm")


# ---- omni#3424 and the unlock preview ------------------------------------------------------


def pushed_after_unlock(bundle, role, initial, current="1.14"):
    live = config(bundle, "1.12", role)
    baseline = import_baseline(
        role,
        talos_version=initial,
        kubernetes_version=K8S["1.12"],
        cluster_name="c",
        secrets=bundle,
    )
    patches = node_patches(baseline, live).patches
    render = generate(
        role,
        contract=f"v{current}",
        cluster_name="c",
        endpoint=OMNI_LB,
        kubernetes_version=K8S["1.12"],
        secrets=bundle,
        options=GenerateOptions(install_image="", skip_unattended_install=True),
    )
    return live, apply_patches(render, patches)


def test_omni_3424_a_1_12_born_control_plane_imported_as_1_14(bundle):
    live, pushed = pushed_after_unlock(bundle, "controlplane", initial="1.14")
    verdict = pushed_config_verdict(pushed, live, "1.14.0")
    assert errors(verdict) == [
        ("v1alpha1", "cluster.controlPlane.endpoint"),
        ("KubeAggregatorCAConfig", ""),
    ]
    assert "aggregatorCA" in str(verdict.errors[1])
    # the field comparison hid it; with Omni's documents compared by presence it shows
    assert compare(live, pushed) == []
    shown = compare(live, pushed, managed_documents=True)
    assert {m.document for m in shown} == {
        "v1alpha1/DiscoveryIdentityConfig",
        "v1alpha1/KubeAPIServerCAConfig",
        "v1alpha1/KubeAggregatorCAConfig",
        "v1alpha1/KubeClusterConfig",
        "v1alpha1/KubeEtcdEncryptionConfig",
    }
    assert all(m.expected is None and m.actual == "present" for m in shown)


def test_omni_3424_workers_fail_too_and_1_12_accepts_the_same_patches(bundle):
    live, pushed = pushed_after_unlock(bundle, "worker", initial="1.12")
    assert errors(pushed_config_verdict(pushed, live, "1.14")) == [
        ("v1alpha1", "cluster.controlPlane.endpoint")
    ]
    live, pushed = pushed_after_unlock(bundle, "worker", initial="1.12", current="1.12")
    assert pushed_config_verdict(pushed, live, "1.12").valid


def test_pushed_config_keeps_the_live_install_disk(bundle):
    live, pushed = pushed_after_unlock(bundle, "worker", initial="1.12", current="1.12")
    without = validate(pushed, "1.12")
    assert ("v1alpha1", "machine.install") in errors(without)
    assert pushed_config_verdict(pushed, live, "1.12").valid


# ---- omniport config validate ---------------------------------------------------------------


def test_cli_valid_invalid_and_unreadable(bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.yaml").write_text(mcdoc.emit(config(bundle, "1.12")))
    assert run(["config", "validate", "--talos-version", "1.12.7", "ok.yaml"]) == 0
    assert "ok.yaml: valid for Talos 1.12 (metal mode)." in capsys.readouterr().out

    live, pushed = pushed_after_unlock(bundle, "controlplane", initial="1.14")
    (tmp_path / "pushed.yaml").write_text(mcdoc.emit(pushed))
    assert run(["config", "validate", "--talos-version", "v1.14.1", "pushed.yaml"]) == 1
    err = capsys.readouterr().err
    assert "error: v1alpha1: cluster.controlPlane.endpoint: cluster controlplane endpoint" in err
    assert "error: KubeAggregatorCAConfig: kube-apiserver aggregator CA is already set" in err
    assert "Talos 1.14 (metal) refuses this config: 3 error(s)." in err  # + install disk

    (tmp_path / "bad.yaml").write_text("version: v1alpha1\nmachine: [\n")
    assert run(["config", "validate", "--talos-version", "1.12", "bad.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err

    assert run(["config", "validate", "--talos-version", "1.7", "ok.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: Talos 1.7 has no validation rules here")
    assert run(["config", "validate", "--talos-version", "1.12", "missing.yaml"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_unlock_preview_carries_the_refusal():
    from types import SimpleNamespace

    from omniport.planner.execute.unlock import unlock_preview
    from omniport.planner.plan import Finding, Severity

    findings = [
        Finding("DENYLISTED_VALUES", Severity.WARNING, "strips"),
        Finding("UNLOCK_CONFIG_INVALID", Severity.ERROR, "refused", node="10.0.0.1"),
        Finding("CLUSTER_EXISTS", Severity.ERROR, "exists"),
    ]
    shown = unlock_preview(SimpleNamespace(findings=findings))
    assert [f.code for f in shown] == ["DENYLISTED_VALUES", "UNLOCK_CONFIG_INVALID"]


def test_1_14_checks_kubernetes_image_versions(bundle):
    docs = copied(config(bundle, "1.14"))
    kubelet = next(d for d in docs if d.key.kind == "KubeletConfig")
    kubelet.data["image"] = "ghcr.io/siderolabs/kubelet:v1.31.9"
    [problem] = validate(docs, "1.14").errors
    assert str(problem) == (
        "KubeletConfig: image: kubelet image is not valid: Kubernetes 1.31.9 is too old for "
        "Talos 1.14"
    )
    kubelet.data["image"] = "ghcr.io/siderolabs/kubelet:latest"
    assert "invalid image reference" in str(validate(docs, "1.14").errors[0])


def test_rules_the_live_config_breaks_too_are_not_refusals(bundle):
    """A cloud node has no machine.install: metal-mode rules do not hold for it."""
    live = copied(config(bundle, "1.12", "worker"))
    del live[0].data["machine"]["install"]
    assert errors(validate(live, "1.12")) == [("v1alpha1", "machine.install")]
    baseline = import_baseline(
        "worker",
        talos_version="1.12",
        kubernetes_version=K8S["1.12"],
        cluster_name="c",
        secrets=bundle,
    )
    render = config(bundle, "1.12", "worker", endpoint=OMNI_LB, install_disk="")
    pushed = apply_patches(render, node_patches(baseline, live).patches)
    assert ("v1alpha1", "machine.install") in errors(validate(pushed, "1.12"))
    assert pushed_config_verdict(pushed, live, "1.12").valid


def test_extension_images_that_are_not_strings_do_not_break_the_duplicate_rule(bundle):
    docs = copied(config(bundle, "1.12"))
    image = "ghcr.io/siderolabs/gvisor:20250505.0"
    docs[0].data["machine"]["install"]["extensions"] = [
        {"image": ["not", "a", "string"]},
        {"image": image},
        {"image": image},
    ]
    problems = [str(p) for p in validate(docs, "1.12").errors]
    where = "v1alpha1: machine.install.extensions"
    assert problems == [f"{where}: duplicate system extension {image!r}"]
