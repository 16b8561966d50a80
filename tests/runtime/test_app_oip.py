"""The Open Inference Protocol over the runtime's HTTP app: the same answers, limits, metrics and
drift feed as /predict, in the protocol's shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from aiops_runtime.settings import RuntimeSettings
from tests.runtime.runtime_helpers import RUNBOOK_FEATURES, app_client, reference_rows, sample

pytestmark = pytest.mark.anyio

INFER = "/v2/models/model/infer"


def infer_body(rows: np.ndarray | list[list[float]], **extra: Any) -> dict[str, Any]:
    matrix = np.asarray(rows, dtype=np.float64)
    tensor = {"name": "features", "datatype": "FP64", "shape": list(matrix.shape)}
    return {"inputs": [{**tensor, "data": matrix.ravel().tolist()}], **extra}


def oip_error(response: httpx.Response) -> str:
    """The protocol's error string, after checking the shape."""
    body = response.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    assert body["error"]
    return body["error"]


async def test_infer_answers_what_predict_answers(
    client: httpx.AsyncClient, example_model_dir: Path
) -> None:
    rows = reference_rows(example_model_dir, 7)
    predicted = (await client.post("/predict", json={"instances": rows.tolist()})).json()
    response = await client.post(INFER, json=infer_body(rows, id="batch-1"))
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["id"]) == ("model", "batch-1")
    outputs = {output["name"]: output for output in body["outputs"]}
    assert outputs["probabilities"]["shape"] == [7, 2]
    proba = np.array(outputs["probabilities"]["data"]).reshape(7, 2)
    assert np.array_equal(proba, np.array(predicted["probabilities"]))
    labels = [predicted["classes"][i] for i in outputs["label"]["data"]]
    assert labels == predicted["predictions"]


async def test_infer_without_id_answers_the_request_id(client: httpx.AsyncClient) -> None:
    response = await client.post(
        INFER, json=infer_body([RUNBOOK_FEATURES]), headers={"X-Request-ID": "trace-9"}
    )
    assert response.json()["id"] == "trace-9"
    assert response.headers["x-request-id"] == "trace-9"


async def test_infer_counts_rows_latency_and_errors_like_predict(client: httpx.AsyncClient) -> None:
    rows_before = sample("model_predictions_total")
    latency_before = sample("model_request_latency_seconds_count")
    errors_before = sample("model_request_errors_total", {"reason": "wrong_length"})
    ok = await client.post(INFER, json=infer_body([RUNBOOK_FEATURES] * 3))
    assert ok.status_code == 200
    bad = infer_body([RUNBOOK_FEATURES[:-1]])
    assert (await client.post(INFER, json=bad)).status_code == 400
    assert sample("model_predictions_total") - rows_before == 3
    assert sample("model_request_latency_seconds_count") - latency_before == 2
    assert sample("model_request_errors_total", {"reason": "wrong_length"}) - errors_before == 1


async def test_infer_rows_feed_the_drift_window(
    make_settings: Callable[..., RuntimeSettings], example_model_dir: Path
) -> None:
    settings = make_settings(drift_enabled=True, drift_window_size=50, drift_check_every=1000)
    rows = reference_rows(example_model_dir, 40)
    async with app_client(settings) as client:
        await client.post(INFER, json=infer_body(rows[:30]))
        await client.post("/predict", json={"instances": rows[30:].tolist()})
        for _ in range(100):
            body = (await client.get("/drift")).json()
            if body["samples_seen"] == 40:
                break
            await asyncio.sleep(0.02)
        assert body["samples_seen"] == 40
        assert body["window_fill"] == 40


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/other/infer", 404),
        ("/v2/models/model/versions/1/infer", 404),
        (INFER, 200),
    ],
)
async def test_only_the_served_model_is_found(
    client: httpx.AsyncClient, path: str, status: int
) -> None:
    response = await client.post(path, json=infer_body([RUNBOOK_FEATURES]))
    assert response.status_code == status
    if status == 404:
        assert "model" in oip_error(response)


async def test_a_versioned_model_answers_on_its_version_path(
    make_settings: Callable[..., RuntimeSettings],
) -> None:
    async with app_client(make_settings(model_version="3")) as client:
        base = "/v2/models/model/versions/3"
        assert (await client.get(base)).json()["versions"] == ["3"]
        assert (await client.get(f"{base}/ready")).status_code == 200
        answer = await client.post(f"{base}/infer", json=infer_body([RUNBOOK_FEATURES]))
        assert answer.json()["model_version"] == "3"
        assert (await client.get("/v2/models/model/versions/4/ready")).status_code == 404


