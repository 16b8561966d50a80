"""The Open Inference Protocol (KServe V2) over REST, as pure functions: server and model
metadata, the decoding of an infer request into validated rows, the encoding of the answer and
the protocol's error body.

The model has one input, ``features`` (FP64 ``[-1, n_features]``; FP32, FP16 and the integer
types are accepted and scored as float64), and two outputs, ``probabilities`` (FP64
``[n, classes]``) and ``label`` (INT64 ``[n]``, the index of the most probable class). Tensors
travel as JSON ``data`` in row-major order, flat or nested by rows; the binary tensor extension
is refused. Errors raise ``RequestError``; the routes answer them as ``{"error": "..."}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from aiops_runtime.errors import RequestError
from aiops_runtime.schemas import load_json, type_name

INPUT_NAME = "features"
OUTPUT_NAMES = ("probabilities", "label")
FLOAT_TYPES: dict[str, type[np.floating[Any]]] = {
    "FP64": np.float64,
    "FP32": np.float32,
    "FP16": np.float16,
}
INT_TYPES: dict[str, type[np.integer[Any]]] = {
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
}
# What the spec allows in a request (kserve's client also sends the model's name and version).
_REQUEST_KEYS = frozenset(("id", "parameters", "inputs", "outputs", "model_name", "model_version"))
_INPUT_KEYS = frozenset(("name", "shape", "datatype", "parameters", "data"))
_OUTPUT_KEYS = frozenset(("name", "parameters"))
_NUMBERS = frozenset((int, float))
_INTEGERS = frozenset((int,))
# Largest magnitude of each float type (a finite float64 beyond it would overflow the type).
_FLOAT_LIMITS = {name: float(np.finfo(kind).max) for name, kind in FLOAT_TYPES.items()}


@dataclass(frozen=True)
class InferRequest:
    """A decoded infer request: its id, its rows (float64, validated) and the outputs asked for."""

    id: str | None
    rows: np.ndarray
    outputs: tuple[str, ...]


def server_metadata(version: str) -> dict[str, Any]:
    """``GET /v2``: the server's name, version and the protocol extensions it has (none)."""
    return {"name": "aiops-runtime", "version": version, "extensions": []}


def model_metadata(name: str, version: str, n_features: int, n_classes: int) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the model's versions, its input and outputs."""
    return {
        "name": name,
        "versions": [version] if version else [],
        "platform": "sklearn",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP64", "shape": [-1, n_features]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, n_classes]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ],
    }


def check_model(name: str, version: str | None, served_name: str, served_version: str) -> None:
    """404 unless ``name`` (and ``version``, when the path has one) are the served model's."""
    if name != served_name:
        raise RequestError(
            404, "model_not_found", f"unknown model {name!r}; this runtime serves {served_name!r}"
        )
    if version is not None and version != served_version:
        known = f"version {served_version!r}" if served_version else "no versions"
        raise RequestError(
            404, "version_not_found", f"model {name!r} has no version {version!r} (it has {known})"
        )


def error_body(error: RequestError) -> dict[str, str]:
    """The protocol's error shape: one string that names the field."""
    message = error.message
    if error.field and error.field not in message:
        message = f"{error.field}: {message}"
    return {"error": message}


def error_status(error: RequestError) -> int:
    """The HTTP status of an error: the protocol answers a bad request 400 where /predict says
    422 (Triton and KServe do the same)."""
    return 400 if error.status == 422 else error.status


def parse_infer_request(body: bytes, n_features: int, max_rows: int) -> InferRequest:
    """Decode and validate an infer request body (JSON) into float64 rows ``[n, n_features]``.

    Raises RequestError naming the offending field for every way the body can be wrong.
    """
    doc = load_json(body)
    if type(doc) is not dict:
        raise _bad("invalid_body", "the body must be a JSON object with `inputs`")
    _refuse_unknown(doc, _REQUEST_KEYS, "")
    request_id = doc.get("id")
    if request_id is not None and type(request_id) is not str:
        raise _bad("wrong_type", f"id must be a string, got {type_name(request_id)}", "id")
    if "parameters" in doc and type(doc["parameters"]) is not dict:
        raise _bad("wrong_type", "parameters must be an object", "parameters")
    inputs = doc.get("inputs")
    if inputs is None:
        raise _bad("missing_field", "inputs is required", "inputs")
    if type(inputs) is not list or len(inputs) != 1:
        raise _bad(
            "wrong_inputs", f"inputs must be an array of one tensor, `{INPUT_NAME}`", "inputs"
        )
    rows = _decode_input(inputs[0], n_features, max_rows, "inputs[0]")
    return InferRequest(request_id, rows, _requested_outputs(doc.get("outputs")))


