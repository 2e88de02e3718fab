"""``omniport lab up|down|status|patch|fault``: the embedded world, driven from the shell.

Each command calls one function of ``lab.control`` (imported when it runs, so that
``omniport --help`` does not load the lab) and prints its answer; the lab's own errors become
the CLI's one-line errors.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from omniport.planner.cli import invocation
from omniport.planner.cli.context import CliContext, json_option, pass_console
from omniport.planner.errors import OmniportError


@click.group()
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
    from omniport.lab.control import LabError  # imported here: start-up time

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
@pass_console
def lab_up(
    console: CliContext,
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
    from omniport.lab.control import UpOptions, up  # imported here: start-up time

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
    from omniport.lab.server import check_options  # imported here: start-up time

    problem = check_options(options.argv())
    if problem is not None:  # refused before DIR or a process exists: nothing to clean up
        raise OmniportError(
            f"lab up: {problem}",
            "fix the option (see `omniport lab up --help`); nothing was started",
        )
    with _lab_errors():
        info = up(directory, options)
    cps = sum(1 for n in info["nodes"] if n["role"] == "controlplane")
    console.echo(
        f"Lab up in {directory}: {len(info['nodes'])} nodes ({cps} control plane(s)), "
        f"Talos {info['versions']['talos']}, pid {info['pid']}, apid {info['endpoint']}, "
        f"ready in {info['startup_seconds']} s."
    )
    if console.hints:
        console.echo(f"Next: {invocation.program()} plan {directory / 'import.yaml'}")


@lab.command("down")
@_lab_dir
@pass_console
def lab_down(console: CliContext, directory: Path) -> None:
    """Stop a lab by its pid and wait until it is gone."""
    from omniport.lab.control import down  # imported here: start-up time

    with _lab_errors():
        pid = down(directory)
    if pid is None:
        console.echo(f"The lab in {directory} was not running; removed its stale lab.json.")
    else:
        console.echo(f"Stopped the lab in {directory} (pid {pid}).")


@lab.command("status")
@_lab_dir
@json_option("Print the stable JSON document.")
@click.option("--with-configs", is_flag=True, help="Include each node's full config text.")
@pass_console
def lab_status(console: CliContext, directory: Path, with_configs: bool) -> None:
    """Print the lab's nodes and Omni resources."""
    # imported here: start-up time
    import json

    from omniport.lab.control import status  # imported here: start-up time

    with _lab_errors():
        doc = status(directory, with_configs=with_configs)
    if console.as_json:
        console.echo(json.dumps(doc, indent=2, sort_keys=True))
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
    _echo_table(console, rows)
    if with_configs:
        for n in doc["nodes"]:
            console.write(f"\n# {n['address']} ({n['hostname']})\n{n['config']}")
    resources = doc["omni"]["resources"]
    console.echo(f"\nOmni resources: {len(resources)}")
    if resources:
        resource_rows = [("TYPE", "ID", "PHASE", "LABELS", "ANNOTATIONS")]
        for r in resources:
            resource_rows.append(
                (
                    r["type"],
                    r["id"],
                    r["phase"],
                    _pairs(r["labels"]),
                    _pairs(r["annotations"]),
                )
            )
        _echo_table(console, resource_rows)


def _omni_state(node: dict[str, Any]) -> str:
    """A node's Omni column: a reset by Omni (wiped to maintenance) is the loudest state."""
    if node.get("maintenance"):
        return "WIPED (maintenance)"
    return "connected" if node["connected"] else "-"


