"""The simulated Omni's resource store: COSI's in-memory state semantics in plain Python.

Omni keeps its resources in a COSI state (versions, owners, phases, finalizers, label queries,
watches); the gRPC layer and the validation hooks sit on top of it. This module is that state
alone, with COSI's error texts, so the wire adapter (``lab/omni.py``) only translates messages
and the controllers (``lab/omni_controllers.py``) work on the same objects Omni's do.

Single-threaded by design: every method runs to completion on the event loop, and listeners are
called synchronously after each change, in order, so watchers never miss or reorder events.
"""

from __future__ import annotations

import builtins
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

from grpclib.const import Status

from omniport.providers.codec.omni_names import PHASE_RUNNING, PHASE_TEARING_DOWN

VERSION_UNDEFINED = 0


def q(text: object) -> str:
    """Go's ``%q`` for the strings in Omni's messages (double quotes, JSON-style escapes)."""
    return json.dumps(str(text), ensure_ascii=False)


class StateError(Exception):
    """A store failure with the gRPC status Omni answers for it and COSI's message."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _spec_copy(spec: Any) -> Any:
    """Protobuf specs are mutable, so copy them; internal specs are frozen dataclasses."""
    if hasattr(spec, "CopyFrom"):
        new = type(spec)()
        new.CopyFrom(spec)
        return new
    return spec


@dataclass
class Resource:
    """One resource: COSI metadata plus a spec (a protobuf message, or a frozen dataclass)."""

    namespace: str
    type: str
    id: str
    spec: Any = None
    version: int = VERSION_UNDEFINED
    owner: str = ""
    phase: str = PHASE_RUNNING
    created: float | None = None
    updated: float | None = None
    finalizers: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.type, self.id)

    def ref(self) -> str:
        """COSI's rendering of a resource in messages: ``Type(ns/id@version)``."""
        return render_ref(self.namespace, self.type, self.id, self.version)

    def copy(self) -> Resource:
        return Resource(
            namespace=self.namespace,
            type=self.type,
            id=self.id,
            spec=_spec_copy(self.spec),
            version=self.version,
            owner=self.owner,
            phase=self.phase,
            created=self.created,
            updated=self.updated,
            finalizers=list(self.finalizers),
            labels=dict(self.labels),
            annotations=dict(self.annotations),
        )


def render_ref(namespace: str, type_: str, id_: str, version: int = VERSION_UNDEFINED) -> str:
    ver = "undefined" if version == VERSION_UNDEFINED else str(version)
    return f"{type_}({namespace}/{id_}@{ver})"


def render_finalizers(finalizers: Iterable[str]) -> str:
    """Go's ``%s`` of a string slice: ``[A B]``."""
    return "[" + " ".join(finalizers) + "]"


def not_found(namespace: str, type_: str, id_: str, version: int = VERSION_UNDEFINED) -> StateError:
    ref = render_ref(namespace, type_, id_, version)
    return StateError(Status.NOT_FOUND, f"resource {ref} doesn't exist")


class LabelOp(IntEnum):
    EXISTS = 0
    EQUAL = 1
    NOT_EXISTS = 2
    IN = 3
    LT = 4
    LTE = 5
    LT_NUMERIC = 6
    LTE_NUMERIC = 7


@dataclass(frozen=True)
class LabelTerm:
    key: str
    op: LabelOp = LabelOp.EXISTS
    values: tuple[str, ...] = ()
    invert: bool = False

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        first = self.values[0] if self.values else ""
        if self.op == LabelOp.EXISTS:
            result = present
        elif self.op == LabelOp.NOT_EXISTS:
            result = not present
        elif self.op == LabelOp.EQUAL:
            result = present and value == first
        elif self.op == LabelOp.IN:
            result = present and value in self.values
        elif self.op in (LabelOp.LT, LabelOp.LTE):
            result = present and (value < first or (self.op == LabelOp.LTE and value == first))
        else:
            try:
                left, right = float(value), float(first)
            except ValueError:
                return False if not self.invert else True
            result = present and (
                left < right or (self.op == LabelOp.LTE_NUMERIC and left == right)
            )
        return result != self.invert


