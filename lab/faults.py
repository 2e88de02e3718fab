"""Faults the lab can inject, shared by its Talos, Omni and Image Factory sides.

One mutable ``Faults`` value lives in the lab process; ``omniport lab fault`` changes it through
the lab's admin endpoint, and every simulated server consults it on each call, so a fault takes
effect on the next request without a restart.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApplyFailure:
    """Make ApplyConfiguration fail on ``node`` (or every node when None)."""

    node: str | None = None
    after_calls: int = 0
    """Succeed this many times first (counted per node, or globally when node is None)."""
    calls: int = 0
    message: str = "injected failure: ApplyConfiguration"

    def should_fail(self, node: str) -> bool:
        if self.node is not None and self.node != node:
            return False
        self.calls += 1
        return self.calls > self.after_calls


@dataclass
class OmniFailure:
    """Make an Omni COSI method fail, for one resource type or for all (type None)."""

    method: str  # "Create", "Update", "Destroy", "Teardown", "Get", "List", "Watch"
    resource_type: str | None = None
    code: int = 14  # gRPC UNAVAILABLE unless said otherwise
    message: str = "injected failure"
    hits: int = 0
    """Calls it failed so far (a server without the method still counts the attempts)."""
    times: int | None = None
    """Fail only this many calls, then heal (a blip); None fails every call."""

    def matches(self, method: str, resource_type: str) -> bool:
        return self.method == method and self.resource_type in (None, resource_type)


@dataclass
class TalosBlip:
    """The next ``remaining`` Talos calls for ``node`` (every node when None) fail as a brief
    network blip does: apid answers UNAVAILABLE, its connection to the node reset. ``method``
    narrows it to one gRPC method, by its last name (``ApplyConfiguration``, ``Get``, ...)."""

    remaining: int
    node: str | None = None
    method: str | None = None
    reset: bool = False
    """Reset the call's HTTP/2 stream under it (RST_STREAM, as a dropped connection or a
    proxy shows) instead of answering UNAVAILABLE; for one-to-one machine-service calls (COSI
    and one-to-many calls still get UNAVAILABLE)."""

    def matches(self, node: str, method: str) -> bool:
        short = method.rsplit("/", 1)[-1]
        return self.remaining > 0 and self.node in (None, node) and self.method in (None, short)


BLIP_MESSAGE = (
    'connection error: desc = "transport: error while reading from server: read tcp '
    '{address}:50000: connection reset by peer"'
)
"""What apid answers for a call whose connection to the node was reset under it."""

HEALTH_PROBLEMS = ("not-ready", "cancelled")
"""What a ``health`` fault does to the cluster health check: ``not-ready`` makes a node's
Kubernetes Node NotReady (nothing discovery reads shows it; only the health check does);
``cancelled`` makes the server end the check's stream with CANCELLED halfway through."""

JOIN_PROBLEMS = ("refused", "stalled")
"""What a ``join`` fault does to a node's SideroLink join: ``refused`` makes Omni answer its
Provision with PermissionDenied (as for a revoked token; nothing registers, the node retries);
``stalled`` leaves it a PendingMachine that never gets its node unique token."""

ONE_TO_MANY_PROBLEMS = ("refused", "dropped")
"""What a ``one-to-many`` fault does to apid's ``nodes`` routing: ``refused`` makes apid refuse
the ``nodes`` metadata altogether (InvalidArgument, as a Talos without one-to-many proxying,
which talosctl and Omni no longer rely on); ``dropped`` leaves a node out of one-to-many replies
(no item, not even an error: its answer came back with an empty ``messages`` list)."""

SCHEMATIC_CONTENT = ("missing", "edited")
"""The ways a node's schematic extension can misreport its content."""


