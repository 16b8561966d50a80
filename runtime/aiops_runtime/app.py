"""The FastAPI application: /predict, health, readiness, metrics, drift state and OpenAPI docs.

Startup loads the artifacts in a worker thread while /healthz and /readyz already answer; /readyz
turns 200 only once the digests are verified and the model is loaded. A failed load (digest
mismatch, unreachable URI, untrusted type) logs one line and leaves the runtime not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from threadpoolctl import threadpool_limits

from aiops_runtime import metrics
from aiops_runtime.batcher import MicroBatcher
from aiops_runtime.errors import RequestError, error_response
from aiops_runtime.model_store import ArtifactError, LoadedArtifacts, LoadedModel, load_artifacts
from aiops_runtime.schemas import (
    ErrorResponse,
    HealthResponse,
    PredictRequest,
    PredictResponse,
    parse_predict_body,
)
from aiops_runtime.scoring import default_probe, plan_scoring
from aiops_runtime.settings import RuntimeSettings

log = logging.getLogger("aiops_runtime.app")
access_log = logging.getLogger("aiops_runtime.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_JSON = "application/json"
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "Invalid JSON."),
        (413, "Body larger than MAX_BODY_BYTES."),
        (415, "Content-Type is not application/json."),
        (422, "Valid JSON that is not a valid request (field named in the error)."),
        (503, "The model is not loaded yet (or failed to load)."),
    )
}


@dataclass
class RequestStats:
    """Counters behind the periodic summary log line (reset at each line)."""

    requests: int = 0
    rows: int = 0
    errors: int = 0
    latency_sum_s: float = 0.0
    latency_max_s: float = 0.0

    def add(self, latency_s: float, rows: int, error: bool) -> None:
        """Account one /predict request."""
        self.requests += 1
        self.rows += rows
        self.errors += error
        self.latency_sum_s += latency_s
        self.latency_max_s = max(self.latency_max_s, latency_s)


@dataclass
class RuntimeState:
    """What the request path reads: readiness, the model, the batcher and the drift monitor."""

    settings: RuntimeSettings
    ready: bool = False
    not_ready_reason: str = "loading"
    not_ready_message: str = "the model is loading"
    model: LoadedModel | None = None
    batcher: MicroBatcher | None = None
    drift: Any = None
    drift_feed: DriftFeed | None = None
    drift_status: dict[str, Any] = field(default_factory=lambda: {"enabled": False})
    config_watcher: Any = None
    stats: RequestStats = field(default_factory=RequestStats)


class DriftFeed:
    """Hands rows to the drift monitor once per event-loop turn instead of once per request.

    ``DriftMonitor.append`` makes a few NumPy calls under a lock; requests handled in the same
    loop turn share one call (their rows are stacked), which matters at thousands of requests/s.
    """

    def __init__(self, monitor: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._monitor = monitor
        self._loop = loop
        self._pending: list[np.ndarray] = []

    def add(self, rows: np.ndarray) -> None:
        """Queue a request's rows for the next flush (request path: a list append)."""
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(rows)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        rows = pending[0] if len(pending) == 1 else np.concatenate(pending)
        try:
            self._monitor.append(rows)
        except Exception:  # drift bookkeeping must never fail a request
            log.exception("drift append failed", extra={"rows": len(rows)})


# Generated ids: a random per-process prefix and a counter (unique, and cheaper than uuid4).
_ID_PREFIX = secrets.token_hex(6)
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """A request id unique across processes and restarts."""
    return f"{_ID_PREFIX}-{next(_id_counter):x}"


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return new_request_id()


def _check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != _JSON and not (media.startswith("application/") and media.endswith("+json")):
        shown = media or "none"
        raise RequestError(
            415, "unsupported_media_type", f"Content-Type must be application/json, got {shown}"
        )


