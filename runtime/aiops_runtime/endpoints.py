"""The route handlers: each reads the state the app hands in (``request.app.state``), decodes its
protocol and delegates inference to the data plane."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.responses import Response

from aiops_runtime.dataplane import Call, DataPlane
from aiops_runtime.errors import error_response
from aiops_runtime.http_io import (
    JSON,
    encode_prediction,
    json_response,
    read_predict_rows,
    request_id_of,
)
from aiops_runtime.model_store import LoadedModel
from aiops_runtime.state import RuntimeState


def _state(request: Request) -> RuntimeState:
    state: RuntimeState = request.app.state.runtime
    return state


def _dataplane(request: Request) -> DataPlane:
    dataplane: DataPlane = request.app.state.dataplane
    return dataplane


async def predict(request: Request) -> Response:
    """Validate, score through the micro-batcher, append to the drift window, answer."""
    plane = _dataplane(request)
    settings = plane.state.settings

    async def work(call: Call, model: LoadedModel) -> Response:
        rows = await read_predict_rows(request, settings, model.n_features)
        proba = await plane.infer(call, rows)
        return Response(
            encode_prediction(call.request_id, settings, model.classes, proba),
            media_type=JSON,
            headers={"x-request-id": call.request_id},
        )

    return await plane.serve(Call("/predict", request_id_of(request)), work, error_response)


def _health_body(state: RuntimeState) -> dict[str, Any]:
    if state.ready and state.model is not None:
        return {"status": "ready", "model": state.settings.model_name, "sha256": state.model.sha256}
    return {
        "status": "not_ready",
        "reason": state.not_ready_reason,
        "message": state.not_ready_message,
        "model": state.settings.model_name,
    }


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: 200 once the model is loaded and its digests verified, else 503 with why."""
    state = _state(request)
    return json_response(_health_body(state), 200 if state.ready else 503)


async def metrics(request: Request) -> Response:
    """The Prometheus exposition of the default registry."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def drift(request: Request) -> Response:
    """The drift monitor's state (503 while there is no model)."""
    state = _state(request)
    if not state.ready:
        # Not "drift disabled": there is no model (yet), and the operator reports why.
        return json_response({"enabled": False, "ready": False, **_health_body(state)}, 503)
    if state.drift is None:
        return json_response(state.drift_status)
    return json_response({"enabled": True, **state.drift.snapshot()})
