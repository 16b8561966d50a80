"""The one error shape every client mistake and server failure is answered with.

``{"error": {"reason": "<stable_code>", "message": "<what to fix>", "field": "<where>"|null},
"request_id": "..."}``. Each answer increments ``model_request_errors_total{reason}``.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

from aiops_runtime.metrics import REQUEST_ERRORS


class RequestError(Exception):
    """A request answered with an error status; ``reason`` is a stable snake_case code."""

    def __init__(self, status: int, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.field = field


def error_response(error: RequestError, request_id: str | None = None) -> Response:
    """Render an RequestError as the JSON error body and count it by reason."""
    REQUEST_ERRORS.labels(error.reason).inc()
    body: dict[str, object] = {
        "error": {"reason": error.reason, "message": error.message, "field": error.field}
    }
    headers = None
    if request_id is not None:
        body["request_id"] = request_id
        headers = {"x-request-id": request_id}
    return Response(
        orjson.dumps(body), status_code=error.status, media_type="application/json", headers=headers
    )
