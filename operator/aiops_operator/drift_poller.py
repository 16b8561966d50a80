"""The drift loop: one poller for the whole operator reads each runtime's GET /drift and reacts.

The poller keeps one `Target` per ModelService, fed by the ModelService watch
(`track_modelservice`), and one task, started at operator startup, that ticks each target every
`drift_poll_interval_s` (±10 %, so N ModelServices created together do not read together), with
at most `drift_reads_max` ticks in flight and `drift_reads_per_namespace` per namespace. No Kopf
timer, so no finalizer on any ModelService (a timer forces one; kopf#1074).

Each tick: read /drift of each ready pod (drift_client.py; once through the URL when the pattern
names no pod), combine the replicas' readings (replicas.py), write `status.drift` and the
`DriftDetected` condition (reactions.py, through the status writer), and on a new drift event
apply `spec.drift.action`:
`none` (status only), `alert` (a Warning Event `DriftDetected` and the drift-events metric) or
`retrain` (alert, then POST the CI trigger from the Secret at most once per cooldown,
retrain.py). While the Deployment has no ready replica nothing is read (reason
RuntimeNotReady). An unreachable runtime gives the condition reason RuntimeUnreachable and an
exponential backoff between reads (when no replica answers; one that does not, among others
that do, is named in the condition). Each pod read holds one of `drift_reads_max` and of the
namespace's `drift_reads_per_namespace` slots. A tick never raises into the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import kopf
from pydantic import ValidationError

from aiops_operator import bounded, conditions
from aiops_operator import operator_metrics as metrics
from aiops_operator.conditions import parse_time, rfc3339
from aiops_operator.drift_client import (
    DriftClient,
    DriftReadError,
    DriftReading,
    Pod,
    check_pattern,
    reads_each_pod,
)
from aiops_operator.fairness import NamespaceSlots
from aiops_operator.kube import KubeApiError
from aiops_operator.manifests import LABEL_INSTANCE, selector_labels
from aiops_operator.reactions import (
    FAILED,
    TRIGGERED,
    Reaction,
    backoff_s,
    drift_condition,
    drift_status,
    is_new_drift_event,
    plan_reaction,
    retrain_status,
)
from aiops_operator.replicas import (
    Aggregate,
    ReplicaRead,
    aggregate,
    ready_pods,
    replicas_condition,
)
from aiops_operator.retrain import (
    RetrainConfigError,
    TriggerOutcome,
    TriggerPolicy,
    read_trigger,
    retrain_inputs,
    trigger_pipeline,
)
from aiops_operator.settings import OperatorSettings
from aiops_operator.spec import GROUP, KIND, PLURAL, VERSION, DriftSpec, parse_duration
from aiops_operator.state import Key, State
from aiops_operator.status import DRIFT_DETECTED, MODEL_NOT_LOADED, replica_counts
from aiops_operator.status_writer import API_VERSION, StatusWriter

if TYPE_CHECKING:
    from aiops_operator.memo import Operator

log = logging.getLogger("aiops_operator.drift")
EVENT_FIELDS = ("driftEvents", "lastDriftTime", "runtimeDriftEvents")
NOT_READY = DriftReadError(
    "notready", "the Deployment has no ready replica; drift is read once one is ready"
)
NO_READY_POD = DriftReadError(
    "notready", "the Deployment reports ready replicas but no ready pod is listed yet"
)
DRIFT_DETECTED_REASON = "DriftDetected"
JITTER = 0.1  # each interval is drawn from ±10 % of drift_poll_interval_s
FIRST_READ_S = 2.0  # a new ModelService is first read after at most this (±10 %)
IDLE_WAKE_S = 1.0  # the loop looks at its targets at least this often


@dataclass
class DriftMemory:
    """Per-ModelService loop state (gone with the target)."""

    failures: int = 0
    next_read: float = 0.0  # event-loop time before which the runtime is not read again
    ready_replicas: int | None = None  # as last seen on the Deployment; a change ends a backoff
    last_retrain: datetime | None = None
    unreadable: tuple[str, ...] = ()  # pods that did not answer the last read, by name
    # What this loop last wrote. Only this loop writes these fields and this condition, so they
    # win over the status cache, which a late watch event can briefly roll back.
    written: dict[str, Any] = field(default_factory=dict)
    condition: dict[str, Any] | None = None


@dataclass
class Target:
    """One ModelService the poller reads, as its latest watch event showed it."""

    key: Key
    uid: str
    generation: int
    spec: dict[str, Any]
    due: float  # event-loop time of its next tick
    memory: DriftMemory = field(default_factory=DriftMemory)
    busy: bool = False

    @property
    def ref(self) -> dict[str, Any]:
        """What a Kubernetes Event about this ModelService names."""
        meta = {"name": self.key[1], "namespace": self.key[0], "uid": self.uid}
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta}


class DriftPoller:
    """The targets, the schedule and the clients of the drift loop; see the module docstring."""

    def __init__(
        self,
        settings: OperatorSettings,
        state: State,
        writer: StatusWriter,
        rng: random.Random | None = None,
    ) -> None:
        check_pattern(settings.drift_url_pattern)  # a bad pattern stops the operator at start
        self.policy = TriggerPolicy.from_setting(  # so does a bad retrain URL prefix
            settings.retrain_url_prefixes, settings.retrain_allow_http
        )
        self.settings = settings
        self.state = state
        self.writer = writer
        self.targets: dict[Key, Target] = {}
        self.client: DriftClient | None = None
        self.triggers: aiohttp.ClientSession | None = None  # retrain triggers: a pool of their own
        self.triggers_in_flight = NamespaceSlots(settings.triggers_per_namespace)
        # Pod reads in flight: a tick reads every ready pod of its ModelService.
        self.reads_in_flight = NamespaceSlots(settings.drift_reads_per_namespace)
        self._reads_total = asyncio.Semaphore(settings.drift_reads_max)
        self._rng = rng or random.Random()
        self._busy_in: Counter[str] = Counter()  # ticks in flight per namespace
        self._ticks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # Kopf posts Events from the context of its object workers; the first watch event hands
        # that context over (kopf.event needs Kopf's event queue, a context variable).
        self._posting: contextvars.Context | None = None

    # -- targets -------------------------------------------------------------------------------

    def interval(self) -> float:
        """One ModelService's next interval: drift_poll_interval_s ± JITTER."""
        base = self.settings.drift_poll_interval_s
        return base * self._rng.uniform(1 - JITTER, 1 + JITTER)

    def track(self, key: Key, uid: str, generation: int, spec: dict[str, Any], now: float) -> None:
        """Add or refresh a ModelService; a new one (or a new uid) is first read soon."""
        if self._posting is None:
            self._posting = contextvars.copy_context()
        target = self.targets.get(key)
        if target is None or target.uid != uid:
            first = min(self.settings.drift_poll_interval_s, FIRST_READ_S)
            due = now + first * self._rng.uniform(1 - JITTER, 1 + JITTER)
            self.targets[key] = Target(key, uid, generation, spec, due)
            self._wakeup()
            return
        target.generation, target.spec = generation, spec

    def forget(self, key: Key) -> None:
        """Stop reading a deleted (or deleting) ModelService."""
        self.targets.pop(key, None)

    def due(self, now: float) -> list[Target]:
        """The targets to tick now, within the global and per-namespace bounds."""
        room = self.settings.drift_reads_max - len(self._ticks)
        per_namespace = self.settings.drift_reads_per_namespace
        picked: list[Target] = []
        taken: Counter[str] = Counter()
        for target in sorted(self.targets.values(), key=lambda t: t.due):
            if len(picked) >= room or target.due > now:
                break
            namespace = target.key[0]
            if target.busy or self._busy_in[namespace] + taken[namespace] >= per_namespace:
                continue
            taken[namespace] += 1
            picked.append(target)
        return picked

    def _next_wait(self, now: float) -> float:
        waiting = [t.due for t in self.targets.values() if not t.busy and t.due > now]
        return max(0.0, min([IDLE_WAKE_S, *(d - now for d in waiting)]))

    # -- the loop ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the HTTP clients and start the loop."""
        settings = self.settings
        self.client = DriftClient(
            settings.drift_url_pattern, settings.runtime_port, settings.drift_timeout_s
        )
        self.triggers = bounded.session(settings.drift_timeout_s, connections=8)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="drift poller")
        self._task.add_done_callback(_report_end)
        log.info(
            "drift loop started",
            extra={
                "drift_url_pattern": settings.drift_url_pattern,
                "drift_poll_interval_s": settings.drift_poll_interval_s,
                "drift_reads_max": settings.drift_reads_max,
                "metrics_port": settings.metrics_port,
                "retrain_url_prefixes": list(self.policy.prefixes),
            },
        )

    async def stop(self) -> None:
        """Stop the loop and its ticks, close the HTTP clients."""
        tasks = [t for t in (self._task, *self._ticks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        if self.client is not None:
            await self.client.close()
        if self.triggers is not None:
            await self.triggers.close()
            self.triggers = None

    def _wakeup(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = loop.time()
            for target in self.due(now):
                self._launch(target)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_wait(now))

    def _launch(self, target: Target) -> None:
        target.busy = True
        self._busy_in[target.key[0]] += 1
        task = asyncio.create_task(self._guarded_tick(target))
        self._ticks.add(task)
        task.add_done_callback(self._ticks.discard)

    async def _guarded_tick(self, target: Target) -> None:
        try:
            await self.tick(target)
        except Exception as exc:  # one ModelService's trouble never stops the loop
            log.warning("drift tick failed: %r", exc, extra=_ref(target.key))
        finally:
            target.busy = False
            target.due = asyncio.get_running_loop().time() + self.interval()
            self._busy_in[target.key[0]] -= 1
            self._wakeup()

    # -- one tick ------------------------------------------------------------------------------

    async def tick(self, target: Target) -> None:
        """One tick for one ModelService: read /drift (unless backing off), publish, react."""
        client = self.client
        if client is None:
            return
        key, memory = target.key, target.memory
        self._end_backoff_on_readiness_change(key, memory)
        if not memory.ready_replicas:  # nothing can answer /drift: no read, no backoff
            error = await self._why_not_ready(client, key)
            await self._publish(target, drift_condition(None, error, target.generation))
            return
        clock = asyncio.get_running_loop().time()
        if clock < memory.next_read:
            return
        agg = await self._read(client, key, memory, clock)
        condition = replicas_condition(agg, target.generation)
        new_event = await self._publish(target, condition, agg)
        if new_event and agg.reading is not None:
            await self._react(target, agg.reading)

    async def _why_not_ready(self, client: DriftClient, key: Key) -> DriftReadError:
        """NOT_READY, or what a runtime pod says is wrong (a digest mismatch, say) on /readyz."""
        if not self.settings.probe_not_ready_pods:
            return NOT_READY
        try:
            pods = await self.state.client().request(
                "GET",
                f"/api/v1/namespaces/{key[0]}/pods",
                params={"labelSelector": f"{LABEL_INSTANCE}={key[1]}", "limit": "5"},
            )
        except (KubeApiError, aiohttp.ClientError, TimeoutError, kopf.TemporaryError):
            return NOT_READY
        for pod in pods.get("items") or []:
            ip = (pod.get("status") or {}).get("podIP")
            if ip and not (pod.get("metadata") or {}).get("deletionTimestamp"):
                said = await client.why_not_ready(ip)
                if said is not None:
                    return said
        return NOT_READY

    def _end_backoff_on_readiness_change(self, key: Key, memory: DriftMemory) -> None:
        """A pod turning ready (or going) is the moment to read again, whatever the backoff."""
        ready = replica_counts(self.state.deployments.get(key))["readyReplicas"]
        if ready != memory.ready_replicas:
            memory.ready_replicas = ready
            memory.next_read = 0.0

    async def _read(
        self, client: DriftClient, key: Key, memory: DriftMemory, clock: float
    ) -> Aggregate:
        """Read every ready replica and combine; back off only when none answered."""
        reads = await self._read_replicas(client, key)
        for one in reads:
            metrics.DRIFT_READS.labels(result=one.error.kind if one.error else "ok").inc()
        agg = aggregate(reads)
        if agg.reading is None:
            memory.failures += 1
            delay = backoff_s(
                memory.failures,
                self.settings.drift_poll_interval_s,
                self.settings.drift_backoff_max_s,
            )
            memory.next_read = clock + delay
            if memory.failures == 1 and agg.error is not None:  # once per outage, not per tick
                log.info(
                    "runtime drift state unreadable",
                    extra={**_ref(key), "error": agg.error.message},
                )
            return agg
        if memory.failures:
            log.info("runtime drift state readable again", extra=_ref(key))
        if agg.unreadable and agg.unreadable != memory.unreadable and agg.error is not None:
            log.info(
                "runtime replicas unreadable",
                extra={**_ref(key), "pods": list(agg.unreadable), "error": agg.error.message},
            )
        memory.failures, memory.next_read = 0, 0.0
        memory.unreadable = agg.unreadable
        return agg

    async def _read_replicas(self, client: DriftClient, key: Key) -> list[ReplicaRead]:
        """One read per ready pod, or one through the URL when the pattern names no pod."""
        if not reads_each_pod(client.pattern):
            return [await self._read_one(client, key, None)]
        try:
            listed = await self.state.client().request(
                "GET",
                f"/api/v1/namespaces/{key[0]}/pods",
                params={"labelSelector": _selector(key[1])},
            )
        except KubeApiError as err:
            return [ReplicaRead("", error=_listing_failed(err.message))]
        except (aiohttp.ClientError, TimeoutError, kopf.TemporaryError) as err:
            return [ReplicaRead("", error=_listing_failed(type(err).__name__))]
        pods = ready_pods(listed.get("items") or [])
        if not pods:
            return [ReplicaRead("", error=NO_READY_POD)]
        return list(await asyncio.gather(*(self._read_one(client, key, pod) for pod in pods)))

    async def _read_one(self, client: DriftClient, key: Key, pod: Pod | None) -> ReplicaRead:
        """One GET /drift within the namespace's and the operator's read slots."""
        async with self.reads_in_flight.hold(key[0]), self._reads_total:
            try:
                reading = await client.read(key[1], key[0], pod)
            except DriftReadError as err:
                return ReplicaRead(pod.name if pod else "", error=err)
        return ReplicaRead(pod.name if pod else "", reading=reading)

    async def _publish(
        self, target: Target, condition: dict[str, Any], agg: Aggregate | None = None
    ) -> bool:
        """Write status.drift and DriftDetected if they changed; True when a new event was."""
        memory = target.memory
        reading = agg.reading if agg is not None else None
        seen: dict[str, Any] = {}

        def compute(current: dict[str, Any]) -> dict[str, Any] | None:
            previous = {**(current.get("drift") or {}), **memory.written}
            known = conditions.put(current.get("conditions"), memory.condition)
            merged = conditions.set_condition(known, condition, rfc3339(_now()))
            fields = drift_status(reading, previous) if reading is not None else {}
            if agg is not None:
                fields["replicas"] = agg.counts()
            seen.update(
                new_event=reading is not None and is_new_drift_event(reading, previous),
                before=(conditions.find(known, DRIFT_DETECTED) or {}).get("reason"),
                fields=fields,
                conditions=merged,
            )
            patch: dict[str, Any] = {}
            if fields and any(previous.get(k) != v for k, v in fields.items()):
                patch["drift"] = fields
            if merged != current.get("conditions"):
                patch["conditions"] = merged
            return patch

        try:
            written = await self.writer.change(target.key, target.uid, compute)
        except KubeApiError as err:
            log.warning("drift status not written: %s", err.message, extra=_ref(target.key))
            return False
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("drift status not written: %s", type(err).__name__, extra=_ref(target.key))
            return False
        if written is None:
            return False
        fields = seen["fields"]
        memory.written.update({k: fields[k] for k in EVENT_FIELDS if k in fields})
        memory.condition = conditions.find(seen["conditions"], DRIFT_DETECTED)
        if (seen["before"] == MODEL_NOT_LOADED) != (condition.get("reason") == MODEL_NOT_LOADED):
            self.writer.publish_soon(target.key)  # Degraded follows (status.runtime_problem)
        return bool(seen["new_event"])

    def _post(self, fn: Callable[..., None], target: Target, **kwargs: Any) -> None:
        """kopf.event / kopf.warn about `target`, in the context Kopf posts Events from."""
        if self._posting is None:
            fn(target.ref, **kwargs)
        else:
            self._posting.run(fn, target.ref, **kwargs)

    async def _react(self, target: Target, reading: DriftReading) -> None:
        """Apply spec.drift.action to a new drift event."""
        key, memory = target.key, target.memory
        drift = _drift_spec(target.spec)
        action = drift.action if drift is not None else "alert"
        metrics.DRIFT_EVENTS.labels(namespace=key[0], modelservice=key[1], action=action).inc()
        now = _now()
        cooldown = parse_duration(drift.retrain.cooldown) if drift and drift.retrain else 0.0
        reaction = plan_reaction(action, True, self._last_retrain(target), cooldown, now)
        summary = (
            f"p-value {reading.last_p_value if reading.last_p_value is not None else 'n/a'}"
            f" < threshold {reading.threshold} at {reading.last_drift_time} (action: {action})"
        )
        if reading.drifted_features:
            summary += f"; drifted most: {reading.features_text()}"
        log.warning("drift event seen", extra={**_ref(key), "action": action, "summary": summary})
        if reaction.event:
            self._post(
                kopf.warn,
                target,
                reason=DRIFT_DETECTED_REASON,
                message=f"drift detected: {summary}",
            )
        if reaction.cooldown_until is not None:
            self._cooldown_skip(target, reaction)
        if reaction.retrain and drift is not None:
            memory.last_retrain = now
            if not await self._claim_retrain(target, now):
                return
            outcome = await self._retrain(key, drift, reading)
            await self._record_retrain(target, outcome, now)

    async def _claim_retrain(self, target: Target, now: datetime) -> bool:
        """Write lastRetrainTime before triggering: an operator killed after the trigger leaves
        the cooldown in the object, where the next leader reads it (never a second trigger)."""
        claim = {"drift": {"lastRetrainTime": rfc3339(now)}}
        try:
            return await self.writer.change(target.key, target.uid, lambda _c: claim) is not None
        except (KubeApiError, aiohttp.ClientError, TimeoutError) as err:
            log.warning("retrain not triggered: its time not recorded (%s)", type(err).__name__,
                        extra=_ref(target.key))  # fmt: skip
            return False

    def _last_retrain(self, target: Target) -> datetime | None:
        ms = self.state.modelservices.get(target.key) or {}
        status_drift = (ms.get("status") or {}).get("drift") or {}
        recorded = parse_time(status_drift.get("lastRetrainTime"))
        known = [t for t in (recorded, target.memory.last_retrain) if t is not None]
        return max(known) if known else None

    def _cooldown_skip(self, target: Target, reaction: Reaction) -> None:
        assert reaction.cooldown_until is not None
        until = rfc3339(reaction.cooldown_until)
        metrics.RETRAIN_SKIPPED.labels(namespace=target.key[0], modelservice=target.key[1]).inc()
        self._post(
            kopf.event,
            target,
            type="Normal",
            reason="RetrainSkipped",
            message=f"retrain not triggered: the cooldown runs until {until}",
        )

    async def _retrain(self, key: Key, drift: DriftSpec, reading: DriftReading) -> TriggerOutcome:
        assert drift.retrain is not None
        assert self.triggers is not None
        ref = drift.retrain.trigger_secret_ref
        secret_name = self.settings.retrain_secret_name
        inputs = retrain_inputs(key[0], key[1], reading.last_drift_time, reading.last_p_value)
        try:
            self.policy.require_enabled()  # before reading the tenant's Secret at all
            if ref.name != secret_name:
                raise RetrainConfigError(
                    "TriggerSecretNotAllowed",
                    f"the operator reads triggers only from Secrets named"
                    f" {secret_name!r} (its setting retrainSecretName),"
                    f" not {ref.name!r}",
                )
            target = await read_trigger(self.state.client(), key[0], ref.name, ref.key)
            self.policy.check(target.url, f"Secret {key[0]}/{ref.name} key {ref.key!r}")
        except RetrainConfigError as err:
            return TriggerOutcome(False, f"{err.reason}: {err.message}")
        except (aiohttp.ClientError, TimeoutError) as err:
            return TriggerOutcome(
                False, f"reading the trigger Secret failed ({type(err).__name__})"
            )
        async with self.triggers_in_flight.hold(key[0]):
            return await trigger_pipeline(self.triggers, target, inputs, self.policy)

    async def _record_retrain(self, target: Target, outcome: TriggerOutcome, now: datetime) -> None:
        key = target.key
        result = "sent" if outcome.ok else "failed"
        metrics.RETRAIN_TRIGGERS.labels(namespace=key[0], modelservice=key[1], result=result).inc()
        fields = retrain_status(TRIGGERED if outcome.ok else FAILED, outcome.message, now)
        try:
            await self.writer.change(key, target.uid, lambda _current: {"drift": fields})
        except KubeApiError as err:
            log.warning("drift status not written: %s", err.message, extra=_ref(key))
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("drift status not written: %s", type(err).__name__, extra=_ref(key))
        extra = {**_ref(key), "outcome": fields["lastRetrainOutcome"], "detail": outcome.message}
        if outcome.ok:
            log.info("retrain pipeline triggered", extra=extra)
            self._post(
                kopf.event,
                target,
                type="Normal",
                reason="RetrainTriggered",
                message=outcome.message,
            )
        else:
            log.warning("retrain trigger failed", extra=extra)
            self._post(kopf.warn, target, reason="RetrainFailed", message=outcome.message)


def _report_end(task: asyncio.Task[None]) -> None:
    """The loop ends only when stopped; anything else is a bug to see in the log."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the drift loop ended: %r", task.exception())


def _now() -> datetime:
    return datetime.now(UTC)


def _drift_spec(spec: dict[str, Any]) -> DriftSpec | None:
    try:
        return DriftSpec.model_validate(dict(spec.get("drift") or {}))
    except ValidationError:
        return None  # the reconcile handler reports the invalid spec


def _selector(name: str) -> str:
    """The label selector of one ModelService's runtime pods (its Deployment's)."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(name).items())


def _listing_failed(detail: str) -> DriftReadError:
    return DriftReadError("unreachable", f"listing the runtime's pods failed: {detail}")


def _ref(key: Key) -> dict[str, str]:
    return {"namespace": key[0], "modelservice": key[1]}


# -- Kopf handlers -------------------------------------------------------------------------------


async def start_drift_poller(memo: Operator, **_: Any) -> None:
    """Start the one drift loop of the operator."""
    await memo.drift.start()


async def stop_drift_poller(memo: Operator, **_: Any) -> None:
    """Stop the drift loop and close its HTTP clients."""
    await memo.drift.stop()


async def track_modelservice(
    type: str,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    memo: Operator,
    **_: Any,
) -> None:
    """Feed the poller: every ModelService that exists and is not being deleted is a target."""
    key = (namespace or "", name)
    if type == "DELETED" or body.metadata.get("deletionTimestamp") is not None:
        memo.drift.forget(key)
        return
    generation = int(body.metadata.get("generation", 1))
    now = asyncio.get_running_loop().time()
    memo.drift.track(key, body.metadata.uid or "", generation, dict(body.spec), now)


def register(registry: kopf.OperatorRegistry) -> None:
    """Install the drift loop's handlers into `registry`."""
    kopf.on.startup(registry=registry)(start_drift_poller)
    kopf.on.cleanup(registry=registry)(stop_drift_poller)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(track_modelservice)
