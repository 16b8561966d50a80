"""The calibrated event rule: run length from the budget, calibrated p-values, the artifact."""

from __future__ import annotations

import hashlib
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from aiops_runtime.calibration import (
    Calibration,
    consecutive_for_budget,
    event_rule,
    from_json,
    to_json,
)
from aiops_runtime.drift import DriftMonitor
from aiops_runtime.model_store import ArtifactError, load_artifacts
from aiops_runtime.settings import DriftConfig, RuntimeSettings
from aiops_runtime.train import calibrate
from tests.runtime.drift_helpers import OUT_OF_RANGE, training_split

WEEK_AT_100RPS = 100 * 86_400 * 7


def uniform_null(n: int) -> Calibration:
    """A reference whose raw p-values are exactly uniform on n levels (statistic = rank)."""
    null = tuple(((i + 1) / n, float(n - i)) for i in range(n))
    return Calibration(detector="mmd", window_size=100, permutations=100, null=null)


@cache
def seed42_calibration() -> Calibration:
    split = training_split()
    return calibrate(split.reference, split.held_out, DriftConfig(), [], checks=300, seed=1)


def test_the_default_budget_needs_five_flags_in_a_row_with_tumbling_windows() -> None:
    # 100 / (0.95 x 0.05^4) = 1.7e6 rows < a week; 0.05^5 gives 6.7e7 >= 6.048e7.
    assert consecutive_for_budget(0.05, 100, 100, WEEK_AT_100RPS) == 5
    assert consecutive_for_budget(0.05, 100, 100, 100 / (0.95 * 0.05**4)) == 4
    assert consecutive_for_budget(0.01, 100, 100, WEEK_AT_100RPS) == 3  # 1.0e8 rows


def test_overlapping_windows_count_only_their_disjoint_checks() -> None:
    # checkEvery 50 of windowSize 100: every second check is disjoint; 50 / 0.05^5 >= a week.
    assert consecutive_for_budget(0.05, 50, 100, WEEK_AT_100RPS) == 10


def test_calibrated_p_is_the_smoothed_share_of_null_checks_at_least_as_extreme() -> None:
    calibration = uniform_null(99)
    assert calibration.calibrated_p(1 / 99, 99.0) == pytest.approx(2 / 100)
    assert calibration.calibrated_p(1e-9, 0.0) == pytest.approx(1 / 100)  # beyond all of them
    assert calibration.calibrated_p(1.0, 0.0) == pytest.approx(1.0)


def test_ties_of_a_discrete_p_value_are_broken_by_the_statistic() -> None:
    # An unlucky reference: half its null checks sit at the smallest permutation p-value.
    null = tuple((1 / 101, float(s)) for s in range(50)) + tuple((0.5, 0.0) for _ in range(50))
    calibration = Calibration(detector="mmd", window_size=100, permutations=100, null=null)
    assert calibration.calibrated_p(1 / 101, 1000.0) == pytest.approx(1 / 101)
    assert calibration.calibrated_p(1 / 101, 24.5) == pytest.approx(26 / 101)


def test_the_rule_reports_the_rows_it_achieves_with_a_range() -> None:
    rule = event_rule(uniform_null(1999), 0.05, 100, 100, WEEK_AT_100RPS)
    assert rule.consecutive == 5
    assert rule.flag_rate == pytest.approx(0.05, abs=0.002)
    low, high = rule.expected_false_alarm_rows_range
    assert low < rule.expected_false_alarm_rows < high
    f = rule.flag_rate
    assert rule.expected_false_alarm_rows == pytest.approx(100 / ((1 - f) * f**5), rel=0.01)
    assert rule.expected_false_alarm_rows >= WEEK_AT_100RPS


def test_the_artifact_round_trips_byte_for_byte() -> None:
    calibration = Calibration(
        detector="mmd",
        window_size=100,
        permutations=100,
        null=((0.011, 0.25), (1.0, -math.inf)),
        feature_names=("mean radius", "worst area"),
        held_out_rows=285,
        seed=42,
    )
    data = to_json(calibration)
    assert from_json(data) == calibration
    assert to_json(from_json(data)) == data


@pytest.mark.parametrize(
    "data", [b"[]", b"{}", b'{"format_version": 2}', b"not json", b'{"format_version": 1}']
)
def test_what_is_not_a_calibration_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"calibration|format_version"):
        from_json(data)


def test_the_simulation_does_not_depend_on_the_blas_threads() -> None:
    split = training_split()
    runs = []
    for threads in (1, 2):
        monitor = DriftMonitor(split.reference, DriftConfig(), seed=5)
        with threadpool_limits(limits=threads, user_api="blas"):
            runs.append(to_json(calibrate(split.reference, split.held_out, DriftConfig(), [],
                                          checks=30, seed=5)))  # fmt: skip
        monitor.stop()
    assert runs[0] == runs[1]


