"""Reading a runtime's GET /drift: the URL pattern, the runtime's real snapshot, and every way a
read can fail becoming a DriftReadError (never another exception)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest

from aiops_operator.drift_client import (
    DriftClient,
    DriftReadError,
    DriftReading,
    Pod,
    check_pattern,
    drift_url,
    parse_snapshot,
    reads_each_pod,
)
from aiops_operator.settings import OperatorSettings
from tests.fakes import fake_server


def test_default_pattern_reads_each_ready_pod_at_its_ip() -> None:
    pattern = OperatorSettings().drift_url_pattern
    check_pattern(pattern)
    assert reads_each_pod(pattern)
    pod = Pod("breast-cancer-6f7c-abcde", "10.244.0.7")
    assert drift_url(pattern, "breast-cancer", "ml", 8000, pod) == "http://10.244.0.7:8000/drift"
    assert (
        drift_url(pattern, "a", "ml", 8000, Pod("a-1", "fd00::7")) == "http://[fd00::7]:8000/drift"
    )


def test_a_pattern_naming_no_pod_is_read_once_through_the_service() -> None:
    pattern = "http://{name}.{namespace}.svc:{port}"
    check_pattern(pattern)
    assert not reads_each_pod(pattern)
    assert drift_url(pattern, "breast-cancer", "ml", 8000) == (
        "http://breast-cancer.ml.svc:8000/drift"
    )


def test_kubectl_proxys_pod_pattern_names_each_pod() -> None:
    pattern = "http://127.0.0.1:18701/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy"
    assert reads_each_pod(pattern)
    assert drift_url(pattern, "m", "ml", 8000, Pod("m-1")) == (
        "http://127.0.0.1:18701/api/v1/namespaces/ml/pods/m-1:8000/proxy/drift"
    )


def test_a_laptop_pattern_may_ignore_placeholders() -> None:
    assert drift_url("http://127.0.0.1:18000/", "a", "b", 8000) == "http://127.0.0.1:18000/drift"


@pytest.mark.parametrize(
    ("pattern", "match"),
    [
        ("http://{name}.{ns}.svc:{port}", "unknown placeholders"),
        ("{name}.{namespace}.svc:{port}", "http"),
    ],
)
def test_bad_patterns_are_refused_with_a_reason(pattern: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_pattern(pattern)


def test_the_runtimes_real_snapshot_parses(example_model_dir: Path) -> None:
    from aiops_runtime.drift import DriftMonitor
    from aiops_runtime.settings import DriftConfig

    reference = np.load(example_model_dir / "reference.npy")
    config = DriftConfig.model_validate(
        {"pValueThreshold": 0.2, "windowSize": 20, "checkEvery": 10, "consecutive": 1}
    )
    monitor = DriftMonitor(reference, config, model_name="m", seed=1)
    monitor.append(reference[:20] * 3.0)
    monitor.check_now()
    got = parse_snapshot({"enabled": True, **monitor.snapshot()})
    assert got.enabled
    assert got.threshold == pytest.approx(0.2)
    assert got.checks == 1
    assert got.drift is True
    assert got.drift_events == 1
    assert got.last_drift_time is not None
    assert got.last_check_time is not None
    assert got.window_size == 20


def test_the_runtimes_drifted_feature_names_are_read(example_model_dir: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    from aiops_runtime.drift import DriftMonitor
    from aiops_runtime.settings import DriftConfig

    reference = np.load(example_model_dir / "reference.npy")
    names = [str(n) for n in load_breast_cancer().feature_names]
    monitor = DriftMonitor(reference, DriftConfig(consecutive=1), seed=1, feature_names=names)
    window = reference[:100].copy()
    window[:, 0] *= 1.5
    monitor.append(window)
    monitor.check_now()
    got = parse_snapshot({"enabled": True, **monitor.snapshot()})
    assert got.drifted_features[0][0] == "mean radius"
    assert got.features_text().startswith("mean radius (p=")
    assert got.calibration_status == "uncalibrated"
    assert "no calibration" in got.calibration_reason
    assert got.consecutive == 1


def test_a_calibrated_runtimes_rule_is_read() -> None:
    calibration = {"status": "calibrated", "reason": "", "expected_false_alarm_rows": 3.55e8}
    got = parse_snapshot({**VALID_SNAPSHOT, "consecutive": 5, "calibration": calibration})
    assert (got.calibration_status, got.consecutive) == ("calibrated", 5)
    assert got.expected_false_alarm_rows == 3.55e8
    with pytest.raises(DriftReadError):
        parse_snapshot({**VALID_SNAPSHOT, "calibration": {"expected_false_alarm_rows": "many"}})


VALID_SNAPSHOT = {"p_value_threshold": 0.05, "checks": 1, "drift": False, "drift_events": 0}


def test_a_runtime_without_drift_detection_is_read_as_disabled() -> None:
    got = parse_snapshot({"enabled": False, "reason": "no reference sample configured"})
    assert got == DriftReading(enabled=False, reason="no reference sample configured")


@pytest.mark.parametrize("body", [[1, 2], {"enabled": True}, {"p_value_threshold": "x",
                                  "checks": 1, "drift": False, "drift_events": 0}])  # fmt: skip
def test_answers_that_are_not_drift_state_are_invalid(body: object) -> None:
    with pytest.raises(DriftReadError) as err:
        parse_snapshot(body)
    assert err.value.kind == "invalid"


def read_once(base: str, timeout_s: float = 2.0) -> DriftReading:
    async def go() -> DriftReading:
        client = DriftClient(base, 8000, timeout_s)
        try:
            return await client.read("ms", "ns")
        finally:
            await client.close()

    return asyncio.run(go())


def test_reads_drift_state_over_http() -> None:
    body = {
        "enabled": True,
        "p_value_threshold": 0.05,
        "checks": 2,
        "drift": True,
        "drift_events": 1,
        "last_p_value": 0.001,
        "last_drift_time": "2026-01-01T00:00:00.000Z",
    }
    with fake_server(200, body) as runtime:
        got = read_once(runtime.base)
        (request,) = runtime.received()
    assert request.path == "/drift"
    assert got.drift
    assert got.last_p_value == pytest.approx(0.001)


@pytest.mark.parametrize(("status", "body", "kind"), [(503, {}, "http"), (200, "[", "invalid")])
def test_http_errors_and_garbage_become_read_errors(status: int, body: object, kind: str) -> None:
    with fake_server(status, body) as runtime, pytest.raises(DriftReadError) as err:
        read_once(runtime.base)
    assert err.value.kind == kind


def test_a_runtime_without_a_model_is_not_loaded_with_its_own_reason(
    example_model_dir: Path,
) -> None:
    from aiops_runtime.settings import RuntimeSettings
    from tests.runtime.runtime_helpers import app_client

    async def drift_answer() -> tuple[int, object]:
        wrong = RuntimeSettings(
            model_uri=f"file://{example_model_dir}/model.skops", model_sha256="0" * 64
        )
        async with app_client(wrong) as client:
            response = await client.get("/drift")
        return response.status_code, response.json()

    status, body = asyncio.run(drift_answer())
    with fake_server(status, body) as runtime, pytest.raises(DriftReadError) as err:
        read_once(runtime.base)
    assert err.value.kind == "notloaded"
    assert "digest" in err.value.message
    assert "0" * 64 in err.value.message


def test_a_not_loaded_message_is_one_bounded_line() -> None:
    body = {"ready": False, "reason": "fetch_failed", "message": "line one\nline two " + "x" * 5000}
    with fake_server(503, body) as runtime, pytest.raises(DriftReadError) as err:
        read_once(runtime.base)
    assert err.value.kind == "notloaded"
    assert "\n" not in err.value.message
    assert len(err.value.message) <= 400


def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DriftReadError) as err:
        read_once(f"http://127.0.0.1:{port}")
    assert err.value.kind == "unreachable"


def test_a_runtime_that_never_answers_times_out_as_unreachable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection but never answers
        port = listener.getsockname()[1]
        with pytest.raises(DriftReadError) as err:
            read_once(f"http://127.0.0.1:{port}", timeout_s=0.3)
    assert err.value.kind == "unreachable"
    assert "timed out" in err.value.message
