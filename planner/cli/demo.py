"""``omniport demo``: plan → apply → rollback against a throwaway lab, in one command.

Everything runs for real: a background lab process (simulated Talos nodes, Omni and Image
Factory on loopback, speaking the real protocols), and the same code paths as the commands a
user types. The demo ends by proving that every node's config is byte-identical to before.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from omniport.planner.cli import invocation
from omniport.planner.cli.context import CliContext, pass_console
from omniport.planner.cli.execute import run_apply, run_rollback
from omniport.planner.cli.plan import run_plan
from omniport.planner.errors import OmniportError

DEMO_TALOS = "1.11.5"
DEMO_INITIAL_TALOS = "1.9.5"
DEMO_KUBERNETES = "1.34.1"
DEMO_INITIAL_KUBERNETES = "1.32.4"


class DemoFailed(OmniportError):
    pass


@click.command()
@click.option("--keep", is_flag=True, help="Leave the lab running and show how to use it.")
@pass_console
def demo(console: CliContext, keep: bool) -> int:
    """Run plan, apply and rollback against a temporary lab, in one command."""
    return run_demo(console, keep=keep)


def _omni_resources(status: dict[str, Any], cluster: str | None = None) -> list[dict[str, Any]]:
    user_types = (
        "Clusters.",
        "MachineSets.",
        "MachineSetNodes.",
        "ConfigPatches.",
        "ImportedClusterSecrets.",
        "ClusterMachines.",
        "Links.",
    )
    return [
        r
        for r in status["omni"]["resources"]
        if r["type"].startswith(user_types)
        and (
            cluster is None
            or r["labels"].get("omni.sidero.dev/cluster", r["id"]) == cluster
            or r["type"].startswith("Links.")
        )
    ]


def run_demo(console: CliContext, *, keep: bool, directory: Path | None = None) -> int:
    """The commands' own code paths, in order, with their output; the lab is stopped by pid."""
    # imported here: start-up time
    import os
    import shutil
    import signal
    import tempfile

    from omniport.lab import control as lab_control
    from omniport.planner.execute.apply import rollback_path

    echo = console.echo

    started = time.monotonic()
    workdir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="omniport-demo-"))
    lab_dir = workdir / "lab"

    def step(title: str) -> None:
        echo("")
        echo(f"=== [{time.monotonic() - started:5.1f}s] {title}")

    own = directory is None  # a temporary folder of its own: keys and backups go with it

    def clean_up() -> None:
        """Stop the lab by its pid and remove the temporary keys and backups (not --keep)."""
        if lab_control.running_pid(lab_dir) is not None:
            lab_control.down(lab_dir)
        if own:
            shutil.rmtree(workdir, ignore_errors=True)

    def exit_now() -> None:  # a second Ctrl-C inside apply or rollback exits at once
        if not keep:
            clean_up()
        os._exit(130)

    ok = False
    try:
        step(
            f"Starting a lab in {lab_dir}: 1 control plane + 2 workers, Talos {DEMO_INITIAL_TALOS} "
            f"carried to {DEMO_TALOS}, with user customizations"
        )
        lab_control.up(
            lab_dir,
            lab_control.UpOptions(
                nodes=3,
                controlplanes=1,
                talos_version=DEMO_TALOS,
                initial_talos_version=DEMO_INITIAL_TALOS,
                kubernetes_version=DEMO_KUBERNETES,
                initial_kubernetes_version=DEMO_INITIAL_KUBERNETES,
            ),
        )
        before = lab_control.status(lab_dir)
        shas = {n["address"]: n["config_sha256"] for n in before["nodes"]}
        for n in before["nodes"]:
            sha = n["config_sha256"][:16]
            echo(f"  {n['address']}  {n['hostname']:<12} {n['role']:<12} config {sha}…")
        spec = lab_dir / "import.yaml"
        plan_path = lab_dir / "import.plan.json"  # beside its spec: relative paths resolve

        step(f"omniport plan {spec}")
        code = run_plan(console, str(spec), str(plan_path), detailed_exitcode=True)
        if code not in (0, 2):
            raise DemoFailed("the plan has blocking findings", "see the findings above")

        step(f"omniport apply --auto-approve {plan_path}")
        run_apply(
            console,
            str(plan_path),
            auto_approve=True,
            parallelism=None,
            no_rollback=False,
            exit_now=exit_now,
        )

        step("The Omni side after apply (omniport lab status)")
        after_apply = lab_control.status(lab_dir)
        for n in after_apply["nodes"]:
            echo(f"  {n['address']}  {n['hostname']:<12} connected to Omni: {n['connected']}")
        for r in _omni_resources(after_apply):
            marks = ", ".join(sorted(k.split("/")[-1] for k in r["annotations"]))
            echo(f"  {r['type']:<42} {r['id']:<40} {marks}")

        rollback = rollback_path(plan_path)
        step(f"omniport rollback --auto-approve {rollback}")
        run_rollback(console, str(rollback), auto_approve=True, spec_path=None, exit_now=exit_now)

        step("Proving the rollback")
        final = lab_control.status(lab_dir)
        changed = [
            n["address"] for n in final["nodes"] if shas.get(n["address"]) != n["config_sha256"]
        ]
        left = [f"{r['type']} {r['id']}" for r in _omni_resources(final)]
        connected = [n["address"] for n in final["nodes"] if n["connected"]]
        for n in final["nodes"]:
            same = "byte-identical" if n["address"] not in changed else "DIFFERENT"
            echo(f"  {n['address']}  config sha256 {n['config_sha256'][:16]}…  {same}")
        echo(f"  Omni resources left from the import: {len(left)}")
        if changed or left or connected:
            raise DemoFailed(
                "the rollback did not restore everything: "
                + "; ".join(
                    p
                    for p in (
                        f"changed configs {changed}" if changed else "",
                        f"left in Omni {left}" if left else "",
                        f"still connected {connected}" if connected else "",
                    )
                    if p
                ),
                "run `omniport demo --keep` to inspect the lab afterwards",
            )
        ok = True
        step(f"Done in {time.monotonic() - started:.1f}s: planned, applied, rolled back, verified.")
    finally:
        if keep:
            echo("")
            me = invocation.program()
            echo(f"The lab is still running in {lab_dir}. Try:")
            echo(f"  {me} lab status --dir {lab_dir}")
            echo(f"  {me} plan {lab_dir / 'import.yaml'}")
            echo(f"  {me} lab down --dir {lab_dir}")
            hint = invocation.activation_hint()
            if hint:
                echo(hint)
        else:
            # however the demo ends (done, failed, Ctrl-C): a Ctrl-C now must not cut this short
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                clean_up()
            finally:
                signal.signal(signal.SIGINT, previous)
            if not ok and own:
                echo(f"The lab was stopped and {workdir} (its keys and backups) removed.")
    return 0