async def read_body(request: Request, settings: RuntimeSettings) -> bytes:
    """The request body, refusing (413) more than MAX_BODY_BYTES before reading them all.

    Before the 413 the rest of the body is drained, like nginx's lingering close: uvicorn closes a
    ``Connection: close`` connection (urllib's) right after the answer, and unread bytes would make
    the kernel reset it, so the client would see a reset instead of the 413.
    """
    limit = settings.max_body_bytes
    budget = limit + settings.body_drain_bytes  # the most body bytes read before a 413
    too_large = RequestError(413, "body_too_large", f"the body exceeds {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "invalid_content_length", "Content-Length is not a number")
        if int(declared) > limit:
            # A client waiting for 100 Continue has sent nothing; reading would ask for it all.
            waiting = request.headers.get("expect", "").lower() == "100-continue"
            if int(declared) <= budget and not waiting:
                await _drain(request.stream(), budget, settings.body_drain_timeout_s)
            raise too_large
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await _drain(stream, budget - size, settings.body_drain_timeout_s)
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(stream: AsyncIterator[bytes], budget: int, timeout_s: float) -> None:
    """Read and discard ``stream`` until it ends, ``budget`` bytes were read or time is up."""
    if budget <= 0:
        return
    with contextlib.suppress(TimeoutError, ClientDisconnect):
        async with asyncio.timeout(timeout_s):
            async for chunk in stream:
                budget -= len(chunk)
                if budget <= 0:
                    return


async def read_predict_rows(request: Request, settings: RuntimeSettings, n_features: int) -> Any:
    """Content type, size and body checks shared by the runtime and the benchmark's floor app."""
    _check_content_type(request)
    body = await read_body(request, settings)
    return parse_predict_body(body, n_features, settings.max_batch_size)


def encode_prediction(
    request_id: str, settings: RuntimeSettings, classes: list[str], proba: np.ndarray
) -> bytes:
    """The /predict answer as JSON bytes."""
    rows = proba.tolist()
    return orjson.dumps(
        {
            "request_id": request_id,
            "model": settings.model_name,
            "model_version": settings.model_version,
            "classes": classes,
            # First maximum on ties, like argmax.
            "predictions": [classes[row.index(max(row))] for row in rows],
            "probabilities": rows,
        }
    )


def _log_request(
    state: RuntimeState,
    request_id: str,
    latency_s: float,
    status: int,
    rows: int,
    error: RequestError | None,
) -> None:
    mode = state.settings.access_log
    if mode == "off" or (mode == "errors" and error is None):
        return
    fields: dict[str, Any] = {
        "request_id": request_id,
        "latency_ms": round(latency_s * 1000, 3),
        "status": status,
        "rows": rows,
        "path": "/predict",
    }
    if error is not None:
        fields.update(reason=error.reason, field=error.field)
        # A client mistake is routine (INFO); not ready is the operator's concern (WARNING).
        level = {500: logging.ERROR, 503: logging.WARNING}.get(status, logging.INFO)
        access_log.log(level, "Request rejected", extra=fields)
    else:
        access_log.info("Request served", extra=fields)


async def _predict(request: Request) -> Response:
    """Validate, score through the micro-batcher, append to the drift window, answer."""
    start = time.perf_counter()
    state: RuntimeState = request.app.state.runtime
    request_id = _request_id(request)
    rows = 0
    try:
        if not state.ready or state.model is None or state.batcher is None:
            raise RequestError(
                503, "not_ready", f"the model is not ready: {state.not_ready_message}"
            )
        matrix = await read_predict_rows(request, state.settings, state.model.n_features)
        rows = len(matrix)
        future = state.batcher.predict(matrix)
        if state.drift_feed is not None:
            state.drift_feed.add(matrix)
        proba = await future
        response = Response(
            encode_prediction(request_id, state.settings, state.model.classes, proba),
            media_type=_JSON,
            headers={"x-request-id": request_id},
        )
        error = None
        metrics.PREDICTIONS.inc(rows)
    except RequestError as exc:
        error = exc
        response = error_response(exc, request_id)
    except Exception:
        log.exception("prediction failed", extra={"request_id": request_id})
        error = RequestError(500, "internal_error", "the model failed to score the request")
        response = error_response(error, request_id)
    latency = time.perf_counter() - start
    metrics.REQUEST_LATENCY.observe(latency)
    state.stats.add(latency, rows, error is not None)
    _log_request(state, request_id, latency, response.status_code, rows, error)
    return response


def _health_body(state: RuntimeState) -> dict[str, Any]:
    if state.ready and state.model is not None:
        return {"status": "ready", "model": state.settings.model_name, "sha256": state.model.sha256}
    return {
        "status": "not_ready",
        "reason": state.not_ready_reason,
        "message": state.not_ready_message,
        "model": state.settings.model_name,
    }


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=_JSON)


async def _healthz(request: Request) -> Response:
    return _json({"status": "ok"})


