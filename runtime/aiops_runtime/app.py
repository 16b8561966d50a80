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
from aiops_runtime.dataplane import DataPlane
from aiops_runtime.schemas import ErrorResponse, HealthResponse, PredictRequest, PredictResponse
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
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
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
        ("/v2/health/live", endpoints.healthz, "Liveness (V2 protocol path)"),
        ("/readyz", endpoints.readyz, "Readiness: model loaded, digests verified"),
        ("/v2/health/ready", endpoints.readyz, "Readiness (V2 protocol path)"),
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
