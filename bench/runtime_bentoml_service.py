"""A BentoML service serving the benchmark's model (``bentoml serve``, one worker).

The scikit-learn example of BentoML's docs: a class service that loads the model once and an
``@bentoml.api`` taking a NumPy array of rows and answering ``predict_proba``. The model is the
joblib file named by BENCH_MODEL_FILE. Runs in its own virtualenv (``bench/runtime_bench.py``
creates it); it does not import the runtime.

    BENCH_MODEL_FILE=DIR/model.joblib bentoml serve runtime_bentoml_service:BreastCancer --port 8005
"""

from __future__ import annotations

import os

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=1)
class BreastCancer:
    """Class probabilities of breast-cancer rows."""

    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL_FILE"])

    @bentoml.api
    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(features))
