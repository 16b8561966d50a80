"""Request and response bodies: the OpenAPI description and the fast validator of /predict.

The request path does not build pydantic objects (that costs more than scoring a batch); it parses
with orjson and checks every value by hand. The pydantic models below describe the same contract
for the OpenAPI document, and the tests hold the two together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from aiops_runtime.errors import RequestError

_NUMBER_TYPES = frozenset((int, float))
_JSON_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    type(None): "null",
    dict: "an object",
    list: "an array",
}


class PredictRequest(BaseModel):
    """One row (``features``) or a batch of rows (``instances``); exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    features: list[float] | None = Field(
        None, description="One row: as many finite numbers as the model has features (30)."
    )
    instances: list[list[float]] | None = Field(
        None, description="A batch of rows, each like `features` (1 to MAX_BATCH_SIZE rows)."
    )


class PredictResponse(BaseModel):
    """Predictions in the order of the request's rows."""

    request_id: str = Field(description="Echoes X-Request-ID when given, else generated.")
    model: str = Field(description="MODEL_NAME of the runtime.")
    model_version: str = Field(description="MODEL_VERSION of the runtime (may be empty).")
    classes: list[str] = Field(description="Class labels, in the order of `probabilities` columns.")
    predictions: list[str] = Field(description="Most probable class of each row.")
    probabilities: list[list[float]] = Field(description="Class probabilities of each row.")


class ErrorDetail(BaseModel):
    """What went wrong, for a person and for a program."""

    reason: str = Field(description="Stable snake_case code, also the metric's reason label.")
    message: str = Field(description="What is wrong and how to fix it.")
    field: str | None = Field(None, description="Where in the body, e.g. `instances[2][7]`.")


class ErrorResponse(BaseModel):
    """Body of every 4xx and 5xx answer."""

    error: ErrorDetail
    request_id: str | None = None


class HealthResponse(BaseModel):
    """Liveness and readiness answers."""

    status: str
    reason: str | None = None
    message: str | None = None
    model: str | None = None
    sha256: str | None = None
    live: bool | None = Field(None, description="V2 liveness path only: always true.")
    ready: bool | None = Field(None, description="V2 readiness path only.")


def _check_row(row: Any, n_features: int, field: str) -> None:
    if type(row) is not list:
        raise RequestError(422, "wrong_type", f"{field} must be an array of numbers", field)
    if len(row) != n_features:
        raise RequestError(
            422, "wrong_length", f"{field} has {len(row)} values, expected {n_features}", field
        )
    if not set(map(type, row)) <= _NUMBER_TYPES:
        for j, value in enumerate(row):
            if type(value) not in _NUMBER_TYPES:
                where = f"{field}[{j}]"
                raise RequestError(
                    422, "wrong_type", f"{where} must be a number, got {type_name(value)}", where
                )


def _first_non_finite(matrix: np.ndarray, single: bool) -> str:
    i, j = (int(k) for k in np.argwhere(~np.isfinite(matrix))[0])
    return f"features[{j}]" if single else f"instances[{i}][{j}]"


