"""The runtime's linear scorer gives predict_proba's answers, and is used only where it does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from aiops_runtime.model_store import TRUSTED_TYPES
from aiops_runtime.scoring import default_probe, linear_scorer, plan_scoring


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return load_breast_cancer(return_X_y=True)


def test_trained_model_gets_the_linear_scorer_with_identical_answers(
    example_model_dir: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    model = sio.load(example_model_dir / "model.skops", trusted=TRUSTED_TYPES)
    plan = plan_scoring(model, np.load(example_model_dir / "reference.npy"))
    assert plan.kind == "linear"
    x = np.vstack([data[0], data[0] * 3, default_probe(30) * 100])
    assert np.allclose(plan.score(x), model.predict_proba(x), rtol=0, atol=1e-12)
    # One row takes a scalar path; check it on ordinary and saturating (huge |z|) rows.
    for row in (x[:1], x[-2:-1], x[-1:] * 1e6, -x[-1:] * 1e6):
        assert np.allclose(plan.score(row), model.predict_proba(row), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "scaler",
    [None, StandardScaler(), StandardScaler(with_mean=False), StandardScaler(with_std=False)],
    ids=["bare", "standard", "no-mean", "no-std"],
)
def test_linear_scorer_matches_every_standard_scaler_option(
    data: tuple[np.ndarray, np.ndarray], scaler: StandardScaler | None
) -> None:
    classifier = LogisticRegression(max_iter=10_000)
    model = classifier if scaler is None else Pipeline([("s", scaler), ("c", classifier)])
    model.fit(*data)
    score = linear_scorer(model)
    assert score is not None
    assert np.allclose(score(data[0]), model.predict_proba(data[0]), rtol=0, atol=1e-9)


def test_other_models_keep_predict_proba(data: tuple[np.ndarray, np.ndarray]) -> None:
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(*data)
    minmax = Pipeline([("s", MinMaxScaler()), ("c", LogisticRegression())]).fit(*data)
    iris = LogisticRegression(max_iter=1000).fit(*load_iris(return_X_y=True))
    assert plan_scoring(forest, data[0]).kind == "predict_proba"
    assert plan_scoring(minmax, data[0]).kind == "predict_proba"
    assert plan_scoring(iris, default_probe(4)).kind == "predict_proba"


def test_linear_scorer_can_be_turned_off(example_model_dir: Path) -> None:
    model = sio.load(example_model_dir / "model.skops", trusted=TRUSTED_TYPES)
    assert plan_scoring(model, default_probe(30), allow_linear=False).kind == "predict_proba"
