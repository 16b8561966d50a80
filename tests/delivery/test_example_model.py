"""The example model's shipped artifacts agree with every digest that names them, and still load
and score as recorded with the libraries installed now."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from aiops_runtime.model_store import load_artifacts
from aiops_runtime.settings import RuntimeSettings
from aiops_runtime.train import TEST_FRACTION
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "modelservice.yaml"
IMAGE_DIR = "/models/breast-cancer"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "manifest.json").read_text())


def example_spec() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())["spec"]


def test_manifest_digests_are_those_of_the_shipped_files(example_model_dir: Path) -> None:
    entries = manifest(example_model_dir)
    for key in ("model", "reference", "metrics", "calibration"):
        assert sha256_of(example_model_dir / entries[key]["file"]) == entries[key]["sha256"], key


def test_example_modelservice_pins_the_shipped_files(example_model_dir: Path) -> None:
    model = example_spec()["model"]
    assert model["uri"] == f"file://{IMAGE_DIR}/model.skops"
    assert model["reference"]["uri"] == f"file://{IMAGE_DIR}/reference.npy"
    assert model["sha256"] == sha256_of(example_model_dir / "model.skops")
    assert model["reference"]["sha256"] == sha256_of(example_model_dir / "reference.npy")
    assert model["calibration"]["uri"] == f"file://{IMAGE_DIR}/calibration.json"
    assert model["calibration"]["sha256"] == sha256_of(example_model_dir / "calibration.json")
    assert model["format"] == manifest(example_model_dir)["model"]["format"]


def test_the_runtime_loads_the_shipped_files_with_the_examples_digests(
    example_model_dir: Path,
) -> None:
    model = example_spec()["model"]
    settings = RuntimeSettings(
        model_uri=model["uri"].replace(IMAGE_DIR, str(example_model_dir)),
        model_sha256=model["sha256"],
        reference_uri=model["reference"]["uri"].replace(IMAGE_DIR, str(example_model_dir)),
        reference_sha256=model["reference"]["sha256"],
        calibration_uri=model["calibration"]["uri"].replace(IMAGE_DIR, str(example_model_dir)),
        calibration_sha256=model["calibration"]["sha256"],
    )
    loaded = load_artifacts(settings)
    assert loaded.calibration is not None
    assert loaded.calibration.window_size == example_spec()["drift"]["windowSize"]
    assert loaded.model.sha256 == model["sha256"]
    assert loaded.reference is not None
    assert loaded.reference.shape == (284, loaded.model.n_features)


def test_the_shipped_model_scores_the_held_out_rows_as_its_metrics_record(
    example_model_dir: Path,
) -> None:
    # A library upgrade that changes how the shipped file loads or scores fails here.
    settings = RuntimeSettings(model_dir=example_model_dir)
    estimator = load_artifacts(settings).model.estimator
    metrics = json.loads((example_model_dir / "metrics.json").read_text())
    data = load_breast_cancer()
    labels = np.asarray(data.target_names)[data.target]
    _, x_test, _, y_test = train_test_split(
        data.data,
        labels,
        test_size=TEST_FRACTION,
        random_state=metrics["seed"],
        stratify=labels,
    )
    assert len(x_test) == metrics["n_test"]
    accuracy = float(np.mean(estimator.predict(x_test) == y_test))
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-12)
    assert list(estimator.classes_) == metrics["classes"]


def test_the_shipped_calibration_is_the_simulation_of_the_shipped_reference(
    example_model_dir: Path,
) -> None:
    """calibration.json is byte-stable: recomputing it here (any BLAS) gives the pinned bytes,
    the output test's null checks (on the shipped model's predictions) included."""
    from aiops_runtime.calibration import to_json
    from aiops_runtime.settings import DriftConfig
    from aiops_runtime.train import calibrate

    data = load_breast_cancer()
    labels = np.asarray(data.target_names)[data.target]  # as train.py stratifies
    x_train, x_test = train_test_split(
        data.data, test_size=TEST_FRACTION, random_state=42, stratify=labels
    )
    assert np.array_equal(x_train, np.load(example_model_dir / "reference.npy"))
    names = [str(name) for name in data.feature_names]
    estimator = load_artifacts(RuntimeSettings(model_dir=example_model_dir)).model.estimator
    again = to_json(
        calibrate(x_train, x_test, DriftConfig(), names, seed=42, predict=estimator.predict_proba)
    )
    assert again == (example_model_dir / "calibration.json").read_bytes()