@dataclass
class Faults:
    unreachable: set[str] = field(default_factory=set)
    """Node addresses whose calls fail as if the node were down (UNAVAILABLE)."""
    latency_ms: float = 0.0
    """Added to every Talos and Omni call (asyncio sleep: calls are not serialized)."""
    node_latency_ms: dict[str, float] = field(default_factory=dict)
    apply_failures: list[ApplyFailure] = field(default_factory=list)
    omni_failures: list[OmniFailure] = field(default_factory=list)
    factory_down: bool = False
    factory_read_only: bool = False
    """The factory answers reads but refuses to register schematics (503 on POST)."""
    never_connect: bool = False
    """Nodes accept the join documents but never register with Omni (to test wait timeouts)."""
    join_faults: dict[str, str] = field(default_factory=dict)
    """Node address -> what Omni does with its join (see :data:`JOIN_PROBLEMS`)."""
    unhealthy_services: dict[str, set[str]] = field(default_factory=dict)
    """Node address -> ids of services it reports running but unhealthy (``etcd``, ...)."""
    etcd_learners: set[str] = field(default_factory=set)
    """Control-plane addresses whose etcd member is still a learner."""
    stale_etcd_members: set[str] = field(default_factory=set)
    """Hostnames of etcd members left behind by machines that are gone (not a node)."""
    not_ready: set[str] = field(default_factory=set)
    """Node addresses whose Kubernetes Node reports NotReady (see :data:`HEALTH_PROBLEMS`)."""
    kubelet_images: dict[str, str] = field(default_factory=dict)
    """Node address -> the kubelet image its KubeletConfig reports instead of the configured one
    (Talos's controllers have not caught up with the config, or an upgrade is in flight)."""
    system_patches: bool = False
    """Omni adds a system config patch of its own to every cluster (to test the final verify)."""
    health_cancelled: bool = False
    """The health check's stream ends with CANCELLED before it finishes."""
    one_to_many_refused: bool = False
    """apid refuses the ``nodes`` metadata (see :data:`ONE_TO_MANY_PROBLEMS`)."""
    one_to_many_dropped: set[str] = field(default_factory=set)
    """Node addresses apid leaves out of one-to-many replies (see :data:`ONE_TO_MANY_PROBLEMS`)."""
    talos_blips: list[TalosBlip] = field(default_factory=list)
    """Pending blips of Talos calls (see :class:`TalosBlip`); each heals once spent."""
    factory_blips: int = 0
    """The next this many Image Factory requests get their connection closed unanswered."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """Guards the blip counters, which the factory's threads consume too."""
    schematic_content: dict[str, str] = field(default_factory=dict)
    """Node address -> how its ``schematic`` extension misreports its content: ``missing`` (no
    extraInfo, as images built before the factory embedded it) or ``edited`` (extraInfo that
    hashes to another ID than the one the extension reports). See :data:`SCHEMATIC_CONTENT`."""

    def delay(self, node: str | None = None) -> float:
        """Seconds to wait before answering a call for ``node``."""
        extra = self.node_latency_ms.get(node, 0.0) if node else 0.0
        return (self.latency_ms + extra) / 1000.0

    def apply_should_fail(self, node: str) -> ApplyFailure | None:
        for failure in self.apply_failures:
            if failure.should_fail(node):
                return failure
        return None

    def omni_failure(self, method: str, resource_type: str) -> OmniFailure | None:
        failure = next((f for f in self.omni_failures if f.matches(method, resource_type)), None)
        if failure is not None:
            failure.hits += 1
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:  # healed: the blip is over
                    self.omni_failures.remove(failure)
        return failure

    def talos_blip(self, node: str, method: str = "") -> TalosBlip | None:
        """The blip this call of ``method`` for ``node`` is hit by (spent), or None."""
        with self._lock:
            blip = next((b for b in self.talos_blips if b.matches(node, method)), None)
            if blip is None:
                return None
            blip.remaining -= 1
            if blip.remaining <= 0:
                self.talos_blips.remove(blip)
            return blip

    def add_talos_blip(self, blip: TalosBlip) -> None:
        with self._lock:
            self.talos_blips.append(blip)

    def clear_talos_blips(self, node: str | None = None) -> None:
        """Drop the pending Talos blips for ``node`` (all of them when None)."""
        with self._lock:
            self.talos_blips[:] = [
                b for b in self.talos_blips if node is not None and b.node != node
            ]

    def set_factory_blips(self, times: int) -> None:
        with self._lock:
            self.factory_blips = times

    def factory_blip(self) -> bool:
        """Whether this factory request is hit by a blip (which it then spends)."""
        with self._lock:
            if self.factory_blips <= 0:
                return False
            self.factory_blips -= 1
            return True

    def clear(self) -> None:
        self.unreachable.clear()
        self.latency_ms = 0.0
        self.node_latency_ms.clear()
        self.apply_failures.clear()
        self.omni_failures.clear()
        self.factory_down = False
        self.factory_read_only = False
        self.never_connect = False
        self.join_faults.clear()
        self.unhealthy_services.clear()
        self.etcd_learners.clear()
        self.stale_etcd_members.clear()
        self.schematic_content.clear()
        with self._lock:
            self.talos_blips.clear()
            self.factory_blips = 0
        self.not_ready.clear()
        self.health_cancelled = False
        self.one_to_many_refused = False
        self.one_to_many_dropped.clear()
        self.system_patches = False
        self.kubelet_images.clear()

    def service_healthy(self, node: str, service: str) -> bool:
        return service not in self.unhealthy_services.get(node, ())

    def to_dict(self) -> dict[str, Any]:
        return {
            "unreachable": sorted(self.unreachable),
            "latency_ms": self.latency_ms,
            "node_latency_ms": dict(sorted(self.node_latency_ms.items())),
            "apply_failures": [
                {"node": f.node, "after_calls": f.after_calls, "calls": f.calls}
                for f in self.apply_failures
            ],
            "omni_failures": [
                {
                    "method": f.method,
                    "resource_type": f.resource_type,
                    "code": f.code,
                    "times": f.times,
                }
                for f in self.omni_failures
            ],
            "talos_blips": [
                {"node": b.node, "method": b.method, "remaining": b.remaining, "reset": b.reset}
                for b in self.talos_blips
            ],
            "factory_blips": self.factory_blips,
            "factory_down": self.factory_down,
            "factory_read_only": self.factory_read_only,
            "never_connect": self.never_connect,
            "join_faults": dict(sorted(self.join_faults.items())),
            "unhealthy_services": {
                node: sorted(ids) for node, ids in sorted(self.unhealthy_services.items()) if ids
            },
            "etcd_learners": sorted(self.etcd_learners),
            "stale_etcd_members": sorted(self.stale_etcd_members),
            "schematic_content": dict(sorted(self.schematic_content.items())),
            "not_ready": sorted(self.not_ready),
            "health_cancelled": self.health_cancelled,
            "one_to_many_refused": self.one_to_many_refused,
            "one_to_many_dropped": sorted(self.one_to_many_dropped),
            "system_patches": self.system_patches,
            "kubelet_images": dict(sorted(self.kubelet_images.items())),
        }
