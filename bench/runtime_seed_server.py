"""The seed design, made to work: alibi-detect's MMD test inside every /predict request.

The seed ran ``MMDDrift.predict`` on the single request row, which raises ZeroDivisionError; here
each request appends its row to a window of the last 100 rows and tests that window, so every
request pays one MMD permutation test. Runs in its own virtualenv with alibi-detect and PyTorch
(``bench/runtime_bench.py`` creates it); it does not import the runtime package.

    python bench/runtime_seed_server.py --port 8003 --model-dir DIR
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import threading
from pathlib import Path

import numpy as np
import skops.io as sio
import uvicorn
from alibi_detect.cd import MMDDrift
from fastapi import FastAPI
from pydantic import BaseModel

WINDOW = 100
log = logging.getLogger("seed")


class Features(BaseModel):
    """The seed's request body."""

    features: list[float]


def create_seed_app(model_dir: Path, threshold: float) -> FastAPI:
    """A FastAPI app that predicts and runs an MMD drift test on the last 100 rows per request."""
    model_file = model_dir / "model.skops"
    model = sio.load(model_file, trusted=sio.get_untrusted_types(file=model_file))
    reference = np.load(model_dir / "reference.npy").astype(np.float32)
    detector = MMDDrift(reference, backend="pytorch", p_val=threshold)
    window: collections.deque[np.ndarray] = collections.deque(maxlen=WINDOW)
    lock = threading.Lock()
    events = {"drift": 0}
    app = FastAPI(title="seed design")

    @app.post("/predict")
    def predict(body: Features) -> dict[str, object]:
        row = np.asarray(body.features, dtype=np.float64)
        proba = model.predict_proba(row[None, :])[0]
        with lock:
            window.append(row.astype(np.float32))
            batch = np.stack(window)
        # One row has no spread (the seed's ZeroDivisionError); test once two rows exist.
        result = detector.predict(batch) if len(batch) >= 2 else {"data": {"is_drift": 0}}
        data = result["data"]
        if data["is_drift"]:
            events["drift"] += 1
        log.info("Drift detection result p_value=%s drift=%s", data.get("p_val"), data["is_drift"])
        return {"prediction": int(proba.argmax()), "probabilities": proba.tolist()}

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main() -> None:
    """Serve the seed design on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--model-dir", type=Path, required=True)
    args = parser.parse_args()
    threshold = float(os.environ.get("DRIFT_P_THRESHOLD", "0.05"))
    uvicorn.run(
        create_seed_app(args.model_dir, threshold),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
