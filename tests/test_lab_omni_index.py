"""The lab Omni's label index and the ClusterStatus counts built on it give the same answers as
walking every resource.

Random writes (create, relabel, finalize, destroy) go through the real ``Store``; after each
one the indexed ``scan``/``count`` are compared with ``matches_queries`` over the collection,
and the ClusterStatus the controller writes is compared with one computed by walking the
cluster's ClusterMachines and their Machines, as the controller did before it had the index.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from omniport.lab.omni_controllers import ClusterStatusController, Context, RenderRequest
from omniport.lab.omni_store import (
    Event,
    LabelOp,
    LabelQuery,
    LabelTerm,
    Resource,
    Store,
    matches_queries,
)
from omniport.lab.omni_types import TYPES
from omniport.providers.codec.omni_names import (
    CLUSTER_MACHINES,
    CLUSTER_STATUSES,
    CLUSTERS,
    DEFAULT_NAMESPACE,
    LABEL_CLUSTER,
    LABEL_ROLE_CONTROLPLANE,
    MACHINE_SET_NODES,
    MACHINES,
)
from omniport.providers.wire.omni.specs import omni_pb2

NS, TYPE = "default", "Things.test"
KEYS = ["a", "b", "c"]
VALUES = ["", "1", "2", "10"]
IDS = [f"r{i}" for i in range(8)]

_labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)
_terms = st.builds(
    LabelTerm,
    st.sampled_from(KEYS),
    st.sampled_from(list(LabelOp)),
    st.lists(st.sampled_from(VALUES), min_size=1, max_size=2).map(tuple),
    st.booleans(),
)
_queries = st.lists(st.lists(_terms, max_size=3).map(tuple), max_size=3)
_ops = st.lists(
    st.tuples(st.sampled_from(["put", "finalize", "destroy"]), st.sampled_from(IDS), _labels),
    max_size=25,
)


def _write(store: Store, type_: str, op: str, id_: str, labels: dict[str, str]) -> None:
    cur = store.get(NS, type_, id_)
    if op == "destroy":
        if cur is not None:
            if cur.finalizers:
                store.remove_finalizer(NS, type_, id_, "f")
            store.destroy(NS, type_, id_)
    elif op == "finalize":
        if cur is not None:
            store.add_finalizer(NS, type_, id_, "f")
    elif cur is None:
        store.create(Resource(NS, type_, id_, labels=labels))
    else:
        cur.labels = labels
        store.update(cur)


def _walk(store: Store, queries: list[LabelQuery], regexp: str | None = None) -> list[str]:
    pattern = re.compile(regexp) if regexp else None
    ids = [
        r.id
        for r in store.all()
        if r.type == TYPE
        and matches_queries(r.labels, queries)
        and (pattern is None or pattern.search(r.id))
    ]
    return sorted(ids)


@settings(max_examples=300, deadline=None)
@given(_ops, st.lists(_queries, min_size=1, max_size=4), st.sampled_from([None, "r[0-3]", "7$"]))
def test_indexed_scan_and_count_match_a_walk(
    ops: list[tuple[str, str, dict[str, str]]], queries: list[list[LabelQuery]], regexp: str | None
) -> None:
    store = Store(clock=lambda: 1.0)
    for step, (op, id_, labels) in enumerate(ops):
        _write(store, TYPE, op, id_, labels)
        for query in queries:
            expected = _walk(store, query, regexp)
            assert [r.id for r in store.scan(NS, TYPE, query, regexp)] == expected, step
            assert store.count(NS, TYPE, query) == len(_walk(store, query)), step


# ---- ClusterStatus ---------------------------------------------------------------------------


class _NoNodes:
    async def push_config(self, machine_uuid: str, config: bytes) -> None:
        raise AssertionError("ClusterStatus never pushes configs")

    def node_config(self, machine_uuid: str) -> bytes:
        raise AssertionError("ClusterStatus never reads configs")

    async def reset_machine(self, machine_uuid: str) -> None:
        raise AssertionError("ClusterStatus never resets machines")


def _no_render(request: RenderRequest) -> bytes:
    raise AssertionError("ClusterStatus never renders configs")


def _expected_counts(store: Store, cluster: str) -> dict[str, Any]:
    """The counts by walking the cluster, as the controller computed them without an index."""
    machines = [
        r
        for r in store.all()
        if r.type == CLUSTER_MACHINES and r.labels.get(LABEL_CLUSTER) == cluster
    ]
    connected = []
    for cm in machines:
        machine = store.peek(DEFAULT_NAMESPACE, MACHINES, cm.id)
        if machine is not None and machine.spec.connected:
            connected.append(cm)
    cps = [cm for cm in machines if LABEL_ROLE_CONTROLPLANE in cm.labels]
    cps_up = [cm for cm in connected if LABEL_ROLE_CONTROLPLANE in cm.labels]
    requested = [
        r
        for r in store.all()
        if r.type == MACHINE_SET_NODES and r.labels.get(LABEL_CLUSTER) == cluster
    ]
    return {
        "total": len(machines),
        "connected": len(connected),
        "requested": len(requested),
        "available": bool(cps_up),
        "controlplane_ready": bool(cps) and len(cps_up) == len(cps),
        "ready": bool(machines) and len(connected) == len(machines),
    }


_cm_labels = st.fixed_dictionaries(
    {},
    optional={
        LABEL_CLUSTER: st.sampled_from(["lab", "other", ""]),
        LABEL_ROLE_CONTROLPLANE: st.just(""),
    },
)
_status_ops = st.lists(
    st.one_of(
        st.tuples(st.just("cm"), st.sampled_from(IDS), _cm_labels, st.booleans()),
        st.tuples(st.just("machine"), st.sampled_from(IDS), st.just({}), st.booleans()),
        st.tuples(st.just("msn"), st.sampled_from(IDS), _cm_labels, st.booleans()),
        st.tuples(st.just("gone"), st.sampled_from(IDS), st.just({}), st.booleans()),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(_status_ops)
def test_cluster_status_counts_match_a_walk(ops: list[tuple[str, str, dict, bool]]) -> None:
    store = Store(clock=lambda: 1.0)
    ctx = Context(store, {}, _NoNodes(), _no_render, "fdae::1", 40000)
    controller = ClusterStatusController(ctx)
    store.create(
        Resource(DEFAULT_NAMESPACE, CLUSTERS, "lab", omni_pb2.ClusterSpec(talos_version="1.11.5"))
    )
    # seeded before the controller listens: the replay (as the runtime's start) catches up
    store.create(
        Resource(DEFAULT_NAMESPACE, MACHINES, IDS[0], omni_pb2.MachineSpec(connected=True))
    )
    store.create(
        Resource(
            DEFAULT_NAMESPACE,
            CLUSTER_MACHINES,
            IDS[0],
            omni_pb2.ClusterMachineSpec(),
            labels={LABEL_CLUSTER: "lab"},
        )
    )

    for res in store.all():
        controller.observe(Event("created", res))
    store.subscribe(controller.observe)

    def check() -> None:
        asyncio.run(controller.reconcile("lab"))
        status = store.peek(DEFAULT_NAMESPACE, CLUSTER_STATUSES, "lab")
        assert status is not None
        want = _expected_counts(store, "lab")
        spec = status.spec
        got = {
            "total": spec.machines.total,
            "connected": spec.machines.connected,
            "requested": spec.machines.requested,
            "available": spec.available,
            "controlplane_ready": spec.controlplaneReady,
            "ready": spec.ready,
        }
        assert got == want
        assert spec.machines.healthy == want["connected"]

    check()
    for kind, id_, labels, flag in ops:
        if kind == "machine":
            cur = store.get(DEFAULT_NAMESPACE, MACHINES, id_)
            if cur is None:
                store.create(
                    Resource(DEFAULT_NAMESPACE, MACHINES, id_, omni_pb2.MachineSpec(connected=flag))
                )
            else:
                cur.spec.connected = flag
                store.update(cur, owner=cur.owner)
        elif kind in ("cm", "msn"):
            type_ = CLUSTER_MACHINES if kind == "cm" else MACHINE_SET_NODES
            spec = TYPES[type_].spec()
            cur = store.get(DEFAULT_NAMESPACE, type_, id_)
            if cur is None:
                store.create(Resource(DEFAULT_NAMESPACE, type_, id_, spec, labels=labels))
            else:
                cur.labels = labels
                store.update(cur)
        else:
            for type_ in (MACHINES, CLUSTER_MACHINES, MACHINE_SET_NODES) if flag else (MACHINES,):
                if store.peek(DEFAULT_NAMESPACE, type_, id_) is not None:
                    store.destroy(DEFAULT_NAMESPACE, type_, id_)
        check()
