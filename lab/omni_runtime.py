"""Runs the lab's Omni controllers: store events become keys, keys are reconciled until idle.

Each controller's inputs map a changed resource to the keys it must reconcile; pending keys are
coalesced per controller, so a burst of writes costs one reconcile per affected key. Failed
reconciles (and conflicts with concurrent writes) are retried after a short delay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from omniport.lab.omni_controllers import (
    ClusterBootstrapStatusController,
    ClusterController,
    ClusterMachineController,
    ClusterStatusController,
    ConfigApplyController,
    Context,
    Controller,
    DestroyController,
    Key,
    LoadBalancerController,
    MachineController,
    MachineSetController,
    MachineStatusController,
    SecretsController,
)
from omniport.lab.omni_store import Event, Resource, StateError
from omniport.lab.omni_system_patches import SystemPatchController

log = logging.getLogger("lab.omni")


@dataclass
class _Queue:
    controller: Controller
    inputs: dict[str, Callable[[Resource], Iterable[Key]]]
    pending: set[Key] = field(default_factory=set)


class Runtime:
    """Runs controllers: store events -> keys -> reconcile, until nothing is pending."""

    def __init__(self, ctx: Context, parallelism: int = 32) -> None:
        self.ctx = ctx
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._limit = asyncio.Semaphore(parallelism)
        self.errors: list[str] = []
        controllers: list[Controller] = [
            MachineController(ctx),
            MachineStatusController(ctx),
            ClusterMachineController(ctx),
            MachineSetController(ctx),
            ClusterController(ctx),
            SecretsController(ctx),
            LoadBalancerController(ctx),
            ClusterStatusController(ctx),
            ClusterBootstrapStatusController(ctx),
            ConfigApplyController(ctx, self.requeue),
            DestroyController(ctx),
            SystemPatchController(ctx),
        ]
        self.queues = [_Queue(c, c.inputs()) for c in controllers]
        self._observers = [c for c in controllers if type(c).observe is not Controller.observe]

    def controller(self, cls: type[Controller]) -> Controller:
        return next(q.controller for q in self.queues if isinstance(q.controller, cls))

    def start(self) -> None:
        self._unsubscribe = self.ctx.store.subscribe(self._on_event)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="omni-controllers")
        # level-trigger everything once, so seeded state converges too
        for res in self.ctx.store.all():
            self._on_event(Event("created", res))

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _on_event(self, event: Event) -> None:
        for observer in self._observers:
            observer.observe(event)
        for queue in self.queues:
            mapper = queue.inputs.get(event.resource.type)
            if mapper is None:
                continue
            queue.pending.update(mapper(event.resource))
            if event.old is not None:
                queue.pending.update(mapper(event.old))
        self._kick()

    def enqueue(self, cls: type[Controller], key: Key) -> None:
        for queue in self.queues:
            if isinstance(queue.controller, cls):
                queue.pending.add(key)
        self._kick()

    def requeue(self, controller: Controller, key: Key, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            for queue in self.queues:
                if queue.controller is controller:
                    queue.pending.add(key)
            self._kick()

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _kick(self) -> None:
        if any(q.pending for q in self.queues):
            self._idle.clear()
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while any(q.pending for q in self.queues):
                for queue in self.queues:
                    if not queue.pending:
                        continue
                    keys, queue.pending = queue.pending, set()
                    await asyncio.gather(*(self._one(queue.controller, k) for k in keys))
            if not any(q.pending for q in self.queues):
                self._idle.set()

    async def _one(self, controller: Controller, key: Key) -> None:
        async with self._limit:
            try:
                await controller.reconcile(key)
            except StateError as exc:  # a conflict with a concurrent write: try again soon
                self.requeue(controller, key, self.ctx.retry_delay)
                log.debug("%s %r: %s", controller.name, key, exc.message)
            except Exception as exc:
                message = f"{controller.name} {key!r}: {type(exc).__name__}: {exc}"
                self.errors.append(message)
                log.exception("controller failure: %s", message)
                self.requeue(controller, key, self.ctx.retry_delay)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until no reconcile is pending (timers for retries may still be armed)."""
        await asyncio.wait_for(self._idle.wait(), timeout)
