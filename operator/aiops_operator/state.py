"""What the operator knows while it runs: each ModelService's last reconcile outcome, the latest
ModelService and Deployment facts from the watches, which children exist, and the gate that lets
child writes go before bookkeeping writes (`ChildrenFirst`). No Kopf handlers here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import kopf

from aiops_operator import manifests
from aiops_operator.kube import KubeClient
from aiops_operator.manifests import Children, Owner, RenderOptions
from aiops_operator.spec import ModelServiceSpec
from aiops_operator.status import Problem

Key = tuple[str, str]  # (namespace, name) of a ModelService


@dataclass(frozen=True)
class Recipe:
    """How to rebuild one ModelService's children: kept instead of the built manifests, which
    are ~10x larger and needed only when a child event asks whether it drifted."""

    owner: Owner
    options: RenderOptions
    skipped: frozenset[str] = frozenset()  # kinds wanted by the spec but not applicable here

    def build(self, spec: ModelServiceSpec) -> Children:
        """The children of `spec` (pure, cheap)."""
        children = manifests.build_children(self.owner, spec, self.options)
        children.apply[:] = [m for m in children.apply if m["kind"] not in self.skipped]
        return children


@dataclass
class Outcome:
    """What the last reconcile of one ModelService decided."""

    generation: int
    uid: str
    problem: Problem | None = None
    spec: ModelServiceSpec | None = None
    recipe: Recipe | None = None
    applied: bool = False  # every child of this generation was applied

    @property
    def children(self) -> Children | None:
        """The children this outcome wants, rebuilt from the spec."""
        if self.recipe is None or self.spec is None:
            return None
        return self.recipe.build(self.spec)


# A bookkeeping write waits at most this long for the child writes in flight to finish.
STATUS_DEFER_MAX_S = 10.0


class ChildrenFirst:
    """Bookkeeping writes yield to child writes, so a burst of N creates gets every
    ModelService's children applied before the API server also takes N status patches and N
    Kopf annotation patches.

    A status write, or the end of the event handler after which Kopf writes its annotations, waits
    while any child apply or delete is in flight, at most STATUS_DEFER_MAX_S; with nothing in
    flight it does not wait at all.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._idle is None or self._loop is not loop:  # one Event per event loop (tests)
            self._idle, self._loop = asyncio.Event(), loop
            if self.in_flight == 0:
                self._idle.set()
        return self._idle

    @contextlib.asynccontextmanager
    async def child_write(self) -> AsyncIterator[None]:
        """Mark a child write in flight for the duration of the block."""
        idle = self._event()
        self.in_flight += 1
        idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                idle.set()

    async def wait_turn(self, max_wait_s: float = STATUS_DEFER_MAX_S) -> None:
        """Wait until no child write is in flight, or `max_wait_s`."""
        idle = self._event()
        if idle.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle.wait(), max_wait_s)


@dataclass
class State:
    """What the operator knows, rebuilt from watches and resume handlers on start, and its API
    client. Shared by every handler through the operator memo (memo.py)."""

    kube: KubeClient | None = None
    outcomes: dict[Key, Outcome] = field(default_factory=dict)
    # Per ModelService: uid, generation, deleting, and the status as last seen or written.
    modelservices: dict[Key, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[Key, dict[str, Any]] = field(default_factory=dict)
    present: dict[tuple[Key, str], str | None] = field(default_factory=dict)  # child uid
    servicemonitors: tuple[float, bool] | None = None
    # One ModelService's children are planned and applied by one task at a time.
    key_locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    discovery_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    children_first: ChildrenFirst = field(default_factory=ChildrenFirst)
    # How many ModelServices have their children built and applied at once (memo.py sets it
    # to the api_connections setting).
    converging: asyncio.Semaphore = field(default_factory=asyncio.Semaphore)

    def client(self) -> KubeClient:
        """The API client (created at startup)."""
        if self.kube is None:
            raise kopf.TemporaryError("the API client is not ready yet", delay=1)
        return self.kube

    def key_lock(self, key: Key) -> asyncio.Lock:
        """The lock of one ModelService's children (a reconcile, a background re-apply); a
        throwaway one for a ModelService not (or no longer) known, so that a job that runs after
        its deletion does not keep a lock for it."""
        lock = self.key_locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            if key in self.modelservices:
                self.key_locks[key] = lock
        return lock

    def forget(self, key: Key) -> None:
        """Drop everything about a deleted ModelService."""
        for store in (self.outcomes, self.modelservices, self.deployments, self.key_locks):
            store.pop(key, None)
        for kind_key in [k for k in self.present if k[0] == key]:
            del self.present[kind_key]
