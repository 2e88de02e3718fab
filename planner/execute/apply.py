"""Apply: execute exactly a saved plan, as a transaction with a write-ahead journal.

Order of a run (DESIGN.md, "Apply, journal, rollback"):

1. read the plan (checksum, format and tool version, schema) and refuse blocking findings;
2. take the per-cluster lock, re-discover the world and refuse a stale plan, naming what moved;
3. ask for ``yes`` (unless auto-approved);
4. write ahead: the backup zip, the rollback plan, then the journal's ``begin`` record;
5. run the steps, each journaled (fsync) before and after: ImportedClusterSecrets, Cluster
   (locked, import in progress), MachineSets, MachineSetNodes, ConfigPatches, the node joins
   (a canary first, then bounded parallelism), the wait for every machine to connect, and the
   final verification;
6. on any failure, timeout or first Ctrl-C, roll back what may have happened (``rollback.py``),
   unless ``--no-rollback``.

Every Omni resource created carries ``omniport.dev/import=<import id>``, so that rollback
removes only what this run made. The journal is the one source of truth for resuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omniport.planner import __version__, planfile
from omniport.planner.changes import OWNER_ANNOTATION, PATCH_DESCRIPTION, PATCH_NAME, SCHEMATIC_TYPE
from omniport.planner.discover import DEFAULT_PARALLELISM as READ_PARALLELISM
from omniport.planner.discover import discover, factory_client, run_health_check
from omniport.planner.errors import OmniportError
from omniport.planner.execute import journal, rollback, rollbackfile, statedir
from omniport.planner.execute.backup import BackupEntry, backup_name, write_backup
from omniport.planner.execute.errors import (
    ApplyError,
    Cancelled,
    ForgedPlanError,
    JournalError,
    StalePlanError,
)
from omniport.planner.execute.secrets import Scrubber, config_secrets, k8s_ca_sha256, os_ca_sha256
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
from omniport.planner.facts import ClusterFacts
from omniport.planner.join import join_documents
from omniport.planner.machineconfig import document as mcdoc
from omniport.planner.machineconfig.merge import strategic_merge
from omniport.planner.overrides import Overrides, for_access
from omniport.planner.plan import Action, Change, Plan
from omniport.planner.planning import Computed, NodeWork, compute, sha256
from omniport.planner.sealed import checksum
from omniport.planner.spec import Spec
from omniport.planner.speclocation import spec_directory
from omniport.providers import omni as o
from omniport.providers.errors import Conflict, NotFound, ProviderError
from omniport.providers.omni import OmniClient
from omniport.providers.talos import ApplyMode, TalosClient, map_nodes
from omniport.providers.timeouts import Timeouts
from omniport.providers.wire.omni.specs import omni_pb2, siderolink_pb2

JOIN_TYPE = "MachineConfigs.config.talos.dev"
INTERRUPTED = "(interrupt)"


def _connected(resource: o.Resource) -> bool:
    """Whether a Machine or Link says its node is connected to Omni now."""
    machine = resource.spec_as(omni_pb2.MachineSpec)
    if machine is not None:
        return machine.connected
    link = resource.spec_as(siderolink_pb2.SiderolinkSpec)
    return link is not None and link.connected


# ---- paths ----------------------------------------------------------------------------------


def state_files(
    plan_path: Path, plan: Plan, spec: Spec, environ: Mapping[str, str] | None = None
) -> statedir.StateFiles:
    """Where an apply of ``plan_path`` keeps its rollback plan, journal and backup: the
    cluster's state directory (``statedir.py``), never beside a spec committed to git."""
    return statedir.files_for(plan_path, plan.cluster.name, plan.cluster.omni_url, spec, environ)


# ---- reading and checking the plan ----------------------------------------------------------


def load_plan(path: Path, overrides: Overrides | None = None) -> tuple[Plan, Spec]:
    """The plan (checksum, versions and schema checked) and the spec it was made from
    (reaching Talos and Omni as ``overrides`` say, when given)."""
    plan = planfile.read(path)
    blocking = plan.blocking_findings
    if blocking:
        codes = ", ".join(sorted({f.code for f in blocking}))
        raise ApplyError(
            f"{path} has {len(blocking)} blocking finding(s) ({codes}); it cannot be applied",
            "fix them, or accept them under findings.accept in the spec after review, then "
            "run `omniport plan` again",
        )
    if not plan.has_changes:
        raise ApplyError(f"{path} has no changes to apply", "nothing to do")
    base = spec_directory(plan.spec_location, path)
    spec = spec_from_data(plan.spec, base, str(path), overrides)
    if spec.sha256 != plan.spec_sha256:
        raise ApplyError(
            f"the spec recorded in {path} does not hash to its spec_sha256",
            "run `omniport plan` again",
        )
    return plan, spec


def refuse_forged(path: Path, plan: Plan, now: Computed) -> None:
    """Refuse a plan that was edited and re-checksummed after ``omniport plan`` sealed it.

    The seal is keyed from the cluster's secrets bundle, read again just now. When the bundle
    is the one the plan was made with, a seal that fails means the file was changed (whatever
    else moved); when the bundle changed, the seal cannot be checked and the plan is stale."""
    if now.plan.secrets_sha256 != plan.secrets_sha256:
        return
    if plan.seal is None:
        raise ForgedPlanError(
            f"the plan {path} carries no seal, so it was not written by `omniport plan`",
            "apply takes no hand-made plan: run `omniport plan` again and review the new plan",
        )
    if not planfile.seal_verifies(plan, now.secrets_yaml):
        raise ForgedPlanError(
            f"the plan {path} is forged: it was changed after `omniport plan` wrote it and its "
            "checksum recomputed, so its seal does not verify with the cluster's secrets",
            "do not edit plan files: run `omniport plan` again and review the new plan",
        )