async def test_metadata_and_readiness(client: httpx.AsyncClient) -> None:
    server = (await client.get("/v2")).json()
    assert server == {"name": "aiops-runtime", "version": "0.1.0", "extensions": []}
    model = (await client.get("/v2/models/model")).json()
    assert model["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, 30]}]
    ready = await client.get("/v2/models/model/ready")
    assert (ready.status_code, ready.json()) == (200, {"name": "model", "ready": True})
    assert (await client.get("/v2/health/ready")).json()["ready"] is True
    assert (await client.get("/v2/models/nope")).status_code == 404


async def test_not_ready_runtime_answers_503_in_the_protocol_shape(
    make_settings: Callable[..., RuntimeSettings],
) -> None:
    async with app_client(make_settings(model_dir=None, model_uri="")) as client:
        ready = await client.get("/v2/models/model/ready")
        assert (ready.status_code, ready.json()["ready"]) == (503, False)
        assert (await client.get("/v2/health/ready")).json()["ready"] is False
        metadata = await client.get("/v2/models/model")
        assert metadata.status_code == 503
        response = await client.post(INFER, json=infer_body([RUNBOOK_FEATURES]))
        assert response.status_code == 503
        assert "not ready" in oip_error(response)


@pytest.mark.parametrize(
    ("headers", "status", "names"),
    [
        ({"Content-Type": "text/plain"}, 415, "Content-Type"),
        ({"Inference-Header-Content-Length": "10"}, 400, "binary tensor extension"),
    ],
)
async def test_http_refusals_are_in_the_protocol_shape(
    client: httpx.AsyncClient, headers: dict[str, str], status: int, names: str
) -> None:
    content = orjson.dumps(infer_body([RUNBOOK_FEATURES]))
    response = await client.post(INFER, content=content, headers=headers)
    assert response.status_code == status
    assert names in oip_error(response)


async def test_a_body_without_content_type_is_taken_as_json(client: httpx.AsyncClient) -> None:
    """Triton's client sends none."""
    content = orjson.dumps(infer_body([RUNBOOK_FEATURES]))
    response = await client.post(INFER, content=content, headers={"Content-Type": ""})
    assert response.status_code == 200


async def test_body_and_batch_limits_are_those_of_predict(
    make_settings: Callable[..., RuntimeSettings],
) -> None:
    async with app_client(make_settings(max_batch_size=2, max_body_bytes=5000)) as client:
        three = await client.post(INFER, json=infer_body([RUNBOOK_FEATURES] * 3))
        assert three.status_code == 400
        assert "at most 2" in oip_error(three)
        large = await client.post(INFER, content=b"x" * 5001)
        assert large.status_code == 413
        assert oip_error(large)


async def test_openapi_documents_the_protocol(
    make_settings: Callable[..., RuntimeSettings],
) -> None:
    async with app_client(make_settings(api_docs=True)) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert {
        "/v2",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    } <= set(paths)
    body = paths["/v2/models/{model_name}/infer"]["post"]["requestBody"]
    assert "inputs" in body["content"]["application/json"]["schema"]["properties"]
    versioned = paths["/v2/models/{model_name}/versions/{model_version}/ready"]["get"]
    assert [p["name"] for p in versioned["parameters"]] == ["model_name", "model_version"]
    assert all(p["in"] == "path" and p["required"] for p in versioned["parameters"])
    # The protocol answers a bad request 400: no framework 422 is documented.
    assert "422" not in paths["/v2/models/{model_name}/infer"]["post"]["responses"]


async def test_the_versioned_paths_reach_the_handler_with_their_parameters(
    make_settings: Callable[..., RuntimeSettings],
) -> None:
    async with app_client(make_settings(model_version="v3")) as client:
        ready = await client.get("/v2/models/model/versions/v3/ready")
        wrong = await client.get("/v2/models/model/versions/v4/ready")
        other = await client.get("/v2/models/other/ready")
    assert ready.json() == {"name": "model", "ready": True}
    assert wrong.status_code == other.status_code == 404
    assert "v4" in wrong.json()["error"]
    assert "other" in other.json()["error"]
