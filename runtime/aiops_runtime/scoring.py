"""How a batch of validated rows becomes class probabilities.

``predict_proba`` of a scikit-learn pipeline spends ~0.3-1 ms per call on input checks and
dispatch, whatever the batch size. For the common linear case (optional StandardScaler, then a
binary LogisticRegression) the same probabilities are one matrix-vector product and a sigmoid; the
runtime uses that expression only after checking, at load time, that it reproduces
``predict_proba`` on a probe sample. Any other model is scored by ``predict_proba`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

Scorer = Callable[[np.ndarray], np.ndarray]
# Largest difference from predict_proba the folded linear expression may show on the probe.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class ScoringPlan:
    """The scorer the batcher calls and what it is ("linear" or "predict_proba")."""

    score: Scorer
    kind: str


def sklearn_scorer(estimator: Any) -> Scorer:
    """predict_proba with scikit-learn's finiteness and parameter checks skipped."""
    predict_proba = estimator.predict_proba

    def score(rows: np.ndarray) -> np.ndarray:
        # Rows are validated (finite, right width) before they reach the batcher.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return np.asarray(predict_proba(rows), dtype=np.float64)

    return score


def _binary_logistic(estimator: Any) -> tuple[np.ndarray, float] | None:
    """(weights, bias) of a binary LogisticRegression, optionally after a StandardScaler."""
    steps = [s for _, s in estimator.steps] if type(estimator) is Pipeline else [estimator]
    *transforms, last = steps
    if type(last) is not LogisticRegression or len(last.classes_) != 2:
        return None
    weights = np.asarray(last.coef_[0], dtype=np.float64)
    bias = float(last.intercept_[0])
    if not transforms:
        return weights, bias
    if len(transforms) != 1 or type(transforms[0]) is not StandardScaler:
        return None
    scaler = transforms[0]
    scale = scaler.scale_ if scaler.with_std else np.ones_like(weights)
    mean = scaler.mean_ if scaler.with_mean else np.zeros_like(weights)
    folded = weights / scale
    return folded, bias - float(mean @ folded)


def _sigmoid(z: float) -> float:
    """Logistic function without overflow for large negative z (like scipy's expit)."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def linear_scorer(estimator: Any) -> Scorer | None:
    """The folded linear expression of a scaler+binary logistic model, else None."""
    params = _binary_logistic(estimator)
    if params is None:
        return None
    weights, bias = params

    def score(rows: np.ndarray) -> np.ndarray:
        if len(rows) == 1:
            # One row is the common request: two NumPy calls instead of five (each NumPy call
            # costs microseconds when the server's other work has evicted it from the caches).
            positive = _sigmoid(float(rows[0].dot(weights)) + bias)
            return np.array([[1.0 - positive, positive]])
        proba = np.empty((len(rows), 2))
        positive_col = expit(rows.dot(weights) + bias, out=proba[:, 1])
        np.subtract(1.0, positive_col, out=proba[:, 0])
        return proba

    return score


def default_probe(n_features: int) -> np.ndarray:
    """Rows to compare scorers on when no reference sample is configured."""
    return np.random.default_rng(0).normal(size=(64, n_features))


def plan_scoring(estimator: Any, probe: np.ndarray, allow_linear: bool = True) -> ScoringPlan:
    """Pick the fastest scorer that reproduces ``predict_proba`` on ``probe``."""
    reference = sklearn_scorer(estimator)
    fast = linear_scorer(estimator) if allow_linear else None
    if fast is not None:
        expected = reference(probe)
        if np.allclose(fast(probe), expected, rtol=0, atol=TOLERANCE):
            return ScoringPlan(fast, "linear")
    return ScoringPlan(reference, "predict_proba")