LabelQuery = tuple[LabelTerm, ...]
"""All terms must hold; a list of queries matches when any query does (COSI's LabelQueries)."""


def matches_queries(labels: dict[str, str], queries: Iterable[LabelQuery]) -> bool:
    queries = list(queries)
    if not queries:
        return True
    return any(all(term.matches(labels) for term in query) for query in queries)


def equal(key: str, value: str) -> LabelQuery:
    return (LabelTerm(key, LabelOp.EQUAL, (value,)),)


def exists(key: str) -> LabelTerm:
    return LabelTerm(key, LabelOp.EXISTS)


_NO_IDS: frozenset[str] = frozenset()
_EXACT_OPS = (LabelOp.EQUAL, LabelOp.IN, LabelOp.EXISTS)
"""Operators whose index lookup is exactly the set of matches (not only a superset)."""


K = TypeVar("K")


def _discard(index: dict[K, set[str]], slot: K, id_: str) -> None:
    ids = index.get(slot)
    if ids is not None:
        ids.discard(id_)
        if not ids:
            del index[slot]


@dataclass
class _LabelIndex:
    """The IDs of one collection by label key and by (key, value), so that label queries look
    at the resources that carry the label rather than at the whole collection."""

    by_key: dict[str, set[str]] = field(default_factory=dict)
    by_value: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def add(self, id_: str, labels: dict[str, str]) -> None:
        for key, value in labels.items():
            self.by_key.setdefault(key, set()).add(id_)
            self.by_value.setdefault((key, value), set()).add(id_)

    def remove(self, id_: str, labels: dict[str, str]) -> None:
        for key, value in labels.items():
            _discard(self.by_key, key, id_)
            _discard(self.by_value, (key, value), id_)

    def term_ids(self, term: LabelTerm) -> frozenset[str] | set[str] | None:
        """A superset of the IDs ``term`` matches, or None when the index cannot narrow it
        (an inverted term, or NOT_EXISTS: those match resources without the label)."""
        if term.invert or term.op == LabelOp.NOT_EXISTS:
            return None
        if term.op == LabelOp.EQUAL:
            first = term.values[0] if term.values else ""
            return self.by_value.get((term.key, first), _NO_IDS)
        if term.op == LabelOp.IN:
            found: set[str] = set()
            for value in set(term.values):
                found |= self.by_value.get((term.key, value), _NO_IDS)
            return found
        return self.by_key.get(term.key, _NO_IDS)  # EXISTS and the comparisons need the label

    def query_ids(self, queries: list[LabelQuery]) -> tuple[set[str] | frozenset[str], bool] | None:
        """Candidate IDs for ``queries`` (any query matching) and whether they are exactly the
        matches; None when some query has no term the index can narrow."""
        candidates: list[set[str] | frozenset[str]] = []
        exact = True
        for query in queries:
            best: set[str] | frozenset[str] | None = None
            for term in query:
                ids = self.term_ids(term)
                if ids is not None and (best is None or len(ids) < len(best)):
                    best = ids
            if best is None:
                return None
            exact = exact and len(query) == 1 and query[0].op in _EXACT_OPS
            candidates.append(best)
        if len(candidates) == 1:
            return candidates[0], exact
        return set().union(*candidates), exact


EVENT_CREATED = "created"
EVENT_UPDATED = "updated"
EVENT_DESTROYED = "destroyed"


@dataclass(frozen=True)
class Event:
    kind: str  # EVENT_CREATED / EVENT_UPDATED / EVENT_DESTROYED
    resource: Resource
    old: Resource | None = None


Listener = Callable[[Event], None]


