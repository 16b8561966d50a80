"""Data shared by the drift tests (drift.py, detectors.py, config_watch.py): the runbook's two
vectors and the training split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from aiops_runtime.drift import DriftMonitor
from aiops_runtime.train import TEST_FRACTION, build_model

# The seed runbook's sample request (in distribution) and its drift-provoking vector.
RUNBOOK_SAMPLE = np.array(
    [
        *(13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766),
        *(0.2699, 0.7886, 2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01486, 0.01405, 0.002377),
        *(15.11, 19.26, 99.7, 711.2, 0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259),
    ]
)
OUT_OF_RANGE = np.array(
    [
        *(100, 150, 200, 300, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4),
        *(1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5),
        *(100, 120, 140, 160, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9),
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Split:
    """The training split (the drift reference) and the held-out rows, as train.py makes them."""

    reference: np.ndarray
    held_out: np.ndarray
    reference_labels: np.ndarray
    held_out_labels: np.ndarray


# What the `make_monitor` fixture gives: DriftMonitor(reference, DriftConfig(**config)).
MonitorFactory = Callable[..., DriftMonitor]


@cache
def training_split() -> Split:
    """train.py's split with its default seed 42 (the `split` fixture)."""
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=TEST_FRACTION, random_state=42, stratify=data.target
    )
    return Split(x_train, x_test, y_train, y_test)


@cache
def training_model() -> Callable[[np.ndarray], np.ndarray]:
    """predict_proba of train.py's model fitted on the training split (for output drift)."""
    split = training_split()
    model = build_model(42).fit(split.reference, split.reference_labels)
    return model.predict_proba  # type: ignore[no-any-return]
