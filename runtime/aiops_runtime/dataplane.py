"""The one data plane behind every inference route (/predict and the Open Inference Protocol's
infer): readiness, scoring through the micro-batcher, the drift feed, the counters and the access
log. The routes only decode their protocol's body into rows and encode the probabilities."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.responses import Response

from aiops_runtime import metrics
from aiops_runtime.errors import RequestError
from aiops_runtime.model_store import LoadedModel
from aiops_runtime.state import RuntimeState

log = logging.getLogger("aiops_runtime.dataplane")
access_log = logging.getLogger("aiops_runtime.access")


@dataclass
class Call:
    """One inference request as the data plane accounts for it."""

    path: str
    request_id: str
    rows: int = 0


# What a route does: take the ready model, decode the body, `DataPlane.infer` the rows, encode.
Work = Callable[[Call], Awaitable[Response]]
# How a route's protocol renders an error (the runtime's shape, or the protocol's).
RenderError = Callable[[RequestError, str], Response]


class DataPlane:
    """Scores validated rows and accounts for every inference request, whatever its protocol."""

    def __init__(self, state: RuntimeState) -> None:
        self.state = state

    def ready_model(self) -> LoadedModel:
        """The loaded model, or a 503 while there is none."""
        state = self.state
        if not state.ready or state.model is None or state.batcher is None:
            raise RequestError(
                503, "not_ready", f"the model is not ready: {state.not_ready_message}"
            )
        return state.model

    async def infer(self, call: Call, rows: np.ndarray) -> np.ndarray:
        """Class probabilities of validated ``rows``; the rows also go to the drift window."""
        batcher = self.state.batcher
        if batcher is None:
            raise RequestError(503, "not_ready", "the model is not ready")
        call.rows = len(rows)
        proba = await batcher.predict(rows)
        if self.state.drift_feed is not None:
            self.state.drift_feed.add(rows, proba)
        metrics.PREDICTIONS.inc(len(rows))
        return proba

    async def serve(self, call: Call, work: Work, render_error: RenderError) -> Response:
        """Run ``work``; answer its response or the error, and account for it (latency
        histogram, summary counters, access log)."""
        start = time.perf_counter()
        error: RequestError | None = None
        try:
            response = await work(call)
        except RequestError as exc:
            error = exc
            response = render_error(exc, call.request_id)
        except Exception:
            log.exception("prediction failed", extra={"request_id": call.request_id})
            error = RequestError(500, "internal_error", "the model failed to score the request")
            response = render_error(error, call.request_id)
        latency = time.perf_counter() - start
        metrics.REQUEST_LATENCY.observe(latency)
        self.state.stats.add(latency, call.rows, error is not None)
        self._log(call, latency, response.status_code, error)
        return response

    def _log(self, call: Call, latency_s: float, status: int, error: RequestError | None) -> None:
        mode = self.state.settings.access_log
        if mode == "off" or (mode == "errors" and error is None):
            return
        fields: dict[str, Any] = {
            "request_id": call.request_id,
            "latency_ms": round(latency_s * 1000, 3),
            "status": status,
            "rows": call.rows,
            "path": call.path,
        }
        if error is not None:
            fields.update(reason=error.reason, field=error.field)
            # A client mistake is routine (INFO); not ready is the operator's concern (WARNING).
            level = {500: logging.ERROR, 503: logging.WARNING}.get(status, logging.INFO)
            access_log.log(level, "Request rejected", extra=fields)
        else:
            access_log.info("Request served", extra=fields)