class Store:
    """COSI in-memory state: Create/Update/Destroy/Teardown with versions, owners and finalizers.

    Stored objects are never changed in place (every write stores a new one): ``peek``, ``scan``
    and listeners get them as they are and must not edit them; ``get`` and ``list`` copy.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: dict[tuple[str, str], dict[str, Resource]] = {}
        self._labels: dict[tuple[str, str], _LabelIndex] = {}
        self._listeners: list[Listener] = []

    # ---- listeners -------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after every change; returns the function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _publish(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    # ---- reads -----------------------------------------------------------------------------

    def _collection(self, namespace: str, type_: str) -> dict[str, Resource]:
        return self._items.setdefault((namespace, type_), {})

    def peek(self, namespace: str, type_: str, id_: str) -> Resource | None:
        """The stored object itself (no copy): for controllers that only read it."""
        return self._items.get((namespace, type_), {}).get(id_)

    def get(self, namespace: str, type_: str, id_: str) -> Resource | None:
        res = self.peek(namespace, type_, id_)
        return res.copy() if res is not None else None

    def require(self, namespace: str, type_: str, id_: str) -> Resource:
        res = self.get(namespace, type_, id_)
        if res is None:
            raise not_found(namespace, type_, id_)
        return res

    def scan(
        self,
        namespace: str,
        type_: str,
        queries: Iterable[LabelQuery] = (),
        id_regexp: str | None = None,
    ) -> list[Resource]:
        """Stored objects (no copies) matching the label queries and ID regexp, sorted by ID."""
        out = self._matching(namespace, type_, list(queries))
        if id_regexp:
            pattern = re.compile(id_regexp)
            out = [res for res in out if pattern.search(res.id)]
        out.sort(key=lambda r: r.id)
        return out

    def count(self, namespace: str, type_: str, queries: Iterable[LabelQuery] = ()) -> int:
        """How many resources match the label queries (``len(scan(...))`` without the list)."""
        queries = list(queries)
        index = self._labels.get((namespace, type_))
        if queries and index is not None:
            found = index.query_ids(queries)
            if found is not None and found[1]:
                return len(found[0])
        return len(self._matching(namespace, type_, queries))

    def _matching(self, namespace: str, type_: str, queries: list[LabelQuery]) -> list[Resource]:
        coll = self._items.get((namespace, type_), {})
        if not queries:
            return list(coll.values())
        index = self._labels.get((namespace, type_))
        found = index.query_ids(queries) if index is not None else None
        if found is None:
            return [res for res in coll.values() if matches_queries(res.labels, queries)]
        ids, exact = found
        candidates = [coll[id_] for id_ in ids]
        if exact:
            return candidates
        return [res for res in candidates if matches_queries(res.labels, queries)]

    def list(
        self,
        namespace: str,
        type_: str,
        queries: Iterable[LabelQuery] = (),
        id_regexp: str | None = None,
    ) -> list[Resource]:
        return [res.copy() for res in self.scan(namespace, type_, queries, id_regexp)]

    def all(self) -> builtins.list[Resource]:  # builtins: the method above shadows ``list``
        return [res for coll in self._items.values() for res in coll.values()]

    # ---- writes ----------------------------------------------------------------------------

    def create(self, res: Resource, owner: str = "") -> Resource:
        new = res.copy()
        new.owner = owner
        coll = self._collection(new.namespace, new.type)
        if new.id in coll:
            raise StateError(Status.ALREADY_EXISTS, f"resource {new.ref()} already exists")
        new.version = 1
        new.created = self._clock()
        new.updated = new.created
        coll[new.id] = new
        self._reindex(None, new)
        self._publish(Event(EVENT_CREATED, new))
        return new.copy()

    def update(self, res: Resource, owner: str = "", expected_phase: str | None = None) -> Resource:
        """Replace a resource; ``res.version`` must be the stored version (COSI semantics)."""
        coll = self._collection(res.namespace, res.type)
        cur = coll.get(res.id)
        if cur is None:
            raise not_found(res.namespace, res.type, res.id, res.version)
        if cur.owner != owner:
            raise StateError(
                Status.PERMISSION_DENIED, f"resource {cur.ref()} is owned by {q(cur.owner)}"
            )
        if cur.version != res.version:
            raise StateError(
                Status.FAILED_PRECONDITION,
                f"resource {cur.ref()} update conflict: expected version "
                f'"{_ver(res.version)}", actual version "{cur.version}"',
            )
        if expected_phase is not None and cur.phase != expected_phase:
            raise StateError(
                Status.INVALID_ARGUMENT, f"resource {cur.ref()} is not in phase {expected_phase}"
            )
        new = res.copy()
        new.owner = cur.owner
        new.version = cur.version + 1
        new.created = cur.created
        new.updated = self._clock()
        coll[new.id] = new
        self._reindex(cur, new)
        self._publish(Event(EVENT_UPDATED, new, cur))
        return new.copy()

    def destroy(self, namespace: str, type_: str, id_: str, owner: str = "") -> None:
        coll = self._collection(namespace, type_)
        cur = coll.get(id_)
        if cur is None:
            raise not_found(namespace, type_, id_)
        if cur.owner != owner:
            raise StateError(
                Status.PERMISSION_DENIED, f"resource {cur.ref()} is owned by {q(cur.owner)}"
            )
        if cur.finalizers:
            raise StateError(
                Status.FAILED_PRECONDITION,
                f"resource {cur.ref()} has pending finalizers {render_finalizers(cur.finalizers)}",
            )
        del coll[id_]
        self._reindex(cur, None)
        self._publish(Event(EVENT_DESTROYED, cur))

    def teardown(self, namespace: str, type_: str, id_: str, owner: str = "") -> bool:
        """Move to phase tearingDown (idempotent); True when no finalizers remain."""
        cur = self.peek(namespace, type_, id_)
        if cur is None:
            raise not_found(namespace, type_, id_)
        if cur.owner != owner:
            raise StateError(
                Status.PERMISSION_DENIED, f"resource {cur.ref()} is owned by {q(cur.owner)}"
            )
        if cur.phase != PHASE_TEARING_DOWN:
            self._mutate(cur, lambda r: setattr(r, "phase", PHASE_TEARING_DOWN))
        return not self.peek(namespace, type_, id_).finalizers  # type: ignore[union-attr]

    def add_finalizer(self, namespace: str, type_: str, id_: str, name: str) -> bool:
        """Add a finalizer whatever the owner (as COSI controllers do); True if it changed."""
        cur = self.peek(namespace, type_, id_)
        if cur is None or name in cur.finalizers:
            return False
        self._mutate(cur, lambda r: r.finalizers.append(name))
        return True

    def remove_finalizer(self, namespace: str, type_: str, id_: str, name: str) -> bool:
        cur = self.peek(namespace, type_, id_)
        if cur is None or name not in cur.finalizers:
            return False
        self._mutate(cur, lambda r: r.finalizers.remove(name))
        return True

    def _mutate(self, cur: Resource, edit: Callable[[Resource], None]) -> None:
        new = cur.copy()
        edit(new)
        new.version = cur.version + 1
        new.updated = self._clock()
        self._collection(cur.namespace, cur.type)[cur.id] = new
        self._reindex(cur, new)
        self._publish(Event(EVENT_UPDATED, new, cur))

    def _reindex(self, old: Resource | None, new: Resource | None) -> None:
        """Keep the label index in step with a write (before listeners see it)."""
        if old is not None and new is not None and old.labels == new.labels:
            return
        res = new if new is not None else old
        assert res is not None
        index = self._labels.setdefault((res.namespace, res.type), _LabelIndex())
        if old is not None:
            index.remove(old.id, old.labels)
        if new is not None:
            index.add(new.id, new.labels)


def _ver(version: int) -> str:
    return "undefined" if version == VERSION_UNDEFINED else str(version)
