"""Conformance of the Open Inference Protocol routes with two clients nobody here wrote: Triton's
HTTP client (`tritonclient[http]`) and KServe's REST client (`kserve`), both from the runtime's
`clients` extra, against the real `aiops-runtime serve` process. The clients are imported by
fixtures, not at collection: .venv-alibi collects this module too (and cannot install kserve
beside TensorFlow), while a missing client fails these tests rather than skipping them."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

from tests.runtime.runtime_helpers import reference_rows, sample_of
from tests.runtime.test_cli_serve import Served, serve, wait_ready

pytestmark = pytest.mark.integration

MODEL = "model"


@pytest.fixture(scope="module")
def served(example_model_dir: Path) -> Iterator[Served]:
    server = serve(example_model_dir)
    assert wait_ready(server.url).status_code == 200
    yield server
    server.stop()


@pytest.fixture(scope="module")
def expected(served: Served, example_model_dir: Path) -> dict[str, Any]:
    """What /predict answers for the first five reference rows."""
    rows = reference_rows(example_model_dir, 5)
    body = httpx.post(f"{served.url}/predict", json={"instances": rows.tolist()}).json()
    return {"rows": rows, "proba": np.array(body["probabilities"]), "body": body}


def client_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"{name} is missing; make install puts the runtime's `clients` extra in: {exc}")


@pytest.fixture(scope="module")
def triton() -> ModuleType:
    """Triton's HTTP client, ``tritonclient.http``."""
    return client_module("tritonclient.http")


@pytest.fixture(scope="module")
def kserve() -> SimpleNamespace:
    """KServe's REST client and its request types."""
    client = client_module("kserve.inference_client")
    types = client_module("kserve.protocol.infer_type")
    return SimpleNamespace(
        Client=client.InferenceRESTClient,
        Config=client.RESTConfig,
        InferInput=types.InferInput,
        InferRequest=types.InferRequest,
        RequestedOutput=types.RequestedOutput,
    )


@pytest.fixture
def triton_client(served: Served, triton: ModuleType) -> Iterator[Any]:
    client = triton.InferenceServerClient(url=served.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture
def triton_input(triton: ModuleType) -> Any:
    """Rows as a JSON (not binary) `features` tensor of Triton's client."""

    def make(rows: np.ndarray, datatype: str = "FP64", binary: bool = False) -> Any:
        tensor = triton.InferInput("features", list(rows.shape), datatype)
        tensor.set_data_from_numpy(rows, binary_data=binary)
        return tensor

    return make


def test_triton_client_sees_a_live_ready_server_and_the_model(triton_client: Any) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL)
    assert not triton_client.is_model_ready("another-model")
    assert triton_client.get_server_metadata()["name"] == "aiops-runtime"
    metadata = triton_client.get_model_metadata(MODEL)
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, 30]}]
    assert {o["name"] for o in metadata["outputs"]} == {"probabilities", "label"}


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_triton_client_infers_what_predict_answers(
    triton: ModuleType,
    triton_client: Any,
    triton_input: Any,
    expected: dict[str, Any],
    datatype: str,
) -> None:
    rows = expected["rows"].astype(np.float64 if datatype == "FP64" else np.float32)
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("label",)]
    result = triton_client.infer(
        MODEL, [triton_input(rows, datatype)], outputs=outputs, request_id="t-1"
    )
    assert result.get_response()["id"] == "t-1"
    assert result.as_numpy("probabilities") is None  # not asked for
    labels = result.as_numpy("label")
    assert labels is not None
    assert labels.dtype == np.int64
    assert labels.tolist() == np.argmax(expected["proba"], axis=1).tolist()
    everything = triton_client.infer(MODEL, [triton_input(rows, datatype)])
    proba = everything.as_numpy("probabilities")
    assert proba is not None
    assert proba.shape == (5, 2)
    tolerance = 0 if datatype == "FP64" else 1e-6
    assert np.allclose(proba, expected["proba"], rtol=0, atol=tolerance)


def test_triton_client_gets_errors_that_name_the_field(
    triton_client: Any, triton_input: Any, expected: dict[str, Any]
) -> None:
    error = client_module("tritonclient.utils").InferenceServerException
    with pytest.raises(error) as wrong_shape:
        triton_client.infer(MODEL, [triton_input(expected["rows"][:, :29].copy())])
    assert "inputs[0].shape" in wrong_shape.value.message()
    with pytest.raises(error) as unknown:
        triton_client.infer("another-model", [triton_input(expected["rows"])])
    assert "unknown model" in unknown.value.message()
    with pytest.raises(error) as refused:
        triton_client.infer(MODEL, [triton_input(expected["rows"], binary=True)])
    assert "binary tensor extension is not supported" in refused.value.message()


def kserve_request(kserve: SimpleNamespace, rows: np.ndarray, *outputs: str) -> Any:
    tensor = kserve.InferInput(name="features", shape=list(rows.shape), datatype="FP64", data=rows)
    return kserve.InferRequest(
        model_name=MODEL,
        infer_inputs=[tensor],
        request_id="k-1",
        request_outputs=[kserve.RequestedOutput(name) for name in outputs] or None,
    )


def test_kserve_client_infers_what_predict_answers(
    served: Served, kserve: SimpleNamespace, expected: dict[str, Any]
) -> None:
    rows = expected["rows"]

    async def run() -> tuple[bool, bool, bool, Any, Any]:
        async with kserve.Client(kserve.Config(protocol="v2", retries=0)) as client:
            live = await client.is_server_live(served.url)
            ready = await client.is_server_ready(served.url)
            model_ready = await client.is_model_ready(served.url, MODEL)
            both = await client.infer(served.url, kserve_request(kserve, rows), MODEL)
            label = await client.infer(served.url, kserve_request(kserve, rows, "label"), MODEL)
            return live, ready, model_ready, both, label

    live, ready, model_ready, both, label = asyncio.run(run())
    assert (live, ready, model_ready) == (True, True, True)
    assert both.id == "k-1"
    outputs = {output.name: output.as_numpy() for output in both.outputs}
    assert np.array_equal(outputs["probabilities"], expected["proba"])
    assert [expected["body"]["classes"][i] for i in outputs["label"]] == expected["body"][
        "predictions"
    ]
    assert [output.name for output in label.outputs] == ["label"]


def test_kserve_client_sees_errors_that_name_the_field(
    served: Served, kserve: SimpleNamespace, expected: dict[str, Any]
) -> None:
    rows = expected["rows"].copy()
    rows[2, 4] = np.inf
    request = kserve_request(kserve, rows)

    async def run() -> list[httpx.HTTPStatusError]:
        errors = []
        async with kserve.Client(kserve.Config(protocol="v2", retries=0)) as client:
            for model in (MODEL, "x"):
                with pytest.raises(httpx.HTTPStatusError) as raised:
                    await client.infer(served.url, request, model)
                errors.append(raised.value)
        return errors

    non_finite, unknown = asyncio.run(run())
    assert non_finite.response.status_code == 400
    assert "inputs[0].data[64]" in str(non_finite)
    assert unknown.response.status_code == 404


def test_client_rows_are_counted_like_predict_rows(
    served: Served, triton_client: Any, triton_input: Any, expected: dict[str, Any]
) -> None:
    before = sample_of(served.url, "model_predictions_total")
    triton_client.infer(MODEL, [triton_input(expected["rows"])])
    assert sample_of(served.url, "model_predictions_total") - before == 5
