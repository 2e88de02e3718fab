"""Rollback: put the nodes and Omni back as they were before an apply. Idempotent, resumable.

It runs automatically when an apply fails, and as ``omniport rollback ROLLBACK`` after a crash
at any point. The journal says which steps may have happened (a ``start`` without an ``end``
counts); every undo reads the current state first, so running it twice changes nothing more:

1. nodes whose new config was sent (the journal's ``send`` record precedes every
   ApplyConfiguration) get their backup bytes back, verified by sha256 — this also removes the
   join documents;
2. the Cluster this import made is torn down (Omni's abort machinery then removes its
   MachineSets, MachineSetNodes, ConfigPatches and the imported secrets); first re-locked if a
   user unlocked it, because Omni resets the machines of an unlocked cluster it deletes;
3. every other resource carrying this import's mark is removed; the ImportedClusterSecrets
   (which nobody can read) is destroyed when the journal shows our Create started;
4. the Links of machines Omni did not know before are torn down (after their node left, so the
   node cannot register again).

It refuses a rollback file of another cluster, and a cluster whose CAs were rotated after an
unlock: the backups hold the old CAs, and restoring them would cut every node off.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omniport.planner import files, progress
from omniport.planner.changes import OWNER_ANNOTATION
from omniport.planner.execute import journal, rollbackfile
from omniport.planner.execute.backup import read_backup
from omniport.planner.execute.errors import RollbackError
from omniport.planner.execute.rollbackfile import OmniRef, RollbackNode, RollbackPlan
from omniport.planner.execute.secrets import Scrubber, config_secrets, os_ca_sha256
from omniport.planner.execute.session import (
    ALREADY_EXISTS,
    POLL_SECONDS,
    Access,
    Confirm,
    Interrupted,
    Interrupts,
    Recorder,
    StepRef,
    Ui,
    cluster_lock,
    error_text,
    spec_from_data,
)
from omniport.planner.overrides import Overrides, for_access
from omniport.planner.planning import sha256
from omniport.planner.spec import load_spec
from omniport.planner.speclocation import spec_directory
from omniport.providers import omni as o
from omniport.providers.errors import NotFound, ProviderError
from omniport.providers.omni import OmniClient, Resource
from omniport.providers.talos import ApplyMode, TalosClient

ADDRESS_PREFIX = {
    o.IMPORTED_CLUSTER_SECRETS: "omni_imported_cluster_secrets",
    o.CLUSTERS: "omni_cluster",
    o.MACHINE_SETS: "omni_machine_set",
    o.MACHINE_SET_NODES: "omni_machine_set_node",
    o.CONFIG_PATCHES: "omni_config_patch",
    o.LINKS: "omni_link",
}


def address(ref: OmniRef) -> str:
    return f"{ADDRESS_PREFIX.get(ref.type, ref.type)}.{ref.id}"


# ---- files ----------------------------------------------------------------------------------


def locate(recorded: str, rollback_file: Path) -> Path:
    """A path apply recorded (absolute); if it moved with the rollback file, found beside it."""
    path = Path(recorded)
    if path.exists():
        return path
    beside = rollback_file.resolve().parent / path.name
    return beside if beside.exists() else path


BACKUP_LIMIT = 256 * files.MIB
"""A backup zip holds every node's config, compressed: far less for a thousand nodes."""


def read_backup_for(
    rb: RollbackPlan, rollback_file: Path, moved: Path | None = None
) -> dict[str, bytes]:
    """Node address -> backup bytes, after checking the zip and every entry against the plan.

    ``moved`` is where the user says the zip is now (``rollback --backup``): it is accepted
    only when its sha256 is the one apply pinned in the rollback file, so no other zip (an
    older backup, another cluster's) can be restored by mistake."""
    path = moved if moved is not None else locate(rb.backup_path, rollback_file)
    given = " given with --backup" if moved is not None else f" named by {rollback_file}"
    try:
        raw = files.read_bytes(path, BACKUP_LIMIT)  # a FIFO or a device never hangs it
    except FileNotFoundError:
        raise RollbackError(
            f"the backup {path}{given} is missing",
            "pass the backup zip's new place with `omniport rollback --backup PATH "
            f"{rollback_file}` (apply wrote it as {Path(rb.backup_path).name}); it holds "
            "every node's config"
            if moved is None
            else f"give the path of the zip apply wrote as {Path(rb.backup_path).name}",
        ) from None
    except files.Unreadable as exc:
        raise RollbackError(
            f"the backup {path}{given} {exc.reason}",
            f"give the path of the zip apply wrote as {Path(rb.backup_path).name}",
        ) from None
    found = hashlib.sha256(raw).hexdigest()
    if found != rb.backup_sha256:
        raise RollbackError(
            f"the backup {path}{given} is not the one apply wrote (its sha256 is "
            f"{found[:16]}…, {rollback_file} pins {rb.backup_sha256[:16]}…)",
            f"give the zip apply wrote as {Path(rb.backup_path).name}, unchanged; rollback "
            "restores exactly its bytes",
        )
    entries = read_backup(path)
    out: dict[str, bytes] = {}
    for node in rb.nodes:
        data = entries.get(node.backup_entry)
        if data is None or hashlib.sha256(data).hexdigest() != node.config_sha256:
            raise RollbackError(
                f"the backup {path} has no intact entry {node.backup_entry} for {node.address}",
                "restore the original backup zip",
            )
        out[node.address] = data
    return out


