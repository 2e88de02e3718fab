"""``omniport config gen|patch|diff|validate|secrets``: the machine-config engine on files.

Like talosctl's commands of the same names; the engine (``planner/machineconfig``) is pure, so
reading and writing files is done here and in ``config_files``/``config_generation``, which
are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from omniport.planner.cli.context import CliContext, pass_console


@click.group()
def config() -> None:
    """The machine-config engine on files, like talosctl."""


def _registry_mirrors(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, list[str]]:
    """``HOST=URL[,URL...]`` flags as talosctl reads them; a repeated host adds endpoints."""
    mirrors: dict[str, list[str]] = {}
    for value in values:
        host, sep, urls = value.partition("=")
        if not sep or not host or not urls:
            raise click.BadParameter(
                f"{value!r} is not HOST=URL[,URL...]; e.g. docker.io=https://mirror.example.com"
            )
        mirrors.setdefault(host, []).extend(urls.split(","))
    return mirrors


@config.command("gen")
@click.option(
    "--talos-version", required=True, help="Talos version; its major.minor is the contract."
)
@click.option("--kubernetes-version", required=True, help="Kubernetes version, e.g. 1.28.0.")
@click.option("--cluster-name", required=True)
@click.option(
    "--endpoint", required=True, help='Kubernetes API URL, e.g. https://host:6443 ("" allowed).'
)
@click.option(
    "--secrets",
    "secrets_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Secrets bundle (talosctl gen secrets layout).",
)
@click.option(
    "--type", "machine_type", required=True, type=click.Choice(["controlplane", "worker", "init"])
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="File to write (mode 0600); stdout when omitted.",
)
@click.option("--additional-sans", multiple=True, help="Extra certificate SAN (repeatable).")
@click.option("--install-disk", default="", help="Install disk, e.g. /dev/sda.")
@click.option("--install-image", default="", help="Installer image reference.")
@click.option("--dns-domain", default="cluster.local", show_default=True)
@click.option("--allow-scheduling-on-control-planes", is_flag=True)
@click.option(
    "--kubeprism-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="KubePrism port (0 disables; default: the contract's).",
)
@click.option("--local-api-server-port", type=click.IntRange(0, 65535), default=0)
@click.option(
    "--with-cluster-discovery/--without-cluster-discovery",
    "discovery",
    default=True,
    show_default=True,
    help="Cluster discovery (talosctl's --with-cluster-discovery).",
)
@click.option(
    "--registry-mirror",
    "registry_mirrors",
    multiple=True,
    callback=_registry_mirrors,
    metavar="HOST=URL[,URL...]",
    help="Registry mirror, e.g. docker.io=https://mirror.example.com (repeatable).",
)
@click.option(
    "--with-kubespan/--without-kubespan",
    "kubespan",
    default=None,
    help="Write KubeSpan on or off (default: leave it out, as Talos does).",
)
@pass_console
def config_gen(
    console: CliContext,
    talos_version: str,
    kubernetes_version: str,
    cluster_name: str,
    endpoint: str,
    secrets_file: str,
    machine_type: str,
    output: str | None,
    additional_sans: tuple[str, ...],
    install_disk: str,
    install_image: str,
    dns_domain: str,
    allow_scheduling_on_control_planes: bool,
    kubeprism_port: int | None,
    local_api_server_port: int,
    discovery: bool,
    registry_mirrors: dict[str, list[str]],
    kubespan: bool | None,
) -> None:
    """Generate a default machine config for a version contract."""
    # imported here: start-up time
    from omniport.planner.config_generation import GenRequest, write_private_file
    from omniport.planner.config_generation import config_gen as generate_config
    from omniport.planner.machineconfig.generate import GenerateOptions

    request = GenRequest(
        talos_version=talos_version,
        kubernetes_version=kubernetes_version,
        cluster_name=cluster_name,
        endpoint=endpoint,
        secrets_path=secrets_file,
        machine_type=machine_type,
        options=GenerateOptions(
            additional_sans=additional_sans,
            install_disk=install_disk,
            install_image=install_image,
            dns_domain=dns_domain,
            allow_scheduling_on_control_planes=allow_scheduling_on_control_planes,
            kube_prism_port=kubeprism_port,
            local_api_server_port=local_api_server_port,
            discovery=discovery,
            registry_mirrors=registry_mirrors,
            kubespan=kubespan,
        ),
    )
    text = generate_config(request)
    if output is None:
        console.write(text)
    else:
        write_private_file(output, text)
        console.err(f"Wrote the {machine_type} config for Talos {talos_version} to {output}.")
    _warn_if_exposed(console, secrets_file, "the cluster's CA keys")


@config.command("patch")
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option(
    "-p",
    "--patch",
    "patches",
    multiple=True,
    required=True,
    help="A patch: @FILE, a file name, or inline YAML/JSON (strategic merge or JSON6902). "
    "Repeat to apply several in order.",
)
@click.option(
    "-o", "--output", "output", type=click.Path(dir_okay=False), help="Write here, not stdout."
)
@click.option(
    "--talos-version",
    help="Decode as this Talos version's machinery does (1.9 to 1.14; default: the newest), "
    "refusing unknown keys and wrong types in the v1alpha1 document as talosctl does.",
)
@pass_console
def config_patch(
    console: CliContext,
    config_file: str,
    patches: tuple[str, ...],
    output: str | None,
    talos_version: str | None,
) -> None:
    """Apply strategic-merge or JSON6902 patches to a machine config.

    As `talosctl machineconfig patch` does, the config, each strategic-merge patch and the
    result are decoded as Talos decodes them: an unknown key or a value of the wrong type in
    the v1alpha1 document is refused with Talos's own text, and nothing is written.
    """
    # imported here: start-up time
    from omniport.planner.config_files import patch_argument, read_config, write_text
    from omniport.planner.machineconfig.document import ConfigError, emit
    from omniport.planner.machineconfig.merge import (
        StrategicPatch,
        apply_patches,
        load_patch,
        load_patches,
    )
    from omniport.planner.machineconfig.strict import LATEST_MINOR, decode_error

    minor = _talos_minor(talos_version) if talos_version else LATEST_MINOR
    fix = "fix the key or the value (Talos's v1alpha1 reference lists the fields and types)"
    config = read_config(config_file)
    refused = decode_error(config.raw.decode("utf-8", "replace"), minor)
    if refused:
        raise ConfigError(
            f"{config_file}: Talos 1.{minor} refuses this config: {refused.rstrip()}", fix
        )
    items = [patch_argument(argument) for argument in patches]
    for source, raw in items:
        if isinstance(load_patch(raw, source), StrategicPatch):
            refused = decode_error(raw.decode("utf-8", "replace"), minor, patch=True)
            if refused:
                raise ConfigError(
                    f"{source}: Talos 1.{minor} refuses this patch: {refused.rstrip()}", fix
                )
    result = emit(apply_patches(config, load_patches(items)))
    refused = decode_error(result, minor)
    if refused:
        raise ConfigError(
            f"the patched config: Talos 1.{minor} refuses it: {refused.rstrip()}", fix
        )
    if output:
        write_text(output, result)
    else:
        console.write(result)


def _talos_minor(version: str) -> int:
    """The minor of ``version`` (1.11, v1.11.5, ...), refused outside 1.x."""
    # imported here: start-up time
    from omniport.planner.errors import UsageProblem

    parts = version.strip().removeprefix("v").split(".")
    if len(parts) < 2 or parts[0] != "1" or not parts[1].isdigit():
        raise UsageProblem(
            f"--talos-version {version!r} is not a Talos version like 1.11 or v1.11.5",
            "give the Talos version the config is for",
        )
    return int(parts[1])


@config.command("diff")
@click.argument("original", type=click.Path(dir_okay=False))
@click.argument("modified", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output-dir",
    "output_dir",
    type=click.Path(file_okay=False),
    help="Write 10-patch.yaml and 20-patch.yaml here, not to stdout.",
)
@pass_console
def config_diff(console: CliContext, original: str, modified: str, output_dir: str | None) -> None:
    """Compute the strategic patches that turn one machine config into another.

    Applying them in order to ORIGINAL (omniport config patch ORIGINAL -p @10-patch.yaml
    -p @20-patch.yaml) gives MODIFIED.
    """
    # imported here: start-up time
    from omniport.planner.config_files import PATCH_FILE_NAMES, read_config, write_patches
    from omniport.planner.machineconfig.diff import diff
    from omniport.planner.machineconfig.document import emit

    patches = diff(read_config(original), read_config(modified))
    if output_dir:
        for path in write_patches(output_dir, patches):
            console.err(f"wrote {path}")
        if not patches:
            console.err("The configs are the same; no patch written.")
        return
    if not patches:
        console.err("The configs are the same; no patch needed.")
        return
    for name, patch in zip(PATCH_FILE_NAMES, patches, strict=False):
        console.echo(f"# {name}")
        console.write(emit(patch))
        if name != PATCH_FILE_NAMES[len(patches) - 1]:
            console.echo("---")


@config.command("validate")
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option(
    "--talos-version",
    required=True,
    help="The Talos version whose rules apply, e.g. 1.14.1 (1.9 to 1.14).",
)
@click.option(
    "--mode",
    type=click.Choice(["metal", "cloud", "container"]),
    default="metal",
    show_default=True,
    help="Talos runtime mode, as talosctl validate --mode.",
)
@click.option("--strict", is_flag=True, help="Treat v1alpha1 warnings as errors.")
@pass_console
def config_validate(
    console: CliContext, config_file: str, talos_version: str, mode: str, strict: bool
) -> int:
    """Check a machine config against the rules Talos applies for a version.

    Exits 1 when Talos would refuse the config.
    """
    # imported here: start-up time
    from omniport.planner.config_files import read_bytes
    from omniport.planner.machineconfig.validate import validate_bytes
    from omniport.planner.render import printable

    verdict = validate_bytes(
        read_bytes(config_file, "config file"), talos_version, mode=mode, strict=strict
    )
    for warning in verdict.warnings:
        console.err(f"warning: {printable(str(warning))}")
    for error in verdict.errors:
        console.err(f"error: {printable(str(error))}")
    if not verdict.valid:
        console.err(
            f"{config_file}: Talos {verdict.talos_version} ({mode}) refuses this config: "
            f"{len(verdict.errors)} error(s)."
        )
        return 1
    console.echo(f"{config_file}: valid for Talos {verdict.talos_version} ({mode} mode).")
    return 0


@config.command("secrets")
@click.option(
    "--from-controlplane-config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="A control-plane machine config.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="File to write (mode 0600); stdout when omitted.",
)
@pass_console
def config_secrets(console: CliContext, config_file: str, output: str | None) -> None:
    """Rebuild a secrets bundle from a control-plane machine config."""
    # imported here: start-up time
    from omniport.planner.config_generation import config_secrets as rebuild_secrets
    from omniport.planner.config_generation import write_private_file

    text = rebuild_secrets(config_file)
    if output is None:
        console.write(text)
    else:
        write_private_file(output, text)
        console.err(f"Wrote the secrets bundle of {config_file} to {output}.")
    _warn_if_exposed(console, config_file, "the cluster's CA keys (a control-plane config)")


def _warn_if_exposed(console: CliContext, path: str, holds: str) -> None:
    """Warn as ssh does when a file holding private keys is readable by group or others
    (called once the command did its work: a broken file or output gets its error alone)."""
    from omniport.planner.files import readable_by_others  # imported here: start-up time

    mode = readable_by_others(Path(path))
    if mode is not None:
        console.err(
            f"Warning: {path} holds {holds} and is readable by others (mode {mode:04o}); "
            f"make it owner-only: chmod 600 {path}"
        )
