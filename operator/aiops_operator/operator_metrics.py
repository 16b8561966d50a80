"""The operator's own Prometheus metrics, served on /metrics (port: settings.metrics_port).

Reconciles and their errors, drift reads, drift events seen and retrain triggers. Names carry the
`aiops_operator_` prefix so they never collide with the runtime's `model_*` metrics.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar
from wsgiref.simple_server import WSGIServer

import kopf
from prometheus_client import REGISTRY, Counter, Gauge, start_http_server
from prometheus_client.registry import CollectorRegistry

P = ParamSpec("P")
R = TypeVar("R")

RECONCILES = Counter(
    "aiops_operator_reconciles_total", "Runs of a reconciling handler.", ["handler"]
)
RECONCILE_ERRORS = Counter(
    "aiops_operator_reconcile_errors_total",
    "Reconciling handler runs that raised: temporary (retried), permanent or unexpected.",
    ["handler", "error"],
)
DRIFT_READS = Counter(
    "aiops_operator_drift_reads_total",
    "GET /drift reads of runtimes by result: ok, unreachable, http or invalid.",
    ["result"],
)
DRIFT_EVENTS = Counter(
    "aiops_operator_drift_events_total",
    "New drift events the operator has seen, per ModelService and its drift action.",
    ["namespace", "modelservice", "action"],
)
RETRAIN_TRIGGERS = Counter(
    "aiops_operator_retrain_triggers_total",
    "Retrain pipeline triggers per ModelService by result: sent or failed.",
    ["namespace", "modelservice", "result"],
)
RETRAIN_SKIPPED = Counter(
    "aiops_operator_retrain_skipped_total",
    "Drift events that did not trigger a retrain because the cooldown had not passed.",
    ["namespace", "modelservice"],
)


LEADER = Gauge(
    "aiops_operator_leader",
    "1 while this replica is the active operator (it holds the leader Lease, or runs without "
    "leader election), 0 while it stands by.",
)


# The per-ModelService metrics and their label names, in order.
PER_MODELSERVICE: tuple[tuple[Counter, tuple[str, ...]], ...] = (
    (DRIFT_EVENTS, ("namespace", "modelservice", "action")),
    (RETRAIN_TRIGGERS, ("namespace", "modelservice", "result")),
    (RETRAIN_SKIPPED, ("namespace", "modelservice")),
)


def forget(namespace: str, modelservice: str) -> int:
    """Remove every series of one ModelService (it was deleted); returns how many went.

    Without this, each ModelService ever created keeps its series until the operator restarts:
    a tenant creating and deleting ModelServices would grow the operator's memory and every
    scrape."""
    removed = 0
    for metric, names in PER_MODELSERVICE:
        seen = {
            tuple(sample.labels[n] for n in names)
            for family in metric.collect()
            for sample in family.samples
            if sample.labels.get("namespace") == namespace
            and sample.labels.get("modelservice") == modelservice
        }
        for values in seen:
            metric.remove(*values)
            removed += 1
    return removed


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, kopf.TemporaryError):
        return "temporary"
    if isinstance(exc, kopf.PermanentError):
        return "permanent"
    return "unexpected"


def counted(handler: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Count runs and errors of an async Kopf handler; keeps its name (Kopf ids derive from it)."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            RECONCILES.labels(handler=handler).inc()
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                RECONCILE_ERRORS.labels(handler=handler, error=_error_kind(exc)).inc()
                raise

        return wrapper

    return decorate


def serve(
    port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY
) -> WSGIServer | None:
    """Serve /metrics on `port` in a daemon thread; port 0 serves nothing. Returns the server."""
    if port == 0:
        return None
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


def stop(server: Any) -> None:
    """Stop a server returned by `serve`."""
    if server is not None:
        server.shutdown()
        server.server_close()
