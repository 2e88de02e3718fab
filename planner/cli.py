"""The ``omniport`` command line: small click commands that parse options and delegate.

Commands build a request, call one function in ``planner`` (imported lazily so that
``omniport --help`` stays fast), render the result and return an exit code. Errors are mapped
to exit codes in one place, :func:`main`, because click's own usage errors exit 2, which
``plan --detailed-exitcode`` reserves for "changes present".
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from omniport.planner import __version__
from omniport.planner.errors import OmniportError
from omniport.providers.errors import ProviderError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="omniport")
@click.option("--no-color", is_flag=True, help="Disable colored output (also: NO_COLOR=1).")
@click.pass_context
def cli(ctx: click.Context, no_color: bool) -> None:
    """Import running Talos Linux clusters into Sidero Omni with plan, apply and rollback."""
    ctx.ensure_object(dict)
    ctx.obj["color"] = not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
def validate(spec: str) -> None:
    """Check an import spec against its schema and semantics, without network."""
    from omniport.planner.spec import load_spec

    loaded = load_spec(spec)
    click.echo(
        f"{spec}: valid import spec for {len(loaded.talos.nodes)} node(s) "
        f"(sha256 {loaded.sha256[:12]})."
    )


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), help="Plan file to write.")
@click.option("--json", "as_json", is_flag=True, help="Stream JSON Lines events.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes.")
@click.option("--force", is_flag=True, help="Replace an existing -o file that is not a plan.")
@click.option(
    "--file-mode",
    type=click.Choice(["600", "640", "644"]),
    default="600",
    show_default=True,
    help="Permissions of the plan file.",
)
@click.pass_context
def plan(
    ctx: click.Context,
    spec: str,
    out: str | None,
    as_json: bool,
    detailed_exitcode: bool,
    force: bool,
    file_mode: str,
) -> int:
    """Read the live cluster and Omni, change nothing, and write a reviewable plan."""
    from omniport.planner.plan_command import run_plan

    return run_plan(
        spec,
        out,
        as_json=as_json,
        detailed_exitcode=detailed_exitcode,
        force=force,
        file_mode=int(file_mode, 8),
        color=ctx.obj["color"],
        echo=click.echo,
    )


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the file as JSON.")
@click.pass_context
def show(ctx: click.Context, path: str, as_json: bool) -> int:
    """Render a saved plan or rollback file."""
    from omniport.planner.plan_command import run_show

    return run_show(path, as_json=as_json, color=ctx.obj["color"], echo=click.echo)


@cli.command()
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--auto-approve", is_flag=True, help="Skip the interactive 'yes'.")
@click.option(
    "--parallelism",
    type=click.IntRange(1, 1000),
    default=None,
    help="Nodes connected at once after the canary (default: apply.parallelism of the spec).",
)
@click.option("--no-rollback", is_flag=True, help="Keep completed steps when a step fails.")
@click.option("--json", "as_json", is_flag=True, help="Stream JSON Lines events.")
@click.pass_context
def apply(
    ctx: click.Context,
    plan_file: str,
    auto_approve: bool,
    parallelism: int | None,
    no_rollback: bool,
    as_json: bool,
) -> int:
    """Execute exactly a saved plan, as a transaction that rolls back on failure."""
    from omniport.planner.apply_command import run_apply

    return run_apply(
        plan_file,
        auto_approve=auto_approve,
        parallelism=parallelism,
        no_rollback=no_rollback,
        as_json=as_json,
        color=ctx.obj["color"],
        echo=click.echo,
    )


@cli.command()
@click.argument("rollback_file", metavar="ROLLBACK", type=click.Path(dir_okay=False))
@click.option("--auto-approve", is_flag=True, help="Skip the interactive 'yes'.")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    help="Reach Talos and Omni with this spec's settings instead of the recorded ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Stream JSON Lines events.")
@click.pass_context
def rollback(
    ctx: click.Context,
    rollback_file: str,
    auto_approve: bool,
    spec_path: str | None,
    as_json: bool,
) -> int:
    """Put nodes and Omni back as they were before an apply (idempotent)."""
    from omniport.planner.apply_command import run_rollback

    return run_rollback(
        rollback_file,
        auto_approve=auto_approve,
        spec_path=spec_path,
        as_json=as_json,
        color=ctx.obj["color"],
        echo=click.echo,
    )


@cli.command()
@click.argument("cluster_name", metavar="CLUSTER")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Import spec whose Talos and Omni access settings to use.",
)
@click.option("--auto-approve", is_flag=True, help="Skip the interactive 'yes'.")
@click.option("--json", "as_json", is_flag=True, help="Stream JSON Lines events.")
@click.pass_context
def abort(
    ctx: click.Context, cluster_name: str, spec_path: str, auto_approve: bool, as_json: bool
) -> int:
    """Abort an import in Omni and remove the join documents from the nodes."""
    from omniport.planner.apply_command import run_abort

    return run_abort(
        cluster_name,
        spec_path=spec_path,
        auto_approve=auto_approve,
        as_json=as_json,
        color=ctx.obj["color"],
        echo=click.echo,
    )


@cli.command()
@click.argument("cluster_name", metavar="CLUSTER")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    help="Import spec whose Omni access settings to use (default: the plan's).",
)
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False),
    help="The applied plan, for its unlock preview.",
)
@click.option("--auto-approve", is_flag=True, help="Skip the interactive 'yes'.")
@click.option("--json", "as_json", is_flag=True, help="Stream JSON Lines events.")
@click.pass_context
def unlock(
    ctx: click.Context,
    cluster_name: str,
    spec_path: str | None,
    plan_path: str | None,
    auto_approve: bool,
    as_json: bool,
) -> int:
    """Unlock an imported cluster so that Omni starts managing it."""
    from omniport.planner.apply_command import run_unlock

    return run_unlock(
        cluster_name,
        spec_path=spec_path,
        plan_path=plan_path,
        auto_approve=auto_approve,
        as_json=as_json,
        color=ctx.obj["color"],
        echo=click.echo,
    )


@cli.group()
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
def config_gen(
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
        click.echo(text, nl=False)
        return
    write_private_file(output, text)
    click.echo(f"Wrote the {machine_type} config for Talos {talos_version} to {output}.", err=True)


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
def config_patch(config_file: str, patches: tuple[str, ...], output: str | None) -> None:
    """Apply strategic-merge or JSON6902 patches to a machine config."""
    from omniport.planner.config_files import load_patch_arguments, read_config, write_text
    from omniport.planner.machineconfig.document import emit
    from omniport.planner.machineconfig.merge import apply_patches

    result = emit(apply_patches(read_config(config_file), load_patch_arguments(patches)))
    if output:
        write_text(output, result)
    else:
        click.echo(result, nl=False)


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
def config_diff(original: str, modified: str, output_dir: str | None) -> None:
    """Compute the strategic patches that turn one machine config into another.

    Applying them in order to ORIGINAL (omniport config patch ORIGINAL -p @10-patch.yaml
    -p @20-patch.yaml) gives MODIFIED.
    """
    from omniport.planner.config_files import PATCH_FILE_NAMES, read_config, write_patches
    from omniport.planner.machineconfig.diff import diff
    from omniport.planner.machineconfig.document import emit

    patches = diff(read_config(original), read_config(modified))
    if output_dir:
        for path in write_patches(output_dir, patches):
            click.echo(f"wrote {path}", err=True)
        if not patches:
            click.echo("The configs are the same; no patch written.", err=True)
        return
    if not patches:
        click.echo("The configs are the same; no patch needed.", err=True)
        return
    for name, patch in zip(PATCH_FILE_NAMES, patches, strict=False):
        click.echo(f"# {name}")
        click.echo(emit(patch), nl=False)
        if name != PATCH_FILE_NAMES[len(patches) - 1]:
            click.echo("---")


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
def config_validate(config_file: str, talos_version: str, mode: str, strict: bool) -> int:
    """Check a machine config against the rules Talos applies for a version.

    Exits 1 when Talos would refuse the config.
    """
    from omniport.planner.config_files import read_bytes
    from omniport.planner.machineconfig.validate import validate_bytes

    verdict = validate_bytes(
        read_bytes(config_file, "config file"), talos_version, mode=mode, strict=strict
    )
    for warning in verdict.warnings:
        click.echo(f"warning: {_printable(str(warning))}", err=True)
    for error in verdict.errors:
        click.echo(f"error: {_printable(str(error))}", err=True)
    if not verdict.valid:
        click.echo(
            f"{config_file}: Talos {verdict.talos_version} ({mode}) refuses this config: "
            f"{len(verdict.errors)} error(s).",
            err=True,
        )
        return 1
    click.echo(f"{config_file}: valid for Talos {verdict.talos_version} ({mode} mode).")
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
def config_secrets(config_file: str, output: str | None) -> None:
    """Rebuild a secrets bundle from a control-plane machine config."""
    from omniport.planner.config_generation import config_secrets as rebuild_secrets
    from omniport.planner.config_generation import write_private_file

    text = rebuild_secrets(config_file)
    if output is None:
        click.echo(text, nl=False)
        return
    write_private_file(output, text)
    click.echo(f"Wrote the secrets bundle of {config_file} to {output}.", err=True)


@cli.group()
def lab() -> None:
    """The embedded lab: simulated Talos nodes, Omni and Image Factory on loopback."""


_lab_dir = click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The lab's directory (lab.json, talosconfig, import.yaml, ...).",
)


@contextlib.contextmanager
def _lab_errors() -> Iterator[None]:
    """Turn the lab's own errors into the CLI's one-line errors."""
    from omniport.lab.control import LabError

    try:
        yield
    except LabError as err:
        raise OmniportError(err.message, err.fix) from None


@lab.command("up")
@_lab_dir
@click.option("--nodes", type=click.IntRange(1, 60000), default=3, show_default=True)
@click.option("--controlplanes", type=click.IntRange(1), default=1, show_default=True)
@click.option("--talos-version", help="Talos version the nodes run (default v1.11.5).")
@click.option(
    "--initial-talos-version", help="Talos version the cluster was created with (default v1.9.5)."
)
@click.option("--kubernetes-version", help="Current Kubernetes version (default: Talos's).")
@click.option("--initial-kubernetes-version", help="Kubernetes version at creation.")
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, help="Added to every call.")
@click.option("--seed", type=int, default=0, show_default=True, help="Shapes identities/configs.")
@click.option("--no-factory-schematic", is_flag=True, help="Nodes run plain images (no schematic).")
@click.option("--omni-machine-api-url", help="The machine API URL the lab's Omni advertises.")
@click.option("--omni-join-token", help="The lab Omni's default join token.")
@click.option(
    "--factory-auth",
    is_flag=True,
    help="The factory wants basic auth (an Enterprise factory); Omni holds the credentials.",
)
@click.option(
    "--factory-yaml-v3", is_flag=True, help="The factory quotes YAML as yaml.v3-era factories."
)
@click.option("--omni-factory-url", help="Omni's primary factory URL ('' for none).")
@click.option(
    "--omni-version-factory",
    is_flag=True,
    help="Omni's TalosVersion of the nodes' version records the lab's factory.",
)
@click.option("--omni-secondary-factory-url", help="Omni's secondary factory URL.")
@click.option(
    "--schematic-kernel-arg", multiple=True, help="A kernel argument in the nodes' schematic."
)
@click.option(
    "--schematic-yaml-v3",
    is_flag=True,
    help="The nodes' image came from a yaml.v3-era factory (older schematic quoting).",
)
@click.option(
    "--node-talos-version",
    multiple=True,
    metavar="ADDRESS=VERSION",
    help="Run this node at another Talos version (a cluster in the middle of an upgrade).",
)
@click.option(
    "--omni-version",
    help="Omni release the lab's Omni answers as; its config-patch rules follow it "
    "(default: Omni's main branch).",
)
@click.option(
    "--omni-zstd-dict",
    type=click.Path(exists=True, dir_okay=False, resolve_path=True),
    help="Omni's zstd dictionary (config.1.zdict in Omni's client module), so the lab's Omni "
    "reads compressed config patches.",
)
@click.option(
    "--omni-api-version",
    type=click.IntRange(0),
    help="The API version the lab's Omni reports in SysVersions (default 1, Omni's; clients "
    "refuse others).",
)
@click.option(
    "--omni-join-ms",
    type=click.FloatRange(0),
    help="How long a node's join stays pending in the lab's Omni before it connects "
    "(default 100 ms).",
)
def lab_up(
    directory: Path,
    nodes: int,
    controlplanes: int,
    talos_version: str | None,
    initial_talos_version: str | None,
    kubernetes_version: str | None,
    initial_kubernetes_version: str | None,
    latency_ms: float,
    seed: int,
    no_factory_schematic: bool,
    omni_machine_api_url: str | None,
    omni_join_token: str | None,
    factory_auth: bool,
    factory_yaml_v3: bool,
    omni_factory_url: str | None,
    omni_version_factory: bool,
    omni_secondary_factory_url: str | None,
    schematic_kernel_arg: tuple[str, ...],
    schematic_yaml_v3: bool,
    node_talos_version: tuple[str, ...],
    omni_version: str | None,
    omni_zstd_dict: str | None,
    omni_api_version: int | None,
    omni_join_ms: float | None,
) -> None:
    """Start a lab in the background and write its client files into DIR."""
    from omniport.lab.control import UpOptions, up

    options = UpOptions(
        nodes=nodes,
        controlplanes=controlplanes,
        talos_version=talos_version,
        initial_talos_version=initial_talos_version,
        kubernetes_version=kubernetes_version,
        initial_kubernetes_version=initial_kubernetes_version,
        latency_ms=latency_ms,
        seed=seed,
        factory_schematic=not no_factory_schematic,
        extra_args=tuple(
            arg
            for flag, value in (
                ("--omni-machine-api-url", omni_machine_api_url),
                ("--omni-join-token", omni_join_token),
                ("--omni-secondary-factory-url", omni_secondary_factory_url),
            )
            if value
            for arg in (flag, value)
        )
        + (("--omni-factory-url", omni_factory_url) if omni_factory_url is not None else ())
        + tuple(
            flag
            for flag, on in (
                ("--factory-auth", factory_auth),
                ("--factory-yaml-v3", factory_yaml_v3),
                ("--omni-version-factory", omni_version_factory),
                ("--schematic-yaml-v3", schematic_yaml_v3),
            )
            if on
        )
        + tuple(arg for value in schematic_kernel_arg for arg in ("--schematic-kernel-arg", value))
        + tuple(arg for value in node_talos_version for arg in ("--node-talos-version", value)),
        omni_version=omni_version,
        omni_zstd_dict=omni_zstd_dict,
        omni_join_ms=omni_join_ms,
        omni_api_version=omni_api_version,
    )
    with _lab_errors():
        info = up(directory, options)
    cps = sum(1 for n in info["nodes"] if n["role"] == "controlplane")
    click.echo(
        f"Lab up in {directory}: {len(info['nodes'])} nodes ({cps} control plane(s)), "
        f"Talos {info['versions']['talos']}, pid {info['pid']}, apid {info['endpoint']}, "
        f"ready in {info['startup_seconds']} s."
    )
    click.echo(f"Next: omniport plan {directory / 'import.yaml'}")


@lab.command("down")
@_lab_dir
def lab_down(directory: Path) -> None:
    """Stop a lab by its pid and wait until it is gone."""
    from omniport.lab.control import down

    with _lab_errors():
        pid = down(directory)
    if pid is None:
        click.echo(f"The lab in {directory} was not running; removed its stale lab.json.")
    else:
        click.echo(f"Stopped the lab in {directory} (pid {pid}).")


@lab.command("status")
@_lab_dir
@click.option("--json", "as_json", is_flag=True, help="Print the stable JSON document.")
@click.option("--with-configs", is_flag=True, help="Include each node's full config text.")
def lab_status(directory: Path, as_json: bool, with_configs: bool) -> None:
    """Print the lab's nodes and Omni resources."""
    import json

    from omniport.lab.control import status

    with _lab_errors():
        doc = status(directory, with_configs=with_configs)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    rows = [("ADDRESS", "HOSTNAME", "MACHINE ID", "ROLE", "TALOS", "K8S", "CONFIG SHA256", "OMNI")]
    for n in doc["nodes"]:
        rows.append(
            (
                n["address"],
                n["hostname"],
                n["machine_id"],
                n["role"],
                n["talos_version"],
                n["kubernetes_version"],
                n["config_sha256"],
                _omni_state(n),
            )
        )
    _table(rows)
    if with_configs:
        for n in doc["nodes"]:
            click.echo(f"\n# {n['address']} ({n['hostname']})\n{n['config']}", nl=False)
    resources = doc["omni"]["resources"]
    click.echo(f"\nOmni resources: {len(resources)}")
    if resources:
        rows = [("TYPE", "ID", "PHASE", "LABELS", "ANNOTATIONS")]
        for r in resources:
            rows.append(
                (
                    r["type"],
                    r["id"],
                    r["phase"],
                    _pairs(r["labels"]),
                    _pairs(r["annotations"]),
                )
            )
        _table(rows)


