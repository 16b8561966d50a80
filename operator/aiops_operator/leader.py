"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it.

One replica holds the Lease (`holderIdentity`) and renews it (`renewTime`) every retry period;
the others try every retry period and take it once it has not changed for `leaseDurationSeconds`
as *they* observed it (their own clock, not the holder's `renewTime`: clocks of two nodes may
differ). Every write carries the `resourceVersion` read, so of two replicas taking an expired
Lease at once the API server lets one win (409 Conflict for the other). A leader that cannot
renew within the renew deadline (shorter than the lease duration) gives up before anyone else
may take over. `decide` is the pure rule; `LeaderElector` talks to the API server.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from aiops_operator.kube import KubeApiError, KubeClient, resource_path
from aiops_operator.operator_metrics import LEADER

log = logging.getLogger("aiops_operator.leader")

LEASE_API = "coordination.k8s.io/v1"


class Move(enum.Enum):
    """What a replica does with the Lease it has just read."""

    CREATE = "create"  # no Lease yet: create it, holding it
    RENEW = "renew"  # we hold it: write a new renewTime
    TAKE = "take"  # it expired (or was released): write ourselves as holder
    WAIT = "wait"  # someone else holds it and it has not expired


@dataclass(frozen=True)
class Observed:
    """A Lease's record as last read, and when (monotonic seconds) this replica first saw it."""

    spec: dict[str, Any]
    resource_version: str
    seen_at: float


def decide(lease: Observed | None, identity: str, now: float) -> Move:
    """Take, renew or wait, given the Lease as observed and the monotonic time `now`."""
    if lease is None:
        return Move.CREATE
    holder = lease.spec.get("holderIdentity") or ""
    if holder == identity:
        return Move.RENEW
    duration = float(lease.spec.get("leaseDurationSeconds") or 0)
    if not holder or now >= lease.seen_at + duration:
        return Move.TAKE
    return Move.WAIT


def lease_spec(
    previous: dict[str, Any] | None, identity: str, move: Move, duration_s: float, now: datetime
) -> dict[str, Any]:
    """The Lease spec to write for `move` (RENEW keeps acquireTime and leaseTransitions)."""
    stamp = _micro_time(now)
    prior = previous or {}
    if move is Move.RENEW:
        return {**prior, "renewTime": stamp, "leaseDurationSeconds": int(duration_s)}
    transitions = int(prior.get("leaseTransitions") or 0)
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": int(duration_s),
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": transitions + 1 if move is Move.TAKE else 0,
    }


