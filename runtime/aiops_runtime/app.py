"""The runtime's ASGI app: its state, its lifespan, its error handlers and its route table.

The handlers are in endpoints.py, the HTTP details in http_io.py, the inference path shared by
every protocol in dataplane.py, loading and shutdown in lifecycle.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
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


def _documented(model: type[Any], *answers: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses``: each status with its body's model and what it means."""
    return {code: {"model": model, "description": text} for code, text in answers}


_BODY_TOO_LARGE = (413, "Body larger than MAX_BODY_BYTES.")
_NOT_LOADED = (503, "The model is not loaded yet (or failed to load).")
_ERROR_RESPONSES = _documented(
    ErrorResponse,
    (400, "Invalid JSON."),
    _BODY_TOO_LARGE,
    (415, "Content-Type is not application/json."),
    (422, "Valid JSON that is not a valid request (field named in the error)."),
    _NOT_LOADED,
)
_OIP_ERRORS = _documented(
    OipError,
    (400, "Not a valid infer request (the field is named in `error`)."),
    (404, "No such model (or version) here."),
    _BODY_TOO_LARGE,
    (415, "A Content-Type other than application/json."),
    _NOT_LOADED,
)


@dataclass(frozen=True)
class _ModelRoute:
    """A route of ``/v2/models/{model_name}``, also under ``.../versions/{model_version}``."""

    suffix: str
    method: str
    handler: endpoints.Handler  # serves both paths
    summary: str
    response_model: type[BaseModel]
    responses: dict[int | str, dict[str, Any]]
    openapi_extra: dict[str, Any] | None = None


def _path_parameters(path: str) -> list[dict[str, Any]]:
    """The OpenAPI path parameters of a model route (its handler reads them off the request)."""
    names = [name for name in ("model_name", "model_version") if f"{{{name}}}" in path]
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "title": name.replace("_", " ").title()},
        }
        for name in names
    ]


def _add_oip_routes(app: FastAPI) -> None:
    """The Open Inference Protocol's REST routes (docs/oip.md), infer first: the router tries
    routes in order, and infer is the one taken at thousands of requests per second."""
    tags: list[str | Enum] = ["open inference protocol"]
    infer_body = {
        "required": True,
        "content": {http_io.JSON: {"schema": OipInferRequest.model_json_schema()}},
    }
    routes = (
        _ModelRoute(
            "/infer",
            "POST",
            endpoints.infer,
            "Score rows{} (the same data plane as /predict)",
            OipInferResponse,
            _OIP_ERRORS,
            {"requestBody": infer_body},
        ),
        _ModelRoute(
            "",
            "GET",
            endpoints.model_metadata,
            "Model metadata{}: input and outputs",
            OipModelMetadata,
            {404: _OIP_ERRORS[404], 503: _OIP_ERRORS[503]},
        ),
        _ModelRoute(
            "/ready",
            "GET",
            endpoints.model_ready,
            "Model readiness{} (200 ready, 503 not yet)",
            OipModelReady,
            {404: _OIP_ERRORS[404], 503: {"model": OipModelReady}},
        ),
    )
    bases = ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}")
    for route in routes:
        for base, of_version in zip(bases, ("", " of one version"), strict=True):
            path = base + route.suffix
            app.add_api_route(
                path,
                route.handler,
                methods=[route.method],
                summary=route.summary.format(of_version),
                response_model=route.response_model,
                responses=route.responses,
                openapi_extra={**(route.openapi_extra or {}), "parameters": _path_parameters(path)},
                tags=tags,
            )
    app.add_api_route(
        "/v2",
        endpoints.server_metadata,
        methods=["GET"],
        summary="Server metadata (Open Inference Protocol)",
        response_model=OipServerMetadata,
        tags=tags,
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
    _add_oip_routes(app)
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