def encode_infer_response(
    model_name: str,
    model_version: str,
    request_id: str,
    proba: np.ndarray,
    outputs: tuple[str, ...],
) -> dict[str, Any]:
    """The infer answer: the requested outputs (all when none were named) as JSON tensors."""
    n, classes = proba.shape
    tensors = {
        "probabilities": {
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [n, classes],
            "data": proba.ravel().tolist(),
        },
        "label": {
            "name": "label",
            "datatype": "INT64",
            "shape": [n],
            # First maximum on ties, like /predict's `predictions`.
            "data": np.argmax(proba, axis=1).tolist(),
        },
    }
    answer: dict[str, Any] = {"model_name": model_name, "id": request_id}
    if model_version:
        answer["model_version"] = model_version
    answer["outputs"] = [tensors[name] for name in outputs or OUTPUT_NAMES]
    return answer


def _bad(reason: str, message: str, field: str | None = None) -> RequestError:
    return RequestError(400, reason, message, field)


def _refuse_unknown(doc: dict[str, Any], known: frozenset[str], where: str) -> None:
    for key in doc:
        if key not in known:
            field = f"{where}.{key}" if where else key
            allowed = ", ".join(f"`{k}`" for k in sorted(known))
            raise _bad("unknown_field", f"unknown field {field!r}; allowed: {allowed}", field)