# ---- the report -----------------------------------------------------------------------------


@dataclass
class Report:
    restored: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        return "rolled back: " + self._parts()

    def done_line(self) -> str:
        text = self._parts()
        return text[0].upper() + text[1:]

    def _parts(self) -> str:
        parts = []
        if self.restored:
            parts.append(f"restored {len(self.restored)} node(s) to their backup")
        if self.destroyed:
            parts.append(f"destroyed {len(self.destroyed)} Omni resource(s)")
        if self.links:
            parts.append(f"removed {len(self.links)} Link(s)")
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} node(s) needed nothing")
        return ", ".join(parts) if parts else "nothing needed undoing"


# ---- the undo engine ------------------------------------------------------------------------


@dataclass
class Undo:
    """Undo what the journal says may have happened; each undo checks the state first."""

    plan: RollbackPlan
    talos: TalosClient
    omni: OmniClient
    ui: Ui
    record: Recorder
    backup: dict[str, bytes]
    timeout: float
    parallelism: int
    scrub: Scrubber
    rollback_file: Path | None = None
    journal_records: list[journal.Record] | None = None
    """What the run being undone did, from its memory (apply's automatic rollback, which must
    work when the disk is full); None: read from the journal file."""
    with_cluster: set[str] = field(default_factory=set)
    """Addresses of marked resources that existed when the Cluster was torn down (Omni's
    abort machinery removes them with it)."""

    @property
    def cluster(self) -> str:
        return self.plan.cluster_name

    def records(self) -> list[journal.Record]:
        if self.journal_records is not None:
            return list(self.journal_records)
        where = self.rollback_file or Path(self.plan.journal)
        return journal.read(locate(self.plan.journal, where))

    async def run(self) -> Report:
        records = self.records()
        begun = any(
            r.event == "begin" and r.data.get("import_id") == self.plan.import_id for r in records
        )
        started = set(journal.started_steps(records))
        sent = {r.step for r in records if r.event == "send"}
        if not begun:
            self.ui.say(
                "The journal records no apply step; checking every node and resource anyway."
            )
        exists_elsewhere = {
            r.step for r in records if r.event == "failed" and r.data.get("code") == ALREADY_EXISTS
        }
        self.record("rollback_begin", None, import_id=self.plan.import_id)
        report = Report()

        def began(step: str) -> bool:
            return not begun or step in started

        # a node may hold the join documents only once its new config was sent ("send")
        joined = [
            n for n in reversed(self.plan.nodes) if not begun or f"talos_join.{n.address}" in sent
        ]
        for node in self.plan.nodes:
            if node not in joined:
                report.unchanged.append(node.address)
        left = await self.restore_nodes(joined, report)

        omni_steps = [address(r) for r in self.plan.omni_resources]
        if any(began(s) for s in omni_steps):
            cluster_ref = OmniRef(o.CLUSTERS, self.cluster)
            await self.undo_step(cluster_ref, self.teardown_cluster, report)
            rest = [
                ref
                for ref in reversed(self.plan.omni_resources)
                if ref.type not in (o.CLUSTERS, o.IMPORTED_CLUSTER_SECRETS) and began(address(ref))
            ]
            for kind, group in itertools.groupby(rest, key=lambda r: r.type):
                refs = list(group)
                # one List per kind: what the Cluster's teardown took along needs no call
                held = await self.omni.list(kind, labels={o.LABEL_CLUSTER: self.cluster})
                present = {r.id for r in held}
                swept = [
                    address(r)
                    for r in refs
                    if r.id not in present and address(r) in self.with_cluster
                ]
                if swept:
                    report.destroyed += swept
                    self.ui.say(f"{len(swept)} {kind} went with the cluster")
                await self.each([r for r in refs if r.id in present], self.remove_marked, report)
            secrets = OmniRef(o.IMPORTED_CLUSTER_SECRETS, self.cluster)
            if address(secrets) in started and address(secrets) not in exists_elsewhere:
                await self.undo_step(secrets, self.destroy_imported_secrets, report)

        uuids = {n.machine_uuid for n in left}
        existing = {r.id for r in await self.omni.list(o.LINKS)} if uuids else set()
        links = [OmniRef(o.LINKS, u) for u in self.plan.links if u in uuids and u in existing]
        await self.each(links, lambda r: self.teardown_link(r.id), report)

        report.failures += await self.leftovers(uuids)
        if report.failures:
            self.record("rollback_incomplete", None, failures=report.failures[:20])
            raise RollbackError(
                f"rollback did not finish: {report.failures[0]}"
                + (f" (and {len(report.failures) - 1} more)" if len(report.failures) > 1 else ""),
                "fix the cause and run `omniport rollback` again; it resumes where it stopped",
            )
        self.record("rollback_complete", None, import_id=self.plan.import_id)
        return report

    async def each(
        self, refs: list[OmniRef], action: Callable[[OmniRef], Awaitable[str]], report: Report
    ) -> None:
        """Undo independent resources of one kind with bounded parallelism."""
        gate = asyncio.Semaphore(self.parallelism)

        async def one(ref: OmniRef) -> None:
            async with gate:
                await self.undo_step(ref, functools.partial(action, ref), report)

        await asyncio.gather(*(one(r) for r in refs))

    async def undo_step(
        self, ref: OmniRef, action: Callable[[], Awaitable[str]], report: Report
    ) -> None:
        step = StepRef(address(ref), "delete", ref.type, ref.id)
        await self.record.durably("undo_start", step.address)
        self.ui.start(step)
        t0 = time.monotonic()
        try:
            note = await action()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = self.scrub(error_text(exc))
            await self.record.durably("undo_failed", step.address, error=message)
            self.ui.failed(step, message, time.monotonic() - t0)
            report.failures.append(f"{step.address}: {message}")
            return
        await self.record.durably("undo_end", step.address, result=note)
        if note in ("destroyed", "destroyed with the cluster"):
            (report.links if ref.type == o.LINKS else report.destroyed).append(step.address)
        self.ui.done(step, time.monotonic() - t0, note)

    # -- nodes --

    async def restore_nodes(self, nodes: list[RollbackNode], report: Report) -> list[RollbackNode]:
        """Restore in parallel (bounded); returns the nodes now equal to their backup."""
        gate = asyncio.Semaphore(self.parallelism)
        ok: list[RollbackNode] = []
        total, finished = len(nodes), 0
        t0 = time.monotonic()

        async def one(node: RollbackNode) -> None:
            nonlocal finished
            step = StepRef(f"talos_join.{node.address}", "update", "MachineConfigs", node.address)
            async with gate:
                await self.record.durably("undo_start", step.address, node=node.address)
                self.ui.start(step, "restoring the backup")
                started = time.monotonic()
                try:
                    restored = await self.restore(node)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    message = self.scrub(error_text(exc))
                    await self.record.durably("undo_failed", step.address, error=message)
                    self.ui.failed(step, message, time.monotonic() - started)
                    report.failures.append(f"{step.address}: {message}")
                    return
                await self.record.durably("undo_end", step.address, restored=restored)
                (report.restored if restored else report.unchanged).append(node.address)
                ok.append(node)
                finished += 1
                note = "restored" if restored else "already equal to its backup"
                self.ui.done(step, time.monotonic() - started, note)
                self.ui.progress(
                    step,
                    f"{finished}/{total} node(s) restored",
                    done=finished,
                    total=total,
                    elapsed_seconds=round(time.monotonic() - t0, 3),
                )

        await asyncio.gather(*(one(n) for n in nodes))
        return ok

    async def restore(self, node: RollbackNode) -> bool:
        """Apply the backup bytes unless the node already holds them; verify by sha256."""
        want = self.backup[node.address]
        live = await self.talos.machine_config(node.address)
        if sha256(live) == node.config_sha256:
            return False
        result = await self.talos.apply_configuration(node.address, want, ApplyMode.AUTO)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                live = await self.talos.machine_config(node.address)
            except ProviderError:
                if result.mode is not ApplyMode.REBOOT or time.monotonic() > deadline:
                    raise
                live = b""
            if sha256(live) == node.config_sha256:
                return True
            if time.monotonic() > deadline or result.mode is not ApplyMode.REBOOT:
                raise RollbackError(
                    f"node {node.address}'s config does not equal its backup after the restore "
                    f"(sha256 {sha256(live)[:12]}…, expected {node.config_sha256[:12]}…)",
                    "check the node, then run rollback again",
                )
            await asyncio.sleep(POLL_SECONDS * 2)  # the node reboots into the restored config

    # -- Omni --

    def ours(self, res: Resource) -> bool:
        return res.annotations.get(OWNER_ANNOTATION) == self.plan.import_id

    async def teardown_cluster(self) -> str:
        cluster = await self.omni.find(o.CLUSTERS, self.cluster)
        if cluster is None:
            return "already gone"
        if not self.ours(cluster):
            return "not made by this import; left alone"
        for kind in (o.MACHINE_SETS, o.MACHINE_SET_NODES, o.CONFIG_PATCHES):
            held = await self.omni.list(kind, labels={o.LABEL_CLUSTER: self.cluster})
            self.with_cluster |= {address(OmniRef(kind, r.id)) for r in held if self.ours(r)}
        if cluster.phase == o.PHASE_RUNNING:
            status = await self.omni.find(o.CLUSTER_STATUSES, self.cluster)
            tainted = status is not None and o.LABEL_TAINTED_BY_IMPORTING in status.labels
            locked = o.ANNOTATION_CLUSTER_LOCKED in cluster.annotations
            if locked and status is not None and not tainted:
                control_planes = await self.omni.find(
                    o.MACHINE_SETS, f"{self.cluster}-control-planes"
                )
                if control_planes is not None:
                    # Omni imports the secrets once the control-plane set exists; then the
                    # cluster is tainted and may be deleted while locked. Unlocking instead
                    # would let Omni push configs to the machines.
                    await self.wait_tainted()
                else:
                    # no machine set, so no machine Omni could push to: unlock to delete
                    await self.set_locked(False)
            elif not locked and tainted:
                # Omni resets the machines of an unlocked cluster it deletes: lock it again
                await self.set_locked(True)
        await self.omni.teardown(o.CLUSTERS, self.cluster)
        await self.omni.wait_destroyed(o.CLUSTERS, self.cluster, timeout=self.timeout)
        return "destroyed"

    async def wait_tainted(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            status = await self.omni.find(o.CLUSTER_STATUSES, self.cluster)
            if status is None or o.LABEL_TAINTED_BY_IMPORTING in status.labels:
                return
            if time.monotonic() > deadline:
                raise RollbackError(
                    f"Omni did not take over cluster {self.cluster}'s secrets within "
                    f"{self.timeout:g}s, so the locked cluster cannot be deleted yet",
                    "run rollback again later",
                )
            await asyncio.sleep(POLL_SECONDS)

    async def set_locked(self, locked: bool) -> None:
        def change(current: Resource) -> Resource:
            if locked:
                return current.with_annotation(o.ANNOTATION_CLUSTER_LOCKED, "")
            return current.without_annotation(o.ANNOTATION_CLUSTER_LOCKED)

        await self.omni.update_with_conflicts(o.CLUSTERS, self.cluster, change)

    async def remove_marked(self, ref: OmniRef) -> str:
        res = await self.omni.find(ref.type, ref.id, namespace=ref.namespace)
        if res is None:
            return (
                "destroyed with the cluster"
                if address(ref) in self.with_cluster
                else ("already gone")
            )
        if not self.ours(res):
            return "not made by this import; left alone"
        ready = await self.omni.teardown(ref.type, ref.id, namespace=ref.namespace)
        if ready:
            try:
                await self.omni.destroy(ref.type, ref.id, namespace=ref.namespace)
            except NotFound:
                pass
            return "destroyed"
        await self.omni.wait_destroyed(
            ref.type, ref.id, namespace=ref.namespace, timeout=self.timeout
        )
        return "destroyed"

    async def destroy_imported_secrets(self) -> str:
        """Destroy the ImportedClusterSecrets this import created, unless they now belong to
        another run's import: Omni cannot show whose they are (no client may read them), but a
        Cluster of this name that is not this import's is that run's, and uses them."""
        cluster = await self.omni.find(o.CLUSTERS, self.cluster)
        if cluster is not None and not self.ours(cluster):
            return "the cluster's import by another run holds them; left alone"
        try:
            await self.omni.destroy(o.IMPORTED_CLUSTER_SECRETS, self.cluster)
        except NotFound:
            return "already gone (Omni consumed it)"
        return "destroyed"

    async def teardown_link(self, uuid: str) -> str:
        if await self.omni.find(o.LINKS, uuid) is None:
            return "already gone"
        await self.omni.teardown(o.LINKS, uuid)
        await self.omni.wait_destroyed(o.LINKS, uuid, timeout=self.timeout)
        return "destroyed"

    async def leftovers(self, link_uuids: set[str]) -> list[str]:
        """What of this import is still in Omni after the undo (should be nothing).

        The reads are independent, so they go out together: one round trip, not five."""
        kinds = (o.MACHINE_SETS, o.MACHINE_SET_NODES, o.CONFIG_PATCHES)
        wanted = [uuid for uuid in self.plan.links if uuid in link_uuids]
        cluster, held, links = await asyncio.gather(
            self.omni.find(o.CLUSTERS, self.cluster),
            asyncio.gather(
                *(self.omni.list(kind, labels={o.LABEL_CLUSTER: self.cluster}) for kind in kinds)
            ),
            self.omni.list(o.LINKS) if wanted else _nothing(),
        )
        found: list[str] = []
        if cluster is not None and self.ours(cluster):
            found.append(f"cluster {self.cluster} is still in Omni")
        for kind, resources in zip(kinds, held, strict=True):
            found += [f"{kind} {r.id} is still in Omni" for r in resources if self.ours(r)]
        present = {r.id for r in links}
        found += [f"the Link of machine {u} is still in Omni" for u in wanted if u in present]
        return found


async def _nothing() -> list[Any]:
    return []


# ---- checks before a rollback run -----------------------------------------------------------


def _answers_untrusted(exc: ProviderError) -> bool:
    """The node answered, but with a certificate our CA did not sign: a wiped (maintenance)
    or reinstalled node, as apid reports it when it proxies to such a node."""
    return "certificate signed by unknown authority" in exc.message


def _normalize(url: str) -> str:
    return url.rstrip("/").lower()


async def check_target(
    rb: RollbackPlan, talos: TalosClient, omni: OmniClient, records: list[journal.Record]
) -> None:
    """Refuse a rollback file of another cluster, and one whose cluster rotated its CAs."""

    wiped: list[str] = []

    async def read(node: RollbackNode) -> tuple[RollbackNode, str | None, bytes | None]:
        try:
            return (
                node,
                await talos.system_uuid(node.address),
                await talos.machine_config(node.address),
            )
        except ProviderError as exc:
            if _answers_untrusted(exc):
                wiped.append(node.address)
            return node, None, None  # unreachable now: its restore will report it

    gate = asyncio.Semaphore(50)

    async def bounded(node: RollbackNode) -> tuple[RollbackNode, str | None, bytes | None]:
        async with gate:
            return await read(node)

    results = await asyncio.gather(*(bounded(n) for n in rb.nodes))
    reachable = [(n, u, c) for n, u, c in results if u is not None]
    if not reachable and wiped:
        raise RollbackError(
            f"{len(wiped)} of the {len(rb.nodes)} node(s) of cluster {rb.cluster_name} answer "
            "with a certificate the cluster's OS CA did not sign: they were reset (wiped into "
            "maintenance mode, as Omni does to the machines of a cluster deleted while "
            f"unlocked) or reinstalled: {', '.join(sorted(wiped)[:5])}",
            "restore each node from its backup with `talosctl apply-config --insecure --nodes "
            "ADDRESS --file BACKUP`; rollback cannot reach nodes in maintenance mode",
        )
    if not reachable:
        raise RollbackError(
            f"none of the {len(rb.nodes)} node(s) of cluster {rb.cluster_name} answers",
            "make the nodes reachable through the talosconfig endpoints and run rollback again",
        )
    for node, uuid, config in reachable:
        if uuid != node.machine_uuid:
            raise RollbackError(
                f"this rollback file belongs to the import of cluster {rb.cluster_name!r}, where "
                f"{node.address} was machine {node.machine_uuid}, but {node.address} is now "
                f"machine {uuid}: it does not match this cluster",
                "use the rollback file written by the apply against this cluster",
            )
        assert config is not None
        live_ca = os_ca_sha256(config)
        if live_ca is not None and live_ca != rb.os_ca_sha256:
            raise RollbackError(
                f"node {node.address} no longer trusts the OS CA recorded in the backup (the "
                "CAs were rotated after the import, or this is another cluster): restoring the "
                "backup would put the old CA back and cut the nodes off, so rollback refuses",
                "the cluster now belongs to Omni; remove it there if you must",
            )
    if _normalize(omni.endpoint.url) != _normalize(rb.omni_url):
        raise RollbackError(
            f"this rollback file is for Omni {rb.omni_url}, but the spec reaches "
            f"{omni.endpoint.url}",
            "use the rollback file written by the apply against this Omni",
        )

    cluster = await omni.find(o.CLUSTERS, rb.cluster_name)
    if cluster is None or cluster.annotations.get(OWNER_ANNOTATION) != rb.import_id:
        return
    status = await omni.find(o.CLUSTER_STATUSES, rb.cluster_name)
    secrets_taken = any(
        r.event == "end" and r.step == f"omni_machine_set.{rb.cluster_name}-control-planes"
        for r in records
    )
    unlocked = o.ANNOTATION_CLUSTER_LOCKED not in cluster.annotations
    if (
        unlocked
        and secrets_taken
        and status is not None
        and o.LABEL_TAINTED_BY_IMPORTING not in status.labels
    ):
        raise RollbackError(
            f"cluster {rb.cluster_name} was unlocked and both its CAs were rotated in Omni since "
            "the import: the backup holds the old CAs, so restoring it would cut every node off, "
            "and rollback refuses",
            "the cluster now belongs to Omni; manage (or delete) it there",
        )


# ---- the rollback command -------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackOptions:
    auto_approve: bool = False
    spec_path: Path | None = None
    """Reach Talos and Omni with this spec's settings instead of the ones apply recorded."""
    environ: dict[str, str] | None = None
    overrides: Overrides = field(default_factory=Overrides)
    """The global access flags (--talosconfig, ...): how to reach Talos and Omni this time."""
    backup_path: Path | None = None
    """The backup zip, moved from where apply wrote it (its sha256 must match the pinned one)."""


async def rollback_file(
    path: Path,
    options: RollbackOptions,
    ui: Ui,
    confirm: Confirm,
    interrupts: Interrupts,
    show: Callable[[RollbackPlan], None],
) -> Report:
    """Run ``omniport rollback``; raises RollbackError when refused or unfinished."""
    path = Path(path)
    rb = rollbackfile.read(path)
    if options.spec_path is not None:
        spec = load_spec(options.spec_path)
    else:
        base = spec_directory(rb.spec_location, path, fallback=Path(rb.spec_base))
        spec = spec_from_data(
            rb.spec,
            base,
            str(path),
            options.overrides,
            fix="run it from a checkout holding the spec, or pass that spec with --spec",
        )
    spec = for_access(spec, options.overrides, "rollback")
    backup = read_backup_for(rb, path, options.backup_path)
    access = Access.of(spec, options.environ)
    records = journal.read(locate(rb.journal, path))
    lock = cluster_lock(rb.omni_url, rb.cluster_name, "rollback", access.env)
    lock.acquire()
    try:
        talos = access.talos()
        omni = access.omni()
        async with talos, omni:
            with progress.waiting("rollback", "reading the nodes and Omni to check the target"):
                await omni.server_version()  # omnictl's API version check, before anything else
                await check_target(rb, talos, omni, records)
            show(rb)
            if not options.auto_approve and not confirm(rb.cluster_name):
                raise RollbackError("Rollback cancelled.", None)
            scrub = Scrubber()
            for data in backup.values():
                scrub.add(config_secrets(data))
            # a disk still full: the rollback goes on without its records, saying so once
            record = Recorder(locate(rb.journal, path), access.env, strict=False, warn=ui.say)
            undo = Undo(
                plan=rb,
                talos=talos,
                omni=omni,
                ui=ui,
                record=record,
                backup=backup,
                timeout=spec.wait_timeout,
                parallelism=spec.parallelism,
                scrub=scrub,
                rollback_file=path,
            )
            interrupts.hint = f" Run `omniport rollback {path}` again to finish."
            interrupts.stopping = (
                "stopping the rollback where it is (the journal keeps what is done)"
            )
            interrupts.begun = True
            interrupts.arm()
            try:
                report = await interrupts.guard(undo.run())
            except Interrupted:
                record("rollback_interrupted", None)
                raise RollbackError(
                    "rollback interrupted", f"run `omniport rollback {path}` again to finish"
                ) from None
            finally:
                interrupts.disarm()
                record.close()
            return report
    finally:
        lock.release()
