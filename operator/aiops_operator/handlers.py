"""Thin Kopf handlers: validate the spec, apply the built children, have the status published.

Flow:
- create/update/resume of a ModelService -> `reconcile`: validate with spec.py, build children
  with manifests.py, server-side apply them, remember the outcome, publish status.
- the first watch event of a new generation already applies a valid spec's children
  (`_apply_at_first_sight`); `reconcile` then only publishes the status, or reports and retries
  what failed.
- events of the children (labelled managed-by=aiops-operator, selected server-side), read by
  the children's own watch (child_watch.py, not Kopf: no worker per object) ->
  `on_child_event`: a Deployment event has the status refreshed (no polling); a child that was
  deleted or edited away from its desired state is applied again, by a background job.
- ServiceMonitors served or no longer served (the children's watch finds out) ->
  `on_kind_served`: the ModelServices whose children depend on it are applied again, by
  background jobs (`_reconverge`).
What the handlers share arrives as Kopf's operator memo (`memo: Operator`, memo.py); status is
written only by its status writer (status_writer.py). No handler needs a finalizer: children go
with their ModelService through ownerReferences. `register(registry)` installs the handlers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, NoReturn

import aiohttp
import kopf
from pydantic import ValidationError

from aiops_operator import manifests, operator_metrics
from aiops_operator.kopf_storage import HandledGenerations, RetryProgress
from aiops_operator.kube import KubeApiError, KubeClient, api_connector, load_connection
from aiops_operator.manifests import Children, Owner, RenderOptions
from aiops_operator.memo import Operator
from aiops_operator.settings import OperatorSettings
from aiops_operator.spec import (
    GROUP,
    NAME_MAX_LENGTH,
    PLURAL,
    VERSION,
    ModelServiceSpec,
    validation_message,
)
from aiops_operator.state import Key, Outcome, Recipe
from aiops_operator.status import Problem
from aiops_operator.status_writer import owned_by

log = logging.getLogger("aiops_operator")
RECONVERGE_ATTEMPTS = 5  # a background re-apply (ServiceMonitors began or ceased to be served)


async def configure(settings: kopf.OperatorSettings, memo: Operator, **_: Any) -> None:
    """Kopf settings and the API client; see settings.py for what is configurable."""
    config = memo.settings
    # Kopf writes nothing on a ModelService it handled: what was handled is known here.
    settings.persistence.progress_storage = RetryProgress(prefix=GROUP)
    settings.persistence.diffbase_storage = HandledGenerations(functools.partial(_handled, memo))
    # Only warnings and errors become Kubernetes Events: one Event per reconcile of 1000
    # ModelServices would double the API traffic for nothing a person reads.
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = config.request_timeout_s
    if config.worker_limit:
        settings.queueing.worker_limit = config.worker_limit
    settings.queueing.idle_timeout = config.worker_idle_s
    memo.state.kube = KubeClient(
        load_connection(),
        field_manager=config.field_manager,
        timeout_s=config.request_timeout_s,
        max_connections=config.api_connections,
    )


async def login(memo: Operator, **_: Any) -> kopf.AiohttpSession:
    """Kopf's session: our credentials (in-cluster, else KUBECONFIG), a bounded connection pool.

    Kopf's own pool is unbounded: a burst of N ModelServices opened up to N TLS connections
    for its annotation patches, each ~0.3 MB of buffers and a handshake of CPU on both ends.
    """
    info = load_connection()
    connector = api_connector(info, kopf_connection_limit(memo.settings))
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

    Kopf watches ModelServices per served namespace (or once cluster-wide), plus CRDs; every
    stream holds a connection for its lifetime, so they must not starve the requests (the
    children's streams have a client of their own, child_watch.py). With namespace globs the
    number of streams follows the matching namespaces, so the pool is not bounded.
    """
    if config.namespace_globs():
        return 0  # streams per matching namespace, unknown in advance: an unbounded pool
    scopes = max(1, len(config.namespace_list()))
    return 2 + scopes * 2 + config.api_connections


