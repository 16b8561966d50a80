"""The Open Inference Protocol mapping (oip.py): metadata, decoding an infer request into rows,
encoding the answer, and every way a request can be wrong answered 400 naming the field."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from aiops_runtime import oip
from aiops_runtime.errors import RequestError
from tests.runtime.runtime_helpers import RUNBOOK_FEATURES

N = len(RUNBOOK_FEATURES)


def request(data: Any = None, **tensor: Any) -> dict[str, Any]:
    """An infer request of one `features` tensor (two runbook rows by default)."""
    data = [*RUNBOOK_FEATURES, *RUNBOOK_FEATURES] if data is None else data
    return {
        "inputs": [
            {"name": "features", "shape": [2, N], "datatype": "FP64", "data": data, **tensor}
        ]
    }


def parse(doc: Any, max_rows: int = 1000) -> oip.InferRequest:
    return oip.parse_infer_request(orjson.dumps(doc), N, max_rows)


def refused(doc: Any, max_rows: int = 1000) -> RequestError:
    with pytest.raises(RequestError) as raised:
        parse(doc, max_rows)
    return raised.value


def test_flat_and_nested_data_decode_to_the_same_rows() -> None:
    flat = parse(request())
    nested = parse(request([RUNBOOK_FEATURES, RUNBOOK_FEATURES]))
    assert flat.rows.dtype == np.float64
    assert flat.rows.shape == (2, N)
    assert np.array_equal(flat.rows, nested.rows)
    assert flat.rows[1].tolist() == RUNBOOK_FEATURES


@pytest.mark.parametrize("datatype", ["FP32", "FP16", "INT64", "INT8", "UINT16"])
def test_other_numeric_datatypes_are_scored_as_float64(datatype: str) -> None:
    decoded = parse(request([1, 2] * N, datatype=datatype))
    assert decoded.rows.dtype == np.float64
    assert decoded.rows[0, :2].tolist() == [1.0, 2.0]


def test_id_and_requested_outputs_are_kept_in_order() -> None:
    doc = {**request(), "id": "req-7", "outputs": [{"name": "label"}, {"name": "probabilities"}]}
    decoded = parse(doc)
    assert decoded.id == "req-7"
    assert decoded.outputs == ("label", "probabilities")
    assert parse(request()).outputs == ()


def test_what_kserve_and_triton_clients_add_is_accepted() -> None:
    doc = {
        **request(parameters={"custom": 1}),
        "model_name": "model",
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
    }
    assert parse(doc).outputs == ("label",)


def _with(**changes: Any) -> dict[str, Any]:
    doc = request()
    doc["inputs"][0].update(changes)
    return doc


def _value_at(k: int, value: Any) -> dict[str, Any]:
    data = [*RUNBOOK_FEATURES, *RUNBOOK_FEATURES]
    data[k] = value
    return request(data)


@pytest.mark.parametrize(
    ("doc", "reason", "field"),
    [
        pytest.param([1, 2], "invalid_body", None, id="not-an-object"),
        pytest.param({"inputs": []}, "wrong_inputs", "inputs", id="no-tensor"),
        pytest.param({}, "missing_field", "inputs", id="no-inputs"),
        pytest.param({**request(), "extra": 1}, "unknown_field", "extra", id="unknown-key"),
        pytest.param({**request(), "id": 7}, "wrong_type", "id", id="id-not-string"),
        pytest.param(_with(name="x"), "unknown_input", "inputs[0].name", id="input-name"),
        pytest.param(
            _with(datatype="BYTES"), "unsupported_datatype", "inputs[0].datatype", id="bytes"
        ),
        pytest.param(_with(shape=[2, 29]), "wrong_length", "inputs[0].shape", id="features"),
        pytest.param(_with(shape=[60]), "wrong_shape", "inputs[0].shape", id="rank-1"),
        pytest.param(_with(shape=[0, N], data=[]), "empty_batch", "inputs[0].shape", id="empty"),
        pytest.param(_with(shape=[3, N]), "wrong_shape", "inputs[0].data", id="count"),
        pytest.param(
            request([RUNBOOK_FEATURES, RUNBOOK_FEATURES[:-1]]),
            "wrong_length",
            "inputs[0].data[1]",
            id="short-row",
        ),
        pytest.param(_value_at(33, "x"), "wrong_type", "inputs[0].data[33]", id="string"),
        pytest.param(_value_at(5, True), "wrong_type", "inputs[0].data[5]", id="boolean"),
        pytest.param(_value_at(4, None), "wrong_type", "inputs[0].data[4]", id="null"),
        pytest.param(
            _with(datatype="INT32", data=[1.5] * 2 * N),
            "wrong_type",
            "inputs[0].data[0]",
            id="float-in-int",
        ),
        pytest.param(
            _with(datatype="INT8", data=[300] * 2 * N),
            "out_of_range",
            "inputs[0].data[0]",
            id="int8-range",
        ),
        pytest.param(
            _with(datatype="FP32", data=[1e39] * 2 * N),
            "non_finite",
            "inputs[0].data[0]",
            id="fp32-range",
        ),
        pytest.param(
            _with(parameters={"binary_data_size": 480}),
            "binary_data_unsupported",
            "inputs[0].parameters",
            id="binary",
        ),
        pytest.param(
            {**request(), "outputs": [{"name": "logits"}]},
            "unknown_output",
            "outputs[0].name",
            id="output",
        ),
    ],
)
def test_bad_request_is_400_naming_the_field(doc: Any, reason: str, field: str | None) -> None:
    error = refused(doc)
    assert error.status == 400
    assert error.reason == reason
    assert error.field == field
    body = oip.error_body(error)
    assert list(body) == ["error"]
    assert field is None or field in body["error"]
    assert oip.error_status(error) == 400


def test_nested_data_names_row_and_column() -> None:
    rows = [list(RUNBOOK_FEATURES), list(RUNBOOK_FEATURES)]
    rows[1][7] = None
    error = refused(request(rows))
    assert error.field == "inputs[0].data[1][7]"
    assert "null" in error.message


def test_batch_limit_is_the_one_of_predict() -> None:
    error = refused(request(), max_rows=1)
    assert (error.reason, error.field) == ("batch_too_large", "inputs[0].shape")


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "invalid_json"), (b'{"inputs": [1e999]}', "non_finite")],
)
def test_invalid_json_and_overflowing_literals_are_400(body: bytes, reason: str) -> None:
    with pytest.raises(RequestError) as raised:
        oip.parse_infer_request(body, N, 10)
    assert raised.value.reason == reason
    assert oip.error_status(raised.value) == 400


def test_answer_holds_probabilities_and_labels_row_major() -> None:
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    answer = oip.encode_infer_response("model", "", "id-1", proba, ())
    assert answer == {
        "model_name": "model",
        "id": "id-1",
        "outputs": [
            {
                "name": "probabilities",
                "datatype": "FP64",
                "shape": [3, 2],
                "data": [0.9, 0.1, 0.2, 0.8, 0.5, 0.5],
            },
            # Ties go to the first class, like /predict.
            {"name": "label", "datatype": "INT64", "shape": [3], "data": [0, 1, 0]},
        ],
    }


def test_answer_honours_the_requested_outputs_and_the_version() -> None:
    answer = oip.encode_infer_response("m", "v3", "id", np.array([[0.3, 0.7]]), ("label",))
    assert answer["model_version"] == "v3"
    assert [output["name"] for output in answer["outputs"]] == ["label"]


def test_model_metadata_describes_input_and_outputs() -> None:
    meta = oip.model_metadata("breast-cancer", "", N, 2)
    assert meta["versions"] == []
    assert meta["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, N]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("probabilities", "FP64", [-1, 2]),
        ("label", "INT64", [-1]),
    ]
    assert oip.model_metadata("m", "v1", N, 2)["versions"] == ["v1"]


@pytest.mark.parametrize(
    ("name", "version", "reason"),
    [("other", None, "model_not_found"), ("model", "2", "version_not_found")],
)
def test_unknown_model_or_version_is_404(name: str, version: str | None, reason: str) -> None:
    with pytest.raises(RequestError) as raised:
        oip.check_model(name, version, "model", "1")
    assert (raised.value.status, raised.value.reason) == (404, reason)
    oip.check_model("model", "1", "model", "1")
    oip.check_model("model", None, "model", "")