def stale_message(path: Path, reasons: list[str]) -> str:
    """Every difference, so one apply tells all that moved (not one per attempt)."""
    if len(reasons) == 1:
        return f"the plan {path} is stale: {reasons[0]}"
    listed = "; ".join(f"({i}) {r}" for i, r in enumerate(reasons, 1))
    return f"the plan {path} is stale, {len(reasons)} differences: {listed}"


def stale_reasons(plan: Plan, now: Plan, unreadable: Mapping[str, str] | None = None) -> list[str]:
    """What differs between the saved plan and the one recomputed now, in words.

    ``unreadable`` maps node addresses that could not be read now to the reason."""
    reasons: list[str] = []
    saved = {n.address: n for n in plan.nodes}
    fresh = {n.address: n for n in now.nodes}
    for address, old in saved.items():
        new = fresh.get(address)
        if new is None:
            reasons.append(f"node {address} is no longer part of the spec")
            continue
        if unreadable and address in unreadable:
            reasons.append(f"node {address} cannot be read now ({unreadable[address]})")
            continue
        for label, a, b in (
            ("machine UUID", old.machine_uuid, new.machine_uuid),
            ("role", old.role, new.role),
            ("hostname", old.hostname, new.hostname),
            ("Talos version", old.talos_version, new.talos_version),
            ("schematic", old.schematic_id, new.schematic_id),
        ):
            if a != b:
                reasons.append(f"node {address}'s {label} changed since the plan ({a} -> {b})")
        if old.config_sha256 != new.config_sha256:
            reasons.append(f"node {address}'s config changed since the plan")
        elif [(p.id, p.sha256) for p in old.patches] != [(p.id, p.sha256) for p in new.patches]:
            reasons.append(f"node {address}'s patches would differ from the plan")
    if plan.secrets_sha256 != now.secrets_sha256:
        reasons.append("the cluster's secrets bundle changed since the plan")
    for label, a, b in (
        ("Talos version", plan.cluster.talos_version, now.cluster.talos_version),
        ("Kubernetes version", plan.cluster.kubernetes_version, now.cluster.kubernetes_version),
        ("cluster name", plan.cluster.name, now.cluster.name),
    ):
        if a != b:
            reasons.append(f"the cluster's {label} changed since the plan ({a} -> {b})")
    old_codes = {(f.code, f.node) for f in plan.findings if f.blocking}
    for f in now.findings:
        if f.blocking and (f.code, f.node) not in old_codes:
            where = f" on {f.node}" if f.node else ""
            reasons.append(f"a new blocking finding {f.code}{where}: {f.message}")
    if not reasons:
        old_changes = planfile.to_dict(plan)["changes"]
        new_changes = planfile.to_dict(now)["changes"]
        if old_changes != new_changes:
            reasons.append("the changes the plan would make are no longer the same")
    if not reasons and plan.fingerprint != now.fingerprint:
        reasons.append(
            "Omni's state changed since the plan (its join token, SideroLink settings, Talos "
            "versions or the machines it knows)"
        )
    return reasons


# ---- steps ----------------------------------------------------------------------------------


def step_of(change: Change) -> StepRef:
    action = {Action.CREATE: "create", Action.UPDATE: "update", Action.DELETE: "delete"}.get(
        change.action, "read"
    )
    return StepRef(change.address, action, change.resource_type, change.resource_id, change.node)


def wait_step(cluster: str) -> StepRef:
    return StepRef(f"omni_wait_connected.{cluster}", "read", o.MACHINES, cluster)


def verify_step(cluster: str) -> StepRef:
    return StepRef(f"omniport_verify.{cluster}", "read", "Verification", cluster)


ORPHAN_GRACE_SECONDS = 5.0
"""How long a run that finds the cluster's ImportedClusterSecrets in Omni waits for the Cluster
of the run that made them before taking them for the orphan of a crashed run (between its
secrets and its Cluster, a live run spends one journal write and one call)."""


class ImportedElsewhere(ApplyError):
    """This run lost the race for the cluster to another run's import (see
    :meth:`Transaction.imported_elsewhere`); journaled with Omni's ALREADY_EXISTS code, so that
    rollback leaves the resource alone."""

    code = ALREADY_EXISTS