async def close_client(memo: Operator, **_: Any) -> None:
    """Close the API client's HTTP session and stop the metrics server."""
    if memo.state.kube is not None:
        await memo.state.kube.close()
    await memo.heap.stop()
    operator_metrics.stop(memo.metrics_server)


async def servicemonitors_available(op: Operator) -> bool:
    """Whether monitoring.coreos.com/v1 servicemonitors is served (cached for discovery_ttl_s)."""
    state = op.state
    async with state.discovery_lock:  # one request for a burst of reconciles, not one each
        cached = state.servicemonitors
        if cached is not None and time.monotonic() - cached[0] < op.settings.discovery_ttl_s:
            return cached[1]
        available = await state.client().serves("monitoring.coreos.com/v1", "servicemonitors")
        state.servicemonitors = (time.monotonic(), available)
        return available


def render_options(config: OperatorSettings, servicemonitor_available: bool) -> RenderOptions:
    """Operator settings that shape the children."""
    return RenderOptions(
        port=config.runtime_port,
        uid=config.runtime_uid,
        progress_deadline_seconds=config.progress_deadline_seconds,
        servicemonitor_available=servicemonitor_available,
        network_policies=config.network_policies,
        operator_namespace=config.operator_namespace,
        monitoring_namespace=config.monitoring_namespace,
    )


def _validate(op: Operator, name: str, spec: dict[str, Any]) -> ModelServiceSpec:
    if len(name) > NAME_MAX_LENGTH:
        raise kopf.PermanentError(f"metadata.name is longer than {NAME_MAX_LENGTH} characters")
    ms = ModelServiceSpec.model_validate(dict(spec))
    if ms.model.format == "joblib" and not op.settings.allow_joblib:
        raise kopf.PermanentError(
            "spec.model.format: joblib runs code from the model file when it loads, so this"
            " operator refuses it (the platform team allows it with the setting allowJoblib);"
            " use skops"
        )
    return ms


async def remember_modelservice(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: Operator, **_: Any
) -> None:
    """Keep the latest ModelService metadata/status for status merging; forget deleted ones;
    apply the children of a generation not applied yet (`_apply_at_first_sight`)."""
    key = (namespace or "", name)
    if type == "DELETED":
        facts = memo.state.modelservices.get(key)
        if facts is not None and facts["uid"] != body.metadata.uid:
            # Kopf handles each uid apart, so the events of a re-created namesake may come
            # first: the deletion of the old object must not erase what is known of the new.
            return
        memo.state.forget(key)
        memo.status.forget(key)
        operator_metrics.forget(*key)
        memo.heap.soon()
        return
    uid = body.metadata.uid
    generation = body.metadata.get("generation", 1)
    deleting = body.metadata.get("deletionTimestamp") is not None
    facts = memo.state.modelservices.get(key)
    if facts is not None and facts["uid"] == uid:
        # Updated in place, status kept: the status is ours alone (status_writer), and the cache
        # holds what was last written (a write in flight records into this same dict). A watch
        # event may still carry the status of a write before the last one: taking it would make
        # the next merge write stale conditions back (a Ready reverted and never re-derived).
        facts.update(generation=generation, deleting=deleting)
    else:
        facts = {
            "uid": uid,
            "generation": generation,
            "deleting": deleting,
            "status": dict(body.get("status") or {}),
        }
        memo.state.modelservices[key] = facts
    if not facts["deleting"] and not _applied(memo, key, facts["uid"], facts["generation"]):
        await _apply_at_first_sight(memo, key, body)
        # Kopf's own writes for this event (its annotations) wait like a status write.
        await memo.state.children_first.wait_turn()


async def _apply_at_first_sight(op: Operator, key: Key, body: kopf.Body) -> None:
    """Apply a new generation's children as soon as its watch event arrives.

    Kopf calls the create/update handlers after the event handlers, and after a patch of its
    own when it has one to make (an old finalizer to remove); the children need not wait for
    that. Only the happy path runs here: an invalid spec or a failed apply is left to
    `reconcile`, which reports and retries.
    """
    try:
        ms = _validate(op, key[1], dict(body.spec))
    except (ValidationError, kopf.PermanentError):
        return
    uid, generation = body.metadata.uid, int(body.metadata.get("generation", 1))
    try:
        await _converge(op, key, None, uid, generation, ms, retry=0)
    except Exception as exc:  # reconcile handles, reports and retries it
        log.debug("first-sight apply left to the reconcile handler: %r", exc, extra=_ref(key, ""))


