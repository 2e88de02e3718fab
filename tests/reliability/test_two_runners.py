"""Two CI runners, one cluster (issue 15, item 9).

The file lock holds on one host only. Two runners (separate hosts: separate state directories,
so separate locks, backups and journals) applying the same plan against one Omni are decided by
Omni's atomic creates: exactly one import wins, and the loser either is refused before any
change (its re-discovery already sees the winner's Cluster) or fails on a create and rolls back
without touching anything of the winner's: not its Omni resources, not its secrets, not a node.

Every round races two ``omniport apply`` processes (with a small random head start, so that the
loser meets the winner at different steps), checks the winner's import as a whole, then rolls
the winner back and checks that the lab is byte-identical to before.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from omniport.planner import planfile
from omniport.planner.changes import OWNER_ANNOTATION
from tests.reliability.labkit import World, assert_restored, start_world

pytestmark = pytest.mark.reliability

ROUNDS = 10
SECRETS = "ImportedClusterSecrets.omni.sidero.dev"
CLUSTER_SECRETS = "ClusterSecrets.omni.sidero.dev"
IMPORT_KINDS = (
    "Clusters.omni.sidero.dev",
    "MachineSets.omni.sidero.dev",
    "MachineSetNodes.omni.sidero.dev",
    "ConfigPatches.omni.sidero.dev",
)
JOIN_KINDS = {"SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig"}


def _documents(config: bytes) -> dict[str, Any]:
    out = {}
    for doc in yaml.safe_load_all(config):
        if doc:
            out["/".join(str(p) for p in (doc.get("kind", "v1alpha1"), doc.get("name")) if p)] = doc
    return out


def _records(journal: Path) -> list[dict[str, Any]]:
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _wait_for(predicate: Any, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _race(world: World, root: Path, round_: int, rng: random.Random) -> dict[str, Any]:
    """Two appliers of one plan, each with its own state directory; returns what happened."""
    dirs = {name: root / f"round{round_}-{name}" for name in ("a", "b")}
    delay = rng.uniform(0, 0.4)
    first, second = rng.sample(sorted(dirs), 2)
    procs = {first: world.popen("apply", "--auto-approve", str(world.plan), env=_env(dirs[first]))}
    time.sleep(delay)
    procs[second] = world.popen("apply", "--auto-approve", str(world.plan), env=_env(dirs[second]))
    results = {name: _finish(proc) for name, proc in procs.items()}
    return {"dirs": dirs, "results": results, "delay": delay, "first": first}


def _env(state: Path) -> dict[str, str]:
    return {"OMNIPORT_STATE_DIR": str(state)}


def test_two_runners_race_and_the_loser_touches_nothing_of_the_winner(tmp_path: Path) -> None:
    world = start_world(tmp_path / "lab")
    rng = random.Random(15_9)
    outcomes: list[str] = []
    try:
        before = world.snapshot()
        cluster = world.info["cluster"]
        for round_ in range(ROUNDS):
            world.make_plan()
            plan = planfile.read(world.plan)
            race = _race(world, tmp_path, round_, rng)
            results = race["results"]
            context = f"round {round_}: " + json.dumps(
                {n: [c, o[-1500:], e[-1500:]] for n, (c, o, e) in results.items()}, indent=1
            )
            winners = [name for name, (code, _, _) in results.items() if code == 0]
            assert len(winners) == 1, context
            winner = winners[0]
            loser = next(name for name in results if name != winner)
            code, out, err = results[loser]
            assert code == 1, context
            assert "Traceback" not in out + err, context
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("Error: "), context

            win_state = world.state_in(race["dirs"][winner])
            lose_state = world.state_in(race["dirs"][loser])
            rollback_file = win_state / "import.plan.rollback.json"
            import_id = json.loads(rollback_file.read_text())["import_id"]

            # the loser: refused before any change, or rolled back what it began; it never
            # sent a config to a node, nor undid one
            records = _records(lose_state / "import.plan.journal.jsonl")
            node_steps = [
                r
                for r in records
                if str(r.get("step") or "").startswith("talos_join.")
                and r["event"] in ("send", "start", "undo_start")
            ]
            assert node_steps == [], context
            if records:
                assert records[-1]["event"] == "rollback_complete", context
                failed = [r for r in records if r["event"] == "failed"]
                outcomes.append(f"rolled back after {failed[0]['step'] if failed else '?'}")
            else:
                outcomes.append("refused before any change")

            # the winner: every planned resource, each carrying the winner's mark
            status = world.status()
            held: dict[str, dict[str, dict[str, Any]]] = {}
            for r in status["omni"]["resources"]:
                held.setdefault(r["type"], {})[r["id"]] = r
            for kind in IMPORT_KINDS:
                want = {c.resource_id for c in plan.changes if c.resource_type == kind}
                got = {
                    rid
                    for rid, r in held.get(kind, {}).items()
                    if r["labels"].get("omni.sidero.dev/cluster", rid) == cluster
                    or kind == "Clusters.omni.sidero.dev"
                }
                assert got == want, (kind, context)
                marks = {held[kind][rid]["annotations"].get(OWNER_ANNOTATION) for rid in want}
                assert marks == {import_id}, (kind, marks, context)
            # ...and the secrets the winner imported: Omni turned them into the cluster's
            # ClusterSecrets (it cannot once the loser destroyed them first)
            assert _wait_for(
                lambda: (
                    (CLUSTER_SECRETS, cluster)
                    in {(r["type"], r["id"]) for r in world.status()["omni"]["resources"]}
                )
            ), context
            # every node holds its backup plus exactly the three join documents, connected
            now = world.snapshot()
            for address, config in now.configs.items():
                live, old = _documents(config), _documents(before.configs[address])
                joined = {k for k in live if k.split("/")[0] in JOIN_KINDS}
                assert len(joined) == 3, (address, sorted(live), context)
                assert {k: v for k, v in live.items() if k not in joined} == old, context
            assert all(n["connected"] for n in world.status()["nodes"]), context

            # the winner's import is whole: its own rollback restores every byte
            rolled = world.cli(
                "rollback", "--auto-approve", str(rollback_file), env=_env(race["dirs"][winner])
            )
            assert rolled.code == 0, rolled.text + context
            assert_restored(world, before)
            assert (SECRETS, cluster) not in world.snapshot().resources
        assert len(outcomes) == ROUNDS, outcomes
        print("two runners, loser outcomes:", outcomes)
    finally:
        world.stop()


def test_a_run_that_meets_another_runs_secrets_waits_for_its_cluster_and_leaves_them(
    tmp_path: Path, aio: Any
) -> None:
    """The window the race rarely hits: runner A has created the cluster's secrets and not yet
    its Cluster when runner B's create of the secrets fails with AlreadyExists. B must not take
    them for an orphan at once (it used to destroy and replace them, lose the Cluster to A, and
    then destroy them in its rollback, leaving A's cluster without its secrets): it waits for
    A's Cluster, loses, and leaves A's secrets and Cluster alone."""
    from omniport.planner.execute.apply import ORPHAN_GRACE_SECONDS
    from omniport.planner.execute.session import KILL_ENV
    from omniport.providers import omni as o
    from omniport.providers.wire.omni.specs import omni_pb2

    world = start_world(tmp_path / "lab")
    try:
        before = world.snapshot()
        cluster = world.info["cluster"]
        world.make_plan()
        plan = planfile.read(world.plan)
        registrations = sum(1 for c in plan.changes if c.resource_type.startswith("Schematics."))
        # runner A (its own host) stops right after its secrets exist: A "in flight"
        stopped = world.apply(
            env={**_env(tmp_path / "runner-a"), KILL_ENV: str(1 + 2 * registrations + 2)}
        )
        assert stopped.code != 0
        assert (SECRETS, cluster) in world.snapshot().resources

        world.make_plan()
        runner_b = world.popen("apply", "--auto-approve", str(world.plan))
        world.wait_for_record(
            lambda r: (
                r["event"] == "start"
                and r.get("step", "").startswith("omni_imported_cluster_secrets.")
            )
        )
        time.sleep(min(1.0, ORPHAN_GRACE_SECONDS / 3))
        # A goes on: its Cluster, marked with its import ID, as omniport's apply makes it
        omni = world.handle.omni()

        async def create_cluster() -> None:
            async with omni:
                await omni.create(
                    o.CLUSTERS,
                    cluster,
                    omni_pb2.ClusterSpec(
                        talos_version=plan.cluster.talos_version,
                        kubernetes_version=plan.cluster.kubernetes_version,
                    ),
                    annotations={OWNER_ANNOTATION: "runner-a"},
                )

        aio(create_cluster())
        code, out, err = _finish(runner_b)
        assert code == 1, out + err
        assert "cluster lab is being imported by another run" in err, err
        assert "made by import runner-a" in err, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        # A's secrets and Cluster are as A left them; B touched no node
        held = world.snapshot()
        assert (SECRETS, cluster) in held.resources
        assert ("Clusters.omni.sidero.dev", cluster) in held.resources
        assert held.configs == before.configs
        assert not [
            r
            for r in world.records()
            if str(r.get("step") or "").startswith(("talos_join.", "omni_cluster."))
            and r["event"] in ("send", "undo_end")
            and r.get("data", {}).get("result") not in (None, "not made by this import; left alone")
        ]

        # clean up as A's operator would: Omni's teardown of the Cluster takes its secrets along
        async def remove_cluster() -> None:
            async with omni:
                await omni.teardown(o.CLUSTERS, cluster)
                await omni.wait_destroyed(o.CLUSTERS, cluster, timeout=30)

        aio(remove_cluster())
        assert _wait_for(lambda: (SECRETS, cluster) not in world.snapshot().resources)
        assert_restored(world, before)
    finally:
        world.stop()
