"""Property tests: whatever a client sends, the runtime never answers 5xx.

Schemathesis generates requests from the runtime's own OpenAPI document (valid and invalid
ones) and sends them over real HTTP; hypothesis adds arbitrary JSON documents and raw bytes.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

from tests.runtime.runtime_helpers import LiveServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_operations(live_server: LiveServer) -> dict[str, Any]:
    """Every operation of the runtime's OpenAPI document, keyed "METHOD /path"."""
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    return {f"{op.method.upper()} {op.path}": op for op in operations}


OPERATIONS = [
    "POST /predict",
    "GET /healthz",
    "GET /readyz",
    "GET /v2/health/live",
    "GET /v2/health/ready",
    "GET /metrics",
    "GET /drift",
    "GET /v2",
    *(
        f"{method} /v2/models/{{model_name}}{version}{suffix}"
        for version in ("", "/versions/{model_version}")
        for method, suffix in (("GET", ""), ("GET", "/ready"), ("POST", "/infer"))
    ),
]


# Only /predict and infer take a body; schemathesis cannot make infer's negative (its path's
# string parameters have none), so arbitrary JSON and bytes go to infer below instead.
CASES = [(op, GenerationMode.POSITIVE) for op in OPERATIONS] + [
    ("POST /predict", GenerationMode.NEGATIVE)
]


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_no_generated_request_gets_a_5xx(
    api_operations: dict[str, Any], operation: str, mode: GenerationMode
) -> None:
    assert set(api_operations) == set(OPERATIONS), "the OpenAPI document lists other routes"

    @given(case=api_operations[operation].as_strategy(generation_mode=mode))
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    def no_5xx(case: Any) -> None:
        if case.path_parameters and "model_name" in case.path_parameters:
            case.path_parameters["model_name"] = "model"  # else nearly every case is a 404
        response = case.call(timeout=10)
        assert response.status_code < 500, response.text
        if response.status_code < 400:
            return
        error = response.json()["error"]
        if operation.split()[1].startswith("/v2/models/"):
            assert isinstance(error, str)  # the protocol's shape
        else:
            assert set(error) == {"reason", "message", "field"}

    no_5xx()


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=35) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=80,
)
near_valid = st.fixed_dictionaries(
    {"features": st.lists(st.floats(allow_nan=False) | st.integers(), min_size=28, max_size=32)}
) | st.fixed_dictionaries(
    {
        "instances": st.lists(
            st.lists(st.floats(width=64, allow_nan=False), min_size=29, max_size=31), max_size=4
        )
    }
)


near_valid_infer = st.fixed_dictionaries(
    {
        "inputs": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["features", "x"]),
                    "datatype": st.sampled_from(["FP64", "FP32", "INT8", "BYTES"]),
                    "shape": st.lists(st.integers(-1, 31), min_size=1, max_size=3),
                    "data": json_values,
                }
            ),
            max_size=2,
        )
    }
)


@pytest.mark.parametrize(
    ("path", "bodies"),
    [("/predict", json_values | near_valid), ("/v2/models/model/infer", near_valid_infer)],
)
def test_arbitrary_json_is_answered_2xx_or_4xx(
    live_server: LiveServer, path: str, bodies: st.SearchStrategy[Any]
) -> None:
    @given(body=bodies | json_values)
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    def answered(body: Any) -> None:
        response = httpx.post(
            f"{live_server.url}{path}",
            content=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code in (200, 400, 413, 422), response.text
        if response.status_code == 200:
            answer = response.json()
            assert answer.get("predictions") or answer.get("outputs")  # /predict's or infer's

    answered()


@pytest.mark.parametrize("path", ["/predict", "/v2/models/model/infer"])
@given(raw=st.binary(max_size=300))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_arbitrary_bytes_are_answered_4xx(live_server: LiveServer, path: str, raw: bytes) -> None:
    response = httpx.post(
        f"{live_server.url}{path}", content=raw, headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