def _current(op: Operator, key: Key, uid: str, generation: int) -> Outcome | None:
    """This process's outcome for this uid and generation of the ModelService, if any."""
    outcome = op.state.outcomes.get(key)
    if outcome is None or outcome.uid != uid or outcome.generation != generation:
        return None
    return outcome


def _handled(op: Operator, body: kopf.Body) -> bool:
    """Whether this process applied this generation's children or rejected its spec: Kopf then
    has nothing to hand to `reconcile` for it (kopf_storage.py)."""
    key = (body.metadata.namespace or "", body.metadata.name or "")
    generation = int(body.metadata.get("generation", 1))
    outcome = _current(op, key, body.metadata.uid or "", generation)
    return outcome is not None and (
        outcome.applied or (outcome.problem is not None and outcome.problem.blocking)
    )


def _applied(op: Operator, key: Key, uid: str, generation: int) -> bool:
    """Whether this process already applied the children of this generation."""
    outcome = _current(op, key, uid, generation)
    return outcome is not None and outcome.applied


@operator_metrics.counted("reconcile")
async def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    name: str,
    namespace: str | None,
    uid: str,
    retry: int,
    memo: Operator,
    **_: Any,
) -> None:
    """Bring the children in line with the spec, then report status."""
    namespace = namespace or ""
    key = (namespace, name)
    generation = int(meta.get("generation", 1))
    memo.state.modelservices.setdefault(
        key,
        {
            "uid": uid,
            "generation": generation,
            "deleting": False,
            "status": dict(body.get("status") or {}),
        },
    )
    if _applied(memo, key, uid, generation):  # at first sight, by remember_modelservice
        await memo.status.publish(key)
        return
    try:
        ms = _validate(memo, name, dict(spec))
    except (ValidationError, kopf.PermanentError) as exc:
        await _give_up(memo, key, body, uid, generation, Problem("InvalidSpec", _message(exc)))
    await _converge(memo, key, body, uid, generation, ms, retry)
    await memo.status.publish(key)


async def _converge(
    op: Operator,
    key: Key,
    body: kopf.Body | None,
    uid: str,
    generation: int,
    ms: ModelServiceSpec,
    retry: int,
) -> None:
    """Build and apply the children of a valid spec; record the outcome. `body`: the
    ModelService to report a rejected child on (None: leave that to the reconcile handler)."""
    available = await _discover_or_retry(op, retry)
    async with op.state.key_lock(key):
        outcome = _plan(op, key, uid, generation, ms, available)
        op.state.outcomes[key] = outcome
        await _apply_planned(op, key, body, outcome, retry)


def _plan(
    op: Operator, key: Key, uid: str, generation: int, ms: ModelServiceSpec, available: bool
) -> Outcome:
    """What a valid spec asks for, given whether ServiceMonitors are served (no API calls)."""
    owner = Owner(name=key[1], namespace=key[0], uid=uid, generation=generation)
    problem, skipped = None, frozenset[str]()
    if ms.monitoring.scrape == "servicemonitor" and not available:
        problem = Problem(
            "ServiceMonitorUnavailable",
            "monitoring.scrape is servicemonitor but the monitoring.coreos.com/v1 ServiceMonitor"
            " CRD is not installed; install the Prometheus Operator CRDs or use scrape: auto",
            blocking=False,
        )
        skipped = frozenset({"ServiceMonitor"})
    recipe = Recipe(owner, render_options(op.settings, available), skipped)
    return Outcome(generation, uid, problem, ms, recipe)