def test_a_calibrated_monitor_flags_at_most_alpha_of_its_own_null_checks() -> None:
    calibration = seed42_calibration()
    assert calibration.null_flag_count(0.05) <= 0.05 * (len(calibration.null) + 1)


def test_the_decision_p_value_is_the_larger_of_the_raw_and_the_calibrated() -> None:
    """The calibration only adds caution (a held-out sample is too small to loosen the test)."""
    calibration = uniform_null(99)  # raw p-values uniform: calibrated = raw, up to smoothing
    assert calibration.decision_p(0.5, 50.0) == pytest.approx(calibration.calibrated_p(0.5, 50.0))
    unlucky = Calibration(
        detector="mmd",
        window_size=100,
        permutations=100,
        null=tuple((0.011, 1.0) for _ in range(99)),
    )
    assert unlucky.decision_p(0.011, 0.5) == pytest.approx(1.0)  # all null checks as extreme
    lucky = Calibration(
        detector="mmd", window_size=100, permutations=100, null=tuple((1.0, 0.0) for _ in range(99))
    )
    assert lucky.decision_p(0.03, 0.5) == pytest.approx(0.03)  # never below the raw p-value


def test_a_calibrated_monitor_reports_its_rule_and_catches_the_runbook_burst() -> None:
    split = training_split()
    monitor = DriftMonitor(split.reference, DriftConfig(), seed=2, calibration=seed42_calibration())
    snapshot = monitor.snapshot()
    assert snapshot["calibration"]["status"] == "calibrated"
    assert snapshot["consecutive"] == snapshot["calibration"]["consecutive"] == 5
    assert snapshot["calibration"]["expected_false_alarm_rows"] > 1e7
    for check in range(1, 6):
        monitor.append(np.tile(OUT_OF_RANGE, (100, 1)))
        fields = monitor.check_now()
        assert fields is not None
        assert fields["drift"] is True
        assert (fields["consecutive"], fields["calibration"]) == (5, "calibrated")
        assert fields["p_value"] < fields["p_value_raw"] or fields["p_value_raw"] < 1e-6
        assert monitor.snapshot()["drift_events"] == (1 if check == 5 else 0)


def test_settings_the_calibration_does_not_cover_run_uncalibrated_and_say_why() -> None:
    split = training_split()
    monitor = DriftMonitor(split.reference, DriftConfig(), calibration=seed42_calibration())
    monitor.update_config(DriftConfig(window_size=50, check_every=25, consecutive=2))
    calibration = monitor.snapshot()["calibration"]
    assert calibration["status"] == "uncalibrated"
    assert "windowSize 50 (calibrated for 100)" in calibration["reason"]
    assert monitor.snapshot()["consecutive"] == 2
    uncalibrated = DriftMonitor(split.reference, DriftConfig()).snapshot()["calibration"]
    assert uncalibrated["status"] == "uncalibrated"
    assert "no calibration" in uncalibrated["reason"]


def write_calibration(tmp_path: Path, data: bytes) -> tuple[str, str]:
    path = tmp_path / "calibration.json"
    path.write_bytes(data)
    return path.as_uri(), hashlib.sha256(data).hexdigest()


def settings_with(example_model_dir: Path, uri: str, sha256: str) -> RuntimeSettings:
    model = example_model_dir / "model.skops"
    return RuntimeSettings(
        model_uri=model.as_uri(),
        model_sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
        calibration_uri=uri,
        calibration_sha256=sha256,
    )


def test_the_runtime_loads_a_calibration_whose_digest_matches(
    tmp_path: Path, example_model_dir: Path
) -> None:
    uri, sha256 = write_calibration(tmp_path, to_json(uniform_null(9)))
    assert load_artifacts(settings_with(example_model_dir, uri, sha256)).calibration == (
        uniform_null(9)
    )


@pytest.mark.parametrize(
    ("data", "digest", "reason"),
    [
        (to_json(uniform_null(9)), "0" * 64, "digest_mismatch"),
        (to_json(uniform_null(9)), "", "missing_digest"),
        (b'{"format_version": 1}', None, "invalid_calibration"),
    ],
)
def test_the_runtime_refuses_a_calibration_it_cannot_trust(
    tmp_path: Path, example_model_dir: Path, data: bytes, digest: str | None, reason: str
) -> None:
    uri, sha256 = write_calibration(tmp_path, data)
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(settings_with(example_model_dir, uri, sha256 if digest is None else digest))
    assert caught.value.reason == reason
