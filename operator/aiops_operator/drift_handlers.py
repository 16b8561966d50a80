"""The drift loop: a Kopf timer per ModelService reads its runtime's GET /drift and reacts.

Each tick: read /drift (drift_client.py), write `status.drift` and the `DriftDetected` condition
(reactions.py), and on a new drift event apply `spec.drift.action`: `none` (status only),
`alert` (a Warning Event `DriftDetected` and the drift-events metric) or `retrain` (alert, then
POST the CI trigger from the Secret at most once per cooldown, retrain.py). While the
Deployment has no ready replica nothing is read (reason RuntimeNotReady). An unreachable
runtime gives the condition reason RuntimeUnreachable and an exponential backoff between reads;
nothing here raises into Kopf except a not-yet-ready API client.

Status writes share handlers.py's per-ModelService lock and status cache, so the reconcile
handler's status and this loop's never overwrite each other's conditions.
`register(config)` installs the timer with the configured interval (called by cli.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
from pydantic import ValidationError

from aiops_operator import bounded
from aiops_operator import operator_metrics as metrics
from aiops_operator.drift_client import DriftClient, DriftReadError, DriftReading, check_pattern
from aiops_operator.fairness import NamespaceSlots
from aiops_operator.handlers import API_VERSION, STATE, Key, publish_status
from aiops_operator.kube import KubeApiError
from aiops_operator.manifests import LABEL_INSTANCE
from aiops_operator.reactions import (
    FAILED,
    TRIGGERED,
    Reaction,
    backoff_s,
    condition_of,
    drift_condition,
    drift_status,
    is_new_drift_event,
    parse_time,
    plan_reaction,
    put_condition,
    retrain_status,
    rfc3339,
    set_condition,
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
from aiops_operator.status import DRIFT_DETECTED, MODEL_NOT_LOADED, replica_counts

log = logging.getLogger("aiops_operator.drift")
EVENT_FIELDS = ("driftEvents", "lastDriftTime", "runtimeDriftEvents")
NOT_READY = DriftReadError(
    "notready", "the Deployment has no ready replica; drift is read once one is ready"
)
DRIFT_DETECTED_REASON = "DriftDetected"


@dataclass
class DriftMemory:
    """Per-ModelService loop state (kept in Kopf's per-object memo, gone with the object)."""

    failures: int = 0
    next_read: float = 0.0  # event-loop time before which the runtime is not read again
    ready_replicas: int | None = None  # as last seen on the Deployment; a change ends a backoff
    last_retrain: datetime | None = None
    # What this loop last wrote. Only this loop writes these fields and this condition, so they
    # win over the status cache, which a late watch event can briefly roll back.
    written: dict[str, Any] = field(default_factory=dict)
    condition: dict[str, Any] | None = None


@dataclass
class Loop:
    """Process-wide drift loop state: settings, the HTTP clients and the metrics server."""

    config: OperatorSettings = field(default_factory=lambda: OperatorSettings())
    client: DriftClient | None = None
    triggers: aiohttp.ClientSession | None = None  # retrain triggers: a pool of their own
    policy: TriggerPolicy = field(default_factory=TriggerPolicy)
    reads: NamespaceSlots = field(default_factory=lambda: NamespaceSlots(4))  # per namespace
    triggers_in_flight: NamespaceSlots = field(default_factory=lambda: NamespaceSlots(1))
    metrics_server: Any = None
    registered: bool = False


LOOP = Loop()


def register(config: OperatorSettings) -> None:
    """Install the drift timer, the metrics server and the HTTP client with these settings."""
    check_pattern(config.drift_url_pattern)  # a bad pattern stops the operator at start
    LOOP.policy = TriggerPolicy.from_setting(  # so does a bad retrain URL prefix
        config.retrain_url_prefixes, config.retrain_allow_http
    )
    LOOP.config = config
    LOOP.reads = NamespaceSlots(config.drift_reads_per_namespace)
    LOOP.triggers_in_flight = NamespaceSlots(config.triggers_per_namespace)
    if LOOP.registered:
        return
    LOOP.registered = True
    kopf.on.startup()(start_loop)
    kopf.on.cleanup()(stop_loop)
    interval = config.drift_poll_interval_s
    kopf.timer(
        GROUP, VERSION, PLURAL, id="drift", interval=interval, initial_delay=min(interval, 2.0)
    )(poll_drift)


async def start_loop(**_: Any) -> None:
    """Create the runtime HTTP client and serve the operator's /metrics."""
    config = LOOP.config
    LOOP.client = DriftClient(config.drift_url_pattern, config.runtime_port, config.drift_timeout_s)
    LOOP.triggers = bounded.session(config.drift_timeout_s, connections=8)
    LOOP.metrics_server = metrics.serve(config.metrics_port)
    log.info(
        "drift loop started",
        extra={
            "drift_url_pattern": config.drift_url_pattern,
            "drift_poll_interval_s": config.drift_poll_interval_s,
            "metrics_port": config.metrics_port,
            "retrain_url_prefixes": list(LOOP.policy.prefixes),
        },
    )


async def stop_loop(**_: Any) -> None:
    """Close the HTTP client and stop the metrics server."""
    if LOOP.client is not None:
        await LOOP.client.close()
    if LOOP.triggers is not None:
        await LOOP.triggers.close()
        LOOP.triggers = None
    metrics.stop(LOOP.metrics_server)
    LOOP.metrics_server = None


async def poll_drift(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    name: str,
    namespace: str | None,
    uid: str,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """One tick for one ModelService: read /drift (unless backing off), publish, react."""
    client = LOOP.client
    if client is None:
        return
    memory: DriftMemory = memo.setdefault("drift_loop", DriftMemory())
    key = (namespace or "", name)
    generation = int(meta.get("generation", 1))
    _end_backoff_on_readiness_change(key, memory)
    if not memory.ready_replicas:  # nothing can answer /drift: no read, no backoff
        await _publish(key, uid, generation, None, await _why_not_ready(client, key), memory)
        return
    clock = _loop_time()
    if clock < memory.next_read:
        return
    reading, error = await _read(client, key, memory, clock)
    new_event = await _publish(key, uid, generation, reading, error, memory)
    if new_event and reading is not None:
        await _react(key, body, dict(spec), reading, memory)


async def _why_not_ready(client: DriftClient, key: Key) -> DriftReadError:
    """NOT_READY, or what a runtime pod says is wrong (a digest mismatch, say) on its /readyz."""
    if not LOOP.config.probe_not_ready_pods:
        return NOT_READY
    try:
        pods = await STATE.client().request(
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


def _end_backoff_on_readiness_change(key: Key, memory: DriftMemory) -> None:
    """A pod turning ready (or going) is the moment to read again, whatever the backoff says."""
    ready = replica_counts(STATE.deployments.get(key))["readyReplicas"]
    if ready != memory.ready_replicas:
        memory.ready_replicas = ready
        memory.next_read = 0.0


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


async def _read(
    client: DriftClient, key: Key, memory: DriftMemory, clock: float
) -> tuple[DriftReading | None, DriftReadError | None]:
    try:
        async with LOOP.reads.hold(key[0]):  # a namespace's slow runtimes wait for each other
            reading = await client.read(key[1], key[0])
    except DriftReadError as err:
        memory.failures += 1
        delay = backoff_s(
            memory.failures, LOOP.config.drift_poll_interval_s, LOOP.config.drift_backoff_max_s
        )
        memory.next_read = clock + delay
        metrics.DRIFT_READS.labels(result=err.kind).inc()
        if memory.failures == 1:  # once per outage, not once per tick
            log.info("runtime drift state unreadable", extra={**_ref(key), "error": err.message})
        return None, err
    if memory.failures:
        log.info("runtime drift state readable again", extra=_ref(key))
    memory.failures, memory.next_read = 0, 0.0
    metrics.DRIFT_READS.labels(result="ok").inc()
    return reading, None


async def _publish(
    key: Key,
    uid: str,
    generation: int,
    reading: DriftReading | None,
    error: DriftReadError | None,
    memory: DriftMemory,
) -> bool:
    """Write status.drift and DriftDetected if they changed; True when a new event was recorded."""
    await STATE.children_first.wait_turn()
    async with STATE.locks[key]:
        ms = STATE.modelservices.get(key)
        if ms is None or ms["deleting"] or ms["uid"] != uid:
            return False
        current = ms["status"]
        previous = {**(current.get("drift") or {}), **memory.written}
        new_event = reading is not None and is_new_drift_event(reading, previous)
        condition = drift_condition(reading, error, generation)
        known = put_condition(current.get("conditions"), memory.condition)
        before = (condition_of(known, DRIFT_DETECTED) or {}).get("reason")
        conditions = set_condition(known, condition, rfc3339(_now()))
        patch: dict[str, Any] = {}
        fields = drift_status(reading, previous) if reading is not None else {}
        if fields and not _same(fields, previous):
            patch["drift"] = fields
        if conditions != current.get("conditions"):
            patch["conditions"] = conditions
        if not patch:
            return False
        if not await _patch_status(key, patch):
            return False
        ms["status"] = _merged(current, patch)
        memory.written.update({k: fields[k] for k in EVENT_FIELDS if k in fields})
        memory.condition = condition_of(conditions, DRIFT_DETECTED)
        if (before == MODEL_NOT_LOADED) != (condition.get("reason") == MODEL_NOT_LOADED):
            _in_background(publish_status(key))  # Degraded follows (status.runtime_problem)
        return new_event


_BACKGROUND: set[asyncio.Future[None]] = set()


def _in_background(work: Any) -> None:
    """Run `work` after the caller releases its lock, keeping a reference until it is done."""
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _same(fields: dict[str, Any], previous: dict[str, Any]) -> bool:
    return all(previous.get(k) == v for k, v in fields.items())


def _merged(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The status after a JSON merge patch of `patch` (nulls remove keys in status.drift)."""
    merged = {**current, **{k: v for k, v in patch.items() if k != "drift"}}
    if "drift" in patch:
        drift = {**(current.get("drift") or {}), **patch["drift"]}
        merged["drift"] = {k: v for k, v in drift.items() if v is not None}
    return merged


async def _patch_status(key: Key, patch: dict[str, Any]) -> bool:
    try:
        await STATE.client().patch_status(API_VERSION, KIND, key[0], key[1], patch)
    except KubeApiError as err:
        if err.status != 404:
            log.warning("drift status not written: %s", err.message, extra=_ref(key))
        return False
    except (aiohttp.ClientError, TimeoutError) as err:
        log.warning("drift status not written: %s", type(err).__name__, extra=_ref(key))
        return False
    return True


def _now() -> datetime:
    return datetime.now(UTC)


def _drift_spec(spec: dict[str, Any]) -> DriftSpec | None:
    try:
        return DriftSpec.model_validate(dict(spec.get("drift") or {}))
    except ValidationError:
        return None  # the reconcile handler reports the invalid spec


async def _react(
    key: Key, body: kopf.Body, spec: dict[str, Any], reading: DriftReading, memory: DriftMemory
) -> None:
    """Apply spec.drift.action to a new drift event."""
    drift = _drift_spec(spec)
    action = drift.action if drift is not None else "alert"
    metrics.DRIFT_EVENTS.labels(namespace=key[0], modelservice=key[1], action=action).inc()
    now = _now()
    cooldown = parse_duration(drift.retrain.cooldown) if drift and drift.retrain else 0.0
    reaction = plan_reaction(action, True, _last_retrain(key, memory), cooldown, now)
    summary = (
        f"p-value {reading.last_p_value if reading.last_p_value is not None else 'n/a'}"
        f" < threshold {reading.threshold} at {reading.last_drift_time} (action: {action})"
    )
    if reading.drifted_features:
        summary += f"; drifted most: {reading.features_text()}"
    log.warning("drift event seen", extra={**_ref(key), "action": action, "summary": summary})
    if reaction.event:
        kopf.warn(body, reason=DRIFT_DETECTED_REASON, message=f"drift detected: {summary}")
    if reaction.cooldown_until is not None:
        _cooldown_skip(key, body, reaction)
    if reaction.retrain and drift is not None:
        memory.last_retrain = now
        outcome = await _retrain(key, drift, reading)
        await _record_retrain(key, body, outcome, now)


def _last_retrain(key: Key, memory: DriftMemory) -> datetime | None:
    ms = STATE.modelservices.get(key) or {}
    recorded = parse_time(((ms.get("status") or {}).get("drift") or {}).get("lastRetrainTime"))
    known = [t for t in (recorded, memory.last_retrain) if t is not None]
    return max(known) if known else None


def _cooldown_skip(key: Key, body: kopf.Body, reaction: Reaction) -> None:
    assert reaction.cooldown_until is not None
    until = rfc3339(reaction.cooldown_until)
    metrics.RETRAIN_SKIPPED.labels(namespace=key[0], modelservice=key[1]).inc()
    kopf.event(
        body,
        type="Normal",
        reason="RetrainSkipped",
        message=f"retrain not triggered: the cooldown runs until {until}",
    )


async def _retrain(key: Key, drift: DriftSpec, reading: DriftReading) -> TriggerOutcome:
    assert drift.retrain is not None
    assert LOOP.triggers is not None
    ref = drift.retrain.trigger_secret_ref
    inputs = retrain_inputs(key[0], key[1], reading.last_drift_time, reading.last_p_value)
    try:
        LOOP.policy.require_enabled()  # before reading the tenant's Secret at all
        if ref.name != LOOP.config.retrain_secret_name:
            raise RetrainConfigError(
                "TriggerSecretNotAllowed",
                f"the operator reads triggers only from Secrets named"
                f" {LOOP.config.retrain_secret_name!r} (its setting retrainSecretName),"
                f" not {ref.name!r}",
            )
        target = await read_trigger(STATE.client(), key[0], ref.name, ref.key)
        LOOP.policy.check(target.url, f"Secret {key[0]}/{ref.name} key {ref.key!r}")
    except RetrainConfigError as err:
        return TriggerOutcome(False, f"{err.reason}: {err.message}")
    except (aiohttp.ClientError, TimeoutError) as err:
        return TriggerOutcome(False, f"reading the trigger Secret failed ({type(err).__name__})")
    async with LOOP.triggers_in_flight.hold(key[0]):
        return await trigger_pipeline(LOOP.triggers, target, inputs, LOOP.policy)


async def _record_retrain(
    key: Key, body: kopf.Body, outcome: TriggerOutcome, now: datetime
) -> None:
    result = "sent" if outcome.ok else "failed"
    metrics.RETRAIN_TRIGGERS.labels(namespace=key[0], modelservice=key[1], result=result).inc()
    fields = retrain_status(TRIGGERED if outcome.ok else FAILED, outcome.message, now)
    async with STATE.locks[key]:
        ms = STATE.modelservices.get(key)
        if ms is not None and await _patch_status(key, {"drift": fields}):
            ms["status"] = _merged(ms["status"], {"drift": fields})
    extra = {**_ref(key), "outcome": fields["lastRetrainOutcome"], "detail": outcome.message}
    if outcome.ok:
        log.info("retrain pipeline triggered", extra=extra)
        kopf.event(body, type="Normal", reason="RetrainTriggered", message=outcome.message)
    else:
        log.warning("retrain trigger failed", extra=extra)
        kopf.warn(body, reason="RetrainFailed", message=outcome.message)


def _ref(key: Key) -> dict[str, str]:
    return {"namespace": key[0], "modelservice": key[1]}