async def _apply_planned(
    op: Operator, key: Key, body: kopf.Body | None, outcome: Outcome, retry: int
) -> None:
    # A burst of N waits here, before its manifests are built: only `api_connections`
    # ModelServices hold their built children and request bodies at once, not N.
    async with op.state.converging:
        children = outcome.children
        assert children is not None  # a planned outcome has its spec and recipe
        await _apply_children(op, key, body, outcome.uid, outcome.generation, children, retry)
    outcome.applied = True
    op.heap.soon()  # what the burst built and parsed is garbage now: trim once it is over


def _scrape_depends(outcome: Outcome | None, servicemonitors: bool) -> bool:
    """Whether this outcome's children were planned for the other answer to "are
    ServiceMonitors served" (scrape: auto picks the kind by it; servicemonitor needs it).
    Applied or not: one still being applied was planned with the answer before the change."""
    return (
        outcome is not None
        and outcome.spec is not None
        and outcome.recipe is not None
        and outcome.spec.monitoring.scrape in ("auto", "servicemonitor")
        and outcome.recipe.options.servicemonitor_available != servicemonitors
    )


def on_kind_served(memo: Operator, kind: str, served: bool) -> None:
    """The API server began or ceased to serve a child kind (child_watch.py). For ServiceMonitor
    (the Prometheus Operator's CRDs installed or removed while the operator runs): remember it
    as discovery's answer, and have every ModelService whose children depend on it applied
    again in the background. That includes one planned with the old answer and still being
    applied: its job waits for the ModelService's lock, so it applies after that apply."""
    if kind != manifests.SERVICEMONITOR[1]:
        return
    memo.state.servicemonitors = (time.monotonic(), served)
    for key, outcome in list(memo.state.outcomes.items()):
        if _scrape_depends(outcome, served):
            memo.children.jobs.submit((key, "scrape"), functools.partial(_reconverge, memo, key))


async def _reconverge(op: Operator, key: Key) -> None:
    """Apply a ModelService's children again for what discovery answers now, unless a newer
    reconcile already did; retried a few times, as a reconcile would be."""
    for attempt in range(RECONVERGE_ATTEMPTS):
        available = await servicemonitors_available(op)
        async with op.state.key_lock(key):
            facts, outcome = op.state.modelservices.get(key), op.state.outcomes.get(key)
            if (
                outcome is None
                or outcome.spec is None  # an invalid spec: nothing to apply
                or facts is None
                or facts["deleting"]
                or facts["uid"] != outcome.uid
            ):
                return
            if outcome.applied and not _scrape_depends(outcome, available):
                return  # already built for this answer (by a reconcile meanwhile, maybe)
            planned = _plan(op, key, outcome.uid, outcome.generation, outcome.spec, available)
            op.state.outcomes[key] = planned
            try:
                await _apply_planned(op, key, None, planned, attempt)
            except kopf.TemporaryError as err:
                log.info("children not applied again yet: %s", err, extra=_ref(key, ""))
                failed = True
            else:
                failed = False
        if failed:  # wait without the lock: a reconcile of a new generation may go meanwhile
            await asyncio.sleep(_backoff(attempt))
            continue
        op.status.publish_soon(key)
        served = "served" if available else "not served"
        log.info(f"children applied again: ServiceMonitors are {served}", extra=_ref(key, ""))
        return


async def _discover_or_retry(op: Operator, retry: int) -> bool:
    try:
        return await servicemonitors_available(op)
    except (TimeoutError, KubeApiError, OSError) as exc:
        raise kopf.TemporaryError(f"API discovery failed: {exc}", delay=_backoff(retry)) from exc


def _message(exc: Exception) -> str:
    return validation_message(exc) if isinstance(exc, ValidationError) else str(exc)


def _backoff(retry: int) -> float:
    """1, 2, 4 ... 60 seconds: transient API trouble never turns into a retry storm."""
    return float(min(60, 2**retry))