async def _readyz(request: Request) -> Response:
    state: RuntimeState = request.app.state.runtime
    return _json(_health_body(state), 200 if state.ready else 503)


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def _drift(request: Request) -> Response:
    state: RuntimeState = request.app.state.runtime
    if not state.ready:
        # Not "drift disabled": there is no model (yet), and the operator reports why.
        return _json({"enabled": False, "ready": False, **_health_body(state)}, 503)
    if state.drift is None:
        return _json(state.drift_status)
    return _json({"enabled": True, **state.drift.snapshot()})


def start_with_nice(start: Callable[[], None], nice: int) -> None:
    """Call ``start`` from a short-lived thread of niceness ``nice``.

    On Linux niceness is per thread and new threads inherit their creator's, so the threads that
    ``start`` spawns (the drift worker) run at ``nice`` while the event loop keeps its priority.
    When the CPU is saturated, requests then go first and drift checks fall behind (the monitor
    covers skipped check points with one check on the latest window).
    """
    error: list[BaseException] = []

    def run() -> None:
        try:
            if nice > 0:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            start()
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name="start-drift")
    thread.start()
    thread.join()
    if error:
        raise error[0]


def _build_drift(settings: RuntimeSettings, loaded: LoadedArtifacts) -> Any:
    """The drift monitor, or a {enabled: False, reason} status (blocking: the detectors precompute
    on the reference; run off the event loop)."""
    if not settings.drift_enabled:
        return {"enabled": False, "reason": "DRIFT_ENABLED is false"}
    reference = loaded.reference
    if reference is None:
        log.warning("drift detection is off: no reference sample configured")
        return {"enabled": False, "reason": "no reference sample configured"}
    try:
        from aiops_runtime.drift import DriftMonitor

        return DriftMonitor(
            reference,
            settings.initial_drift_config(),
            model_name=settings.model_name,
            feature_names=loaded.feature_names,
            calibration=loaded.calibration,
        )
    except Exception as exc:  # a drift failure must not take predictions down with it
        log.exception("drift detection is off: the monitor failed to start")
        return {"enabled": False, "reason": f"drift monitor failed: {exc}"}


def _start_drift(state: RuntimeState, monitor: Any) -> None:
    """Start the drift monitor (and its config watcher) built by `_build_drift`."""
    if isinstance(monitor, dict):
        state.drift_status = monitor
        return
    try:
        start_with_nice(monitor.start, state.settings.drift_worker_nice)
    except Exception as exc:
        state.drift_status = {"enabled": False, "reason": f"drift monitor failed: {exc}"}
        log.exception("drift detection is off: the monitor failed to start")
        return
    state.drift = monitor
    state.drift_feed = DriftFeed(monitor, asyncio.get_running_loop())
    if state.settings.drift_config_file is not None:
        _watch_drift_config(state, monitor, state.settings.drift_config_file)


def _watch_drift_config(state: RuntimeState, monitor: Any, path: Path) -> None:
    """Follow DRIFT_CONFIG_FILE; a watcher failure leaves drift running on the env settings."""
    try:
        from aiops_runtime.config_watch import watch_config_file

        state.config_watcher = watch_config_file(
            path, state.settings.drift_reload_interval_s, monitor.update_config
        )
    except Exception:
        log.exception("drift config file is not followed", extra={"path": str(path)})


def _become_ready(state: RuntimeState, loaded: LoadedArtifacts, drift: Any) -> None:
    model = loaded.model
    state.model = model
    probe = loaded.reference if loaded.reference is not None else default_probe(model.n_features)
    scoring = plan_scoring(model.estimator, probe, state.settings.fast_linear_scorer)
    state.batcher = MicroBatcher(
        scoring.score,
        max_rows=state.settings.batch_max_rows,
        max_wait_s=state.settings.batch_max_wait_ms / 1000,
        in_thread=state.settings.batch_score_in_thread,
        direct_below_s=state.settings.batch_direct_below_us / 1e6,
    )
    state.batcher.start()
    _start_drift(state, drift)
    metrics.MODEL_INFO.info(
        {
            "name": state.settings.model_name,
            "version": state.settings.model_version,
            "sha256": model.sha256,
            "format": model.model_format,
        }
    )
    metrics.MODEL_READY.set(1)
    # Everything loaded so far (libraries, model, reference) lives as long as the process: move it
    # out of the collector's sight so collections under load scan only per-request garbage.
    gc.collect()
    gc.freeze()
    state.ready = True
    log.info(
        "Model ready",
        extra={
            "sha256": model.sha256,
            "uri": model.uri,
            "format": model.model_format,
            "n_features": model.n_features,
            "classes": model.classes,
            "scorer": scoring.kind,
            "drift": state.drift is not None,
        },
    )


