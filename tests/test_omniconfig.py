"""omniconfig, service-account and endpoint resolution (files in tmp_path, env as a dict)."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from omniport.providers import omniconfig
from omniport.providers.codec import siderov1
from omniport.providers.errors import ConfigurationError, ProviderError

NOW = time.time()


@pytest.fixture(scope="module")
def account() -> siderov1.GeneratedServiceAccount:
    return siderov1.generate_service_account("ci-bot", now=NOW - 60)


def _config(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


CONFIG = """\
context: prod
contexts:
  prod:
    url: https://acme.omni.example.com
    auth:
      siderov1:
        identity: someone@example.com
  lab:
    url: grpc://127.0.0.1:8080
    auth:
      siderov1:
        identity: admin@lab
"""


# -- endpoints -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, scheme, host, port, tls",
    [
        ("https://acme.omni.example.com", "https", "acme.omni.example.com", 443, True),
        (
            "https://acme.omni.example.com:8443/some/path",
            "https",
            "acme.omni.example.com",
            8443,
            True,
        ),
        ("http://127.0.0.1", "grpc", "127.0.0.1", 80, False),
        ("grpc://127.0.0.1:8080", "grpc", "127.0.0.1", 8080, False),
        ("https://[::1]:9443", "https", "::1", 9443, True),
    ],
)
def test_parse_endpoint(url: str, scheme: str, host: str, port: int, tls: bool) -> None:
    ep = omniconfig.parse_endpoint(url, where="test")
    assert (ep.scheme, ep.host, ep.port, ep.tls) == (scheme, host, port, tls)


def test_endpoint_target_brackets_ipv6() -> None:
    assert omniconfig.parse_endpoint("https://[::1]", where="t").target == "[::1]:443"


@pytest.mark.parametrize(
    "url, reason",
    [
        ("<placeholder_url>", "has no Omni URL yet"),
        ("", "has no Omni URL yet"),
        ("ftp://x", "must start with https://"),
        ("acme.omni.example.com", "must start with https://"),
        ("https://", "needs a host"),
        ("https://host:notaport", "needs a host"),
    ],
)
def test_bad_endpoints(url: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason) as info:
        omniconfig.parse_endpoint(url, where="OMNI_ENDPOINT")
    assert str(info.value).startswith("OMNI_ENDPOINT")


# -- service accounts ----------------------------------------------------------------------------


def test_service_account_from_env_uses_omni_endpoint(account) -> None:
    env = {"OMNI_SERVICE_ACCOUNT_KEY": account.env_value, "OMNI_ENDPOINT": "https://omni.test"}
    settings = omniconfig.resolve(environ=env, home=Path("/nonexistent"), now=NOW)
    assert settings.identity == "ci-bot"
    assert settings.credentials == "OMNI_SERVICE_ACCOUNT_KEY"
    assert settings.endpoint.url == "https://omni.test" and settings.endpoint.port == 443
    assert settings.key.fingerprint == account.fingerprint
    assert settings.config_path is None
    assert account.env_value not in repr(settings)
    assert "PGP" not in repr(settings)


def test_sidero_variable_wins_like_go(account) -> None:
    other = siderov1.generate_service_account("other", now=NOW - 60)
    env = {
        "SIDERO_SERVICE_ACCOUNT_KEY": other.env_value,
        "OMNI_SERVICE_ACCOUNT_KEY": account.env_value,
        "OMNI_ENDPOINT": "grpc://127.0.0.1:1",
    }
    settings = omniconfig.resolve(environ=env, now=NOW)
    assert (settings.identity, settings.credentials) == ("other", "SIDERO_SERVICE_ACCOUNT_KEY")


@pytest.mark.parametrize(
    "empty, other",
    [
        ("OMNI_SERVICE_ACCOUNT_KEY", None),
        ("SIDERO_SERVICE_ACCOUNT_KEY", None),
        ("SIDERO_SERVICE_ACCOUNT_KEY", "OMNI_SERVICE_ACCOUNT_KEY"),  # set-but-empty still wins
    ],
)
def test_set_but_empty_variable_is_an_error(empty: str, other: str | None, account) -> None:
    env = {empty: "  ", "OMNI_ENDPOINT": "https://x"}
    if other:
        env[other] = account.env_value
    with pytest.raises(ConfigurationError, match=f"^{empty} is set but empty"):
        omniconfig.resolve(environ=env, now=NOW)


def test_service_account_without_endpoint(account) -> None:
    env = {"OMNI_SERVICE_ACCOUNT_KEY": account.env_value}
    with pytest.raises(ConfigurationError, match="OMNI_ENDPOINT is not set"):
        omniconfig.resolve(environ=env, now=NOW)
    settings = omniconfig.resolve(environ=env, endpoint="grpc://10.0.0.1:8080", now=NOW)
    assert settings.endpoint.target == "10.0.0.1:8080"


def test_garbage_service_account_names_the_variable_not_the_value() -> None:
    secret = "c2VjcmV0LXZhbHVlLW5vdC1hLWtleQ=="
    env = {"OMNI_SERVICE_ACCOUNT_KEY": secret, "OMNI_ENDPOINT": "https://x"}
    with pytest.raises(ConfigurationError) as info:
        omniconfig.resolve(environ=env, now=NOW)
    message = str(info.value)
    assert message.startswith("OMNI_SERVICE_ACCOUNT_KEY")
    assert "check the value of OMNI_SERVICE_ACCOUNT_KEY" in message
    assert secret not in message and "secret-value" not in message
    assert isinstance(info.value, ProviderError) and "\n" not in message


def test_expired_service_account_is_refused_before_any_call() -> None:
    old = siderov1.generate_service_account("old", now=NOW - 7200, lifetime=timedelta(hours=1))
    env = {"OMNI_SERVICE_ACCOUNT_KEY": old.env_value, "OMNI_ENDPOINT": "https://x"}
    with pytest.raises(ConfigurationError, match="expired at .* ask an Omni admin"):
        omniconfig.resolve(environ=env, now=NOW)


def test_service_account_key_file(tmp_path: Path, account) -> None:
    path = tmp_path / "service-account.key"
    path.write_text(account.env_value + "\n")
    settings = omniconfig.resolve(
        service_account_key_file=path, endpoint="https://omni.test", environ={}, now=NOW
    )
    assert settings.credentials == str(path) and settings.identity == "ci-bot"
    with pytest.raises(ConfigurationError, match="cannot read service account key file"):
        omniconfig.resolve(service_account_key_file=tmp_path / "missing", environ={}, now=NOW)


# -- omniconfig files ----------------------------------------------------------------------------


def _user_key(home: Path, context: str, identity: str, *, lifetime=timedelta(hours=4)) -> str:
    sa = siderov1.generate_service_account("user", now=NOW - 60, lifetime=lifetime)
    armored = json.loads(base64.b64decode(sa.env_value))["pgp_key"]
    path = home / ".talos" / "keys" / f"{context}-{identity}.pgp"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(armored)
    return sa.fingerprint


def test_omniconfig_search_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    legacy = _config(home / ".config" / "omni" / "config", CONFIG)
    assert omniconfig.find_omniconfig(environ={}, home=home) == legacy
    talos = _config(home / ".talos" / "omni" / "config", CONFIG)
    assert omniconfig.find_omniconfig(environ={}, home=home) == talos
    talos_home = _config(tmp_path / "th" / "omni" / "config", CONFIG)
    env = {"TALOS_HOME": str(tmp_path / "th")}
    assert omniconfig.find_omniconfig(environ=env, home=home) == talos_home
    named = _config(tmp_path / "named.yaml", CONFIG)
    env["OMNICONFIG"] = str(named)
    assert omniconfig.find_omniconfig(environ=env, home=home) == named
    explicit = _config(tmp_path / "explicit.yaml", CONFIG)
    assert omniconfig.find_omniconfig(explicit, environ=env, home=home) == explicit
    xdg = _config(tmp_path / "xdg" / "omni" / "config", CONFIG)
    assert (
        omniconfig.omniconfig_candidates(
            environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, home=tmp_path
        )[-1]
        == xdg
    )


def test_missing_omniconfig_errors(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError, match=r"omniconfig .*nope does not exist; check the path"
    ):
        omniconfig.find_omniconfig(tmp_path / "nope", environ={})
    env = {"OMNICONFIG": str(tmp_path / "gone")}
    with pytest.raises(ConfigurationError, match="named by \\$OMNICONFIG does not exist"):
        omniconfig.find_omniconfig(environ=env)
    with pytest.raises(ConfigurationError, match="no omniconfig found .*OMNI_SERVICE_ACCOUNT_KEY"):
        omniconfig.resolve(environ={}, home=tmp_path, now=NOW)


def test_resolve_with_user_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = _config(home / ".talos" / "omni" / "config", CONFIG)
    fingerprint = _user_key(home, "prod", "someone@example.com")
    settings = omniconfig.resolve(environ={}, home=home, now=NOW)
    assert settings.context == "prod" and settings.config_path == path
    assert settings.identity == "someone@example.com"
    assert settings.key.identity == "someone@example.com"
    assert settings.key.fingerprint == fingerprint
    assert settings.endpoint.url == "https://acme.omni.example.com"


def test_context_selection_and_missing_user_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _config(home / ".talos" / "omni" / "config", CONFIG)
    with pytest.raises(ConfigurationError, match="no context 'staging'; use one of: lab, prod"):
        omniconfig.resolve(context="staging", environ={}, home=home, now=NOW)
    with pytest.raises(ConfigurationError, match="no signing key for admin@lab in context 'lab'"):
        omniconfig.resolve(context="lab", environ={}, home=home, now=NOW)
    keys = tmp_path / "keys"
    keys.mkdir()
    sa = siderov1.generate_service_account("u", now=NOW - 60, lifetime=timedelta(hours=4))
    (keys / "lab-admin@lab.pgp").write_text(json.loads(base64.b64decode(sa.env_value))["pgp_key"])
    env = {"SIDEROV1_KEYS_DIR": str(keys)}
    settings = omniconfig.resolve(context="lab", environ=env, home=home, now=NOW)
    assert settings.endpoint.target == "127.0.0.1:8080" and not settings.endpoint.tls
    assert settings.credentials == str(keys / "lab-admin@lab.pgp")


def test_expired_user_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _config(home / ".talos" / "omni" / "config", CONFIG)
    _user_key(home, "prod", "someone@example.com", lifetime=timedelta(seconds=30))
    with pytest.raises(ConfigurationError, match="expired .* log in again"):
        omniconfig.resolve(environ={}, home=home, now=NOW)


@pytest.mark.parametrize(
    "body, reason",
    [
        ("context: [unclosed\n", r"config:\d+:\d+: omniconfig is not valid YAML"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("context: prod\ncontexts: [1]\n", "'contexts' a mapping"),
        ("context: prod\ncontexts:\n  prod: 3\n", "context 'prod' must be a mapping"),
        (
            "context: prod\ncontexts:\n  prod:\n    url: <placeholder_url>\n",
            "context 'prod' has no Omni URL yet",
        ),
        (
            "contexts:\n  a: {url: 'https://a'}\n  b: {url: 'https://b'}\n",
            "names no current context; set 'context:' in it or choose one of: a, b",
        ),
        (
            "context: a\ncontexts:\n  a: {url: 'https://a'}\n",
            "context 'a' has no auth.siderov1.identity",
        ),
    ],
    ids=["yaml", "list", "contexts", "context body", "placeholder", "no current", "no identity"],
)
def test_bad_omniconfig(tmp_path: Path, body: str, reason: str) -> None:
    path = _config(tmp_path / "config", body)
    with pytest.raises(ConfigurationError, match=reason) as info:
        omniconfig.resolve(omniconfig=path, environ={}, home=tmp_path, now=NOW)
    assert str(path) in str(info.value)


def test_single_context_without_current_is_used(tmp_path: Path) -> None:
    path = _config(tmp_path / "config", "contexts:\n  only: {url: 'grpc://h:1'}\n")
    config = omniconfig.load_omniconfig(path)
    assert config.select().name == "only"
