"""Thin Kopf handlers: validate the spec, apply the built children, publish the status.

Flow:
- create/update/resume of a ModelService -> `reconcile`: validate with spec.py, build children
  with manifests.py, server-side apply them, remember the outcome, publish status.
- the first watch event of a new generation already applies a valid spec's children
  (`_apply_at_first_sight`), one Kopf round trip (its finalizer) before `reconcile` runs;
  `reconcile` then only publishes the status, or reports and retries what failed.
- events of the children (labelled managed-by=aiops-operator, selected server-side) ->
  `on_child_event`: a Deployment event refreshes the status (no polling); a child that was
  deleted or edited away from its desired state is applied again.
Status is written only by `publish_status`, serialised per ModelService and computed by the pure
functions in status.py from the latest Deployment seen. Status writes yield to child writes
(`ChildrenFirst`): in a burst of creates every ModelService gets its children before any status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import aiohttp
import kopf
from pydantic import ValidationError

from aiops_operator import manifests, operator_metrics
from aiops_operator.kube import PLURALS, KubeApiError, KubeClient, load_connection
from aiops_operator.manifests import Children, Owner, RenderOptions
from aiops_operator.settings import OperatorSettings
from aiops_operator.spec import (
    GROUP,
    KIND,
    NAME_MAX_LENGTH,
    PLURAL,
    VERSION,
    ModelServiceSpec,
    validation_message,
)
from aiops_operator.status import (
    Problem,
    derive_conditions,
    merge_conditions,
    now_rfc3339,
    replica_counts,
    runtime_problem,
)

Key = tuple[str, str]  # (namespace, name) of a ModelService
API_VERSION = f"{GROUP}/{VERSION}"
# (apiVersion, plural) of every child kind the operator watches.
CHILD_RESOURCES = [(api_version, PLURALS[kind]) for api_version, kind in manifests.CHILD_KINDS]
MANAGED = {manifests.LABEL_MANAGED_BY: manifests.MANAGED_BY}
log = logging.getLogger("aiops_operator")


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

    def desired(self, kind: str) -> dict[str, Any] | None:
        """The desired manifest of one child kind, if this outcome wants one."""
        children = self.children
        if children is None:
            return None
        return next((m for m in children.apply if m["kind"] == kind), None)

    def unwanted(self, kind: str) -> bool:
        """Whether a child of this kind should not exist."""
        children = self.children
        return children is not None and any(k == kind for _, k in children.absent)


# A bookkeeping write waits at most this long for the child writes in flight to finish.
STATUS_DEFER_MAX_S = 10.0


class ChildrenFirst:
    """Bookkeeping writes yield to child writes, so a burst of N creates gets every
    ModelService's children applied before the API server also takes N status patches and N
    Kopf finalizer patches.

    A status write, or the end of the event handler that lets Kopf add its finalizer, waits
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
    """In-memory knowledge of the operator; rebuilt from watches and resume handlers on start."""

    config: OperatorSettings = field(default_factory=lambda: OperatorSettings())
    kube: KubeClient | None = None
    outcomes: dict[Key, Outcome] = field(default_factory=dict)
    modelservices: dict[Key, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[Key, dict[str, Any]] = field(default_factory=dict)
    present: dict[tuple[Key, str], bool] = field(default_factory=dict)
    locks: defaultdict[Key, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    servicemonitors: tuple[float, bool] | None = None
    scheduled: dict[Key, asyncio.Future[None]] = field(default_factory=dict)
    discovery_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    children_first: ChildrenFirst = field(default_factory=ChildrenFirst)

    def client(self) -> KubeClient:
        """The API client (created at startup)."""
        if self.kube is None:
            raise kopf.TemporaryError("the API client is not ready yet", delay=1)
        return self.kube

    def forget(self, key: Key) -> None:
        """Drop everything about a deleted ModelService."""
        for store in (self.outcomes, self.modelservices, self.deployments, self.locks):
            store.pop(key, None)
        for kind_key in [k for k in self.present if k[0] == key]:
            del self.present[kind_key]


STATE = State()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Kopf settings and the API client; see settings.py for what is configurable."""
    config = STATE.config
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Only warnings and errors become Kubernetes Events: one Event per reconcile of 1000
    # ModelServices would double the API traffic for nothing a person reads.
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = config.request_timeout_s
    if config.worker_limit:
        settings.queueing.worker_limit = config.worker_limit
    for api_version, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[api_version, plural] = manifests.MANAGED_SELECTOR
    STATE.kube = KubeClient(
        load_connection(),
        field_manager=config.field_manager,
        timeout_s=config.request_timeout_s,
        max_connections=config.api_connections,
    )


@kopf.on.login()
async def login(**_: Any) -> kopf.AiohttpSession:
    """Kopf's session: our credentials (in-cluster, else KUBECONFIG), a bounded connection pool.

    Kopf's own pool is unbounded: a burst of N ModelServices opened up to N TLS connections
    for its annotation patches, each ~0.3 MB of buffers and a handshake of CPU on both ends.
    """
    info = load_connection()
    connector = aiohttp.TCPConnector(
        ssl=info.as_ssl_context(), limit=kopf_connection_limit(STATE.config)
    )
    session = aiohttp.ClientSession(connector=connector, headers=info.as_http_headers())
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        priority=info.priority,
    )


def kopf_connection_limit(config: OperatorSettings) -> int:
    """Kopf's pool: one long-lived connection per watch stream plus `api_connections`.

    Kopf watches ModelServices and each child kind per served namespace (or once cluster-wide),
    plus CRDs; every stream holds a connection for its lifetime, so they must not starve the
    requests. One spare stream per namespace covers a later-discovered kind.
    """
    scopes = max(1, len(config.namespace_list()))
    streams = 2 + scopes * (len(CHILD_RESOURCES) + 2)
    return streams + config.api_connections


@kopf.on.cleanup()
async def close_client(**_: Any) -> None:
    """Close the API client's HTTP session."""
    if STATE.kube is not None:
        await STATE.kube.close()


async def servicemonitors_available() -> bool:
    """Whether monitoring.coreos.com/v1 servicemonitors is served (cached for discovery_ttl_s)."""
    async with STATE.discovery_lock:  # one request for a burst of reconciles, not one each
        cached = STATE.servicemonitors
        if cached is not None and time.monotonic() - cached[0] < STATE.config.discovery_ttl_s:
            return cached[1]
        available = await STATE.client().serves("monitoring.coreos.com/v1", "servicemonitors")
        STATE.servicemonitors = (time.monotonic(), available)
        return available


def render_options(servicemonitor_available: bool) -> RenderOptions:
    """Operator settings that shape the children."""
    config = STATE.config
    return RenderOptions(
        port=config.runtime_port,
        uid=config.runtime_uid,
        progress_deadline_seconds=config.progress_deadline_seconds,
        servicemonitor_available=servicemonitor_available,
        network_policies=config.network_policies,
        operator_namespace=config.operator_namespace,
        monitoring_namespace=config.monitoring_namespace,
    )


def _validate(name: str, spec: dict[str, Any]) -> ModelServiceSpec:
    if len(name) > NAME_MAX_LENGTH:
        raise kopf.PermanentError(f"metadata.name is longer than {NAME_MAX_LENGTH} characters")
    ms = ModelServiceSpec.model_validate(dict(spec))
    if ms.model.format == "joblib" and not STATE.config.allow_joblib:
        raise kopf.PermanentError(
            "spec.model.format: joblib runs code from the model file when it loads, so this"
            " operator refuses it (the platform team allows it with the setting allowJoblib);"
            " use skops"
        )
    return ms


@kopf.on.event(GROUP, VERSION, PLURAL)
async def remember_modelservice(
    type: str, body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    """Keep the latest ModelService metadata/status for status merging; forget deleted ones;
    apply the children of a generation not applied yet (`_apply_at_first_sight`)."""
    key = (namespace or "", name)
    if type == "DELETED":
        STATE.forget(key)
        operator_metrics.forget(*key)
        return
    facts = {
        "uid": body.metadata.uid,
        "generation": body.metadata.get("generation", 1),
        "deleting": body.metadata.get("deletionTimestamp") is not None,
        "status": dict(body.get("status") or {}),
    }
    STATE.modelservices[key] = facts
    if not facts["deleting"] and not _applied(key, facts["uid"], facts["generation"]):
        await _apply_at_first_sight(key, body)
        # Kopf's own write for this event (its finalizer) waits like a status write.
        await STATE.children_first.wait_turn()


async def _apply_at_first_sight(key: Key, body: kopf.Body) -> None:
    """Apply a new generation's children as soon as its watch event arrives.

    Kopf calls the create/update handlers only after its finalizer is on the object, one PATCH
    and one watch event later; the children need not wait for that. Only the happy path runs
    here: an invalid spec or a failed apply is left to `reconcile`, which reports and retries.
    """
    try:
        ms = _validate(key[1], dict(body.spec))
    except (ValidationError, kopf.PermanentError):
        return
    uid, generation = body.metadata.uid, int(body.metadata.get("generation", 1))
    try:
        await _converge(key, body, uid, generation, ms, retry=0, eager=True)
    except Exception as exc:  # reconcile handles, reports and retries it
        log.debug("first-sight apply left to the reconcile handler: %r", exc, extra=_ref(key, ""))


def _applied(key: Key, uid: str, generation: int) -> bool:
    """Whether this process already applied the children of this generation."""
    outcome = STATE.outcomes.get(key)
    return (
        outcome is not None
        and outcome.applied
        and outcome.uid == uid
        and outcome.generation == generation
    )


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@operator_metrics.counted("reconcile")
async def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    name: str,
    namespace: str | None,
    uid: str,
    retry: int,
    **_: Any,
) -> None:
    """Bring the children in line with the spec, then report status."""
    namespace = namespace or ""
    key = (namespace, name)
    generation = int(meta.get("generation", 1))
    STATE.modelservices.setdefault(
        key, {"uid": uid, "generation": generation, "deleting": False, "status": {}}
    )
    if _applied(key, uid, generation):  # at first sight, by remember_modelservice
        await publish_status(key)
        return
    try:
        ms = _validate(name, dict(spec))
    except (ValidationError, kopf.PermanentError) as exc:
        await _give_up(key, body, uid, generation, Problem("InvalidSpec", _message(exc)))
    await _converge(key, body, uid, generation, ms, retry)
    await publish_status(key)


async def _converge(
    key: Key,
    body: kopf.Body,
    uid: str,
    generation: int,
    ms: ModelServiceSpec,
    retry: int,
    eager: bool = False,
) -> None:
    """Build and apply the children of a valid spec; record the outcome."""
    owner = Owner(name=key[1], namespace=key[0], uid=uid, generation=generation)
    available = await _discover_or_retry(retry)
    problem, skipped = None, frozenset[str]()
    if ms.monitoring.scrape == "servicemonitor" and not available:
        problem = Problem(
            "ServiceMonitorUnavailable",
            "monitoring.scrape is servicemonitor but the monitoring.coreos.com/v1 ServiceMonitor"
            " CRD is not installed; install the Prometheus Operator CRDs or use scrape: auto",
            blocking=False,
        )
        skipped = frozenset({"ServiceMonitor"})
    recipe = Recipe(owner, render_options(available), skipped)
    children = recipe.build(ms)
    outcome = Outcome(generation, uid, problem, ms, recipe)
    STATE.outcomes[key] = outcome
    await _apply_children(key, body, uid, generation, children, retry, eager)
    outcome.applied = True


async def _discover_or_retry(retry: int) -> bool:
    try:
        return await servicemonitors_available()
    except (TimeoutError, KubeApiError, OSError) as exc:
        raise kopf.TemporaryError(f"API discovery failed: {exc}", delay=_backoff(retry)) from exc


def _message(exc: Exception) -> str:
    return validation_message(exc) if isinstance(exc, ValidationError) else str(exc)


def _backoff(retry: int) -> float:
    """1, 2, 4 ... 60 seconds: transient API trouble never turns into a retry storm."""
    return float(min(60, 2**retry))


async def _apply_children(
    key: Key,
    body: kopf.Body,
    uid: str,
    generation: int,
    children: Children,
    retry: int,
    eager: bool = False,
) -> None:
    client = STATE.client()
    async with STATE.children_first.child_write():
        results = await asyncio.gather(
            *(client.apply(m) for m in children.apply), return_exceptions=True
        )
    for manifest, result in zip(children.apply, results, strict=True):
        if isinstance(result, KubeApiError) and result.namespace_terminating:
            return  # the ModelService goes with its namespace; nothing to converge
        if isinstance(result, KubeApiError) and result.permanent and not eager:
            reason = f"{manifest['kind']}Rejected"
            await _give_up(key, body, uid, generation, Problem(reason, result.message))
        if isinstance(result, BaseException):
            raise kopf.TemporaryError(
                f"applying {manifest['kind']} failed: {result!r}", delay=_backoff(retry)
            )
        if manifest["kind"] == "Deployment":
            _remember_applied_deployment(key, result)
    for api_version, kind in children.absent:
        if STATE.present.get((key, kind)):
            async with STATE.children_first.child_write():
                await client.delete(api_version, kind, key[0], key[1])
            log.info("deleted a child the spec no longer asks for", extra=_ref(key, kind))


def _remember_applied_deployment(key: Key, deployment: dict[str, Any]) -> None:
    """Use the apply answer unless a watch event already told us about these inputs."""
    cached = STATE.deployments.get(key)
    annotations = ((cached or {}).get("metadata") or {}).get("annotations") or {}
    applied = ((deployment.get("metadata") or {}).get("annotations") or {}).get(
        manifests.INPUTS_ANNOTATION
    )
    if annotations.get(manifests.INPUTS_ANNOTATION) != applied:
        STATE.deployments[key] = status_facts(deployment)


def status_facts(deployment: dict[str, Any]) -> dict[str, Any]:
    """The parts of a Deployment that status derivation reads (status.py, `_owned_by`).

    A full Deployment with managedFields is ~10x larger; N of them were most of the
    operator's own memory.
    """
    meta = deployment.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    slim_meta: dict[str, Any] = {
        "generation": meta.get("generation", 1),
        "ownerReferences": [{"uid": r.get("uid")} for r in meta.get("ownerReferences") or []],
    }
    kept = {k: annotations[k] for k in (manifests.INPUTS_ANNOTATION,) if k in annotations}
    if kept:
        slim_meta["annotations"] = kept
    spec = deployment.get("spec") or {}
    slim_spec = {"replicas": spec["replicas"]} if "replicas" in spec else {}
    status = dict(deployment.get("status") or {})
    return {"metadata": slim_meta, "spec": slim_spec, "status": status}


async def _give_up(
    key: Key, body: kopf.Body, uid: str, generation: int, problem: Problem
) -> NoReturn:
    """Report a spec the operator cannot serve and stop retrying it until the spec changes."""
    previous = STATE.outcomes.get(key)
    keep = previous if previous is not None and previous.uid == uid else None
    STATE.outcomes[key] = Outcome(
        generation,
        uid,
        problem,
        spec=keep.spec if keep else None,
        recipe=keep.recipe if keep else None,
    )
    await publish_status(key, delay=0)
    kopf.warn(body, reason=problem.reason, message=problem.message)
    raise kopf.PermanentError(f"{problem.reason}: {problem.message}")


def build_status(key: Key) -> dict[str, Any] | None:
    """The status patch for one ModelService from what the operator knows now."""
    ms, outcome = STATE.modelservices.get(key), STATE.outcomes.get(key)
    if ms is None or outcome is None or ms["uid"] != outcome.uid:
        return None
    deployment = STATE.deployments.get(key)
    if deployment is not None and not _owned_by(deployment, outcome.uid):
        deployment = None
    previous = ms["status"].get("conditions")
    inputs = manifests.deployment_inputs(outcome.spec) if outcome.spec is not None else None
    problem = outcome.problem or runtime_problem(previous, outcome.generation)
    conditions = derive_conditions(outcome.generation, deployment, problem, inputs)
    status: dict[str, Any] = {
        "observedGeneration": outcome.generation,
        "conditions": merge_conditions(previous, conditions, now_rfc3339()),
        **replica_counts(deployment),
    }
    applied = outcome.problem is None or not outcome.problem.blocking
    if outcome.spec is not None and applied:
        name, namespace = key[1], key[0]
        status["endpoint"] = f"http://{name}.{namespace}.svc:{STATE.config.runtime_port}"
        status["modelDigest"] = f"sha256:{outcome.spec.model.sha256}"
        status["drift"] = {"pValueThreshold": outcome.spec.drift.p_value_threshold}
    return status


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


# Deployment status moves in quick steps (created, scheduled, ready): publishing a moment later
# writes one status for the whole step instead of one per watch event.
COALESCE_S = 0.3


async def publish_status(key: Key, delay: float = COALESCE_S) -> None:
    """Write the status if it changed (coalesced and serialised per ModelService, merge patch).

    Returns once the status is written: a caller that finds a publish already waiting joins it
    (that publish reads the facts after its delay), so the reconcile handler ends, and Kopf
    records the spec as handled, only when the status reports it.
    """
    pending = STATE.scheduled.get(key)
    if pending is None:
        pending = asyncio.ensure_future(_publish_after(key, delay))
        STATE.scheduled[key] = pending
    await asyncio.shield(pending)


async def _publish_after(key: Key, delay: float) -> None:
    try:
        await asyncio.sleep(delay)
        await STATE.children_first.wait_turn()
    finally:
        STATE.scheduled.pop(key, None)  # later facts need a publish of their own
    async with STATE.locks[key]:
        status = build_status(key)
        ms = STATE.modelservices.get(key)
        if status is None or ms is None or ms["deleting"]:
            return
        if manifests.is_subset(status, ms["status"]):
            return
        try:
            await STATE.client().patch_status(API_VERSION, KIND, key[0], key[1], status)
        except KubeApiError as err:
            if err.status == 404:  # deleted meanwhile
                return
            raise
        ms["status"] = {**ms["status"], **status}


def _owner_key(body: kopf.Body, namespace: str) -> Key | None:
    instance = (body.metadata.labels or {}).get(manifests.LABEL_INSTANCE)
    return (namespace, instance) if instance else None


async def on_child_event(type: str, body: kopf.Body, namespace: str | None, **_: Any) -> None:
    """Track a child; restore it if deleted or edited; refresh status on Deployment changes."""
    key = _owner_key(body, namespace or "")
    if key is None:
        return
    kind = body.get("kind") or ""
    STATE.present[(key, kind)] = type != "DELETED"
    if kind == "Deployment":
        if type == "DELETED":
            STATE.deployments.pop(key, None)
        else:
            STATE.deployments[key] = status_facts(dict(body))
    await _restore_if_needed(key, kind, type, body)
    if kind == "Deployment":
        await publish_status(key)


async def _restore_if_needed(key: Key, kind: str, type: str | None, body: kopf.Body) -> None:
    ms, outcome = STATE.modelservices.get(key), STATE.outcomes.get(key)
    if ms is None or outcome is None or ms["deleting"] or ms["uid"] != outcome.uid:
        return
    client = STATE.client()
    if outcome.unwanted(kind) and type != "DELETED" and _owned_by(dict(body), outcome.uid):
        async with STATE.children_first.child_write():
            await client.delete(body["apiVersion"], kind, key[0], key[1])
        return
    desired = outcome.desired(kind)
    if desired is None:
        return
    if type != "DELETED" and manifests.is_subset(desired, dict(body)):
        return
    try:
        async with STATE.children_first.child_write():
            await client.apply(desired)
    except KubeApiError as err:
        if err.kind_terminating:  # e.g. the Prometheus Operator's CRDs being uninstalled
            log.info(
                "child not restored: its CustomResourceDefinition is being deleted",
                extra=_ref(key, kind),
            )
        elif not err.namespace_terminating:  # namespace deletion removes children: let it
            log.warning("could not restore a child: %s", err, extra=_ref(key, kind))
        return
    log.info("restored a child to the ModelService's desired state", extra=_ref(key, kind))


def _ref(key: Key, kind: str) -> dict[str, str]:
    """Log fields naming a child (Kopf's JSON formatter emits `extra` fields)."""
    return {"namespace": key[0], "modelservice": key[1], "child_kind": kind}


for _api_version, _plural in CHILD_RESOURCES:
    kopf.on.event(_api_version, _plural, labels=MANAGED)(on_child_event)