async def _load(state: RuntimeState) -> None:
    """Load the artifacts off the event loop; on failure stay not ready with one clear log line."""
    try:
        loaded = await asyncio.to_thread(load_artifacts, state.settings)
        drift = await asyncio.to_thread(_build_drift, state.settings, loaded)
    except ArtifactError as exc:
        state.not_ready_reason, state.not_ready_message = exc.reason, exc.message
        log.error("Model not loaded: %s", exc.message, extra={"reason": exc.reason})
        return
    except Exception as exc:
        state.not_ready_reason, state.not_ready_message = "load_failed", repr(exc)
        log.exception("Model not loaded: unexpected error", extra={"reason": "load_failed"})
        return
    _become_ready(state, loaded, drift)


async def _summarize(state: RuntimeState, interval_s: float) -> None:
    """Log one summary line per interval with the requests served in it."""
    while True:
        await asyncio.sleep(interval_s)
        stats, state.stats = state.stats, RequestStats()
        if stats.requests == 0:
            continue
        access_log.info(
            "Request summary",
            extra={
                "interval_s": interval_s,
                "requests": stats.requests,
                "rows": stats.rows,
                "errors": stats.errors,
                "latency_ms_mean": round(stats.latency_sum_s / stats.requests * 1000, 3),
                "latency_ms_max": round(stats.latency_max_s * 1000, 3),
            },
        )


async def _shutdown(state: RuntimeState, tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if state.config_watcher is not None:
        state.config_watcher.stop()
    if state.drift is not None:
        await asyncio.to_thread(state.drift.stop)
    if state.batcher is not None:
        await state.batcher.stop()
    metrics.MODEL_READY.set(0)
    state.ready = False


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        error = RequestError(404, "not_found", f"no route {request.url.path}")
    elif exc.status_code == 405:
        error = RequestError(
            405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}"
        )
    else:
        error = RequestError(exc.status_code, "http_error", str(exc.detail))
    response = error_response(error)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return error_response(RequestError(422, "invalid_request", str(first.get("msg", exc)), where))


async def _on_unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return error_response(RequestError(500, "internal_error", "internal error"))


def create_app(settings: RuntimeSettings | None = None) -> FastAPI:
    """Build the runtime's ASGI app; artifacts load when the app's lifespan starts."""
    settings = settings or RuntimeSettings()
    state = RuntimeState(settings=settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.MODEL_READY.set(0)
        if settings.blas_threads > 0:
            # OpenBLAS threads busy-wait: on a pod's one or two cores they would steal the
            # event loop's CPU during drift checks and large batches.
            threadpool_limits(limits=settings.blas_threads, user_api="blas")
        tasks = [asyncio.create_task(_load(state), name="load-artifacts")]
        if settings.log_summary_interval_s > 0:
            tasks.append(asyncio.create_task(_summarize(state, settings.log_summary_interval_s)))
        try:
            yield
        finally:
            await _shutdown(state, tasks)

    app = FastAPI(
        title="ModelService runtime",
        summary="Scores breast-cancer feature vectors with a verified scikit-learn model.",
        version="0.1.0",
        lifespan=lifespan,
        # Off unless API_DOCS: they would describe the API to anyone who can reach the pod.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    app.state.runtime = state
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected_error)

    request_schema = PredictRequest.model_json_schema()
    request_body = {"required": True, "content": {_JSON: {"schema": request_schema}}}
    app.add_api_route(
        "/predict",
        _predict,
        methods=["POST"],
        summary="Score one row (`features`) or a batch (`instances`)",
        response_model=PredictResponse,
        responses=_ERROR_RESPONSES,
        openapi_extra={"requestBody": request_body},
        tags=["inference"],
    )
    for path, endpoint, summary in (
        ("/healthz", _healthz, "Liveness"),
        ("/v2/health/live", _healthz, "Liveness (V2 protocol path)"),
        ("/readyz", _readyz, "Readiness: model loaded, digests verified"),
        ("/v2/health/ready", _readyz, "Readiness (V2 protocol path)"),
    ):
        app.add_api_route(
            path,
            endpoint,
            methods=["GET"],
            summary=summary,
            response_model=HealthResponse,
            responses={503: {"model": HealthResponse, "description": "Not ready."}},
            tags=["health"],
        )
    app.add_api_route(
        "/metrics",
        _metrics,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        tags=["observability"],
    )
    app.add_api_route(
        "/drift", _drift, methods=["GET"], summary="Drift detector state", tags=["observability"]
    )
    return app
