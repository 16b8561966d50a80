"""Logs are one JSON object per line with stable keys, and never carry request bodies."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aiops_runtime.logs import configure_logging
from aiops_runtime.settings import RuntimeSettings
from tests.runtime.runtime_helpers import RUNBOOK_FEATURES, app_client


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("INFO", "breast-cancer", stream)
    yield stream
    logging.getLogger().handlers.clear()


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_extra_fields_become_top_level_keys(log_stream: io.StringIO) -> None:
    logging.getLogger("aiops_runtime.drift").info(
        "Drift detection result", extra={"p_value": 0.31, "threshold": 0.05, "drift": False}
    )
    (line,) = lines_of(log_stream)
    assert line["message"] == "Drift detection result"
    assert line["logger"] == "aiops_runtime.drift"
    assert line["model"] == "breast-cancer"
    assert line["level"] == "INFO"
    assert line["time"].endswith("Z")
    assert (line["p_value"], line["threshold"], line["drift"]) == (0.31, 0.05, False)


def test_exceptions_stay_on_one_line(log_stream: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("aiops_runtime.dataplane").exception("failed")
    (line,) = lines_of(log_stream)
    assert "ValueError: boom" in line["exception"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_rejected_request_line_has_id_and_latency_but_no_body(
    log_stream: io.StringIO, make_settings: Callable[..., RuntimeSettings]
) -> None:
    secret = [*RUNBOOK_FEATURES[:29], "4242.4242"]
    async with app_client(make_settings()) as client:
        response = await client.post("/predict", json={"features": secret})
        await client.post("/predict", json={"features": RUNBOOK_FEATURES})
    assert response.status_code == 422
    rejected = [line for line in lines_of(log_stream) if line["message"] == "Request rejected"]
    assert len(rejected) == 1, "with ACCESS_LOG=errors only the rejected request is logged"
    line = rejected[0]
    assert line["request_id"] == response.json()["request_id"]
    assert line["latency_ms"] >= 0
    assert (line["status"], line["reason"], line["field"]) == (422, "wrong_type", "features[29]")
    assert "4242.4242" not in log_stream.getvalue()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_access_log_all_logs_served_requests(
    log_stream: io.StringIO, make_settings: Callable[..., RuntimeSettings]
) -> None:
    async with app_client(make_settings(access_log="all")) as client:
        response = await client.post("/predict", json={"features": RUNBOOK_FEATURES})
    served = [line for line in lines_of(log_stream) if line["message"] == "Request served"]
    assert [line["request_id"] for line in served] == [response.json()["request_id"]]
    assert served[0]["rows"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_summary_line_counts_requests(
    log_stream: io.StringIO, make_settings: Callable[..., RuntimeSettings]
) -> None:
    import asyncio

    async with app_client(make_settings(log_summary_interval_s=0.2)) as client:
        for _ in range(3):
            await client.post("/predict", json={"features": RUNBOOK_FEATURES})
        await client.post("/predict", json={"features": []})
        for _ in range(100):
            if any(line["message"] == "Request summary" for line in lines_of(log_stream)):
                break
            await asyncio.sleep(0.02)
    summary = next(line for line in lines_of(log_stream) if line["message"] == "Request summary")
    assert (summary["requests"], summary["rows"], summary["errors"]) == (4, 3, 1)
    assert summary["latency_ms_max"] >= summary["latency_ms_mean"] > 0
