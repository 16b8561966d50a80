"""Which features drifted: per-feature KS with Benjamini-Hochberg, named from the artifacts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from aiops_runtime.detectors import ATTRIBUTION_MAX, drifted_features
from aiops_runtime.drift import CHECK_MESSAGE, DriftMonitor
from aiops_runtime.model_store import load_artifacts
from aiops_runtime.settings import DriftConfig, RuntimeSettings
from tests.runtime.drift_helpers import OUT_OF_RANGE, Split

NAMES = [str(name) for name in load_breast_cancer().feature_names]
MEAN_RADIUS, WORST_AREA = NAMES.index("mean radius"), NAMES.index("worst area")


def shifted(
    rows: np.ndarray, columns: list[int], sigmas: float, reference: np.ndarray
) -> np.ndarray:
    moved = rows.copy()
    moved[:, columns] += sigmas * reference[:, columns].std(axis=0)
    return moved


def monitor_for(split: Split, **config: object) -> DriftMonitor:
    return DriftMonitor(
        split.reference,
        DriftConfig(window_size=100, check_every=100, **config),  # type: ignore[arg-type]
        seed=3,
        feature_names=NAMES,
    )


def test_a_shift_of_two_features_names_exactly_those_two(split: Split) -> None:
    window = shifted(split.held_out[:100], [MEAN_RADIUS, WORST_AREA], 2.0, split.reference)
    scale = split.reference.std(axis=0)
    mean = split.reference.mean(axis=0)
    named = drifted_features(
        (split.reference - mean) / scale, (window - mean) / scale, NAMES, alpha=0.05
    )
    assert {f["name"] for f in named} == {"mean radius", "worst area"}
    assert all(0 <= f["p_value"] < 0.05 for f in named)
    assert [f["p_value"] for f in named] == sorted(f["p_value"] for f in named)


def test_in_distribution_rows_name_no_feature(split: Split) -> None:
    mean, scale = split.reference.mean(axis=0), split.reference.std(axis=0)
    named = drifted_features(
        (split.reference - mean) / scale, (split.held_out[:100] - mean) / scale, NAMES, 0.05
    )
    assert named == []


def test_at_most_three_names_even_when_every_feature_moved(split: Split) -> None:
    mean, scale = split.reference.mean(axis=0), split.reference.std(axis=0)
    window = (np.tile(OUT_OF_RANGE, (100, 1)) - mean) / scale
    named = drifted_features((split.reference - mean) / scale, window, NAMES, 0.05)
    assert len(named) == ATTRIBUTION_MAX == 3


def test_a_flagged_check_names_its_features_in_drift_and_the_log_line(
    split: Split, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = monitor_for(split, consecutive=1)
    monitor.append(shifted(split.held_out[:100], [MEAN_RADIUS], 3.0, split.reference))
    with caplog.at_level(logging.INFO, logger="aiops_runtime.drift"):
        fields = monitor.check_now()
    assert fields is not None
    assert fields["drift"] is True
    assert fields["drifted_features"][0]["name"] == "mean radius"
    record = next(r for r in caplog.records if r.getMessage() == CHECK_MESSAGE)
    assert record.drifted_features == fields["drifted_features"]  # type: ignore[attr-defined]
    snapshot = monitor.snapshot()
    assert snapshot["drift"] is True
    assert snapshot["drifted_features"] == fields["drifted_features"]


def test_a_clean_check_clears_the_names(split: Split) -> None:
    monitor = monitor_for(split, consecutive=1)
    monitor.append(np.tile(OUT_OF_RANGE, (100, 1)))
    monitor.check_now()
    assert monitor.snapshot()["drifted_features"]
    monitor.append(split.held_out[100:200])
    monitor.check_now()
    assert monitor.snapshot()["drifted_features"] == []


def test_without_names_features_are_called_by_their_index(split: Split) -> None:
    monitor = DriftMonitor(split.reference, DriftConfig(consecutive=1), seed=3)
    monitor.append(shifted(split.held_out[:100], [MEAN_RADIUS], 3.0, split.reference))
    fields = monitor.check_now()
    assert fields is not None
    assert fields["drifted_features"][0]["name"] == f"f{MEAN_RADIUS}"


def test_names_of_the_wrong_length_fall_back_to_indices(split: Split) -> None:
    monitor = DriftMonitor(split.reference, DriftConfig(), feature_names=["a", "b"])
    assert monitor.feature_names[:2] == ["f0", "f1"]


def test_the_training_manifest_carries_the_feature_names(example_model_dir: Path) -> None:
    loaded = load_artifacts(RuntimeSettings(model_dir=example_model_dir))
    assert loaded.feature_names == NAMES