class StepFailed(Exception):
    """A step failed; ``message`` is already scrubbed of secrets."""

    def __init__(self, step: StepRef, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


@dataclass
class Transaction:
    """The steps of one apply and what they need (the recomputed secrets and patch texts)."""

    plan: Plan
    computed: Computed
    talos: TalosClient
    omni: OmniClient
    ui: Ui
    record: Recorder
    import_id: str
    backups: dict[str, bytes]  # node address -> backup bytes
    parallelism: int
    wait_timeout: float
    scrub: Scrubber
    done: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    _patch_texts: dict[str, str] | None = field(default=None, repr=False)
    _sent: dict[str, str] = field(default_factory=dict, repr=False)  # address -> sha256 sent
    _works: dict[str, NodeWork] | None = field(default=None, repr=False)
    _registered: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    factory_timeouts: Timeouts | None = None

    @property
    def cluster(self) -> str:
        return self.plan.cluster.name

    @property
    def mark(self) -> dict[str, str]:
        return {OWNER_ANNOTATION: self.import_id}

    # -- one step, journaled --

    async def run_step(
        self, step: StepRef, action: Callable[[], Awaitable[dict[str, Any] | None]], note: str = ""
    ) -> None:
        try:
            await self.record.durably("start", step.address, action=step.action, node=step.node)
        except JournalError as exc:  # the step has not run: its start is not on disk
            raise StepFailed(step, exc.message) from None
        self.ui.start(step, note)
        started = time.monotonic()
        try:
            result = await action()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = self.scrub(error_text(exc))
            code = getattr(exc, "code", None)
            with contextlib.suppress(JournalError):  # the run fails anyway; memory has it
                await self.record.durably("failed", step.address, error=message, code=code)
            self.ui.failed(step, message, time.monotonic() - started)
            raise StepFailed(step, message) from exc
        try:
            await self.record.durably("end", step.address, **(result or {}))
        except JournalError as exc:  # the step ran; rollback undoes it (its start is known)
            self.ui.failed(step, exc.message, time.monotonic() - started)
            raise StepFailed(step, exc.message) from None
        self.done.append(step.address)
        self.ui.done(step, time.monotonic() - started, note)

    # -- the whole transaction --

    async def run(self) -> None:
        """Omni's side first (locked and marked importing from its first moment), then the
        nodes, then each node's MachineSetNode once its machine is in Omni (see
        docs/import-order.md: every crash point is one Omni's own abort cleans up)."""
        changes = self.plan.changes
        joins = [c for c in changes if c.resource_type == JOIN_TYPE]
        set_nodes = [c for c in changes if c.resource_type == o.MACHINE_SET_NODES]
        registrations = [c for c in changes if c.resource_type == SCHEMATIC_TYPE]
        creates = [
            c
            for c in changes
            if c.resource_type not in (JOIN_TYPE, SCHEMATIC_TYPE, o.MACHINE_SET_NODES)
        ]
        # the factory first, as Omni's importer validates: nothing else has changed if it fails
        for change in registrations:
            await self.run_step(step_of(change), functools.partial(self.register, change))
        for kind, group in itertools.groupby(creates, key=lambda c: c.resource_type):
            items = list(group)
            if kind == o.CONFIG_PATCHES:
                # one per node: independent of each other, so created with bounded parallelism
                await self.bounded(items, self.create, "config patches created")
            else:
                for change in items:
                    await self.run_step(step_of(change), functools.partial(self.create, change))
        await self.connect_nodes(joins)
        await self.bounded(set_nodes, self.place_machine, "machine set nodes created")
        await self.run_step(wait_step(self.cluster), self.wait_connected)
        await self.run_step(verify_step(self.cluster), self.verify)

    async def place_machine(self, change: Change) -> dict[str, Any]:
        """The MachineSetNode of a machine that has joined: wait for its Link, then create.

        Omni validates a MachineSetNode against its machine when it is created, and Omni's
        abort tears down the Link of every MachineSetNode (NotFound fails it): so a
        MachineSetNode exists only for a machine Omni already has.
        """
        await self.await_link(change.resource_id, change.node or change.resource_id)
        return await self.create(change)

    async def await_link(self, uuid: str, address: str, *, connected: bool = False) -> None:
        """Until Omni has the machine's Link (``connected``: and it is connected)."""
        deadline = time.monotonic() + self.wait_timeout
        while True:
            link = await self.omni.find(o.LINKS, uuid)
            if link is not None and (not connected or _connected(link)):
                return
            if time.monotonic() >= deadline:
                state = "connect to" if connected else "appear in"
                raise ApplyError(
                    f"machine {uuid} ({address}) did not {state} Omni within "
                    f"{self.wait_timeout:g}s after its node joined",
                    "check that the node reaches Omni's SideroLink endpoint, or raise "
                    "apply.waitTimeout",
                )
            await asyncio.sleep(POLL_SECONDS)

    async def bounded(
        self,
        changes: list[Change],
        action: Callable[[Change], Awaitable[dict[str, Any]]],
        label: str,
        *,
        first_done: int = 0,
        total: int | None = None,
    ) -> None:
        """Run one step per change, at most ``parallelism`` at once, with progress counts.

        After the first failure no new step starts; the ones running finish (and are
        journaled), then the first failure is raised."""
        gate = asyncio.Semaphore(self.parallelism)
        failures: list[StepFailed] = []
        finished = first_done
        total = len(changes) + first_done if total is None else total
        t0 = time.monotonic()

        async def one(change: Change) -> None:
            nonlocal finished
            async with gate:
                if failures:
                    return
                step = step_of(change)
                try:
                    await self.run_step(step, functools.partial(action, change))
                except StepFailed as exc:
                    failures.append(exc)
                    return
                finished += 1
                self.ui.progress(
                    step,
                    f"{finished}/{total} {label}",
                    done=finished,
                    total=total,
                    elapsed_seconds=round(time.monotonic() - t0, 3),
                )

        await asyncio.gather(*(one(c) for c in changes))
        if failures:
            raise failures[0]

    # -- Image Factory --

    async def register(self, change: Change) -> dict[str, Any]:
        """POST the node's schematic to the factory and require the node's ID back.

        Idempotent (the factory answers the same ID for the same content), so nothing is
        undone on rollback; one POST per distinct schematic, as Omni's importer does."""
        factory = self.computed.facts.factory
        check = next((c for c in factory.checks if c.node == change.node), None)
        if factory.url is None or check is None or not check.schematic_yaml:
            raise ApplyError(
                f"node {change.node}'s schematic content was not re-read from the node",
                "run `omniport plan` again",
            )
        key = (change.resource_id, check.schematic_yaml)
        earlier = self._registered.get(key)
        if earlier is not None:
            return {"schematic_id": change.resource_id, "registered_with": earlier}
        client = factory_client(factory, timeouts=self.factory_timeouts)
        answered = await client.create_schematic(check.schematic_yaml)
        if answered != change.resource_id:
            raise ApplyError(
                f"schematic ID mismatch for node {change.node}: the Image Factory at "
                f"{client.base_url} registered its schematic as {answered}, the node runs "
                f"{change.resource_id}",
                "check that this is the factory the node's image came from "
                "(imageFactory.url, or Omni's factory settings)",
            )
        self._registered[key] = change.address
        return {"schematic_id": answered, "factory": client.base_url}

    # -- Omni resources --

    async def create(self, change: Change) -> dict[str, Any]:
        kind, rid = change.resource_type, change.resource_id
        labels = dict(change.after.get("labels") or {})
        annotations = dict(self.mark)
        spec: Any
        if kind == o.IMPORTED_CLUSTER_SECRETS:
            spec = omni_pb2.ImportedClusterSecretsSpec(data=self.computed.secrets_yaml)
        elif kind == o.CLUSTERS:
            spec = omni_pb2.ClusterSpec(
                talos_version=self.plan.cluster.talos_version,
                kubernetes_version=self.plan.cluster.kubernetes_version,
            )
            annotations[o.ANNOTATION_CLUSTER_LOCKED] = ""
            annotations[o.ANNOTATION_IMPORT_IN_PROGRESS] = ""
        elif kind == o.MACHINE_SETS:
            spec = omni_pb2.MachineSetSpec()
        elif kind == o.MACHINE_SET_NODES:
            spec = omni_pb2.MachineSetNodeSpec()
        elif kind == o.CONFIG_PATCHES:
            spec = omni_pb2.ConfigPatchSpec(data=self.patch_text(rid))
            annotations[o.ANNOTATION_CONFIG_PATCH_NAME] = PATCH_NAME
            annotations[o.ANNOTATION_CONFIG_PATCH_DESCRIPTION] = PATCH_DESCRIPTION
        else:
            raise ApplyError(f"the plan names an unknown resource type {kind}", "plan again")
        try:
            created = await self.omni.create(
                kind, rid, spec, labels=labels, annotations=annotations
            )
        except ProviderError as exc:
            if kind == o.CLUSTERS and isinstance(exc, Conflict) and exc.code == ALREADY_EXISTS:
                lost = await self.imported_elsewhere()
                if lost is not None:
                    raise lost from None
            if kind != o.IMPORTED_CLUSTER_SECRETS:
                raise
            return await self.replace_orphan_secrets(exc, spec, labels, annotations)
        return {"version": created.version}

    # -- another run importing the same cluster (another host: another lock) --

    async def imported_elsewhere(self, wait: float = 0.0) -> ImportedElsewhere | None:
        """The error of a run that lost the race for this cluster to another run's import, or
        None when Omni has no Cluster of this name (within ``wait`` seconds).

        Omni's creates are atomic, so exactly one run creates the Cluster; the loser's step
        fails with this (code ALREADY_EXISTS), and its rollback leaves what exists alone."""
        deadline = time.monotonic() + wait
        while True:
            cluster = await self.omni.find(o.CLUSTERS, self.cluster)
            if cluster is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_SECONDS)
        if cluster is None:
            return None
        other = cluster.annotations.get(OWNER_ANNOTATION)
        by = f"import {other}" if other else "a run that is not this one"
        return ImportedElsewhere(
            f"cluster {self.cluster} is being imported by another run: Omni already has its "
            f"Cluster, made by {by}; this run changed nothing of it",
            "let the other run finish (its output names its rollback plan), then run "
            "`omniport plan` to see the cluster as Omni holds it",
        )

    async def replace_orphan_secrets(
        self, failure: ProviderError, spec: Any, labels: dict[str, str], annotations: dict[str, str]
    ) -> dict[str, Any]:
        """After Omni refused this run's ImportedClusterSecrets: replace an orphan, or lose.

        Omni refuses them when the cluster exists (another run won the race) or when they exist
        already: from a run in flight between its secrets and its Cluster (wait
        ``ORPHAN_GRACE_SECONDS`` for that Cluster, then lose), or an orphan of an import that
        crashed before its Cluster existed, which is replaced, as Omni's importer does. Omni lets
        no client read these, so the plan could only announce "create or replace"."""
        kind, rid = o.IMPORTED_CLUSTER_SECRETS, self.cluster
        exists = isinstance(failure, Conflict) and failure.code == ALREADY_EXISTS
        lost = await self.imported_elsewhere(ORPHAN_GRACE_SECONDS if exists else 0.0)
        if lost is not None:
            raise lost from None
        if not exists:
            raise failure
        try:
            await self.omni.teardown(kind, rid)
            await self.omni.destroy(kind, rid)
        except NotFound:
            pass  # its own run removed it meanwhile
        try:
            created = await self.omni.create(
                kind, rid, spec, labels=labels, annotations=annotations
            )
        except ProviderError:
            lost = await self.imported_elsewhere()
            if lost is not None:
                raise lost from None
            raise
        return {"version": created.version, "replaced_orphan": True}

    def patch_text(self, patch_id: str) -> str:
        if self._patch_texts is None:
            self._patch_texts = {
                pid: text for work in self.computed.nodes for pid, text in work.patch_texts
            }
        text = self._patch_texts.get(patch_id)
        if text is None:
            raise ApplyError(f"patch {patch_id} was not recomputed", "run `omniport plan` again")
        return text

    # -- nodes --

    def _parsed_backup(self, address: str) -> mcdoc.MachineConfig | None:
        """The backup as re-discovery already parsed it (None: parse it again)."""
        if self._works is None:
            self._works = {work.facts.address: work for work in self.computed.nodes}
        work = self._works.get(address)
        if work is None or work.facts.config != self.backups.get(address):
            return None
        return work.live

    async def connect_nodes(self, joins: list[Change]) -> None:
        """A canary node first (the first worker, else the first node), then the rest."""
        if not joins:
            return
        roles = {n.address: n.role for n in self.plan.nodes}
        canary = next((c for c in joins if roles.get(c.resource_id) == "worker"), joins[0])
        first = step_of(canary)
        t0 = time.monotonic()
        await self.run_step(first, functools.partial(self.join_canary, canary), note="canary")
        label = "node(s) hold the join documents"
        self.ui.progress(
            first,
            f"1/{len(joins)} {label}",
            done=1,
            total=len(joins),
            elapsed_seconds=round(time.monotonic() - t0, 3),
        )
        rest = [c for c in joins if c is not canary]
        await self.bounded(rest, self.join, label, first_done=1, total=len(joins))

    async def join_canary(self, change: Change) -> dict[str, Any]:
        """The canary proves the whole path before any other node is touched: its config is
        applied and its machine connects to Omni (a node that cannot reach Omni's SideroLink
        endpoint fails here, with one node to restore)."""
        result = await self.join(change)
        uuids = {n.address: n.machine_uuid for n in self.plan.nodes}
        address = change.resource_id
        await self.await_link(uuids.get(address, address), address, connected=True)
        return result

    async def join(self, change: Change) -> dict[str, Any]:
        """Merge the three join documents into the live config and apply it (mode AUTO)."""
        address = change.resource_id
        backup = self.backups[address]
        live = await self.talos.machine_config(address)
        if live != backup:
            raise ApplyError(
                f"node {address}'s config changed after the backup was taken",
                "run `omniport plan` again",
            )
        assert self.computed.join is not None
        parsed = self._parsed_backup(address)
        merged = strategic_merge(
            parsed
            if parsed is not None
            else mcdoc.parse(live, source=f"machine config of {address}"),
            join_documents(self.computed.join),
        )
        data = mcdoc.emit(merged).encode()
        self._sent[address] = sha256(data)
        # write-ahead: from here on the node may hold the join documents
        await self.record.durably(
            "send", f"talos_join.{address}", node=address, config_sha256=sha256(data)
        )
        result = await self.talos.apply_configuration(address, data, ApplyMode.AUTO)
        return {"mode": result.mode.name, "config_sha256": sha256(data)}

    # -- waiting and verifying --

    async def wait_connected(self) -> dict[str, Any]:
        """Until every machine is connected in Omni and has its ClusterMachine."""
        step = wait_step(self.cluster)
        wanted = {n.machine_uuid: n.address for n in self.plan.nodes}
        deadline = time.monotonic() + self.wait_timeout
        t0 = time.monotonic()
        shown = -1
        last_shown = 0.0
        while True:
            machines, members = await asyncio.gather(  # independent reads: one round trip
                self.omni.list(o.MACHINES),
                self.omni.list(o.CLUSTER_MACHINES, labels={o.LABEL_CLUSTER: self.cluster}),
            )
            registered = {m.id for m in machines}
            connected = {m.id for m in machines if _connected(m)}
            in_cluster = {m.id for m in members}
            ready = {u for u in wanted if u in connected and u in in_cluster}
            # where each machine still is: Omni lets a first join in only after a pending
            # phase, and makes the ClusterMachine only once the machine's status exists
            stages = {
                "not registered yet": [u for u in wanted if u not in registered],
                "registered, not connected": [
                    u for u in wanted if u in registered and u not in connected
                ],
                "connected, no ClusterMachine yet": [
                    u for u in wanted if u in connected and u not in in_cluster
                ],
            }
            waiting = ", ".join(f"{len(ids)} {stage}" for stage, ids in stages.items() if ids)
            now = time.monotonic()
            if len(ready) != shown or now - last_shown > 5:
                shown, last_shown = len(ready), now
                self.ui.progress(
                    step,
                    f"{len(ready)}/{len(wanted)} machine(s) connected to Omni"
                    + (f" ({waiting})" if waiting else ""),
                    done=len(ready),
                    total=len(wanted),
                    elapsed_seconds=round(now - t0, 3),
                )
            if len(ready) == len(wanted):
                return {"connected": len(ready)}
            if now >= deadline:
                missing = [
                    f"{wanted[u]} ({u}, {stage})"
                    for stage, ids in stages.items()
                    for u in sorted(ids, key=wanted.__getitem__)
                ]
                raise ApplyError(
                    f"{len(missing)} machine(s) did not connect to Omni within "
                    f"{self.wait_timeout:g}s: {', '.join(missing[:5])}"
                    + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
                    "check that the nodes reach Omni's SideroLink endpoint and that Omni "
                    "accepts their join token, or raise apply.waitTimeout",
                )
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    async def verify(self) -> dict[str, Any]:
        """Each node = its backup + exactly the join documents; Omni = exactly the plan."""
        assert self.computed.join is not None
        joined = join_documents(self.computed.join)
        problems: list[str] = []

        async def check(address: str) -> None:
            live = await self.talos.machine_config(address)
            if self._sent.get(address) == sha256(live):
                return  # the very bytes this run sent, which were its backup plus the join
            expected = strategic_merge(mcdoc.parse(self.backups[address]), joined)
            if mcdoc.canonical_json(mcdoc.parse(live)) != mcdoc.canonical_json(expected):
                problems.append(f"node {address}'s config is not its backup plus the join")

        # reads only: as wide as discovery, whatever apply.parallelism allows for changes
        width = max(self.parallelism, READ_PARALLELISM)
        read = await map_nodes([n.address for n in self.plan.nodes], check, width)
        problems += [f"node {a} could not be read: {e}" for a, e in read.items() if e is not None]
        planned: dict[str, set[str]] = {}
        for change in self.plan.changes:
            planned.setdefault(change.resource_type, set()).add(change.resource_id)
        kinds = (o.MACHINE_SETS, o.MACHINE_SET_NODES, o.CONFIG_PATCHES)
        cluster, helds = await asyncio.gather(  # independent reads: one round trip
            self.omni.find(o.CLUSTERS, self.cluster),
            asyncio.gather(
                *(self.omni.list(kind, labels={o.LABEL_CLUSTER: self.cluster}) for kind in kinds)
            ),
        )
        if cluster is None or cluster.annotations.get(OWNER_ANNOTATION) != self.import_id:
            problems.append(f"Omni holds no cluster {self.cluster} made by this import")
        elif o.ANNOTATION_CLUSTER_LOCKED not in cluster.annotations:
            problems.append(f"cluster {self.cluster} is not locked in Omni")
        for kind, held in zip(kinds, helds, strict=True):
            held = [r for r in held if not omni_managed(r)]
            ours = {r.id for r in held if r.annotations.get(OWNER_ANNOTATION) == self.import_id}
            ids = {r.id for r in held}
            want = planned.get(kind, set())
            if ids != want or ours != want:
                extra, missing = sorted(ids - want), sorted(want - ours)
                problems.append(
                    f"Omni's {kind} differ from the plan"
                    + (f" (unexpected: {', '.join(extra)})" if extra else "")
                    + (f" (missing: {', '.join(missing)})" if missing else "")
                )
        if problems:
            raise ApplyError("; ".join(problems), "the import is rolled back; investigate")
        return {"nodes": len(self.plan.nodes)}


