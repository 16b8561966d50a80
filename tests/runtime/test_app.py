"""The HTTP contract of the runtime: every endpoint, and every class of bad input answered 4xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from aiops_runtime.model_store import TRUSTED_TYPES
from tests.runtime.runtime_helpers import (
    RUNBOOK_FEATURES,
    app_client,
    manifest,
    reference_rows,
    sample,
)

pytestmark = pytest.mark.anyio

ROW = RUNBOOK_FEATURES


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of an error answer, after checking its shape."""
    body = response.json()
    assert set(body) <= {"error", "request_id"}
    assert set(body["error"]) == {"reason", "message", "field"}
    assert body["error"]["message"]
    return body["error"]


async def test_predict_one_row_answers_class_and_probabilities(
    client: httpx.AsyncClient, example_model_dir: Path
) -> None:
    import skops.io as sio

    model = sio.load(example_model_dir / "model.skops", trusted=TRUSTED_TYPES)
    response = await client.post("/predict", json={"features": ROW})
    assert response.status_code == 200
    body = response.json()
    assert body["classes"] == ["benign", "malignant"]
    assert body["predictions"] == ["benign"]
    expected = model.predict_proba(np.array([ROW]))
    assert np.allclose(body["probabilities"], expected, rtol=0, atol=1e-12)
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["model"] == "model"


async def test_predict_batch_keeps_row_order(
    client: httpx.AsyncClient, example_model_dir: Path
) -> None:
    rows = reference_rows(example_model_dir, 50)
    response = await client.post("/predict", json={"instances": rows.tolist()})
    assert response.status_code == 200
    body = response.json()
    assert len(body["predictions"]) == 50
    single = [
        (await client.post("/predict", json={"features": row})).json()["probabilities"][0]
        for row in rows[:5].tolist()
    ]
    assert np.allclose(body["probabilities"][:5], single, rtol=0, atol=1e-12)


async def test_integer_features_are_numbers(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict", json={"features": [int(v) + 1 for v in ROW]})
    assert response.status_code == 200


async def test_client_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/predict", json={"features": ROW}, headers={"X-Request-ID": "abc-123"}
    )
    assert response.json()["request_id"] == "abc-123"
    assert response.headers["x-request-id"] == "abc-123"


async def test_unusable_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/predict", json={"features": ROW}, headers={"X-Request-ID": "bad id\twith spaces"}
    )
    assert response.json()["request_id"] != "bad id\twith spaces"


async def test_content_type_with_charset_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/predict",
        content=orjson.dumps({"features": ROW}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


def _row_with(index: int, value: Any) -> list[Any]:
    row: list[Any] = list(ROW)
    row[index] = value
    return row


BAD_BODIES = [
    pytest.param(b"{not json", 400, "invalid_json", None, id="invalid-json"),
    pytest.param(b"", 400, "invalid_json", None, id="empty-body"),
    pytest.param(b"[1, 2, 3]", 422, "invalid_body", None, id="array-body"),
    pytest.param(b'"text"', 422, "invalid_body", None, id="string-body"),
    pytest.param(b"{}", 422, "missing_field", None, id="no-field"),
    pytest.param(
        orjson.dumps({"features": ROW, "instances": [ROW]}), 422, "ambiguous_body", None, id="both"
    ),
    pytest.param(orjson.dumps({"feature": ROW}), 422, "unknown_field", "feature", id="typo"),
    pytest.param(orjson.dumps({"features": ROW[:29]}), 422, "wrong_length", "features", id="29"),
    pytest.param(orjson.dumps({"features": [*ROW, 1.0]}), 422, "wrong_length", "features", id="31"),
    pytest.param(orjson.dumps({"features": []}), 422, "wrong_length", "features", id="empty-row"),
    pytest.param(
        orjson.dumps({"features": "1,2,3"}), 422, "wrong_type", "features", id="row-not-array"
    ),
    pytest.param(orjson.dumps({"features": None}), 422, "wrong_type", "features", id="row-null"),
    pytest.param(
        orjson.dumps({"features": _row_with(3, "566.3")}),
        422,
        "wrong_type",
        "features[3]",
        id="string-value",
    ),
    pytest.param(
        orjson.dumps({"features": _row_with(0, None)}),
        422,
        "wrong_type",
        "features[0]",
        id="null-value",
    ),
    pytest.param(
        orjson.dumps({"features": _row_with(29, True)}),
        422,
        "wrong_type",
        "features[29]",
        id="bool-value",
    ),
    pytest.param(
        orjson.dumps({"features": _row_with(5, [1.0])}),
        422,
        "wrong_type",
        "features[5]",
        id="nested-value",
    ),
    pytest.param(
        orjson.dumps({"features": ROW[:-1]})[:-2] + b", 1e999]}",
        422,
        "non_finite",
        None,
        id="overflow",
    ),
    pytest.param(
        orjson.dumps({"features": ROW})[:-2] + b", NaN]}", 400, "invalid_json", None, id="nan"
    ),
    pytest.param(
        orjson.dumps({"features": ROW})[:-2] + b", Infinity]}",
        400,
        "invalid_json",
        None,
        id="infinity",
    ),
    pytest.param(orjson.dumps({"instances": []}), 422, "empty_batch", "instances", id="empty"),
    pytest.param(
        orjson.dumps({"instances": ROW}), 422, "wrong_type", "instances[0]", id="flat-batch"
    ),
    pytest.param(
        orjson.dumps({"instances": {"a": ROW}}), 422, "wrong_type", "instances", id="batch-obj"
    ),
    pytest.param(
        orjson.dumps({"instances": [ROW, ROW[:10]]}),
        422,
        "wrong_length",
        "instances[1]",
        id="ragged-batch",
    ),
    pytest.param(
        orjson.dumps({"instances": [ROW, _row_with(7, "x")]}),
        422,
        "wrong_type",
        "instances[1][7]",
        id="batch-string-value",
    ),
]


@pytest.mark.parametrize(("body", "status", "reason", "field"), BAD_BODIES)
async def test_bad_body_is_a_4xx_naming_the_problem(
    client: httpx.AsyncClient, body: bytes, status: int, reason: str, field: str | None
) -> None:
    before = sample("model_request_errors_total", {"reason": reason})
    response = await client.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    error = error_of(response)
    assert error["reason"] == reason
    assert error["field"] == field
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert sample("model_request_errors_total", {"reason": reason}) == before + 1


async def test_oversized_batch_is_refused(make_settings: Any) -> None:
    async with app_client(make_settings(max_batch_size=3)) as c:
        response = await c.post("/predict", json={"instances": [ROW] * 4})
        assert response.status_code == 422
        assert error_of(response)["reason"] == "batch_too_large"
        assert (await c.post("/predict", json={"instances": [ROW] * 3})).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"],
)
async def test_wrong_content_type_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(
        "/predict", content=orjson.dumps({"features": ROW}), headers=headers
    )
    assert response.status_code == 415
    assert error_of(response)["reason"] == "unsupported_media_type"


