"""Reproducible training on scikit-learn's bundled breast-cancer data.

Writes the artifacts the runtime serves: ``model.skops``, ``reference.npy``, ``calibration.json``
(the drift check's null distribution for this reference, simulated on the held-out rows),
``metrics.json`` and ``manifest.json`` (sha256 of each). With the same seed and library versions
the bytes are the same, so the digests pinned in a ModelService stay valid across retrains of the
same code.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops
import skops.io as sio
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from aiops_runtime import calibration
from aiops_runtime.model_store import TRUSTED_TYPES
from aiops_runtime.settings import DriftConfig

MODEL_FILE = "model.skops"
REFERENCE_FILE = "reference.npy"
METRICS_FILE = "metrics.json"
MANIFEST_FILE = "manifest.json"
CALIBRATION_FILE = calibration.CALIBRATION_FILE
# Half the data trains the model and is the drift reference; the other half is held out for the
# metrics (and for drift benchmarks, which need unseen in-distribution rows).
TEST_FRACTION = 0.5
POSITIVE_CLASS = "malignant"
# A fixed timestamp for every zip entry: zipfile otherwise stamps the current time.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class TrainResult:
    """What one training run wrote and measured."""

    out: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]

    def summary(self) -> str:
        """A short human-readable summary for the CLI."""
        m = self.metrics
        return (
            f"trained {m['model']} on {m['n_train']} rows (seed {m['seed']}): "
            f"held-out accuracy {m['accuracy']:.4f}, ROC AUC {m['roc_auc']:.4f} "
            f"on {m['n_test']} rows\n"
            f"wrote {self.out}/{{{MODEL_FILE},{REFERENCE_FILE},{CALIBRATION_FILE},"
            f"{METRICS_FILE},{MANIFEST_FILE}}}\n"
            f"model sha256 {self.manifest['model']['sha256']}"
        )


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def build_model(seed: int) -> Pipeline:
    """The estimator: standardization then logistic regression (fast to score, ~0.97 accuracy)."""
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(C=1.0, max_iter=5000, random_state=seed)),
        ]
    )


def canonical_skops(data: bytes) -> bytes:
    """Rewrite a skops archive so identical models give identical bytes.

    skops names array files and object ids after ``id()`` (memory addresses) and stamps zip entries
    with the current time; we renumber ids in schema order and fix the timestamps.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        schema = json.loads(src.read("schema.json"))
        blobs = {name: src.read(name) for name in src.namelist() if name != "schema.json"}
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def renumber(node: Any) -> None:
        if isinstance(node, dict):
            if "__id__" in node:
                node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
            if isinstance(node.get("file"), str) and node["file"] in blobs:
                ext = node["file"].rsplit(".", 1)[-1]
                node["file"] = files.setdefault(node["file"], f"{len(files):04d}.{ext}")
            for value in node.values():
                renumber(value)
        elif isinstance(node, list):
            for value in node:
                renumber(value)

    renumber(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as dst:
        for old, new in sorted(files.items(), key=lambda item: item[1]):
            dst.writestr(zipfile.ZipInfo(new, date_time=_ZIP_EPOCH), blobs[old])
        dst.writestr(zipfile.ZipInfo("schema.json", date_time=_ZIP_EPOCH), json.dumps(schema))
    return out.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _json_bytes(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def calibrate(
    reference: np.ndarray,
    held_out: np.ndarray,
    config: DriftConfig,
    feature_names: list[str],
    checks: int = calibration.NULL_CHECKS,
    seed: int = 0,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> calibration.Calibration:
    """The null distribution of the drift check for this reference: ``checks`` windows of
    held-out rows (none in the reference) through the runtime's own monitor and settings.
    With ``predict`` (the model's predict_proba) the output test is simulated on the same
    windows, for ``drift.target`` outputs and both."""
    from aiops_runtime.drift import DriftMonitor

    monitor = DriftMonitor(reference, config, seed=seed, predict=predict)
    # One BLAS thread, as the runtime's worker: threaded BLAS busy-waits on small matrices.
    with threadpool_limits(limits=1, user_api="blas"):
        null = calibration.simulate(monitor.score, held_out, config.window_size, checks, seed)
    return calibration.Calibration(
        detector=config.detector,
        window_size=config.window_size,
        permutations=config.permutations,
        null=null["inputs"],
        null_outputs=null.get("outputs", ()),
        feature_names=tuple(feature_names),
        held_out_rows=len(held_out),
        seed=seed,
    )


def train(
    out: Path,
    seed: int = 42,
    force: bool = False,
    calibration_checks: int = calibration.NULL_CHECKS,
) -> TrainResult:
    """Train the model and write the five artifacts into ``out``.

    Raises FileExistsError when ``out`` is a non-empty directory and ``force`` is false.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} is not empty; pass --force to overwrite its artifacts")
    out.mkdir(parents=True, exist_ok=True)

    data = load_breast_cancer()
    target_names = [str(name) for name in data.target_names]
    labels = np.asarray(target_names)[data.target]
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, labels, test_size=TEST_FRACTION, random_state=seed, stratify=labels
    )
    model = build_model(seed).fit(x_train, y_train)

    model_bytes = canonical_skops(sio.dumps(model))
    # The archive we write must load with the runtime's own trusted list and score identically.
    reloaded = sio.loads(model_bytes, trusted=TRUSTED_TYPES)
    if not np.array_equal(reloaded.predict_proba(x_test), model.predict_proba(x_test)):
        raise RuntimeError("canonicalized skops archive does not reproduce the model")

    positive = list(model.classes_).index(POSITIVE_CLASS)
    proba = model.predict_proba(x_test)[:, positive]
    feature_names = [str(name) for name in data.feature_names]
    metrics = {
        "model": "StandardScaler+LogisticRegression",
        "seed": seed,
        "accuracy": float(accuracy_score(y_test, model.predict(x_test))),
        "roc_auc": float(roc_auc_score(y_test == POSITIVE_CLASS, proba)),
        "positive_class": POSITIVE_CLASS,
        "classes": [str(c) for c in model.classes_],
        "n_train": len(x_train),
        "n_test": len(x_test),
        "feature_names": feature_names,
        "sklearn_version": sklearn.__version__,
        "skops_version": skops.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }
    reference_bytes = _npy_bytes(np.ascontiguousarray(x_train, dtype=np.float64))
    # With the runtime's default drift settings, which the example deploys.
    calibration_bytes = calibration.to_json(
        calibrate(
            x_train,
            x_test,
            DriftConfig(),
            feature_names,
            calibration_checks,
            seed,
            predict=model.predict_proba,
        )
    )
    metrics_bytes = _json_bytes(metrics)
    manifest = {
        "model": {"file": MODEL_FILE, "sha256": sha256_hex(model_bytes), "format": "skops"},
        "reference": {"file": REFERENCE_FILE, "sha256": sha256_hex(reference_bytes)},
        "metrics": {"file": METRICS_FILE, "sha256": sha256_hex(metrics_bytes)},
        "calibration": {"file": CALIBRATION_FILE, "sha256": sha256_hex(calibration_bytes)},
        "created_by": f"aiops-runtime train {version('aiops-runtime')}",
        "seed": seed,
        "sklearn_version": sklearn.__version__,
        "feature_names": feature_names,
        "classes": metrics["classes"],
    }
    _write_atomic(out / MODEL_FILE, model_bytes)
    _write_atomic(out / REFERENCE_FILE, reference_bytes)
    _write_atomic(out / METRICS_FILE, metrics_bytes)
    _write_atomic(out / CALIBRATION_FILE, calibration_bytes)
    # The manifest goes last: a directory with a manifest has all the files it names.
    _write_atomic(out / MANIFEST_FILE, _json_bytes(manifest))
    return TrainResult(out=out, manifest=manifest, metrics=metrics)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aiops-runtime train`` (and ``python -m aiops_runtime.train``)."""
    parser.add_argument("--out", type=Path, required=True, help="directory for the artifacts")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    parser.add_argument(
        "--calibration-checks",
        type=int,
        default=calibration.NULL_CHECKS,
        help=f"null drift checks for calibration.json (default {calibration.NULL_CHECKS})",
    )


def run(args: argparse.Namespace) -> int:
    """Train as the parsed arguments say; print the summary. Exit status 2 when --out holds files
    and --force is not given."""
    try:
        result = train(
            args.out, seed=args.seed, force=args.force, calibration_checks=args.calibration_checks
        )
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aiops_runtime.train", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