def omni_managed(resource: o.Resource) -> bool:
    """A resource Omni made and keeps itself: a controller owns it, or it is a system patch.

    The final verify compares what the import made with the plan; Omni may add its own patches
    to the cluster meanwhile (labelled ``omni.sidero.dev/system-patch``, owned by a
    controller), which are neither the user's nor this import's to check or undo.
    """
    return bool(resource.owner) or o.LABEL_SYSTEM_PATCH in resource.labels


# ---- write-ahead ----------------------------------------------------------------------------


def retire_previous(journal_file: Path, rollback_file: Path) -> None:
    """Move the journal and rollback plan of an earlier, fully rolled back run out of the way.

    A run that began and was not rolled back completely blocks a new apply of the same plan
    file: its rollback plan and journal are the only record of what to undo.
    """
    present = [p for p in (journal_file, rollback_file) if p.exists()]
    if not present:
        return
    records = journal.read(journal_file)
    last_begin = max((i for i, r in enumerate(records) if r.event == "begin"), default=None)
    if last_begin is not None and not any(
        r.event == "rollback_complete" for r in records[last_begin:]
    ):
        raise ApplyError(
            f"an earlier apply of this plan is recorded in {journal_file} and was not rolled back",
            f"run `omniport rollback {rollback_file}` first (or move both files away)",
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for path in present:
        path.rename(path.with_name(f"{path.name}.{stamp}"))


@dataclass(frozen=True)
class WriteAhead:
    backup: Path
    rollback: Path
    journal: Path
    plan: rollbackfile.RollbackPlan


def write_ahead(
    plan_path: Path,
    plan: Plan,
    spec: Spec,
    computed: Computed,
    import_id: str,
    files: statedir.StateFiles,
    *,
    now: datetime | None = None,
) -> WriteAhead:
    """The backup zip and the rollback plan, both fsynced and mode 0600, before any change."""
    now = now or datetime.now()
    directory = files.backups
    name = backup_name(plan.cluster.name, now)
    backup = directory / name
    suffix = 1
    while backup.exists():  # never overwrite an earlier backup
        suffix += 1
        backup = directory / name.replace(".zip", f"-{suffix}.zip")
    configs = {n.facts.address: n.facts.config or b"" for n in computed.nodes}
    entries = [BackupEntry(n.address, n.hostname, configs[n.address]) for n in plan.nodes]
    write_backup(backup, entries)
    zipped = backup.read_bytes()
    cp = next(n for n in plan.nodes if n.role == "controlplane")
    known = set(computed.facts.omni.machines)
    rb = rollbackfile.RollbackPlan(
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        import_id=import_id,
        plan_checksum=checksum(planfile.to_dict(plan)),
        spec=plan.spec,
        cluster_name=plan.cluster.name,
        omni_url=plan.cluster.omni_url,
        os_ca_sha256=os_ca_sha256(configs[cp.address]) or sha256(b""),
        k8s_ca_sha256=k8s_ca_sha256(configs[cp.address]),
        backup_path=str(backup.resolve()),
        backup_sha256=hashlib.sha256(zipped).hexdigest(),
        journal=str(files.journal),
        nodes=tuple(
            rollbackfile.RollbackNode(
                address=e.node,
                hostname=e.hostname,
                machine_uuid=n.machine_uuid,
                backup_entry=e.name,
                config_sha256=e.sha256,
            )
            for e, n in zip(entries, plan.nodes, strict=True)
        ),
        omni_resources=tuple(
            rollbackfile.OmniRef(c.resource_type, c.resource_id)
            for c in plan.changes
            if c.resource_type.endswith(".omni.sidero.dev")
        ),
        links=tuple(n.machine_uuid for n in plan.nodes if n.machine_uuid not in known),
        spec_base=str(spec.path.parent),
        spec_location=plan.spec_location,
    )
    rollbackfile.write(rb, files.rollback)
    return WriteAhead(backup=backup, rollback=files.rollback, journal=files.journal, plan=rb)


# ---- the apply run --------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyOptions:
    auto_approve: bool = False
    parallelism: int | None = None
    no_rollback: bool = False
    environ: Mapping[str, str] | None = None
    overrides: Overrides = field(default_factory=Overrides)
    """The global access flags (--talosconfig, ...): how to reach Talos and Omni this time."""


async def fresh_health_check(access: Access, facts: ClusterFacts, ui: Ui) -> None:
    """Talos's cluster health check, run after the approval and right before the first change.

    A plan may be applied hours after it was made, and a prompt may wait as long again, so the
    plan's own check proves nothing about now; and discovery sees only what Talos reports per
    node (a Kubernetes Node that is NotReady shows only here). Same switch and timeout as plan.

    Only a stream that ends with every check passed counts as healthy. Omni's importer treats a
    CANCELLED status as success; here it is a failure, because a check that did not finish
    proves nothing and this check exists to stop before anything changes (a Ctrl-C by the user
    is an interrupt, exit 130, not a verdict). Raises ApplyError; nothing has changed then.
    """
    spec = access.spec
    if not spec.health_check:
        return
    cps = [n.address for n in facts.nodes if n.role == "controlplane" and n.error is None]
    workers = [n.address for n in facts.nodes if n.role == "worker" and n.error is None]
    if not cps:
        return
    ui.say(
        f"Checking the cluster's health before the first change "
        f"(timeout {spec.health_check_timeout:g}s)…"
    )
    async with access.talos() as talos:
        health = await run_health_check(talos, cps[0], cps, workers, spec.health_check_timeout)
    if health.ok:
        return
    reason = health.error or "the check did not finish"
    if health.messages:  # the server's last word names what it was waiting for
        reason += f" ({health.messages[-1]})"
    if spec.force or "HEALTH_CHECK_FAILED" in spec.accepted_findings:
        ui.say(f"Warning: the cluster health check failed ({reason}); accepted by the spec.")
        return
    raise ApplyError(
        f"the cluster health check failed right before apply, so nothing was changed: {reason}",
        "fix the cluster's health (talosctl health shows the same checks) and run apply "
        "again; to apply regardless, accept HEALTH_CHECK_FAILED under findings.accept in the "
        "spec and plan again",
    )


async def apply_plan(
    plan_path: Path,
    options: ApplyOptions,
    ui: Ui,
    confirm: Confirm,
    interrupts: Interrupts,
    show_plan: Callable[[Plan], None],
) -> WriteAhead:
    """Run ``omniport apply``; raises ApplyError when refused or failed (after rolling back)."""
    plan_path = Path(plan_path)
    plan, spec = load_plan(plan_path, options.overrides)
    spec = for_access(spec, options.overrides, "apply")
    access = Access.of(spec, options.environ)
    cluster = plan.cluster.name
    files = state_files(plan_path, plan, spec, access.env)
    statedir.prepare(files.directory, statedir.setting_for(spec, access.env))
    lock = cluster_lock(plan.cluster.omni_url, cluster, "apply", access.env)
    lock.acquire()
    try:
        retire_previous(files.journal, files.rollback)
        ui.say(f"Reading {len(plan.nodes)} node(s) and Omni to check that the plan is current…")
        facts = await discover(spec, timeouts=access.timeouts, env=access.env, health_check=False)
        computed = compute(spec, facts, compare_results=False)
        unreadable = {
            n.address: f"{n.error.kind}: {n.error.message}" for n in facts.nodes if n.error
        }
        refuse_forged(plan_path, plan, computed)
        reasons = stale_reasons(plan, computed.plan, unreadable)
        if reasons:
            raise StalePlanError(
                stale_message(plan_path, reasons),
                "run `omniport plan` again and review the new plan",
            )
        if computed.join is None:
            raise ApplyError("Omni's SideroLink settings could not be read", "plan again")
        show_plan(plan)
        if not options.auto_approve and not confirm(cluster):
            raise ApplyError("Apply cancelled.", None)
        await fresh_health_check(access, facts, ui)
        interrupts.arm()
        scrub = Scrubber()
        for work in computed.nodes:
            scrub.add(config_secrets(work.live or work.facts.config or b""))
        scrub.add([computed.join.join_token, computed.join.api_url])
        if computed.facts.factory.credentials is not None:
            scrub.add(computed.facts.factory.credentials[1:])
        import_id = str(uuid.uuid4())
        ahead = write_ahead(plan_path, plan, spec, computed, import_id, files)
        record = Recorder(ahead.journal, access.env, warn=ui.say)
        try:
            # room for every record of the run and of its rollback, before the first change
            record.reserve_space(len(plan.changes) + len(plan.nodes))
        except JournalError:
            record.close()
            raise
        ui.say(f"Backup:   {ahead.backup} (mode 0600)")
        ui.say(f"Rollback: {ahead.rollback}")
        ui.say(f"Journal:  {ahead.journal}")
        if interrupts.count:  # Ctrl-C since the prompt: stop while nothing has changed
            record.close()
            raise Cancelled("apply was interrupted before its first change; nothing was changed")
        try:
            record(
                "begin",
                None,
                import_id=import_id,
                cluster=cluster,
                plan=str(plan_path.resolve()),
                plan_checksum=ahead.plan.plan_checksum,
                rollback=str(ahead.rollback.resolve()),
                backup=str(ahead.backup.resolve()),
                tool_version=__version__,
            )
        except JournalError as err:
            record.close()
            raise ApplyError(
                f"{err.message}, so apply stopped before its first change: nothing was changed",
                "free some disk space there and run apply again",
            ) from None
        interrupts.begun = True
        interrupts.hint = f" To undo what was done, run: omniport rollback {ahead.rollback}"
        backups = {n.facts.address: n.facts.config or b"" for n in computed.nodes}
        talos = access.talos()
        omni = access.omni()
        async with talos, omni:
            tx = Transaction(
                plan=plan,
                computed=computed,
                talos=talos,
                omni=omni,
                ui=ui,
                record=record,
                import_id=import_id,
                backups=backups,
                parallelism=options.parallelism or spec.parallelism,
                wait_timeout=spec.wait_timeout,
                scrub=scrub,
                factory_timeouts=access.timeouts,
            )
            failure = await _guarded(tx, interrupts)
            if failure is None:
                try:
                    record("complete", None, import_id=import_id)
                except JournalError as err:  # not on disk: not complete, so rolled back
                    record.strict = False
                    failure = "the journal's complete record", err.message
            if failure is None:
                interrupts.finished = True  # from here a Ctrl-C changes nothing: exit 0
                record.close()
                add, change, _ = plan.counts
                ui.summary(
                    "apply",
                    f"Apply complete! Resources: {add} added, {change} changed, 0 destroyed.",
                    add,
                    change,
                    0,
                )
                return ahead
            where, message = failure
            if options.no_rollback:
                record("kept", None, failed_step=where, error=message)
                record.close()
                ui.say(
                    f"Apply failed at {where}; the completed steps are kept (--no-rollback). "
                    "To undo them, run:"
                )
                ui.say(f"    omniport rollback {ahead.rollback}")
                raise ApplyError(
                    f"apply failed at {where}: {message}",
                    f"undo with `omniport rollback {ahead.rollback}`",
                )
            what = "apply was interrupted" if where == INTERRUPTED else f"apply failed at {where}"
            ui.say(f"{what[0].upper()}{what[1:]}: {message}")
            ui.say("Rolling back every step that was started, in reverse order…")
            undo = rollback.Undo(
                plan=ahead.plan,
                talos=talos,
                omni=omni,
                ui=ui,
                record=record,
                backup=backups,  # the bytes in memory, which the backup zip holds too
                timeout=spec.wait_timeout,
                parallelism=options.parallelism or spec.parallelism,
                scrub=scrub,
                rollback_file=ahead.rollback,
                journal_records=record.memory,  # what this run did, even if the disk is full
            )
            try:
                report = await undo.run()
            except OmniportError as err:
                record.close()
                raise ApplyError(
                    f"{what}: {message}; the automatic rollback did not finish: {err.message}",
                    f"run `omniport rollback {ahead.rollback}` once the cause is fixed",
                ) from None
            record.close()
            if record.failure is not None:
                raise ApplyError(
                    f"{what}: {message}; {report.sentence()} (driven from memory: the "
                    "journal could not be written)",
                    f"free some disk space, then run `omniport rollback {ahead.rollback}` to "
                    "confirm that nothing is left (it checks every node and resource again)",
                )
            raise ApplyError(
                f"{what}: {message}; {report.sentence()}",
                "fix the cause and run `omniport plan` again",
            )
    finally:
        interrupts.disarm()
        lock.release()


async def _guarded(tx: Transaction, interrupts: Interrupts) -> tuple[str, str] | None:
    """Run the transaction in a task the first Ctrl-C cancels; None on success, else
    (where, why) of the failure."""
    try:
        await interrupts.guard(tx.run())
    except Interrupted:
        tx.record.strict = False  # rolling back: a record that cannot be written is kept
        tx.record("interrupted", None)
        return INTERRUPTED, "interrupted by the user (Ctrl-C)"
    except StepFailed as exc:
        tx.record.strict = False
        return exc.step.address, exc.message
    except Exception as exc:  # any error rolls back, a bug included
        tx.record.strict = False
        tx.record("failed", None, error=tx.scrub(error_text(exc)))
        return "a step", tx.scrub(error_text(exc))
    return None