def released_spec(previous: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What a leader leaving cleanly writes: no holder, so a standby takes over at once."""
    return {
        **previous,
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "renewTime": _micro_time(now),
    }


def _micro_time(now: datetime) -> str:
    # MicroTime: RFC 3339 with microseconds, as client-go writes it.
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquire, hold and release one Lease through the operator's own client."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_s: float,
        renew_deadline_s: float,
        retry_s: float,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_s = retry_s
        self._observed: Observed | None = None
        self._renewed_at = 0.0  # monotonic time of our last successful write as holder

    def _path(self, name: str | None = None) -> str:
        return resource_path(LEASE_API, "leases", self.namespace, name)

    async def try_once(self) -> bool:
        """Read the Lease, take or renew it when `decide` says so; True while we hold it."""
        try:
            answer: dict[str, Any] | None = await self.client.request("GET", self._path(self.name))
        except KubeApiError as err:
            if err.status != 404:
                raise
            answer = None
        self._observe(answer)
        move = decide(self._observed, self.identity, time.monotonic())
        if move is Move.WAIT:
            return False
        previous = answer.get("spec") if answer else None
        spec = lease_spec(previous, self.identity, move, self.duration_s, datetime.now(UTC))
        body: dict[str, Any] = {
            "apiVersion": LEASE_API,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec,
        }
        try:
            if answer is None:
                written = await self.client.request("POST", self._path(), body=body)
            else:
                body["metadata"]["resourceVersion"] = answer["metadata"]["resourceVersion"]
                written = await self.client.request("PUT", self._path(self.name), body=body)
        except KubeApiError as err:
            if err.status == 409:
                return False  # another replica wrote first: read again next period
            raise
        self._observe(written)
        self._renewed_at = time.monotonic()
        if move is not Move.RENEW:
            log.info(
                "leader lease acquired",
                extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity,
                       "transitions": spec["leaseTransitions"]},
            )  # fmt: skip
        return True

    def _observe(self, answer: dict[str, Any] | None) -> None:
        if answer is None:
            self._observed = None
            return
        version = answer["metadata"]["resourceVersion"]
        if self._observed is None or self._observed.resource_version != version:
            self._observed = Observed(answer.get("spec") or {}, version, time.monotonic())

    async def _attempt(self) -> bool:
        try:
            return await asyncio.wait_for(self.try_once(), timeout=self.retry_s)
        except (KubeApiError, aiohttp.ClientError, TimeoutError, OSError) as err:
            log.warning("leader lease not read or written: %s", err or type(err).__name__)
            return False

    def _until_expiry(self) -> float:
        """Seconds until the Lease another replica holds expires as we observed it (0: now);
        one retry period when there is none to observe (absent, or unreadable)."""
        observed = self._observed
        if observed is None:
            return self.retry_s
        duration = float(observed.spec.get("leaseDurationSeconds") or 0)
        return max(0.0, observed.seen_at + duration - time.monotonic())

    async def acquire(self) -> None:
        """Return once this replica holds the Lease: try every retry period, and at the moment
        the holder's Lease expires (a takeover then waits for no retry tick)."""
        while True:
            if await self._attempt():
                return
            await asyncio.sleep(max(0.05, min(self.retry_s, self._until_expiry())))

    async def hold(self) -> None:
        """Renew every retry period; return as soon as the Lease is lost: held by another, or
        the next try could not end within the renew deadline. Each try lasts at most one retry
        period, so the leader gives up before lease duration - retry period has passed since
        its last renewal, while a standby waits the whole duration from when it saw it."""
        while True:
            await asyncio.sleep(self.retry_s)
            if await self._attempt():
                continue
            holder = (self._observed.spec if self._observed else {}).get("holderIdentity")
            if self._observed is not None and holder != self.identity:
                log.error("leader lease lost to %s", holder or "nobody")
                return
            if time.monotonic() + self.retry_s >= self._renewed_at + self.renew_deadline_s:
                log.error("leader lease not renewable within %g s", self.renew_deadline_s)
                return

    async def release(self) -> None:
        """Give the Lease up (leaving cleanly), so a standby need not wait for it to expire."""
        try:
            answer = await self.client.request("GET", self._path(self.name))
            spec = answer.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            answer["spec"] = released_spec(spec, datetime.now(UTC))
            await self.client.request("PUT", self._path(self.name), body=answer)
        except (KubeApiError, aiohttp.ClientError, TimeoutError, OSError) as err:
            log.warning("leader lease not released: %s", err)


async def serve_standby(endpoint: str) -> Any:
    """While standing by, answer the liveness endpoint's path with 200 `{"role": "standby"}`
    (Kopf serves it once this replica leads); returns the runner to clean up, or None."""
    if not endpoint:
        return None
    url = urllib.parse.urlsplit(endpoint)

    async def standby(_request: web.Request) -> web.Response:
        return web.json_response({"role": "standby"})

    app = web.Application()
    app.add_routes([web.get(url.path or "/", standby)])
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, url.hostname or "0.0.0.0", url.port or 80, reuse_address=True).start()
    return runner


async def run_elected(
    elector: LeaderElector, operate: Callable[[], Awaitable[None]], standby_endpoint: str
) -> int:
    """Stand by until this replica leads, then `operate` while it holds the Lease. Losing it
    ends the process at once (exit status 1): Kubernetes restarts it as a standby, and nothing
    of the old leader's in-flight work keeps acting beside the new leader."""
    runner = await serve_standby(standby_endpoint)
    LEADER.set(0)
    log.info("standing by for the leader lease", extra={"identity": elector.identity})
    await elector.acquire()
    LEADER.set(1)
    if runner is not None:
        await runner.cleanup()
    operator = asyncio.ensure_future(operate())
    holding = asyncio.ensure_future(elector.hold())
    await asyncio.wait({operator, holding}, return_when=asyncio.FIRST_COMPLETED)
    if holding.done():
        log.error("no longer the leader: exiting so that this replica restarts as a standby")
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)  # not SystemExit: no cleanup handler, no last patch runs
    holding.cancel()
    LEADER.set(0)
    await elector.release()
    await elector.client.close()
    operator.result()  # re-raise what ended the operator, if anything did
    return 0
