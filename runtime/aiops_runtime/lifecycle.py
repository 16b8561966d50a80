"""The runtime's life: load the artifacts off the event loop, start the batcher and the drift
monitor, turn ready, log the request summary, shut down in order.

Startup loads the artifacts in a worker thread while /healthz and /readyz already answer; /readyz
turns 200 only once the digests are verified and the model is loaded. A failed load (digest
mismatch, unreachable URI, untrusted type) logs one line and leaves the runtime not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from aiops_runtime import metrics
from aiops_runtime.batcher import MicroBatcher
from aiops_runtime.model_store import ArtifactError, LoadedArtifacts, load_artifacts
from aiops_runtime.scoring import default_probe, plan_scoring
from aiops_runtime.settings import RuntimeSettings
from aiops_runtime.state import DriftFeed, RequestStats, RuntimeState

if TYPE_CHECKING:
    from aiops_runtime.drift import DriftMonitor

log = logging.getLogger("aiops_runtime.lifecycle")
access_log = logging.getLogger("aiops_runtime.access")


@contextlib.asynccontextmanager
async def running(state: RuntimeState) -> AsyncIterator[None]:
    """The app's lifespan: start loading and the summary line; on exit, shut down."""
    settings = state.settings
    metrics.MODEL_READY.set(0)
    if settings.blas_threads > 0:
        # OpenBLAS threads busy-wait: on a pod's one or two cores they would steal the
        # event loop's CPU during drift checks and large batches.
        threadpool_limits(limits=settings.blas_threads, user_api="blas")
    tasks = [asyncio.create_task(load(state), name="load-artifacts")]
    if settings.log_summary_interval_s > 0:
        tasks.append(asyncio.create_task(summarize(state, settings.log_summary_interval_s)))
    try:
        yield
    finally:
        await shutdown(state, tasks)


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


def build_drift(
    settings: RuntimeSettings, loaded: LoadedArtifacts
) -> DriftMonitor | dict[str, Any]:
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
            predict=loaded.model.estimator.predict_proba,
        )
    except Exception as exc:  # a drift failure must not take predictions down with it
        log.exception("drift detection is off: the monitor failed to start")
        return {"enabled": False, "reason": f"drift monitor failed: {exc}"}


def start_drift(state: RuntimeState, monitor: DriftMonitor | dict[str, Any]) -> None:
    """Start the drift monitor (and its config watcher) built by `build_drift`."""
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


def _watch_drift_config(state: RuntimeState, monitor: DriftMonitor, path: Path) -> None:
    """Follow DRIFT_CONFIG_FILE; a watcher failure leaves drift running on the env settings."""
    try:
        from aiops_runtime.config_watch import watch_config_file

        state.config_watcher = watch_config_file(
            path, state.settings.drift_reload_interval_s, monitor.update_config
        )
    except Exception:
        log.exception("drift config file is not followed", extra={"path": str(path)})


def become_ready(
    state: RuntimeState, loaded: LoadedArtifacts, drift: DriftMonitor | dict[str, Any]
) -> None:
    """Start the batcher and the drift monitor on the loaded model, then turn ready."""
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
    start_drift(state, drift)
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


async def load(state: RuntimeState) -> None:
    """Load the artifacts off the event loop; on failure stay not ready with one clear log line."""
    try:
        loaded = await asyncio.to_thread(load_artifacts, state.settings)
        drift = await asyncio.to_thread(build_drift, state.settings, loaded)
    except ArtifactError as exc:
        state.not_ready_reason, state.not_ready_message = exc.reason, exc.message
        log.error("Model not loaded: %s", exc.message, extra={"reason": exc.reason})
        return
    except Exception as exc:
        state.not_ready_reason, state.not_ready_message = "load_failed", repr(exc)
        log.exception("Model not loaded: unexpected error", extra={"reason": "load_failed"})
        return
    become_ready(state, loaded, drift)


async def summarize(state: RuntimeState, interval_s: float) -> None:
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


async def shutdown(state: RuntimeState, tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the lifespan's tasks, then stop the watcher, the drift worker and the batcher."""
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
