"""The route handlers: each reads the state the app hands in (``request.app.state``), decodes its
protocol (/predict, or the Open Inference Protocol through oip.py) and delegates inference to the
data plane."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.responses import Response

from aiops_runtime import oip
from aiops_runtime.dataplane import Call, DataPlane
from aiops_runtime.errors import RequestError, error_response
from aiops_runtime.http_io import (
    JSON,
    check_content_type,
    encode_prediction,
    json_response,
    read_body,
    read_predict_rows,
    request_id_of,
)
from aiops_runtime.metrics import REQUEST_ERRORS
from aiops_runtime.state import RuntimeState

Handler = Callable[..., Awaitable[Response]]


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

    async def work(call: Call) -> Response:
        model = plane.ready_model()
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


async def v2_live(request: Request) -> Response:
    """Liveness on the V2 path, with the protocol's ``live`` key."""
    return json_response({"status": "ok", "live": True})


async def v2_ready(request: Request) -> Response:
    """Readiness on the V2 path, with the protocol's ``ready`` key."""
    state = _state(request)
    return json_response({**_health_body(state), "ready": state.ready}, 200 if state.ready else 503)


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


# --- the Open Inference Protocol (oip.py holds the mapping) ---------------------------------------


def oip_error_response(error: RequestError, request_id: str | None = None) -> Response:
    """An error in the protocol's shape, ``{"error": "..."}``, counted by reason."""
    REQUEST_ERRORS.labels(error.reason).inc()
    headers = {"x-request-id": request_id} if request_id else None
    return json_response(oip.error_body(error), oip.error_status(error), headers)


async def server_metadata(request: Request) -> Response:
    """``GET /v2``."""
    return json_response(oip.server_metadata(request.app.version))


async def _model_metadata(request: Request, model_name: str, version: str | None) -> Response:
    """Model metadata: versions, the input and the outputs (503 until the model is loaded)."""
    plane = _dataplane(request)
    settings = plane.state.settings
    try:
        oip.check_model(model_name, version, settings.model_name, settings.model_version)
        model = plane.ready_model()
    except RequestError as exc:
        return oip_error_response(exc)
    return json_response(
        oip.model_metadata(
            settings.model_name, settings.model_version, model.n_features, len(model.classes)
        )
    )


async def _model_ready(request: Request, model_name: str, version: str | None) -> Response:
    """Model readiness: 200 when it can be scored, else 503."""
    state = _state(request)
    try:
        oip.check_model(
            model_name, version, state.settings.model_name, state.settings.model_version
        )
    except RequestError as exc:
        return oip_error_response(exc)
    return json_response({"name": model_name, "ready": state.ready}, 200 if state.ready else 503)


async def _infer(request: Request, model_name: str, version: str | None) -> Response:
    """Score the request's rows through the same data plane as /predict."""
    plane = _dataplane(request)
    settings = plane.state.settings

    async def work(call: Call) -> Response:
        oip.check_model(model_name, version, settings.model_name, settings.model_version)
        model = plane.ready_model()
        if "inference-header-content-length" in request.headers:
            raise RequestError(
                400,
                "binary_data_unsupported",
                "the binary tensor extension is not supported; send JSON `data`",
                "Inference-Header-Content-Length",
            )
        # Triton's client sends no Content-Type; a declared one must still be JSON.
        check_content_type(request, required=False)
        body = await read_body(request, settings)
        decoded = oip.parse_infer_request(body, model.n_features, settings.max_batch_size)
        proba = await plane.infer(call, decoded.rows)
        answer = oip.encode_infer_response(
            settings.model_name,
            settings.model_version,
            decoded.id if decoded.id is not None else call.request_id,
            proba,
            decoded.outputs,
        )
        return json_response(answer, headers={"x-request-id": call.request_id})

    call = Call("/v2/models/{model_name}/infer", request_id_of(request))
    return await plane.serve(call, work, oip_error_response)


ModelOperation = Callable[[Request, str, str | None], Awaitable[Response]]


def _on_model_paths(operation: ModelOperation) -> Handler:
    """The one handler of ``/v2/models/{model_name}/...`` and of its
    ``/versions/{model_version}/`` twin. It reads the path parameters off the request, not off
    its signature: FastAPI would validate them per request (about a fifth of an infer's time in
    the framework) for strings the router has already matched; app.py documents them."""

    async def handler(request: Request) -> Response:
        params = request.path_params
        return await operation(request, params["model_name"], params.get("model_version"))

    handler.__doc__ = operation.__doc__
    handler.__name__ = operation.__name__.lstrip("_")  # FastAPI's operationId starts with it
    return handler


model_metadata = _on_model_paths(_model_metadata)
model_ready = _on_model_paths(_model_ready)
infer = _on_model_paths(_infer)
