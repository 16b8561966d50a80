"""The app runs the drift monitor beside /predict: requests keep answering, /drift shows it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from aiops_runtime.settings import RuntimeSettings
from tests.runtime.runtime_helpers import app_client, reference_rows

pytestmark = pytest.mark.anyio

DRIFT_KEYS = {
    "detector",
    "engine",
    "p_value_threshold",
    "window_size",
    "check_every",
    "consecutive",
    "window_fill",
    "samples_seen",
    "checks",
    "last_p_value",
    "last_check_time",
    "drift",
    "drift_events",
    "last_drift_time",
}


async def test_predict_keeps_answering_with_drift_on_and_drift_reports_checks(
    make_settings: Callable[..., RuntimeSettings], example_model_dir: Path
) -> None:
    settings = make_settings(
        drift_enabled=True, drift_window_size=50, drift_check_every=25, drift_p_threshold=0.01
    )
    rows = reference_rows(example_model_dir, 200)
    async with app_client(settings) as client:
        state = client.app.state.runtime  # type: ignore[attr-defined]
        assert state.drift is not None
        before = (await client.get("/drift")).json()
        assert before["enabled"] is True
        assert set(before) >= DRIFT_KEYS
        assert before["p_value_threshold"] == 0.01
        for start in range(0, 200, 10):
            batch = rows[start : start + 10]
            responses = await asyncio.gather(
                *(client.post("/predict", json={"features": row}) for row in batch.tolist())
            )
            assert [r.status_code for r in responses] == [200] * len(batch)
        for _ in range(500):
            body = (await client.get("/drift")).json()
            if body["checks"] >= 1:
                break
            await asyncio.sleep(0.02)
        assert body["samples_seen"] == 200
        assert body["window_fill"] == 50
        assert body["checks"] >= 1
        assert 0.0 <= body["last_p_value"] <= 1.0
    assert state.drift._thread is None, "the monitor's worker is stopped on shutdown"


async def test_the_served_model_scores_the_window_for_target_both(
    make_settings: Callable[..., RuntimeSettings], example_model_dir: Path
) -> None:
    settings = make_settings(
        drift_enabled=True, drift_target="both", drift_window_size=50, drift_check_every=50
    )
    rows = reference_rows(example_model_dir, 50)
    async with app_client(settings) as client:
        for row in rows.tolist():
            assert (await client.post("/predict", json={"features": row})).status_code == 200
        for _ in range(500):
            body = (await client.get("/drift")).json()
            if body["checks"] >= 1:
                break
            await asyncio.sleep(0.02)
        assert body["target"] == "both"
        assert body["checks"] >= 1
        # Rows of the reference itself: neither the inputs nor the predictions moved.
        assert body["last_p_value"] > 0.05
        assert body["drift"] is False


async def test_the_window_keeps_the_probabilities_each_request_was_answered_with(
    make_settings: Callable[..., RuntimeSettings], example_model_dir: Path
) -> None:
    settings = make_settings(drift_enabled=True, drift_window_size=20, drift_check_every=1000)
    rows = reference_rows(example_model_dir, 12)
    async with app_client(settings) as client:
        answered = [
            (await client.post("/predict", json={"features": row})).json()["probabilities"][0]
            for row in rows[:4].tolist()
        ]
        oip = await client.post(
            "/v2/models/model/infer",
            json={
                "inputs": [
                    {
                        "name": "features",
                        "datatype": "FP64",
                        "shape": [8, 30],
                        "data": rows[4:].ravel().tolist(),
                    }
                ]
            },
        )
        answered += np.reshape(oip.json()["outputs"][0]["data"], (8, 2)).tolist()
        await asyncio.sleep(0)  # the feed flushes once per loop turn
        monitor = client.app.state.runtime.drift  # type: ignore[attr-defined]
        window, total = monitor._buffer.latest()
    assert total == 12
    np.testing.assert_array_equal(window[:, :30], rows)
    np.testing.assert_allclose(window[:, 30:], answered, rtol=0, atol=1e-15)


async def test_drift_without_reference_is_reported_off(
    make_settings: Callable[..., RuntimeSettings], example_model_dir: Path
) -> None:
    import hashlib

    model = example_model_dir / "model.skops"
    settings = make_settings(
        model_dir=None,
        model_uri=model.as_uri(),
        model_sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
        drift_enabled=True,
    )
    async with app_client(settings) as client:
        body = (await client.get("/drift")).json()
        assert body["enabled"] is False
        assert "reference" in body["reason"]
        ok = await client.post("/predict", json={"features": np.ones(30).tolist()})
        assert ok.status_code == 200


async def test_drift_config_file_sets_and_changes_the_threshold(
    make_settings: Callable[..., RuntimeSettings], tmp_path: Path
) -> None:
    config = tmp_path / "drift.json"
    config.write_text(json.dumps({"pValueThreshold": 0.2, "windowSize": 60}))
    settings = make_settings(
        drift_enabled=True, drift_config_file=config, drift_reload_interval_s=0.05
    )
    async with app_client(settings) as client:
        body = (await client.get("/drift")).json()
        assert (body["p_value_threshold"], body["window_size"]) == (0.2, 60)
        config.write_text(json.dumps({"pValueThreshold": 0.01, "windowSize": 60}))
        for _ in range(200):
            body = (await client.get("/drift")).json()
            if body["p_value_threshold"] == 0.01:
                break
            await asyncio.sleep(0.02)
        assert body["p_value_threshold"] == 0.01
        assert (await client.post("/predict", json={"features": [1.0] * 30})).status_code == 200


def _nice_of(native_id: int) -> int:
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


async def test_drift_worker_runs_at_lower_priority_than_requests(
    make_settings: Callable[..., RuntimeSettings],
) -> None:
    import threading

    async with app_client(make_settings(drift_enabled=True, drift_worker_nice=7)):
        workers = [t for t in threading.enumerate() if t.name == "drift-monitor"]
        assert len(workers) == 1
        assert workers[0].native_id is not None
        assert _nice_of(workers[0].native_id) == 7
        assert _nice_of(threading.get_native_id()) < 7


async def test_the_monitor_is_built_off_the_event_loop(
    make_settings: Callable[..., RuntimeSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detectors precompute on the reference (seconds for a large one): that must not run on
    the event loop's thread, where it would stall /healthz and /readyz."""
    from aiops_runtime import drift

    built = drift.DriftMonitor.__init__
    threads: list[threading.Thread] = []

    def recording_init(self: object, *args: object, **kwargs: object) -> None:
        threads.append(threading.current_thread())
        built(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(drift.DriftMonitor, "__init__", recording_init)
    async with app_client(make_settings(drift_enabled=True)) as client:
        loop_thread = threading.current_thread()
        assert client.app.state.runtime.drift is not None  # type: ignore[attr-defined]
    assert len(threads) == 1
    assert threads[0] is not loop_thread
