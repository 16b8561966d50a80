"""Drift on the model's outputs (``drift.target``): the output test, the monitor's targets and
their calibration."""

from __future__ import annotations

import logging
from functools import cache

import numpy as np
import pytest

from aiops_runtime.calibration import Calibration, event_rule, from_json, to_json
from aiops_runtime.detectors import OutputKS, probability_columns
from aiops_runtime.drift import DriftMonitor
from aiops_runtime.settings import DriftConfig
from aiops_runtime.train import calibrate
from tests.runtime.drift_helpers import training_model, training_split

BENIGN = 1  # load_breast_cancer's target: 0 malignant, 1 benign


@cache
def calibration_with_outputs() -> Calibration:
    split = training_split()
    config = DriftConfig()
    return calibrate(
        split.reference, split.held_out, config, [], checks=300, seed=1, predict=training_model()
    )


def malignant_window(rows: int = 100) -> np.ndarray:
    """Held-out rows of one class only: the inputs stay in range, the predictions move."""
    split = training_split()
    malignant = split.held_out[split.held_out_labels != BENIGN]
    return malignant[np.random.default_rng(3).choice(len(malignant), rows, replace=True)]


def no_drift_window(seed: int, rows: int = 100) -> np.ndarray:
    held_out = training_split().held_out
    return held_out[np.random.default_rng(seed).choice(len(held_out), rows, replace=False)]


def test_two_classes_are_tested_on_one_probability_column_rounded() -> None:
    proba = np.array([[0.25, 0.75], [1e-13, 1 - 1e-13], [2e-13, 1 - 2e-13]])
    columns = probability_columns(proba)
    assert columns.shape == (3, 1)
    # Saturated probabilities a BLAS kernel could order either way compare equal.
    assert columns[1, 0] == columns[2, 0] == 1.0
    assert probability_columns(np.full((4, 3), 1 / 3)).shape == (4, 3)
    with pytest.raises(ValueError, match="class probabilities"):
        probability_columns(np.zeros(5))


def test_the_output_test_sees_a_shift_in_the_predicted_classes() -> None:
    predict = training_model()
    test = OutputKS(predict(training_split().reference))
    assert test.test(predict(malignant_window())).p_value < 1e-6
    clean = [test.test(predict(no_drift_window(seed))).p_value for seed in range(20)]
    assert sum(p < 0.05 for p in clean) <= 3, clean


def test_target_outputs_flags_the_predictions_and_skips_the_input_detector() -> None:
    split = training_split()
    config = DriftConfig(target="outputs")
    monitor = DriftMonitor(split.reference, config, predict=training_model())
    monitor.append(malignant_window())
    fields = monitor.check_now()
    assert fields is not None
    assert fields["drift"] is True
    assert fields["p_value"] == fields["p_value_outputs"] < 1e-6
    assert "p_value_test" not in fields  # the input detector did not run
    assert monitor.snapshot()["target"] == "outputs"


def test_target_both_combines_inputs_and_outputs_by_bonferroni() -> None:
    split = training_split()
    monitor = DriftMonitor(
        split.reference, DriftConfig(target="both"), seed=4, predict=training_model()
    )
    monitor.append(no_drift_window(5))
    fields = monitor.check_now()
    assert fields is not None
    inputs = min(1.0, fields["p_value_test"] / 0.9, fields["p_value_support"] / 0.1)
    assert fields["p_value"] == pytest.approx(min(1.0, 2 * min(inputs, fields["p_value_outputs"])))


class CountingModel:
    """predict_proba of the training model that counts the rows it scores."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.rows += len(rows)
        return training_model()(rows)


def test_the_output_test_uses_the_appended_probabilities_and_scores_only_rows_without() -> None:
    split = training_split()
    window = malignant_window()
    model = CountingModel()
    given = DriftMonitor(split.reference, DriftConfig(target="outputs"), predict=model)
    scored = DriftMonitor(split.reference, DriftConfig(target="outputs"), predict=model)
    model.rows = 0
    scored.append(window)
    expected = scored.check_now()
    assert expected is not None
    assert model.rows == 100

    model.rows = 0
    given.append(window[:60], training_model()(window[:60]))
    given.append(window[60:])
    fields = given.check_now()
    assert fields is not None
    assert model.rows == 40, "only the rows appended without probabilities are scored"
    assert fields["p_value_outputs"] == expected["p_value_outputs"] < 1e-6


def test_appended_probabilities_must_have_one_per_class() -> None:
    monitor = DriftMonitor(training_split().reference, DriftConfig(), predict=training_model())
    with pytest.raises(ValueError, match="2 class probabilities"):
        monitor.append(malignant_window(3), np.zeros((3, 3)))


def test_outputs_need_the_model(caplog: pytest.LogCaptureFixture) -> None:
    reference = training_split().reference
    with pytest.raises(ValueError, match="needs the model's predictions"):
        DriftMonitor(reference, DriftConfig(target="outputs"))
    monitor = DriftMonitor(reference, DriftConfig())
    with caplog.at_level(logging.ERROR, logger="aiops_runtime.drift"):
        monitor.update_config(DriftConfig(target="both"))
    assert monitor.config.target == "inputs"
    assert "needs the model's predictions" in caplog.text


def test_a_calibration_with_the_model_covers_every_target_and_round_trips() -> None:
    calibration = calibration_with_outputs()
    assert len(calibration.null_outputs) == len(calibration.null) == 300
    assert from_json(to_json(calibration)) == calibration
    for target in ("inputs", "outputs", "both"):
        assert calibration.covers("mmd", 100, 100, target) == ""
        # Calibrated, at most about alpha of its own null checks flag.
        assert calibration.null_flag_count(0.05, target) <= 0.05 * 301
    # The output test does not depend on the input detector's settings.
    assert calibration.covers("ks", 100, 500, "outputs") == ""
    assert "detector ks" in calibration.covers("ks", 100, 100, "both")


def test_an_older_calibration_runs_outputs_uncalibrated_and_says_why() -> None:
    calibration = calibration_with_outputs()
    older = Calibration(
        detector=calibration.detector,
        window_size=calibration.window_size,
        permutations=calibration.permutations,
        null=calibration.null,
    )
    assert b"null_output" not in to_json(older)
    monitor = DriftMonitor(
        training_split().reference,
        DriftConfig(target="both"),
        calibration=older,
        predict=training_model(),
    )
    state = monitor.snapshot()["calibration"]
    assert state["status"] == "uncalibrated"
    assert "target both (the calibration has no output checks)" in state["reason"]


def test_the_calibrated_rule_of_both_meets_the_budget_and_catches_the_class_shift() -> None:
    calibration = calibration_with_outputs()
    rule = event_rule(calibration, 0.05, 100, 100, 60_480_000, "both")
    assert rule.expected_false_alarm_rows >= 60_480_000
    monitor = DriftMonitor(
        training_split().reference,
        DriftConfig(target="both"),
        seed=6,
        calibration=calibration,
        predict=training_model(),
    )
    assert monitor.snapshot()["calibration"]["status"] == "calibrated"
    for _ in range(rule.consecutive):
        monitor.append(malignant_window())
        fields = monitor.check_now()
        assert fields is not None
        assert fields["drift"] is True, fields
    assert monitor.snapshot()["drift_events"] == 1
