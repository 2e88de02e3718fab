"""Where Omni is and who we are: omniconfig files, service-account keys, endpoints.

Resolution, as omnictl does it (``client/pkg/omnictl``), with one error sentence per mistake:

1. A service-account key in ``SIDERO_SERVICE_ACCOUNT_KEY``, else ``OMNI_SERVICE_ACCOUNT_KEY``
   (a variable that is set but empty is an error, as Go's ``LookupEnv`` makes it), or a key file
   given explicitly. With a service account the URL comes from ``endpoint`` or ``OMNI_ENDPOINT``
   only, and no omniconfig is read.
2. Otherwise an omniconfig: the explicit path, else ``$OMNICONFIG``, else the first existing of
   ``$TALOS_HOME/omni/config``, ``~/.talos/omni/config`` and ``$XDG_CONFIG_HOME/omni/config``
   (``~/.config/omni/config``). Its context (explicit, else the file's ``context``) gives the URL
   and the ``auth.siderov1.identity`` whose key omnictl stored as ``<context>-<identity>.pgp`` in
   ``$SIDEROV1_KEYS_DIR``, ``~/.talos/keys`` or ``$XDG_DATA_HOME/omni/keys``.

URLs: ``https`` means TLS (default port 443); ``http`` and ``grpc`` mean plaintext HTTP/2 (port
80). The path is ignored. Key material is never part of a message or a ``repr``.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from omniport.providers.codec import siderov1
from omniport.providers.errors import YAML_VALUE_ERRORS, ConfigurationError

SERVICE_ACCOUNT_ENV_VARS = ("SIDERO_SERVICE_ACCOUNT_KEY", "OMNI_SERVICE_ACCOUNT_KEY")
ENDPOINT_ENV_VAR = "OMNI_ENDPOINT"
OMNICONFIG_ENV_VAR = "OMNICONFIG"
PLACEHOLDER_URL = "<placeholder_url>"

_DEFAULT_PORTS = {"https": 443, "grpc": 80}


@dataclass(frozen=True)
class Endpoint:
    """Omni's gRPC address: ``tls`` for https, plaintext HTTP/2 (h2c) otherwise."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def target(self) -> str:
        """``host:port``, IPv6 hosts in brackets; what errors name."""
        try:
            ipaddress.IPv6Address(self.host)
        except ValueError:
            return f"{self.host}:{self.port}"
        return f"[{self.host}]:{self.port}"


