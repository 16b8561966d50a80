"""The one writer of ModelService status.

Only here is a status patched: serialised per ModelService (one lock each), merged into the
status cache (`State.modelservices`) and written whole onto the object of that uid (never onto a
re-created one of the same name), after the child writes in flight (`ChildrenFirst`). Two ways in:
- `publish`: the status derived from what the operator knows (`derive_status`: observedGeneration,
  Ready/Progressing/Degraded, replicas, endpoint, digest, threshold), coalesced: Deployment
  status moves in quick steps, so one write a moment later covers the whole step;
- `change`: a patch computed under the lock from the current status (the drift poller's
  status.drift and DriftDetected).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiops_operator import manifests
from aiops_operator.conditions import rfc3339
from aiops_operator.kube import KubeApiError
from aiops_operator.settings import OperatorSettings
from aiops_operator.spec import GROUP, KIND, VERSION
from aiops_operator.state import Key, State
from aiops_operator.status import (
    derive_conditions,
    merge_conditions,
    replica_counts,
    runtime_problem,
)

API_VERSION = f"{GROUP}/{VERSION}"
# Deployment status moves in quick steps (created, scheduled, ready): publishing a moment later
# writes one status for the whole step instead of one per watch event.
COALESCE_S = 0.3
log = logging.getLogger("aiops_operator")


def merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`current` after a JSON merge patch (RFC 7386): objects merge, null removes, lists replace."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        elif isinstance(value, dict):
            merged[key] = merge_patch({}, value)
        else:
            merged[key] = value
    return merged


def derive_status(
    state: State, settings: OperatorSettings, key: Key, now: str
) -> dict[str, Any] | None:
    """The status patch for one ModelService from what the operator knows now."""
    ms, outcome = state.modelservices.get(key), state.outcomes.get(key)
    if ms is None or outcome is None or ms["uid"] != outcome.uid:
        return None
    deployment = state.deployments.get(key)
    if deployment is not None and not owned_by(deployment, outcome.uid):
        deployment = None
    previous = ms["status"].get("conditions")
    inputs = manifests.deployment_inputs(outcome.spec) if outcome.spec is not None else None
    problem = outcome.problem or runtime_problem(previous, outcome.generation)
    conditions = derive_conditions(outcome.generation, deployment, problem, inputs)
    status: dict[str, Any] = {
        "observedGeneration": outcome.generation,
        "conditions": merge_conditions(previous, conditions, now),
        **replica_counts(deployment),
    }
    applied = outcome.problem is None or not outcome.problem.blocking
    if outcome.spec is not None and applied:
        name, namespace = key[1], key[0]
        status["endpoint"] = f"http://{name}.{namespace}.svc:{settings.runtime_port}"
        status["modelDigest"] = f"sha256:{outcome.spec.model.sha256}"
        status["drift"] = {"pValueThreshold": outcome.spec.drift.p_value_threshold}
    return status


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """Whether `obj` has an ownerReference to the object with this uid."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


class StatusWriter:
    """Writes every status patch of the operator; see the module docstring."""

    def __init__(self, state: State, settings: OperatorSettings) -> None:
        self.state = state
        self.settings = settings
        self._locks: defaultdict[Key, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._scheduled: dict[Key, asyncio.Future[None]] = {}
        self._background: set[asyncio.Future[None]] = set()

    def forget(self, key: Key) -> None:
        """Drop the lock of a deleted ModelService."""
        self._locks.pop(key, None)

    def _lock(self, key: Key) -> asyncio.Lock:
        """The lock of one ModelService; a throwaway one for a ModelService not (or no longer)
        known, so that a publish after its deletion (its Deployment's DELETED event) does not
        keep a lock for it."""
        if key in self.state.modelservices:
            return self._locks[key]
        return self._locks.get(key) or asyncio.Lock()

    async def publish(self, key: Key, delay: float = COALESCE_S) -> None:
        """Write the derived status if it changed (coalesced: after `delay`).

        Returns once the status is written: a caller that finds a publish already waiting joins
        it (that publish reads the facts after its delay), so the reconcile handler ends, and
        Kopf records the spec as handled, only when the status reports it.
        """
        await asyncio.shield(self._schedule(key, delay))

    def _schedule(self, key: Key, delay: float) -> asyncio.Future[None]:
        """The publish waiting for `key`, or a new one."""
        pending = self._scheduled.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._publish_after(key, delay))
            self._scheduled[key] = pending
        return pending

    def publish_soon(self, key: Key) -> None:
        """`publish` without waiting for it (e.g. from inside another write's lock, or for a
        watch event). Joins a publish already waiting, so a burst of a Deployment's events makes
        one task, not one each."""
        if key in self._scheduled:
            return  # it reads the facts when it runs
        task = self._schedule(key, COALESCE_S)
        self._background.add(task)
        task.add_done_callback(self._done)

    async def settle(self) -> None:
        """Wait for the publishes started by `publish_soon` (and those they started)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _done(self, task: asyncio.Future[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("status not written: %r", task.exception())

    async def _publish_after(self, key: Key, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            await self.state.children_first.wait_turn()
        finally:
            self._scheduled.pop(key, None)  # later facts need a publish of their own
        async with self._lock(key):
            status = derive_status(self.state, self.settings, key, rfc3339(datetime.now(UTC)))
            ms = self.state.modelservices.get(key)
            if status is None or ms is None or ms["deleting"]:
                return
            if manifests.is_subset(status, ms["status"]):
                return
            await self._patch(key, ms, status)

    async def change(
        self, key: Key, uid: str, compute: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Patch what `compute(current status)` returns (nothing when it returns nothing);
        returns the patch written, None when nothing was (or the object is gone or going).

        Raises the API client's errors except those of an object deleted or replaced meanwhile."""
        await self.state.children_first.wait_turn()
        async with self._lock(key):
            ms = self.state.modelservices.get(key)
            if ms is None or ms["deleting"] or ms["uid"] != uid:
                return None
            patch = compute(ms["status"])
            if not patch:
                return None
            return patch if await self._patch(key, ms, patch) else None

    async def _patch(self, key: Key, ms: dict[str, Any], patch: dict[str, Any]) -> bool:
        # The whole status, merged here, written only onto the object of this uid: after a
        # delete and a re-create of the same name the old object's writes must not land on
        # the new one (its cache would not know, and its status would never be corrected).
        status = merge_patch(ms["status"], patch)
        client = self.state.client()
        try:
            await client.write_status(API_VERSION, KIND, key[0], key[1], ms["uid"], status)
        except KubeApiError as err:
            if err.status == 404:  # deleted meanwhile
                return False
            if err.status == 422 and await client.uid_of(API_VERSION, KIND, *key) != ms["uid"]:
                return False  # replaced meanwhile by a new object of the same name
            raise
        ms["status"] = status
        return True