async def test_oversized_body_is_413_by_content_length(make_settings: Any) -> None:
    async with app_client(make_settings(max_body_bytes=1024)) as c:
        response = await c.post("/predict", json={"instances": [ROW] * 10})
        assert response.status_code == 413
        assert error_of(response)["reason"] == "body_too_large"


async def test_oversized_body_is_413_when_streamed(make_settings: Any) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 512

    async with app_client(make_settings(max_body_bytes=1024)) as c:
        response = await c.post(
            "/predict", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert response.status_code == 413
        assert error_of(response)["reason"] == "body_too_large"


async def test_unknown_route_is_404_json(client: httpx.AsyncClient) -> None:
    before = sample("model_request_errors_total", {"reason": "not_found"})
    response = await client.get("/nope")
    assert response.status_code == 404
    assert error_of(response)["reason"] == "not_found"
    assert sample("model_request_errors_total", {"reason": "not_found"}) == before + 1


@pytest.mark.parametrize(("method", "path"), [("GET", "/predict"), ("POST", "/healthz")])
async def test_wrong_method_is_405_json(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert error_of(response)["reason"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "body"),
    [("/healthz", {"status": "ok"}), ("/v2/health/live", {"status": "ok", "live": True})],
)
async def test_liveness(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == body


@pytest.mark.parametrize("path", ["/readyz", "/v2/health/ready"])
async def test_readiness_names_the_verified_digest(
    client: httpx.AsyncClient, example_model_dir: Path, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["sha256"] == manifest(example_model_dir)["model"]["sha256"]


async def test_not_ready_runtime_refuses_predict_with_503(make_settings: Any) -> None:
    async with app_client(make_settings(model_dir=None, model_uri="")) as c:
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "no_model"
        assert (await c.get("/healthz")).status_code == 200
        response = await c.post("/predict", json={"features": ROW})
        assert response.status_code == 503
        assert error_of(response)["reason"] == "not_ready"


async def test_metrics_keep_the_seed_names(client: httpx.AsyncClient) -> None:
    await client.post("/predict", json={"instances": [ROW, ROW]})
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "model_predictions_total",
        "model_drift_events_total",
        "model_request_latency_seconds_bucket",
        "model_request_errors_total",
        "model_batch_size_rows_bucket",
        "model_drift_p_value",
        "model_drift_p_value_threshold",
        "model_drift_checks_total",
        "model_drift_window_fill",
        "model_info{",
        "model_ready 1.0",
    ):
        assert name in text, name


async def test_predictions_counter_counts_rows(client: httpx.AsyncClient) -> None:
    before = sample("model_predictions_total")
    await client.post("/predict", json={"instances": [ROW] * 7})
    await client.post("/predict", json={"features": ROW})
    assert sample("model_predictions_total") == before + 8


async def test_drift_endpoint_says_disabled(client: httpx.AsyncClient) -> None:
    response = await client.get("/drift")
    assert response.status_code == 200
    assert response.json()["enabled"] is False


async def test_api_docs_are_off_by_default(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert (await client.get(path)).status_code == 404, path


async def test_openapi_documents_the_predict_body(make_settings: Any) -> None:
    async with app_client(make_settings(api_docs=True)) as client:
        spec = (await client.get("/openapi.json")).json()
        docs = (await client.get("/docs")).status_code
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["properties"]) == {"features", "instances"}
    assert {"200", "400", "413", "415", "422", "503"} <= set(
        spec["paths"]["/predict"]["post"]["responses"]
    )
    assert docs == 200