def _pairs(mapping: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" if v else k for k, v in sorted(mapping.items())) or "-"


def _echo_table(console: CliContext, rows: Sequence[Sequence[str]]) -> None:
    """Columns as wide as their widest cell; the first row is the header."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        console.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@lab.group("fault")
@_lab_dir
def lab_fault(directory: Path) -> None:
    """Inject or clear faults in a running lab."""
    # The fault commands read DIR from this group's parameters (see _fault_dir).


def _fault_dir() -> Path:
    """The ``--dir`` given to ``lab fault``, the parent of every fault command."""
    group = click.get_current_context().parent
    assert group is not None, "a fault command runs under `lab fault`"
    directory: Path = group.params["directory"]
    return directory


def _fault_command(
    name: str, kind: str, **fixed: object
) -> Callable[[Callable[[], None]], click.Command]:
    """Declare ``lab fault NAME``: the change it sends is ``kind``, ``fixed`` and its parameters.

    The decorated function is only a declaration, never called: its click decorators give the
    arguments and options (named as the lab's change keys), its docstring the help text.
    """

    def declare(declaration: Callable[[], None]) -> click.Command:
        @functools.wraps(declaration)
        @pass_console
        def send(console: CliContext, /, **params: object) -> None:
            from omniport.lab.control import fault  # imported here: start-up time

            with _lab_errors():
                active = fault(_fault_dir(), {"kind": kind, **fixed, **params})
            console.echo(_faults_text(active))

        return lab_fault.command(name)(send)

    return declare


def _faults_text(active: dict[str, Any]) -> str:
    """The lab's active faults, one line each, as `lab fault` commands print them."""
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
        times = f" for the next {f['times']} call(s)" if f.get("times") else ""
        lines.append(
            f"Omni {f['method']} fails for {f['resource_type'] or 'every type'} "
            f"(code {f['code']}){times}"
        )
    for b in active.get("talos_blips") or []:
        calls = f"{b['method']} call(s)" if b.get("method") else "call(s)"
        how = " (stream reset)" if b.get("reset") else ""
        lines.append(
            f"Talos blip: the next {b['remaining']} {calls} to {b['node'] or 'any node'}{how}"
        )
    if active.get("factory_blips"):
        lines.append(f"Image Factory blip: the next {active['factory_blips']} request(s)")
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
    return "Active faults:" + ("".join(f"\n  {line}" for line in lines) if lines else " none")


@_fault_command("unreachable", "unreachable")
@click.argument("node")
@click.option("--clear", is_flag=True, help="Make the node reachable again.")
def fault_unreachable() -> None:
    """Calls to NODE fail as if it were down (UNAVAILABLE)."""


@_fault_command("latency", "latency")
@click.argument("ms", type=click.FloatRange(0))
@click.option("--node", help="Only calls to this node (default: every call).")
def fault_latency() -> None:
    """Add MS milliseconds to every call (0 clears)."""


@_fault_command("apply-fail", "apply-failure")
@click.option("--node", help="Only this node (default: every node).")
@click.option("--after", type=click.IntRange(0), default=0, help="Succeed this many times first.")
@click.option("--clear", is_flag=True, help="Remove ApplyConfiguration failures.")
def fault_apply_fail() -> None:
    """Make ApplyConfiguration fail (always, or after K calls)."""


@_fault_command("omni-fail", "omni-failure")
@click.argument("method")
@click.option("--type", "type", help="Only this resource type (default: every type).")
@click.option("--code", type=click.IntRange(1, 16), default=14, show_default=True)
@click.option(
    "--times",
    type=click.IntRange(1),
    help="Fail only the next N calls, then heal (a blip; default: every call).",
)
@click.option("--clear", is_flag=True, help="Remove the matching Omni failures.")
def fault_omni_fail() -> None:
    """Make Omni's METHOD (Create, Update, Get, ...) fail with a gRPC status."""


@_fault_command("talos-blip", "talos-blip")
@click.option(
    "--times", type=click.IntRange(1), default=1, show_default=True, help="Calls that fail."
)
@click.option("--node", help="Only calls to this node (default: any node).")
@click.option("--method", help="Only this gRPC method, e.g. ApplyConfiguration, Get, Version.")
@click.option(
    "--reset",
    is_flag=True,
    help="Reset the call's HTTP/2 stream (RST_STREAM) instead of answering UNAVAILABLE "
    "(one-to-one machine-service calls; others still get UNAVAILABLE).",
)
@click.option("--clear", is_flag=True, help="Drop the pending blips.")
def fault_talos_blip() -> None:
    """The next N Talos calls fail as a brief network blip does (UNAVAILABLE, connection
    reset), then the network heals."""


@_fault_command("factory-blip", "factory-blip")
@click.option(
    "--times", type=click.IntRange(1), default=1, show_default=True, help="Requests dropped."
)
@click.option("--clear", is_flag=True, help="Drop the pending blips.")
def fault_factory_blip() -> None:
    """The next N Image Factory requests get their connection closed unanswered, then the
    network heals."""


@_fault_command("factory-down", "factory-down")
@click.option("--clear", is_flag=True, help="Bring the Image Factory back.")
def fault_factory_down() -> None:
    """Make the Image Factory refuse every request."""


@_fault_command("never-connect", "never-connect")
@click.option("--clear", is_flag=True, help="Let nodes connect again.")
def fault_never_connect() -> None:
    """Nodes accept the join documents but never register with Omni."""


@_fault_command("join", "join")
@click.argument("node")
@click.option(
    "--problem",
    type=click.Choice(["stalled", "refused"]),
    default="stalled",
    show_default=True,
    help="stalled: NODE stays a pending machine; refused: Omni refuses its join.",
)
@click.option("--clear", is_flag=True, help="Let NODE's join go through again.")
def fault_join() -> None:
    """NODE's SideroLink join to Omni stalls or is refused."""


@_fault_command("service-unhealthy", "service-unhealthy")
@click.argument("node")
@click.argument("service")
@click.option("--clear", is_flag=True, help="Make the service healthy again.")
def fault_service_unhealthy() -> None:
    """NODE reports SERVICE (etcd, kubelet, ...) running but unhealthy."""


@_fault_command("etcd-learner", "etcd-member", learner=True)
@click.argument("node")
@click.option("--clear", is_flag=True, help="Promote the member again.")
def fault_etcd_learner() -> None:
    """NODE's etcd member is still a learner (not yet promoted)."""


@_fault_command("etcd-stale-member", "etcd-member")
@click.argument("hostname")
@click.option("--clear", is_flag=True, help="Remove the stale member.")
def fault_etcd_stale_member() -> None:
    """etcd lists a member HOSTNAME that no node is (a machine removed without
    `etcdctl member remove`)."""


@_fault_command("schematic", "schematic")
@click.argument("node")
@click.argument("content", type=click.Choice(["missing", "edited"]), required=False)
@click.option("--clear", is_flag=True, help="Report the schematic's content as built again.")
def fault_schematic() -> None:
    """NODE's schematic extension reports its ID without its content (missing), or with
    content that hashes to another ID (edited)."""


@_fault_command("health", "health")
@click.argument("problem", type=click.Choice(["not-ready", "cancelled"]))
@click.option("--node", help="The node whose Kubernetes Node is NotReady (for not-ready).")
@click.option("--clear", is_flag=True, help="Remove this health problem.")
def fault_health() -> None:
    """Make the cluster health check fail: a Kubernetes Node NotReady (which only the health
    check sees), or the check's stream cancelled halfway."""


@_fault_command("one-to-many", "one-to-many")
@click.argument("problem", type=click.Choice(["refused", "dropped"]))
@click.option("--node", help="The node left out of one-to-many replies (for dropped).")
@click.option("--clear", is_flag=True, help="Remove this one-to-many problem.")
def fault_one_to_many() -> None:
    """Break apid's one-to-many calls (the `nodes` metadata): refused altogether, as a Talos
    without one-to-many proxying, or a node's answer dropped from the reply."""


@_fault_command("kubelet-lag", "kubelet-lag")
@click.argument("node")
@click.argument("image", required=False)
@click.option("--clear", is_flag=True, help="Report the configured image again.")
def fault_kubelet_lag() -> None:
    """NODE's KubeletConfig reports IMAGE, not the kubelet image its config names."""


@_fault_command("system-patch", "system-patch")
@click.option("--clear", is_flag=True, help="Stop adding system patches.")
def fault_system_patch() -> None:
    """Omni adds a system config patch of its own to every cluster it holds."""


@_fault_command("clear", "clear")
def fault_clear() -> None:
    """Remove every fault."""


@lab_fault.command("show")
@pass_console
def fault_show(console: CliContext) -> None:
    """Print the active faults."""
    from omniport.lab.control import faults  # imported here: start-up time

    with _lab_errors():
        console.echo(_faults_text(faults(_fault_dir())))


@lab.command("patch")
@_lab_dir
@click.argument("node")
@click.argument("patch_file", metavar="FILE", type=click.File("r"))
@click.option(
    "--wait",
    is_flag=True,
    help="When the change needs a reboot, return only once the node runs the new config.",
)
@pass_console
def lab_patch(console: CliContext, directory: Path, node: str, patch_file: Any, wait: bool) -> None:
    """Patch NODE's config with FILE as `talosctl patch machineconfig` would (mode auto), and
    say when the new config lands: now, after the reboot it needs, or at the next reboot."""
    import time  # imported here: start-up time

    from omniport.lab.control import patch, status  # imported here: start-up time

    text = patch_file.read()
    with _lab_errors():
        result = patch(directory, node, text)
    address, new = result["node"], result["new_config_sha256"]
    head = f"Patched {address} ({result['mode']}): {result['details'].splitlines()[0]}."
    if result["active"]:
        console.echo(f"{head} The new config is active now (config sha256 {new}).")
        return
    seconds = result.get("lands_in_seconds")
    if seconds is None:
        console.echo(
            f"{head} The new config (sha256 {new}) is staged: it lands at the node's next "
            f"reboot; until then it runs config sha256 {result['config_sha256']}."
        )
        return
    if not wait:
        console.echo(
            f"{head} The node is rebooting: the new config (sha256 {new}) lands when it is "
            f"back, in about {seconds:g} s; until then it runs config sha256 "
            f"{result['config_sha256']} (`--wait` waits for it)."
        )
        return
    deadline = time.monotonic() + 30 + seconds
    with _lab_errors():
        while True:
            running = next(n for n in status(directory)["nodes"] if n["address"] == address)
            if running["config_sha256"] == new:
                break
            if time.monotonic() > deadline:
                raise OmniportError(
                    f"{address} still runs config sha256 {running['config_sha256']} after its "
                    "reboot",
                    f"see `omniport lab status --dir {directory}`",
                )
            time.sleep(0.05)
    console.echo(f"{head} The node rebooted: the new config is active now (sha256 {new}).")
