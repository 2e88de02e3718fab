"""``omniport init``: a commented import spec written from a live cluster.

It infers what ``omnictl cluster import`` infers from its flags, and what omni#1301 asks users
not to type: the talosconfig context (or ``--talosconfig/--context/--endpoints``), the nodes
(Talos discovery ``Members``, read through the endpoint), the current Talos and Kubernetes
versions (the first control plane's ``Version`` tag and kubelet image, as omnictl detects
them), the cluster name, and where Omni is (``--omni-url``, ``$OMNI_ENDPOINT``, or an
omniconfig). Only reads; never asks Omni anything.

What it writes holds no secret: keys stay in the talosconfig and in the service-account
variables (``SIDERO_SERVICE_ACCOUNT_KEY``, ``OMNI_SERVICE_ACCOUNT_KEY``), which the spec names
in comments only. ``talos.nodes`` is left out, so plan discovers the nodes again each time
(the comment lists what init found). An existing file is never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from omniport.planner.checks import image_version
from omniport.planner.discover import TLS_CLOSE_GRACE
from omniport.planner.errors import OmniportError
from omniport.providers import omniconfig
from omniport.providers.errors import ConfigurationError
from omniport.providers.talos import ClusterMember, TalosClient
from omniport.providers.talosconfig import find_talosconfig, load_talosconfig
from omniport.providers.timeouts import Timeouts


class InitError(OmniportError):
    """``omniport init`` cannot write a spec (the file exists, nothing to infer from)."""


@dataclass(frozen=True)
class InitRequest:
    """What the user gave ``omniport init``; ``None`` means "infer it"."""

    path: Path
    talosconfig: Path | None = None
    context: str | None = None
    endpoints: tuple[str, ...] = ()
    omniconfig: Path | None = None
    omni_context: str | None = None
    omni_url: str | None = None
    omni_ca_file: Path | None = None


@dataclass(frozen=True)
class Found:
    """What init inferred, each with where it came from (for the spec's comments)."""

    cluster: str
    talosconfig: Path
    talosconfig_source: str
    context: str
    endpoints: tuple[str, ...]
    members: tuple[ClusterMember, ...]
    first_control_plane: str
    talos_version: str
    kubernetes_version: str | None
    omni_url: str | None
    omni_url_source: str
    omniconfig: Path | None
    service_account_variable: str | None


def _check_target(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise InitError(
            f"{path} already exists, and init never overwrites a file",
            "name another file (omniport init PATH) or move this one away first",
        )
    if not path.parent.is_dir():
        raise InitError(
            f"the directory {path.parent} does not exist",
            "create it first, or name a spec in an existing directory",
        )


def _talosconfig_source(request: InitRequest, env: Mapping[str, str]) -> tuple[Path, str]:
    path = find_talosconfig(request.talosconfig, env)
    if request.talosconfig is not None:
        return path, "--talosconfig"
    if env.get("TALOSCONFIG"):
        return path, "$TALOSCONFIG"
    return path, "the default location"


def _omni(
    request: InitRequest, env: Mapping[str, str]
) -> tuple[str | None, str, Path | None, str | None]:
    """(url, where it came from, omniconfig path, service-account variable); no network."""
    account = omniconfig.service_account_from_env(env)  # a broken key is said now, not later
    variable = account[0] if account else None
    config: Path | None = None
    if request.omniconfig is not None or not request.omni_url:
        try:
            config = omniconfig.find_omniconfig(request.omniconfig, environ=env)
        except ConfigurationError:
            if request.omniconfig is not None:
                raise
            config = None
    if request.omni_url:
        return request.omni_url, "--omni-url", config, variable
    if env.get(omniconfig.ENDPOINT_ENV_VAR, "").strip():
        return env[omniconfig.ENDPOINT_ENV_VAR].strip(), "$OMNI_ENDPOINT", config, variable
    if config is not None:
        ctx = omniconfig.load_omniconfig(config).select(request.omni_context)
        return ctx.url, f"{config}, context {ctx.name!r}", config, variable
    raise InitError(
        "no Omni to point the spec at: no --omni-url, no $OMNI_ENDPOINT and no omniconfig",
        "set OMNI_ENDPOINT (with OMNI_SERVICE_ACCOUNT_KEY, as CI does), pass --omni-url, or "
        "pass --omniconfig (the file omnictl uses)",
    )


def _is_control_plane(member: ClusterMember) -> bool:
    return member.machine_type in ("controlplane", "init")


async def inspect(
    request: InitRequest, env: Mapping[str, str] | None = None, timeouts: Timeouts | None = None
) -> Found:
    """Read the cluster (discovery members, then its first control plane) and resolve Omni."""
    env = dict(os.environ if env is None else env)
    _check_target(request.path)
    talosconfig, source = _talosconfig_source(request, env)
    context = load_talosconfig(
        talosconfig, context=request.context, endpoints=list(request.endpoints) or None, env=env
    )
    omni_url, omni_source, config, variable = _omni(request, env)
    if omni_url is not None:
        omniconfig.parse_endpoint(omni_url, where=omni_source)  # a bad URL is said by its source
        if urlsplit(omni_url).username is not None:
            raise InitError(
                f"the Omni URL from {omni_source} carries credentials (user:password@), which "
                "a spec must never hold",
                "give the URL without them; Omni authenticates with the service account key",
            )
    client = TalosClient.from_context(context, timeouts=timeouts or Timeouts())
    try:
        async with client:
            members = tuple(await client.members(None))
            control_planes = [m for m in members if _is_control_plane(m) and m.addresses]
            if not control_planes:
                what = (
                    "Talos discovery lists no members (cluster discovery is disabled)"
                    if not members
                    else "no discovery member is a control plane with an address"
                )
                raise InitError(
                    f"{what}, so init cannot find the nodes through {client.endpoint}",
                    "enable cluster discovery (cluster.discovery.enabled), or write the spec "
                    "by hand from examples/ with every node under talos.nodes",
                )
            first = control_planes[0].addresses[0]
            version = await client.version(first)
            kubelet = await client.kubelet_image(first)
            cluster = (await client.cluster_info(first)).cluster_name
    finally:
        await _settle()
    tag = version.tag
    return Found(
        cluster=cluster,
        talosconfig=talosconfig,
        talosconfig_source=source,
        context=context.name,
        endpoints=tuple(request.endpoints),
        members=members,
        first_control_plane=first,
        talos_version=tag[1:] if tag.startswith("v") else tag,
        kubernetes_version=image_version(kubelet),
        omni_url=omni_url,
        omni_url_source=omni_source,
        omniconfig=config,
        service_account_variable=variable,
    )


async def _settle() -> None:
    import asyncio  # imported here: only the async path needs it

    await asyncio.sleep(TLS_CLOSE_GRACE)  # the TLS close completes before the loop ends


def _relative(path: Path, spec: Path) -> str:
    """``path`` as the spec should name it: relative to the spec's directory when under it."""
    target = path.resolve()
    base = spec.resolve().parent
    try:
        return "./" + target.relative_to(base).as_posix()
    except ValueError:
        return str(target)


def _quoted(value: str) -> str:
    import json  # imported here: only rendering needs it

    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def _member_line(m: ClusterMember) -> str:
    role = "control plane" if _is_control_plane(m) else "worker"
    return f"  #   {', '.join(m.addresses) or '(no address)'}  {m.hostname}  {role}"


def render_spec(found: Found, request: InitRequest) -> str:
    """The commented spec. Every value is either given or inferred; comments say which."""
    spec = request.path
    lines = [
        f"# Import spec for cluster {_quoted(found.cluster)}, written by `omniport init`.",
        "# Check it with `omniport validate` (`--offline` in a pull-request job), then",
        "# `omniport plan` shows what an import would do; nothing here holds a secret.",
        "version: 1",
        "",
        "talos:",
    ]
    if found.talosconfig_source == "--talosconfig":
        lines.append(f"  talosconfig: {_quoted(_relative(found.talosconfig, spec))}")
    else:
        lines += [
            f"  # talosconfig: found at {found.talosconfig} ({found.talosconfig_source});",
            "  # left out, so plan looks it up the same way: --talosconfig, $TALOSCONFIG,",
            "  # ~/.talos/config (in CI, put the talosconfig in a secret and set TALOSCONFIG).",
        ]
    if request.context:
        lines.append(f"  context: {_quoted(found.context)}")
    else:
        lines.append(
            f"  # context: {_quoted(found.context)}  (the talosconfig's selected context now)"
        )
    if found.endpoints:
        lines.append("  endpoints:")
        lines += [f"    - {_quoted(e)}" for e in found.endpoints]
    if not any(line.startswith("  ") and not line.startswith("  #") for line in lines):
        lines[lines.index("talos:")] = "talos: {}  # everything below is found at plan time"
    lines += [
        "  # nodes: left out on purpose. plan reads them from Talos discovery (Members), so a",
        "  # node added later is not forgotten, and the plan records what it found. init found",
        f"  # {len(found.members)}:",
        *(_member_line(m) for m in found.members),
        "",
        "omni:",
    ]
    lines.append(f"  # from {found.omni_url_source}")
    lines.append(f"  url: {_quoted(found.omni_url or '')}")
    if request.omniconfig is not None and found.omniconfig is not None:
        lines.append(f"  omniconfig: {_quoted(_relative(found.omniconfig, spec))}")
    if request.omni_context:
        lines.append(f"  context: {_quoted(request.omni_context)}")
    if request.omni_ca_file is not None:
        lines.append(f"  caFile: {_quoted(_relative(request.omni_ca_file, spec))}")
    variable = found.service_account_variable or "OMNI_SERVICE_ACCOUNT_KEY"
    lines += [
        f"  # The service account key comes from ${variable} at plan and apply time"
        + (" (set now)." if found.service_account_variable else "."),
        "  # Never write the key here or commit a key file; CI keeps it in a secret variable.",
        "",
        "versions:",
        f"  # Detected on {found.first_control_plane} (the first control plane), as omnictl",
        "  # does; plan refuses if the cluster runs another version (an assertion).",
        f"  talos: {_quoted(found.talos_version)}",
    ]
    if found.kubernetes_version:
        lines.append(f"  kubernetes: {_quoted(found.kubernetes_version)}")
    lines += [
        "  # The versions the cluster was first created with set the baseline config the",
        "  # per-node patches are computed against (default: the current ones). Set them if",
        "  # the cluster was upgraded since: plan's CONFIG_RESIDUE findings show when needed.",
        "  #   initialTalos: <the Talos version of the first install, e.g. 1.9.5>",
        "  #   initialKubernetes: <the Kubernetes version of the first install>",
        "",
        "healthCheck:",
        "  enabled: true",
        "  timeout: 5m",
        "",
        "findings:",
        "  # Codes of warning or error findings accepted after review (omniport plan lists them).",
        "  accept: []",
        "",
    ]
    return "\n".join(lines)


def write_spec(text: str, path: Path) -> None:
    """Create ``path`` (never replace one: O_EXCL), 0644: a spec holds no secret."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise InitError(
            f"{path} already exists, and init never overwrites a file",
            "name another file (omniport init PATH) or move this one away first",
        ) from None
    except OSError as exc:
        raise InitError(
            f"cannot create {path}: {exc.strerror or type(exc).__name__}",
            "name a spec in a directory you can write to",
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def describe(found: Found) -> Sequence[str]:
    """Lines for the terminal after writing: what was inferred, in a few words."""
    cps = sum(1 for m in found.members if _is_control_plane(m))
    return (
        f"cluster {found.cluster!r}: {len(found.members)} node(s) from Talos discovery "
        f"({cps} control plane(s)), Talos {found.talos_version}, Kubernetes "
        f"{found.kubernetes_version or '(unknown)'}",
        f"talosconfig {found.talosconfig} ({found.talosconfig_source}), context {found.context!r}",
        f"Omni {found.omni_url} (from {found.omni_url_source})",
    )