def _omni_state(node: dict[str, Any]) -> str:
    """A node's Omni column: a reset by Omni (wiped to maintenance) is the loudest state."""
    if node.get("maintenance"):
        return "WIPED (maintenance)"
    return "connected" if node["connected"] else "-"


def _pairs(mapping: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" if v else k for k, v in sorted(mapping.items())) or "-"


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@lab.group("fault")
@_lab_dir
@click.pass_context
def lab_fault(ctx: click.Context, directory: Path) -> None:
    """Inject or clear faults in a running lab."""
    ctx.obj["lab_dir"] = directory


def _fault(ctx: click.Context, change: dict[str, object]) -> None:
    from omniport.lab.control import fault

    with _lab_errors():
        active = fault(ctx.obj["lab_dir"], change)
    _print_faults(active)


def _print_faults(active: dict[str, Any]) -> None:
    lines = []
    if active.get("unreachable"):
        lines.append("unreachable: " + ", ".join(active["unreachable"]))
    if active.get("latency_ms"):
        lines.append(f"latency: {active['latency_ms']:g} ms on every call")
    for node, ms in (active.get("node_latency_ms") or {}).items():
        lines.append(f"latency: {ms:g} ms on {node}")
    for f in active.get("apply_failures") or []:
        where = f["node"] or "every node"
        lines.append(f"ApplyConfiguration fails on {where} after {f['after_calls']} call(s)")
    for f in active.get("omni_failures") or []:
        lines.append(
            f"Omni {f['method']} fails for {f['resource_type'] or 'every type'} (code {f['code']})"
        )
    for node, services in (active.get("unhealthy_services") or {}).items():
        lines.append(f"unhealthy on {node}: {', '.join(services)}")
    for node in active.get("etcd_learners") or []:
        lines.append(f"etcd learner: {node}")
    for hostname in active.get("stale_etcd_members") or []:
        lines.append(f"stale etcd member: {hostname}")
    for node, content in (active.get("schematic_content") or {}).items():
        lines.append(f"schematic content {content} on {node}")
    for node in active.get("not_ready") or []:
        lines.append(f"Kubernetes Node not ready: {node}")
    for node, image in (active.get("kubelet_images") or {}).items():
        lines.append(f"KubeletConfig on {node} reports {image}")
    if active.get("system_patches"):
        lines.append("Omni adds a system config patch to every cluster")
    if active.get("health_cancelled"):
        lines.append("the health check is cancelled halfway")
    if active.get("one_to_many_refused"):
        lines.append("apid refuses one-to-many calls (the nodes metadata)")
    for node in active.get("one_to_many_dropped") or []:
        lines.append(f"one-to-many replies leave out {node}")
    if active.get("factory_down"):
        lines.append("Image Factory is down")
    if active.get("never_connect"):
        lines.append("nodes never connect to Omni")
    for node, problem in (active.get("join_faults") or {}).items():
        lines.append(f"join {problem} for {node}")
    click.echo("Active faults:" + ("".join(f"\n  {line}" for line in lines) if lines else " none"))


@lab_fault.command("unreachable")
@click.argument("node")
@click.option("--clear", is_flag=True, help="Make the node reachable again.")
@click.pass_context
def fault_unreachable(ctx: click.Context, node: str, clear: bool) -> None:
    """Calls to NODE fail as if it were down (UNAVAILABLE)."""
    _fault(ctx, {"kind": "unreachable", "node": node, "clear": clear})


@lab_fault.command("latency")
@click.argument("ms", type=click.FloatRange(0))
@click.option("--node", help="Only calls to this node (default: every call).")
@click.pass_context
def fault_latency(ctx: click.Context, ms: float, node: str | None) -> None:
    """Add MS milliseconds to every call (0 clears)."""
    _fault(ctx, {"kind": "latency", "ms": ms, "node": node})


@lab_fault.command("apply-fail")
@click.option("--node", help="Only this node (default: every node).")
@click.option("--after", type=click.IntRange(0), default=0, help="Succeed this many times first.")
@click.option("--clear", is_flag=True, help="Remove ApplyConfiguration failures.")
@click.pass_context
def fault_apply_fail(ctx: click.Context, node: str | None, after: int, clear: bool) -> None:
    """Make ApplyConfiguration fail (always, or after K calls)."""
    _fault(ctx, {"kind": "apply-failure", "node": node, "after": after, "clear": clear})


@lab_fault.command("omni-fail")
@click.argument("method")
@click.option("--type", "rtype", help="Only this resource type (default: every type).")
@click.option("--code", type=click.IntRange(1, 16), default=14, show_default=True)
@click.option("--clear", is_flag=True, help="Remove the matching Omni failures.")
@click.pass_context
def fault_omni_fail(
    ctx: click.Context, method: str, rtype: str | None, code: int, clear: bool
) -> None:
    """Make Omni's METHOD (Create, Update, Get, ...) fail with a gRPC status."""
    _fault(
        ctx, {"kind": "omni-failure", "method": method, "type": rtype, "code": code, "clear": clear}
    )


@lab_fault.command("factory-down")
@click.option("--clear", is_flag=True, help="Bring the Image Factory back.")
@click.pass_context
def fault_factory_down(ctx: click.Context, clear: bool) -> None:
    """Make the Image Factory refuse every request."""
    _fault(ctx, {"kind": "factory-down", "clear": clear})


@lab_fault.command("never-connect")
@click.option("--clear", is_flag=True, help="Let nodes connect again.")
@click.pass_context
def fault_never_connect(ctx: click.Context, clear: bool) -> None:
    """Nodes accept the join documents but never register with Omni."""
    _fault(ctx, {"kind": "never-connect", "clear": clear})


@lab_fault.command("join")
@click.argument("node")
@click.option(
    "--problem",
    type=click.Choice(["stalled", "refused"]),
    default="stalled",
    show_default=True,
    help="stalled: NODE stays a pending machine; refused: Omni refuses its join.",
)
@click.option("--clear", is_flag=True, help="Let NODE's join go through again.")
@click.pass_context
def fault_join(ctx: click.Context, node: str, problem: str, clear: bool) -> None:
    """NODE's SideroLink join to Omni stalls or is refused."""
    _fault(ctx, {"kind": "join", "node": node, "problem": problem, "clear": clear})


@lab_fault.command("service-unhealthy")
@click.argument("node")
@click.argument("service")
@click.option("--clear", is_flag=True, help="Make the service healthy again.")
@click.pass_context
def fault_service_unhealthy(ctx: click.Context, node: str, service: str, clear: bool) -> None:
    """NODE reports SERVICE (etcd, kubelet, ...) running but unhealthy."""
    _fault(ctx, {"kind": "service-unhealthy", "node": node, "service": service, "clear": clear})


@lab_fault.command("etcd-learner")
@click.argument("node")
@click.option("--clear", is_flag=True, help="Promote the member again.")
@click.pass_context
def fault_etcd_learner(ctx: click.Context, node: str, clear: bool) -> None:
    """NODE's etcd member is still a learner (not yet promoted)."""
    _fault(ctx, {"kind": "etcd-member", "node": node, "learner": True, "clear": clear})


@lab_fault.command("etcd-stale-member")
@click.argument("hostname")
@click.option("--clear", is_flag=True, help="Remove the stale member.")
@click.pass_context
def fault_etcd_stale_member(ctx: click.Context, hostname: str, clear: bool) -> None:
    """etcd lists a member HOSTNAME that no node is (a machine removed without
    `etcdctl member remove`)."""
    _fault(ctx, {"kind": "etcd-member", "hostname": hostname, "clear": clear})


@lab_fault.command("schematic")
@click.argument("node")
@click.argument("content", type=click.Choice(["missing", "edited"]), required=False)
@click.option("--clear", is_flag=True, help="Report the schematic's content as built again.")
@click.pass_context
def fault_schematic(ctx: click.Context, node: str, content: str | None, clear: bool) -> None:
    """NODE's schematic extension reports its ID without its content (missing), or with
    content that hashes to another ID (edited)."""
    _fault(ctx, {"kind": "schematic", "node": node, "content": content, "clear": clear})


@lab_fault.command("health")
@click.argument("problem", type=click.Choice(["not-ready", "cancelled"]))
@click.option("--node", help="The node whose Kubernetes Node is NotReady (for not-ready).")
@click.option("--clear", is_flag=True, help="Remove this health problem.")
@click.pass_context
def fault_health(ctx: click.Context, problem: str, node: str | None, clear: bool) -> None:
    """Make the cluster health check fail: a Kubernetes Node NotReady (which only the health
    check sees), or the check's stream cancelled halfway."""
    _fault(ctx, {"kind": "health", "problem": problem, "node": node, "clear": clear})


@lab_fault.command("one-to-many")
@click.argument("problem", type=click.Choice(["refused", "dropped"]))
@click.option("--node", help="The node left out of one-to-many replies (for dropped).")
@click.option("--clear", is_flag=True, help="Remove this one-to-many problem.")
@click.pass_context
def fault_one_to_many(ctx: click.Context, problem: str, node: str | None, clear: bool) -> None:
    """Break apid's one-to-many calls (the `nodes` metadata): refused altogether, as a Talos
    without one-to-many proxying, or a node's answer dropped from the reply."""
    _fault(ctx, {"kind": "one-to-many", "problem": problem, "node": node, "clear": clear})


@lab_fault.command("kubelet-lag")
@click.argument("node")
@click.argument("image", required=False)
@click.option("--clear", is_flag=True, help="Report the configured image again.")
@click.pass_context
def fault_kubelet_lag(ctx: click.Context, node: str, image: str | None, clear: bool) -> None:
    """NODE's KubeletConfig reports IMAGE, not the kubelet image its config names."""
    _fault(ctx, {"kind": "kubelet-lag", "node": node, "image": image, "clear": clear})


@lab_fault.command("system-patch")
@click.option("--clear", is_flag=True, help="Stop adding system patches.")
@click.pass_context
def fault_system_patch(ctx: click.Context, clear: bool) -> None:
    """Omni adds a system config patch of its own to every cluster it holds."""
    _fault(ctx, {"kind": "system-patch", "clear": clear})


@lab_fault.command("clear")
@click.pass_context
def fault_clear(ctx: click.Context) -> None:
    """Remove every fault."""
    _fault(ctx, {"kind": "clear"})


@lab_fault.command("show")
@click.pass_context
def fault_show(ctx: click.Context) -> None:
    """Print the active faults."""
    from omniport.lab.control import faults

    with _lab_errors():
        _print_faults(faults(ctx.obj["lab_dir"]))


@lab.command("patch")
@_lab_dir
@click.argument("node")
@click.argument("patch_file", metavar="FILE", type=click.File("r"))
def lab_patch(directory: Path, node: str, patch_file: Any) -> None:
    """Patch NODE's config with FILE as `talosctl patch machineconfig` would (mode auto)."""
    from omniport.lab.control import patch

    text = patch_file.read()
    with _lab_errors():
        result = patch(directory, node, text)
    click.echo(
        f"Patched {result['node']} ({result['mode']}): {result['details'].splitlines()[0]}; "
        f"config sha256 {result['config_sha256']}."
    )


@cli.command()
@click.option("--keep", is_flag=True, help="Leave the lab running and show how to use it.")
@click.pass_context
def demo(ctx: click.Context, keep: bool) -> int:
    """Run plan, apply and rollback against a temporary lab, in one command."""
    from omniport.planner.demo import run_demo

    return run_demo(keep=keep, color=ctx.obj["color"], echo=click.echo)


def _usage_line(err: click.UsageError) -> str:
    """A usage mistake in one line (click's own form spends four): what, then where to look."""
    message = " ".join(err.format_message().split())
    if err.ctx is None:
        return message
    help_hint = f"`{err.ctx.command_path} --help`"
    if message.endswith("?"):  # click's "Did you mean ...?" already ends the sentence
        return f"{message} See {help_hint}."
    return f"{message.rstrip('.')}; see {help_hint}"


def _printable(text: str) -> str:
    """Error text may quote servers and files: no control characters reach the terminal."""
    from omniport.planner.render import printable

    return printable(text)


def run(args: Sequence[str] | None = None) -> int:
    """Run the CLI and return the process exit code (0 ok, 1 error, 2 changes/not built)."""
    try:
        result = cli.main(args=args, prog_name="omniport", standalone_mode=False)
    except OmniportError as err:
        click.echo(f"Error: {_printable(str(err))}", err=True)
        return err.exit_code
    except ProviderError as err:
        text = str(err)
        fix = getattr(err, "fix", None)
        if fix and not text.endswith(fix):  # some provider errors already end with their fix
            text += f"; {fix}"
        click.echo(f"Error: {_printable(text)}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.exceptions.NoArgsIsHelpError as err:
        err.show()
        return 1
    except click.UsageError as err:
        click.echo(f"Error: {_usage_line(err)}", err=True)
        return 1
    except click.ClickException as err:
        # Usage errors are user mistakes: exit 1, like Terraform's flag errors, so that 2 keeps
        # meaning "changes present" for plan --detailed-exitcode.
        err.show()
        return 1
    except click.exceptions.Exit as err:
        return err.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    return result if isinstance(result, int) else 0


def main() -> NoReturn:
    sys.exit(run())


if __name__ == "__main__":
    main()