def _requested_outputs(outputs: Any) -> tuple[str, ...]:
    if outputs is None:
        return ()
    if type(outputs) is not list:
        raise _bad("wrong_type", "outputs must be an array of {name} objects", "outputs")
    names: list[str] = []
    for i, output in enumerate(outputs):
        where = f"outputs[{i}]"
        if type(output) is not dict:
            raise _bad("wrong_type", f"{where} must be an object with a name", where)
        _refuse_unknown(output, _OUTPUT_KEYS, where)
        name = output.get("name")
        if name not in OUTPUT_NAMES:
            raise _bad(
                "unknown_output",
                f"{where}.name must be one of {', '.join(OUTPUT_NAMES)}, got {name!r}",
                f"{where}.name",
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def _decode_input(tensor: Any, n_features: int, max_rows: int, where: str) -> np.ndarray:
    if type(tensor) is not dict:
        raise _bad("wrong_type", f"{where} must be a tensor object", where)
    _refuse_unknown(tensor, _INPUT_KEYS, where)
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise _bad("missing_field", f"{where}.{key} is required", f"{where}.{key}")
    if tensor["name"] != INPUT_NAME:
        raise _bad(
            "unknown_input",
            f"{where}.name must be {INPUT_NAME!r}, got {tensor['name']!r}",
            f"{where}.name",
        )
    parameters = tensor.get("parameters")
    if parameters is not None and (
        type(parameters) is not dict or "binary_data_size" in parameters
    ):
        raise _bad(
            "binary_data_unsupported",
            f"{where}.parameters: the binary tensor extension is not supported; send `data`",
            f"{where}.parameters",
        )
    datatype = tensor["datatype"]
    if datatype not in FLOAT_TYPES and datatype not in INT_TYPES:
        supported = ", ".join([*FLOAT_TYPES, *INT_TYPES])
        raise _bad(
            "unsupported_datatype",
            f"{where}.datatype must be one of {supported}, got {datatype!r}",
            f"{where}.datatype",
        )
    n_rows = _check_shape(tensor["shape"], n_features, max_rows, f"{where}.shape")
    data = tensor["data"]
    flat = _flatten(data, n_rows, n_features, f"{where}.data")
    rows = _to_rows(flat, datatype, n_rows, n_features)
    if isinstance(rows, int):  # the index of the first bad value: name it as the client wrote it
        _refuse_value(flat, datatype, rows, _Place(f"{where}.data", n_features, flat is not data))
    return rows


def _check_shape(shape: Any, n_features: int, max_rows: int, where: str) -> int:
    if (
        type(shape) is not list
        or len(shape) != 2
        or type(shape[0]) is not int
        or type(shape[1]) is not int
        or shape[0] < 0
        or shape[1] < 0
    ):
        raise _bad(
            "wrong_shape",
            f"{where} must be [rows, {n_features}] (two non-negative integers), got {shape!r}",
            where,
        )
    n_rows, width = shape
    if width != n_features:
        raise _bad("wrong_length", f"{where} has {width} features, expected {n_features}", where)
    if n_rows == 0:
        raise _bad("empty_batch", f"{where} must have at least one row", where)
    if n_rows > max_rows:
        raise _bad(
            "batch_too_large", f"{where} has {n_rows} rows, at most {max_rows} are accepted", where
        )
    return int(n_rows)


def _flatten(data: Any, n_rows: int, n_features: int, where: str) -> list[Any]:
    """The values of ``data`` in row-major order: a flat array, or an array of rows."""
    if type(data) is not list:
        raise _bad("wrong_type", f"{where} must be an array of numbers", where)
    if not data or type(data[0]) is not list:
        if len(data) != n_rows * n_features:
            raise _bad(
                "wrong_shape",
                f"{where} has {len(data)} values, the shape needs {n_rows * n_features}",
                where,
            )
        return data
    if len(data) != n_rows:
        raise _bad("wrong_shape", f"{where} has {len(data)} rows, the shape says {n_rows}", where)
    flat: list[Any] = []
    for i, row in enumerate(data):
        if type(row) is not list:
            raise _bad("wrong_type", f"{where}[{i}] must be an array of numbers", f"{where}[{i}]")
        if len(row) != n_features:
            raise _bad(
                "wrong_length",
                f"{where}[{i}] has {len(row)} values, expected {n_features}",
                f"{where}[{i}]",
            )
        flat.extend(row)
    return flat


@dataclass(frozen=True)
class _Place:
    """Names the k-th value of a tensor's data as the client wrote it: flat or by rows."""

    where: str
    n_features: int
    nested: bool

    def of(self, k: int) -> str:
        if self.nested:
            return f"{self.where}[{k // self.n_features}][{k % self.n_features}]"
        return f"{self.where}[{k}]"


def _to_rows(flat: list[Any], datatype: str, n_rows: int, n_features: int) -> np.ndarray | int:
    """The values as float64 rows, or the index of the first value the datatype refuses (the
    caller names it: the common, valid request never builds an error's field name)."""
    integer = datatype in INT_TYPES
    allowed = _INTEGERS if integer else _NUMBERS
    if not set(map(type, flat)) <= allowed:
        return next(k for k, value in enumerate(flat) if type(value) not in allowed)
    if integer:
        limits = np.iinfo(INT_TYPES[datatype])
        k = next((k for k, value in enumerate(flat) if not limits.min <= value <= limits.max), -1)
        if k >= 0:
            return k
    rows = np.array(flat, dtype=np.float64).reshape(n_rows, n_features)
    if integer or datatype == "FP64":
        # NaN and infinities (a finite float64 is within FP64's range; integers are finite).
        good = bool(np.isfinite(rows).all())
    else:
        good = bool((np.abs(rows) <= _FLOAT_LIMITS[datatype]).all())
    if good:
        return rows
    limit = _FLOAT_LIMITS.get(datatype, np.inf)
    i, j = (int(k) for k in np.argwhere(~(np.abs(rows) <= limit))[0])
    return i * n_features + j


def _refuse_value(flat: list[Any], datatype: str, k: int, place: _Place) -> NoReturn:
    """Raise the 400 for the k-th value of a tensor's data (see ``_to_rows``)."""
    field = place.of(k)
    integer = datatype in INT_TYPES
    if type(flat[k]) not in (_INTEGERS if integer else _NUMBERS):
        kind = "an integer" if integer else "a number"
        raise _bad(
            "wrong_type", f"{field} must be {kind} ({datatype}), got {type_name(flat[k])}", field
        )
    if integer:
        raise _bad("out_of_range", f"{field} is out of {datatype} range", field)
    raise _bad("non_finite", f"{field} must be a finite {datatype} number", field)
