"""The monitor end to end: alarm policy, /drift snapshot, metrics, logs, the background worker."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from aiops_runtime.detectors import NativeMMD, TestResult, alibi_available
from aiops_runtime.drift import CHECK_MESSAGE, DriftMonitor
from aiops_runtime.settings import DriftConfig
from tests.runtime.drift_helpers import OUT_OF_RANGE, RUNBOOK_SAMPLE, MonitorFactory, Split

SNAPSHOT_KEYS = {
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


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def feed(monitor: DriftMonitor, rows: np.ndarray) -> list[bool]:
    """Append rows one at a time, running due checks like the worker; the flag of each check."""
    flags = []
    for row in rows:
        monitor.append(row)
        if monitor.run_due_checks():
            flags.append(monitor.snapshot()["consecutive_flags"] > 0)
    return flags


def test_consecutive_flags_raise_one_event_that_clears_after_a_clean_check(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor(window_size=50, check_every=50, consecutive=2)
    clean = split.held_out
    burst = np.tile(OUT_OF_RANGE, (50, 1))

    assert feed(monitor, clean[:50]) == [False]
    assert feed(monitor, burst) == [True]
    assert monitor.snapshot()["drift_events"] == 0  # one flag is not yet an event
    assert feed(monitor, burst) == [True]
    snap = monitor.snapshot()
    assert (snap["drift"], snap["drift_events"]) == (True, 1)
    assert snap["last_drift_time"] is not None
    assert feed(monitor, burst) == [True]
    assert monitor.snapshot()["drift_events"] == 1  # still the same event

    assert feed(monitor, clean[50:100]) == [False]
    snap = monitor.snapshot()
    assert (snap["drift"], snap["drift_events"]) == (False, 1)
    assert feed(monitor, burst) == [True]
    assert feed(monitor, clean[100:150]) == [False]  # a flag, then clean: no event
    assert feed(monitor, np.tile(OUT_OF_RANGE, (100, 1))) == [True, True]
    assert monitor.snapshot()["drift_events"] == 2


def test_runbook_sample_served_repeatedly_raises_no_drift_event(
    make_monitor: MonitorFactory,
) -> None:
    monitor = make_monitor()
    feed(monitor, np.tile(RUNBOOK_SAMPLE, (1000, 1)))
    snap = monitor.snapshot()
    assert snap["checks"] >= 5
    assert snap["drift_events"] == 0
    assert snap["last_distinct_rows"] == 1


def test_burst_of_the_out_of_range_vector_raises_exactly_one_event(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor()
    feed(monitor, split.held_out[:200])
    feed(monitor, np.tile(OUT_OF_RANGE, (600, 1)))
    snap = monitor.snapshot()
    assert snap["drift"] is True
    assert snap["drift_events"] == 1


def test_snapshot_has_every_key_of_the_drift_contract(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor(window_size=40, check_every=20, consecutive=3, p_value_threshold=0.01)
    before = monitor.snapshot()
    assert before.keys() >= SNAPSHOT_KEYS
    assert before["last_check_time"] is None
    assert before["last_p_value"] is None
    feed(monitor, split.held_out[:60])
    snap = monitor.snapshot()
    assert snap["detector"] == "mmd"
    assert snap["engine"] == "native"
    assert snap["p_value_threshold"] == 0.01
    assert (snap["window_size"], snap["check_every"], snap["consecutive"]) == (40, 20, 3)
    assert (snap["window_fill"], snap["samples_seen"], snap["checks"]) == (40, 60, 2)
    assert 0 < snap["last_p_value"] <= 1
    assert snap["last_check_time"].endswith("Z")
    assert (snap["drift"], snap["drift_events"], snap["last_drift_time"]) == (False, 0, None)


def test_drift_events_reach_the_prometheus_metrics(
    make_monitor: MonitorFactory, split: Split
) -> None:
    events = metric("model_drift_events_total")
    flagged = metric("model_drift_checks_total", result="drift")
    monitor = make_monitor(window_size=50, check_every=50, consecutive=2, p_value_threshold=0.02)
    assert metric("model_drift_p_value_threshold") == 0.02
    feed(monitor, split.held_out[:50])
    feed(monitor, np.tile(OUT_OF_RANGE, (100, 1)))
    assert metric("model_drift_events_total") == events + 1
    assert metric("model_drift_checks_total", result="drift") == flagged + 2
    assert metric("model_drift_active") == 1
    assert metric("model_drift_window_fill") == 50
    assert metric("model_drift_p_value") < 0.02
    assert metric("model_drift_check_duration_seconds_count") >= 3


def test_each_check_logs_one_drift_detection_result_line(
    make_monitor: MonitorFactory, split: Split, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = make_monitor(window_size=50, check_every=50, consecutive=1)
    with caplog.at_level(logging.INFO, logger="aiops_runtime.drift"):
        feed(monitor, split.held_out[:50])
        feed(monitor, np.tile(OUT_OF_RANGE, (50, 1)))
    lines = [r for r in caplog.records if r.getMessage() == CHECK_MESSAGE]
    assert len(lines) == 2
    clean, drifted = lines
    assert clean.name == "aiops_runtime.drift"
    for record in lines:
        for field in ("p_value", "threshold", "drift", "window_fill", "detector", "engine"):
            assert hasattr(record, field), field
    assert (clean.drift, drifted.drift) == (False, True)  # type: ignore[attr-defined]
    assert drifted.drift_event is True  # type: ignore[attr-defined]
    assert drifted.p_value < drifted.threshold == 0.05  # type: ignore[attr-defined]
    assert drifted.window_fill == 50  # type: ignore[attr-defined]


def test_the_worker_thread_runs_checks_in_the_background(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor(window_size=50, check_every=25)
    monitor.start()
    monitor.append(split.held_out[:100])
    deadline = time.monotonic() + 20
    while monitor.snapshot()["checks"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    monitor.stop()
    assert monitor.snapshot()["checks"] == 1
    assert monitor.snapshot()["checks_skipped"] == 2


class BlockingDetector(NativeMMD):
    """The native test, held at its start until released: a check that takes as long as we like."""

    def __init__(self, reference: np.ndarray) -> None:
        super().__init__(reference, permutations=20, seed=0)
        self.started = threading.Event()
        self.release = threading.Event()

    def test(self, window: np.ndarray) -> TestResult:
        self.started.set()
        self.release.wait(30)
        return super().test(window)


def test_append_never_waits_for_a_running_check(split: Split) -> None:
    probe = DriftMonitor(split.reference, DriftConfig())
    detector = BlockingDetector(probe.reference)
    monitor = DriftMonitor(
        split.reference, DriftConfig(window_size=50, check_every=50), detector=detector
    )
    monitor.start()
    try:
        monitor.append(split.held_out[:50])
        assert detector.started.wait(20), "the check did not start"
        done = threading.Event()

        def serve_requests() -> None:
            for row in split.held_out[50:250]:
                monitor.append(row)
            done.set()

        threading.Thread(target=serve_requests, daemon=True).start()
        # The check is still blocked, yet all 200 appends finish.
        assert done.wait(10), "append waited for the running check"
        assert not detector.release.is_set()
        assert monitor.snapshot()["samples_seen"] == 250
        assert monitor.snapshot()["checks"] == 0
    finally:
        detector.release.set()
        monitor.stop()
    assert monitor.snapshot()["checks"] >= 1


def test_update_config_keeps_the_window_and_applies_only_the_fields_given(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor(window_size=100, check_every=50, consecutive=3)
    feed(monitor, split.held_out[:120])
    newest = monitor.standardize(split.held_out[80:120])
    monitor.update_config(DriftConfig.model_validate({"pValueThreshold": 0.2, "windowSize": 40}))
    snap = monitor.snapshot()
    assert snap["p_value_threshold"] == 0.2
    assert (snap["window_size"], snap["check_every"], snap["consecutive"]) == (40, 50, 3)
    assert (snap["window_fill"], snap["samples_seen"]) == (40, 120)
    window, _ = monitor._buffer.latest()
    np.testing.assert_allclose(monitor.standardize(window), newest)
    assert metric("model_drift_p_value_threshold") == 0.2


@pytest.mark.skipif(alibi_available(), reason="checks the refusal when alibi-detect is missing")
def test_alibi_engine_without_alibi_is_refused_and_the_old_config_kept(
    make_monitor: MonitorFactory, split: Split, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = make_monitor()
    with caplog.at_level(logging.ERROR, logger="aiops_runtime.drift"):
        monitor.update_config(DriftConfig(engine="alibi"))
    assert monitor.config.engine == "native"
    assert "alibi-detect" in caplog.text
    with pytest.raises(ValueError, match="alibi-detect"):
        DriftMonitor(split.reference, DriftConfig(engine="alibi"))
