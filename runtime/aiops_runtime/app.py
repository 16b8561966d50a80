"""The runtime's ASGI app: its state, its lifespan, its error handlers and its route table.

The handlers are in endpoints.py, the HTTP details in http_io.py, the inference path shared by
every protocol in dataplane.py, loading and shutdown in lifecycle.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from aiops_runtime import endpoints, http_io, lifecycle
from aiops_runtime.api_docs import add_api_docs
from aiops_runtime.dataplane import DataPlane
from aiops_runtime.schemas import (
    ErrorResponse,
    HealthResponse,
    OipError,
    OipInferRequest,
    OipInferResponse,
    OipModelMetadata,
    OipModelReady,
    OipServerMetadata,
    PredictRequest,
    PredictResponse,
)
from aiops_runtime.settings import RuntimeSettings
from aiops_runtime.state import RuntimeState

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


_OIP_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OipError, "description": text}
    for code, text in (
        (400, "Not a valid infer request (the field is named in `error`)."),
        (404, "No such model (or version) here."),
        (413, "Body larger than MAX_BODY_BYTES."),
        (415, "A Content-Type other than application/json."),
        (503, "The model is not loaded yet (or failed to load)."),
    )
}


def _add_oip_routes(app: FastAPI) -> None:
    """The Open Inference Protocol's REST routes (docs/oip.md)."""
    app.add_api_route(
        "/v2",
        endpoints.server_metadata,
        methods=["GET"],
        summary="Server metadata (Open Inference Protocol)",
        response_model=OipServerMetadata,
        tags=["open inference protocol"],
    )
    infer_body = {
        "required": True,
        "content": {http_io.JSON: {"schema": OipInferRequest.model_json_schema()}},
    }
    for prefix, version in (("", False), ("/versions/{model_version}", True)):
        base = "/v2/models/{model_name}" + prefix
        of_version = " of one version" if version else ""
        app.add_api_route(
            base,
            endpoints.model_version_metadata if version else endpoints.model_metadata,
            methods=["GET"],
            summary=f"Model metadata{of_version}: input and outputs",
            response_model=OipModelMetadata,
            responses={404: _OIP_ERRORS[404], 503: _OIP_ERRORS[503]},
            tags=["open inference protocol"],
        )
        app.add_api_route(
            base + "/ready",
            endpoints.model_version_ready if version else endpoints.model_ready,
            methods=["GET"],
            summary=f"Model readiness{of_version} (200 ready, 503 not yet)",
            response_model=OipModelReady,
            responses={404: _OIP_ERRORS[404], 503: {"model": OipModelReady}},
            tags=["open inference protocol"],
        )
        app.add_api_route(
            base + "/infer",
            endpoints.version_infer if version else endpoints.infer,
            methods=["POST"],
            summary=f"Score rows{of_version} (the same data plane as /predict)",
            response_model=OipInferResponse,
            responses=_OIP_ERRORS,
            openapi_extra={"requestBody": infer_body},
            tags=["open inference protocol"],
        )


def create_app(settings: RuntimeSettings | None = None) -> FastAPI:
    """Build the runtime's ASGI app; artifacts load when the app's lifespan starts."""
    settings = settings or RuntimeSettings()
    state = RuntimeState(settings=settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with lifecycle.running(state):
            yield

    app = FastAPI(
        title="ModelService runtime",
        summary="Scores breast-cancer feature vectors with a verified scikit-learn model.",
        version="0.1.0",
        lifespan=lifespan,
        # Off unless API_DOCS: they would describe the API to anyone who can reach the pod.
        # /docs and /redoc are api_docs.py's, with assets of their own (no CDN).
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    if settings.api_docs:
        add_api_docs(app, "/openapi.json")
    app.state.runtime = state
    app.state.dataplane = DataPlane(state)
    app.add_exception_handler(StarletteHTTPException, http_io.on_http_error)
    app.add_exception_handler(RequestValidationError, http_io.on_validation_error)
    app.add_exception_handler(Exception, http_io.on_unexpected_error)

    request_schema = PredictRequest.model_json_schema()
    request_body = {"required": True, "content": {http_io.JSON: {"schema": request_schema}}}
    app.add_api_route(
        "/predict",
        endpoints.predict,
        methods=["POST"],
        summary="Score one row (`features`) or a batch (`instances`)",
        response_model=PredictResponse,
        responses=_ERROR_RESPONSES,
        openapi_extra={"requestBody": request_body},
        tags=["inference"],
    )
    for path, endpoint, summary in (
        ("/healthz", endpoints.healthz, "Liveness"),
        ("/v2/health/live", endpoints.v2_live, "Liveness (V2 protocol path)"),
        ("/readyz", endpoints.readyz, "Readiness: model loaded, digests verified"),
        ("/v2/health/ready", endpoints.v2_ready, "Readiness (V2 protocol path)"),
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
    _add_oip_routes(app)
    app.add_api_route(
        "/metrics",
        endpoints.metrics,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        tags=["observability"],
    )
    app.add_api_route(
        "/drift",
        endpoints.drift,
        methods=["GET"],
        summary="Drift detector state",
        tags=["observability"],
    )
    return app