async def _apply_children(
    op: Operator,
    key: Key,
    body: kopf.Body | None,
    uid: str,
    generation: int,
    children: Children,
    retry: int,
) -> None:
    client, gate = op.state.client(), op.state.children_first
    async with gate.child_write():
        results = await asyncio.gather(
            *(_apply(client, m) for m in children.apply), return_exceptions=True
        )
    for manifest, result in zip(children.apply, results, strict=True):
        if isinstance(result, KubeApiError) and result.namespace_going:
            return  # the ModelService goes with its namespace; nothing to converge
        if isinstance(result, KubeApiError) and result.permanent and body is not None:
            reason = f"{manifest['kind']}Rejected"
            await _give_up(op, key, body, uid, generation, Problem(reason, result.message))
        if isinstance(result, BaseException):
            raise kopf.TemporaryError(
                f"applying {manifest['kind']} failed: {result!r}", delay=_backoff(retry)
            )
        if result is not None:  # a Deployment's status facts
            _remember_applied_deployment(op, key, result)
    for api_version, kind in children.absent:
        if op.state.present.get((key, kind)):
            async with gate.child_write():
                await client.delete(api_version, kind, key[0], key[1])
            log.info("deleted a child the spec no longer asks for", extra=_ref(key, kind))


async def _apply(client: KubeClient, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Apply one child; of the answer (the whole live object) keep only a Deployment's status
    facts, at once: a burst's answers are otherwise alive until each ModelService's last one."""
    live = await client.apply(manifest)
    return status_facts(live) if manifest["kind"] == "Deployment" else None


def _remember_applied_deployment(op: Operator, key: Key, facts: dict[str, Any]) -> None:
    """Use the apply answer's facts unless a watch event already told us about these inputs."""
    cached = op.state.deployments.get(key)
    annotations = ((cached or {}).get("metadata") or {}).get("annotations") or {}
    applied = (facts["metadata"].get("annotations") or {}).get(manifests.INPUTS_ANNOTATION)
    if annotations.get(manifests.INPUTS_ANNOTATION) != applied:
        op.state.deployments[key] = facts


def status_facts(deployment: dict[str, Any]) -> dict[str, Any]:
    """The parts of a Deployment that status derivation reads (status.py, `status_writer.owned_by`).

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
    op: Operator, key: Key, body: kopf.Body, uid: str, generation: int, problem: Problem
) -> NoReturn:
    """Report a spec the operator cannot serve and stop retrying it until the spec changes."""
    previous = op.state.outcomes.get(key)
    keep = previous if previous is not None and previous.uid == uid else None
    op.state.outcomes[key] = Outcome(
        generation,
        uid,
        problem,
        spec=keep.spec if keep else None,
        recipe=keep.recipe if keep else None,
    )
    await op.status.publish(key, delay=0)
    kopf.warn(body, reason=problem.reason, message=problem.message)
    raise kopf.PermanentError(f"{problem.reason}: {problem.message}")


def _owner_key(child: dict[str, Any]) -> Key | None:
    meta = child.get("metadata") or {}
    instance = (meta.get("labels") or {}).get(manifests.LABEL_INSTANCE)
    return (meta.get("namespace") or "", instance) if instance else None


def on_child_event(memo: Operator, type: str, child: dict[str, Any]) -> None:
    """Track a child (by uid); have it restored if deleted or edited, and the status refreshed
    on Deployment changes. Called by the children's watch (child_watch.py) for each event: it
    keeps only facts and leaves the API work to background jobs, so the stream never waits."""
    key = _owner_key(child)
    if key is None:
        return
    # The parsed event is garbage once handled: a burst of them (a namespace of ModelServices
    # deleted, whose children go after them) leaves free memory to trim once it is over.
    memo.heap.soon()
    kind, uid = child.get("kind") or "", (child.get("metadata") or {}).get("uid")
    if type == "DELETED":
        if memo.state.present.get((key, kind)) not in (uid, None):
            # An older child of this name, seen late (a relist reports it after its successor).
            return
        # A child's last event is its DELETED, often after its ModelService's (garbage
        # collection): dropping the entry then, rather than recording None, keeps a deleted
        # ModelService from leaving it behind.
        memo.state.present.pop((key, kind), None)
    else:
        memo.state.present[(key, kind)] = uid
    if kind == "Deployment":
        if type == "DELETED":
            memo.state.deployments.pop(key, None)
        else:
            memo.state.deployments[key] = status_facts(child)
    action = _restore_action(memo, key, kind, type, child)
    if action is not None:
        api_version = child.get("apiVersion") or ""
        memo.children.jobs.submit(
            (key, kind), lambda: _restore(memo, key, kind, api_version, action)
        )
    if kind == "Deployment":
        # Not waited for: a publish waits out its coalescing delay and the child writes in
        # flight; the pending publish reads the facts when it runs, so later events are in it.
        memo.status.publish_soon(key)


def _restore_action(
    op: Operator, key: Key, kind: str, type: str, child: dict[str, Any]
) -> str | None:
    """ "delete" (a child the spec no longer wants), "apply" (deleted, or edited away from its
    desired state) or None, from what the operator knows and the child as this event shows it."""
    ms, outcome = op.state.modelservices.get(key), op.state.outcomes.get(key)
    if ms is None or outcome is None or ms["deleting"] or ms["uid"] != outcome.uid:
        return None
    children = outcome.children  # built once per event: the spec's children are not kept
    if children is None:
        return None
    if children.unwanted(kind):
        return "delete" if type != "DELETED" and owned_by(child, outcome.uid) else None
    desired = children.wanted(kind)
    if desired is None:
        return None
    if type != "DELETED" and manifests.is_subset(desired, child):
        return None
    return "apply"


async def _restore(op: Operator, key: Key, kind: str, api_version: str, action: str) -> None:
    """Carry out a `_restore_action`, with the knowledge as it is now."""
    ms, outcome = op.state.modelservices.get(key), op.state.outcomes.get(key)
    if ms is None or outcome is None or ms["deleting"] or ms["uid"] != outcome.uid:
        return  # gone or changed while the job waited
    client, gate = op.state.client(), op.state.children_first
    if action == "delete":
        async with gate.child_write():
            await client.delete(api_version, kind, key[0], key[1])
        return
    children = outcome.children
    desired = children.wanted(kind) if children is not None else None
    if desired is None:
        return
    try:
        async with gate.child_write():
            live = await client.apply(desired)
    except KubeApiError as err:
        if err.kind_terminating:  # e.g. the Prometheus Operator's CRDs being uninstalled
            log.info(
                "child not restored: its CustomResourceDefinition is being deleted",
                extra=_ref(key, kind),
            )
        elif not err.namespace_going:  # the namespace takes the children with it
            log.warning("could not restore a child: %s", err, extra=_ref(key, kind))
        return
    # The answer is the live child: after a late event of an older one of this name it may be
    # the only word on it (an apply that changes nothing makes no watch event).
    op.state.present[(key, kind)] = (live.get("metadata") or {}).get("uid")
    if kind == "Deployment":
        op.state.deployments[key] = status_facts(live)
    log.info("restored a child to the ModelService's desired state", extra=_ref(key, kind))


async def start_child_watch(memo: Operator, **_: Any) -> None:
    """Start the children's streams (child_watch.py) with a client of their own."""
    client = KubeClient(
        load_connection(),
        field_manager=memo.settings.field_manager,
        timeout_s=memo.settings.request_timeout_s,
        max_connections=0,  # one connection per stream, each held while it runs
    )
    memo.children.start(
        client,
        lambda type, child: on_child_event(memo, type, child),
        lambda kind, served: on_kind_served(memo, kind, served),
    )


async def stop_child_watch(memo: Operator, **_: Any) -> None:
    """Stop the children's streams and restores."""
    await memo.children.stop()


def _ref(key: Key, kind: str) -> dict[str, str]:
    """Log fields naming a child (Kopf's JSON formatter emits `extra` fields)."""
    return {"namespace": key[0], "modelservice": key[1], "child_kind": kind}


def register(registry: kopf.OperatorRegistry) -> None:
    """Install the reconcile, watch and lifecycle handlers into `registry`."""
    kopf.on.startup(registry=registry)(configure)
    kopf.on.startup(registry=registry)(start_child_watch)
    kopf.on.login(registry=registry)(login)
    kopf.on.cleanup(registry=registry)(stop_child_watch)
    kopf.on.cleanup(registry=registry)(close_client)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(remember_modelservice)
    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(GROUP, VERSION, PLURAL, registry=registry)(reconcile)
