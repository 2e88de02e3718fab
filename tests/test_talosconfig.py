"""talosconfig lookup, context selection, endpoint parsing and the errors users see."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from omniport.planner.machineconfig import pki
from omniport.providers.errors import CredentialsError
from omniport.providers.talosconfig import (
    Endpoint,
    find_talosconfig,
    load_talosconfig,
    parse_endpoint,
)

NOW = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def creds() -> tuple[pki.CertAndKey, pki.CertAndKey]:
    ca = pki.talos_os_ca(NOW)
    return ca, pki.admin_client_cert(ca, NOW)


def write_config(path: Path, creds, *, current: str = "prod", endpoints=None, extra=None) -> Path:
    ca, client = creds
    ctx = {"ca": ca.crt_b64, "crt": client.crt_b64, "key": client.key_b64}
    doc = {
        "context": current,
        "contexts": {
            "prod": {
                **ctx,
                "endpoints": endpoints if endpoints is not None else ["10.0.0.1"],
                "nodes": ["10.0.0.2"],
            },
            "staging": {**ctx, "endpoints": ["[fd00::1]:6000", "https://talos.example"]},
        },
    }
    if extra:
        doc["contexts"].update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", Endpoint("10.0.0.1", 50000)),
        ("10.0.0.1:6443", Endpoint("10.0.0.1", 6443)),
        ("cp.example", Endpoint("cp.example", 50000)),
        ("cp.example:1234", Endpoint("cp.example", 1234)),
        ("https://cp.example", Endpoint("cp.example", 443)),
        ("https://cp.example:8443/path", Endpoint("cp.example", 8443)),
        ("[fd00::1]:6000", Endpoint("fd00::1", 6000)),
        ("[fd00::1]", Endpoint("fd00::1", 50000)),
        ("fd00::1", Endpoint("fd00::1", 50000)),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("bad", ["", "host:0", "host:99999", "host:abc", "[fd00::1", "[zz::1]:5"])
def test_parse_endpoint_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(bad)


def test_endpoint_str_brackets_ipv6() -> None:
    assert str(Endpoint("fd00::1", 50000)) == "[fd00::1]:50000"
    assert str(Endpoint("10.0.0.1", 50000)) == "10.0.0.1:50000"


def test_lookup_order(tmp_path: Path, creds) -> None:
    explicit = write_config(tmp_path / "explicit", creds)
    from_env = write_config(tmp_path / "env", creds)
    home = tmp_path / "home"
    talos_home = tmp_path / "th"
    in_home = write_config(home / ".talos" / "config", creds)
    in_talos_home = write_config(talos_home / "config", creds)
    env = {"TALOSCONFIG": str(from_env), "TALOS_HOME": str(talos_home), "HOME": str(home)}
    assert find_talosconfig(explicit, env) == explicit
    assert find_talosconfig(None, env) == from_env
    env.pop("TALOSCONFIG")
    assert find_talosconfig(None, env) == in_talos_home
    env["TALOS_HOME"] = "relative/dir"  # talosctl ignores a relative TALOS_HOME
    assert find_talosconfig(None, env) == in_home
    # A TALOSCONFIG naming a missing file falls through, as in talosctl.
    assert find_talosconfig(None, {"TALOSCONFIG": str(tmp_path / "gone"), "HOME": str(home)}) == (
        in_home
    )


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as err:
        find_talosconfig(tmp_path / "nope", {})
    assert str(tmp_path / "nope") in str(err.value) and "--talosconfig" in str(err.value)
    with pytest.raises(CredentialsError, match="no talosconfig found") as err:
        find_talosconfig(None, {"HOME": str(tmp_path)})
    assert str(tmp_path / ".talos" / "config") in str(err.value)
    assert "TALOSCONFIG" in str(err.value)


def test_context_selection_and_endpoint_override(tmp_path: Path, creds) -> None:
    path = write_config(tmp_path / "config", creds)
    default = load_talosconfig(path, env={})
    assert default.name == "prod"
    assert default.endpoints == (Endpoint("10.0.0.1", 50000),)
    assert default.nodes == ("10.0.0.2",)
    assert default.ca == creds[0].crt and default.key == creds[1].key
    staging = load_talosconfig(path, context="staging", env={})
    assert staging.endpoints == (Endpoint("fd00::1", 6000), Endpoint("talos.example", 443))
    override = load_talosconfig(path, endpoints=["127.0.0.1:7000"], env={})
    assert override.endpoints == (Endpoint("127.0.0.1", 7000),)


def test_repr_hides_key(tmp_path: Path, creds) -> None:
    ctx = load_talosconfig(write_config(tmp_path / "config", creds), env={})
    text = repr(ctx) + str(ctx)
    assert "(sensitive value)" in text
    assert creds[1].key_b64 not in text and "PRIVATE KEY" not in text


def test_unknown_context_lists_available(tmp_path: Path, creds) -> None:
    path = write_config(tmp_path / "config", creds)
    with pytest.raises(CredentialsError) as err:
        load_talosconfig(path, context="qa", env={})
    message = str(err.value)
    assert "'qa'" in message and "available: prod, staging" in message and str(path) in message
    assert "\n" not in message


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("context: a\ncontexts:\n  a: [unclosed\n")
    with pytest.raises(CredentialsError, match="not valid YAML at line") as err:
        load_talosconfig(path, env={})
    assert str(path) in str(err.value)


def test_no_endpoints(tmp_path: Path, creds) -> None:
    path = write_config(tmp_path / "config", creds, endpoints=[])
    with pytest.raises(CredentialsError, match="has no endpoints") as err:
        load_talosconfig(path, env={})
    assert "--endpoints" in str(err.value)
    # ... but an override supplies them
    assert load_talosconfig(path, endpoints=["10.1.1.1"], env={}).endpoints


def test_bad_pem_fields(tmp_path: Path, creds) -> None:
    broken = {"broken": {"endpoints": ["x"], "ca": "!!!", "crt": "aGVsbG8=", "key": ""}}
    path = write_config(tmp_path / "config", creds, extra=broken)
    with pytest.raises(CredentialsError, match="field `ca` is not base64-encoded PEM"):
        load_talosconfig(path, context="broken", env={})


def test_not_a_talosconfig(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("just: text\n")
    with pytest.raises(CredentialsError, match="no `contexts` map"):
        load_talosconfig(path, env={})