def load_json(body: bytes) -> Any:
    """The parsed JSON body; 400 when it is not JSON, 422 for a number beyond float64."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "infinity" in str(exc):
            raise RequestError(
                422, "non_finite", f"a number is out of float64 range: {exc}"
            ) from None
        raise RequestError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


def type_name(value: Any) -> str:
    """How a JSON value's type is named in error messages ("a string", "null", ...)."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def parse_predict_body(body: bytes, n_features: int, max_rows: int) -> np.ndarray:
    """Parse and validate a /predict body into a float64 matrix of shape (rows, n_features).

    Raises RequestError naming the offending field for every way the body can be wrong.
    """
    doc = load_json(body)
    if type(doc) is not dict:
        raise RequestError(
            422, "invalid_body", "the body must be a JSON object with `features` or `instances`"
        )
    has_features = "features" in doc
    has_instances = "instances" in doc
    for key in doc:
        if key not in ("features", "instances"):
            raise RequestError(
                422, "unknown_field", f"unknown field {key!r}; use `features` or `instances`", key
            )
    if has_features == has_instances:
        raise RequestError(
            422,
            "missing_field" if not has_features else "ambiguous_body",
            "give exactly one of `features` (one row) or `instances` (a batch)",
        )
    if has_features:
        rows = [doc["features"]]
        _check_row(rows[0], n_features, "features")
    else:
        rows = doc["instances"]
        if type(rows) is not list:
            raise RequestError(422, "wrong_type", "instances must be an array of rows", "instances")
        if not rows:
            raise RequestError(
                422, "empty_batch", "instances must hold at least one row", "instances"
            )
        if len(rows) > max_rows:
            raise RequestError(
                422,
                "batch_too_large",
                f"instances has {len(rows)} rows, at most {max_rows} are accepted",
                "instances",
            )
        for i, row in enumerate(rows):
            _check_row(row, n_features, f"instances[{i}]")
    matrix = np.array(rows, dtype=np.float64)
    # orjson already refuses NaN and overflowing literals; this guards the model all the same.
    if not np.isfinite(matrix).all():
        where = _first_non_finite(matrix, has_features)
        raise RequestError(422, "non_finite", f"{where} must be a finite number", where)
    return matrix


# --- the Open Inference Protocol (KServe V2); oip.py validates, these describe ------------------


class OipTensor(BaseModel):
    """An input tensor: `data` in row-major order, flat or as an array of rows."""

    name: str = Field(description="`features`, the model's one input.")
    shape: list[int] = Field(description="`[rows, 30]`: 1 to MAX_BATCH_SIZE rows.")
    datatype: str = Field(description="FP64, FP32, FP16, INT8..INT64 or UINT8..UINT64.")
    parameters: dict[str, Any] | None = Field(None, description="Ignored (no binary data).")
    data: list[Any] = Field(description="The values: finite numbers (integers for INT types).")


class OipRequestedOutput(BaseModel):
    """An output the client asks for."""

    name: str = Field(description="`probabilities` or `label`.")
    parameters: dict[str, Any] | None = Field(None, description="Ignored (outputs are JSON).")


class OipInferRequest(BaseModel):
    """Body of POST /v2/models/{model_name}/infer."""

    id: str | None = Field(None, description="Echoed in the answer (else the request id).")
    parameters: dict[str, Any] | None = Field(None, description="Ignored.")
    inputs: list[OipTensor] = Field(description="Exactly one tensor, `features`.")
    outputs: list[OipRequestedOutput] | None = Field(
        None, description="Outputs to answer, in this order (default: both)."
    )


class OipOutputTensor(BaseModel):
    """An output tensor, `data` flat in row-major order."""

    name: str = Field(description="`probabilities` (FP64 [rows, classes]) or `label`.")
    datatype: str = Field(description="FP64 or INT64.")
    shape: list[int]
    data: list[float] = Field(description="`label` holds class indices (as in `classes`).")


class OipInferResponse(BaseModel):
    """Answer of an infer request."""

    model_name: str
    model_version: str | None = Field(None, description="MODEL_VERSION, when set.")
    id: str = Field(description="The request's `id`, else the request id.")
    outputs: list[OipOutputTensor]


class OipMetadataTensor(BaseModel):
    """Name, datatype and shape of a model's input or output (-1: any number of rows)."""

    name: str
    datatype: str
    shape: list[int]


class OipModelMetadata(BaseModel):
    """Answer of GET /v2/models/{model_name}."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[OipMetadataTensor]
    outputs: list[OipMetadataTensor]


class OipServerMetadata(BaseModel):
    """Answer of GET /v2."""

    name: str
    version: str
    extensions: list[str]


class OipModelReady(BaseModel):
    """Answer of GET /v2/models/{model_name}/ready (200 ready, 503 not)."""

    name: str
    ready: bool


class OipError(BaseModel):
    """The protocol's error body."""

    error: str = Field(description="What is wrong, naming the field.")