def parse_endpoint(url: str, *, where: str) -> Endpoint:
    """Parse an Omni URL; ``where`` names its source (file and context, or variable) in errors."""
    text = url.strip()
    if not text or text == PLACEHOLDER_URL:
        raise ConfigurationError(
            f"{where} has no Omni URL yet; set it to your Omni address, "
            "e.g. https://acme.omni.siderolabs.io",
            target=where,
        )
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "http":
        scheme = "grpc"
    if scheme not in _DEFAULT_PORTS:
        raise ConfigurationError(
            f"{where}: Omni URL {text!r} must start with https:// (TLS) or grpc:// / http:// "
            "(plaintext)",
            target=where,
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, -1
    if not host or port == -1:
        raise ConfigurationError(
            f"{where}: Omni URL {text!r} needs a host and, optionally, a numeric port "
            "(https://host[:port])",
            target=where,
        )
    return Endpoint(url=text, scheme=scheme, host=host, port=port or _DEFAULT_PORTS[scheme])


@dataclass(frozen=True)
class OmniContext:
    name: str
    url: str
    identity: str


@dataclass(frozen=True)
class OmniConfig:
    """A parsed omniconfig file."""

    path: Path
    current: str
    contexts: Mapping[str, OmniContext]

    def select(self, name: str | None = None) -> OmniContext:
        """The named context, else the file's current one, else its only one."""
        wanted = name or self.current
        if not wanted and len(self.contexts) == 1:
            return next(iter(self.contexts.values()))
        if not wanted:
            raise ConfigurationError(
                f"{self.path} names no current context; set 'context:' in it or choose one "
                f"of: {', '.join(sorted(self.contexts)) or '(none)'}",
                target=str(self.path),
            )
        if wanted not in self.contexts:
            known = ", ".join(sorted(self.contexts)) or "(none)"
            raise ConfigurationError(
                f"{self.path} has no context {wanted!r}; use one of: {known}",
                target=str(self.path),
            )
        return self.contexts[wanted]


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _home(environ: Mapping[str, str], home: Path | None) -> Path:
    if home is not None:
        return home
    return Path(environ.get("HOME") or Path.home())


def omniconfig_candidates(
    *, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> list[Path]:
    """The default locations, in the order they are tried (after ``$OMNICONFIG``)."""
    env = _env(environ)
    base = _home(env, home)
    paths = []
    if env.get("TALOS_HOME"):
        paths.append(Path(env["TALOS_HOME"]) / "omni" / "config")
    paths.append(base / ".talos" / "omni" / "config")
    xdg = env.get("XDG_CONFIG_HOME")
    paths.append((Path(xdg) if xdg else base / ".config") / "omni" / "config")
    return paths


def find_omniconfig(
    explicit: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path:
    """The omniconfig to read; a path the user named must exist."""
    env = _env(environ)
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigurationError(
                f"omniconfig {explicit} does not exist; check the path", target=str(explicit)
            )
        return explicit
    if env.get(OMNICONFIG_ENV_VAR):
        path = Path(env[OMNICONFIG_ENV_VAR])
        if not path.is_file():
            raise ConfigurationError(
                f"omniconfig {path} named by ${OMNICONFIG_ENV_VAR} does not exist; fix or unset "
                f"{OMNICONFIG_ENV_VAR}",
                target=OMNICONFIG_ENV_VAR,
            )
        return path
    candidates = omniconfig_candidates(environ=env, home=home)
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigurationError(
        "no omniconfig found (looked in "
        + ", ".join(str(p) for p in candidates)
        + "); download one from Omni's UI and pass --omniconfig or set OMNICONFIG, "
        "or set OMNI_SERVICE_ACCOUNT_KEY and OMNI_ENDPOINT",
        target=str(candidates[0]),
    )


def load_omniconfig(path: Path) -> OmniConfig:
    """Parse an omniconfig file (YAML: ``context``, ``contexts.<name>.url``, ``.auth``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(
            f"cannot read omniconfig {path}: {reason}", target=str(path)
        ) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigurationError(
            f"{where}: omniconfig is not valid YAML ({problem}); fix the file", target=str(path)
        ) from None
    except YAML_VALUE_ERRORS:
        raise ConfigurationError(
            f"{path}: omniconfig is not valid YAML (a value cannot be read); fix the file",
            target=str(path),
        ) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigurationError(
            f"{path}: omniconfig must be a YAML mapping with 'context' and 'contexts'",
            target=str(path),
        )
    current = doc.get("context") or ""
    raw_contexts = doc.get("contexts") or {}
    if not isinstance(current, str) or not isinstance(raw_contexts, dict):
        raise ConfigurationError(
            f"{path}: 'context' must be a name and 'contexts' a mapping of names to settings",
            target=str(path),
        )
    contexts: dict[str, OmniContext] = {}
    for name, body in raw_contexts.items():
        where = f"{path}: context {name!r}"
        if not isinstance(body, dict):
            raise ConfigurationError(f"{where} must be a mapping with 'url'", target=str(path))
        url = body.get("url") or ""
        auth = body.get("auth") or {}
        siderov1_auth = auth.get("siderov1") if isinstance(auth, dict) else None
        identity = siderov1_auth.get("identity") if isinstance(siderov1_auth, dict) else None
        if not isinstance(url, str) or not isinstance(identity or "", str):
            raise ConfigurationError(
                f"{where}: 'url' and 'auth.siderov1.identity' must be strings", target=str(path)
            )
        contexts[str(name)] = OmniContext(name=str(name), url=url, identity=identity or "")
    return OmniConfig(path=path, current=current, contexts=contexts)


def user_key_candidates(
    context: str,
    identity: str,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> list[Path]:
    """Where omnictl keeps a user's signing key for ``context`` and ``identity``."""
    env = _env(environ)
    base = _home(env, home)
    name = f"{context}-{identity}.pgp"
    dirs = []
    if env.get("SIDEROV1_KEYS_DIR"):
        dirs.append(Path(env["SIDEROV1_KEYS_DIR"]))
    dirs.append(base / ".talos" / "keys")
    xdg = env.get("XDG_DATA_HOME")
    dirs.append((Path(xdg) if xdg else base / ".local" / "share") / "omni" / "keys")
    return [d / name for d in dirs]


@dataclass(frozen=True)
class OmniSettings:
    """Everything needed to call Omni; ``credentials`` says where the key came from."""

    endpoint: Endpoint
    identity: str
    credentials: str
    key: siderov1.SigningKey = field(repr=False)
    context: str | None = None
    config_path: Path | None = None


def service_account_from_env(
    environ: Mapping[str, str] | None = None,
) -> tuple[str, siderov1.ServiceAccount] | None:
    """The first service-account variable that is set, decoded; ``None`` if neither is set."""
    env = _env(environ)
    for name in SERVICE_ACCOUNT_ENV_VARS:
        if name not in env:
            continue
        value = env[name]
        if not value.strip():
            raise ConfigurationError(
                f"{name} is set but empty; put the service account key from Omni in it, "
                "or unset it",
                target=name,
            )
        return name, _decode(value, name, f"check the value of {name}")
    return None


def _decode(value: str, source: str, fix: str) -> siderov1.ServiceAccount:
    try:
        return siderov1.decode_service_account(value, source=source)
    except siderov1.Siderov1Error as exc:
        raise ConfigurationError(f"{exc}; {fix}", target=source) from None


def _check_expiry(key: siderov1.SigningKey, source: str, fix: str, now: float) -> None:
    if key.expires_at is not None and key.expires_at.timestamp() <= now:
        raise ConfigurationError(
            f"the key in {source} expired at {key.expires_at:%Y-%m-%d %H:%M} UTC; {fix}",
            target=source,
        )


def resolve(
    *,
    omniconfig: Path | None = None,
    context: str | None = None,
    endpoint: str | None = None,
    service_account_key_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    now: float | None = None,
) -> OmniSettings:
    """Settings for talking to Omni, from explicit options, the environment and omniconfig.

    ``now`` (default: the clock) is only used to refuse keys that have already expired."""
    env = _env(environ)
    at = time.time() if now is None else now
    account: tuple[str, siderov1.ServiceAccount] | None
    if service_account_key_file is not None:
        source = str(service_account_key_file)
        try:
            text = service_account_key_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigurationError(
                f"cannot read service account key file {source}: {reason}", target=source
            ) from None
        account = (source, _decode(text, source, "use the key Omni showed when creating it"))
    else:
        account = service_account_from_env(env)

    if account is not None:
        source, sa = account
        _check_expiry(sa.key, source, "ask an Omni admin for a new service account key", at)
        if endpoint:
            where, url = "the Omni endpoint option", endpoint
        elif env.get(ENDPOINT_ENV_VAR, "").strip():
            where, url = ENDPOINT_ENV_VAR, env[ENDPOINT_ENV_VAR]
        elif omniconfig is not None:
            # An omniconfig named explicitly (the spec's omni.omniconfig) says where Omni is,
            # even when the key comes from a service account rather than its identity.
            path = find_omniconfig(omniconfig, environ=env, home=home)
            ctx = load_omniconfig(path).select(context)
            where, url = f"{path}: context {ctx.name!r}", ctx.url
        else:
            raise ConfigurationError(
                f"{ENDPOINT_ENV_VAR} is not set; with a service account key ({source}) Omni's URL "
                f"comes from {ENDPOINT_ENV_VAR}, e.g. https://acme.omni.siderolabs.io",
                target=ENDPOINT_ENV_VAR,
            )
        return OmniSettings(
            endpoint=parse_endpoint(url, where=where),
            identity=sa.name,
            credentials=source,
            key=sa.key,
        )

    path = find_omniconfig(omniconfig, environ=env, home=home)
    config = load_omniconfig(path)
    ctx = config.select(context)
    where = f"{path}: context {ctx.name!r}"
    resolved = parse_endpoint(endpoint, where="the Omni endpoint option") if endpoint else None
    resolved = resolved or parse_endpoint(ctx.url, where=where)
    if not ctx.identity:
        raise ConfigurationError(
            f"{where} has no auth.siderov1.identity and no service account key is set; "
            "set OMNI_SERVICE_ACCOUNT_KEY, or log in once with omnictl",
            target=str(path),
        )
    candidates = user_key_candidates(ctx.name, ctx.identity, environ=env, home=home)
    key_path = next((p for p in candidates if p.is_file()), None)
    if key_path is None:
        raise ConfigurationError(
            f"no signing key for {ctx.identity} in context {ctx.name!r} (looked for "
            + ", ".join(str(p) for p in candidates)
            + "); run any omnictl command to log in, or set OMNI_SERVICE_ACCOUNT_KEY",
            target=str(candidates[0]),
        )
    try:
        armored = key_path.read_text(encoding="utf-8")
        key = siderov1.SigningKey.from_armored(armored, ctx.identity, what=str(key_path))
    except (OSError, UnicodeDecodeError):
        raise ConfigurationError(
            f"cannot read signing key {key_path}; check its permissions", target=str(key_path)
        ) from None
    except siderov1.Siderov1Error as exc:
        raise ConfigurationError(
            f"{exc}; log in again with omnictl to get a fresh key", target=str(key_path)
        ) from None
    _check_expiry(key, str(key_path), "run any omnictl command to log in again", at)
    return OmniSettings(
        endpoint=resolved,
        identity=ctx.identity,
        credentials=str(key_path),
        context=ctx.name,
        config_path=path,
        key=key,
    )
