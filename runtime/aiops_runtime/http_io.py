"""HTTP details of the runtime: request ids, the content type, the body limit, JSON answers, the
/predict encoding and the handlers that turn framework errors into the one error shape."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from aiops_runtime.errors import RequestError, error_response
from aiops_runtime.schemas import parse_predict_body
from aiops_runtime.settings import RuntimeSettings

log = logging.getLogger("aiops_runtime.http")

JSON = "application/json"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# Generated ids: a random per-process prefix and a counter (unique, and cheaper than uuid4).
_ID_PREFIX = secrets.token_hex(6)
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """A request id unique across processes and restarts."""
    return f"{_ID_PREFIX}-{next(_id_counter):x}"


def request_id_of(request: Request) -> str:
    """The client's X-Request-ID when it is a usable one, else a new id."""
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return new_request_id()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` as a JSON answer."""
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def check_content_type(request: Request, *, required: bool = True) -> None:
    """Refuse (415) a body that is not declared JSON (``application/json`` or ``*/*+json``);
    with ``required=False`` a body without Content-Type is taken as JSON."""
    content_type = request.headers.get("content-type", "")
    if not content_type and not required:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
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


async def read_json_body(request: Request, settings: RuntimeSettings) -> bytes:
    """Content type and size checks, then the body (still to be parsed)."""
    check_content_type(request)
    return await read_body(request, settings)


async def read_predict_rows(
    request: Request, settings: RuntimeSettings, n_features: int
) -> np.ndarray:
    """Content type, size and body checks shared by the runtime and the benchmark's floor app."""
    body = await read_json_body(request, settings)
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


async def on_http_error(request: Request, exc: Exception) -> Response:
    """404, 405 and other framework HTTP errors in the runtime's error shape."""
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


async def on_validation_error(request: Request, exc: Exception) -> Response:
    """A request FastAPI itself refused (path or query parameters), as a 422 naming the field."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return error_response(RequestError(422, "invalid_request", str(first.get("msg", exc)), where))


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    """Anything else: logged with its traceback, answered 500 without details."""
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return error_response(RequestError(500, "internal_error", "internal error"))
