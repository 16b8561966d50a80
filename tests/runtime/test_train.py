"""Training writes a manifest that matches its files, and the same bytes twice on one machine.

Not a digest fixed in the repository: the last bits of LBFGS depend on the CPU's BLAS kernels.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiops_runtime.train import train

ARTIFACTS = ("model.skops", "reference.npy", "calibration.json", "metrics.json", "manifest.json")


def test_same_seed_gives_byte_identical_artifacts(tmp_path: Path) -> None:
    first = train(tmp_path / "a", seed=7)
    second = train(tmp_path / "b", seed=7)
    for name in ARTIFACTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first.manifest == second.manifest


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts of `train()` with the default seed on this machine (digests vary by CPU/BLAS)."""
    out = tmp_path_factory.mktemp("trained")
    train(out)
    return out


def test_training_in_a_fresh_process_reproduces_the_bytes(tmp_path: Path, trained: Path) -> None:
    # Object ids and zip timestamps differ between processes; the bytes must not.
    out = tmp_path / "fresh"
    subprocess.run(
        [sys.executable, "-m", "aiops_runtime.train", "--out", str(out)], check=True, timeout=120
    )
    for name in ARTIFACTS:
        assert (out / name).read_bytes() == (trained / name).read_bytes(), name


def test_another_seed_gives_another_model(tmp_path: Path, trained: Path) -> None:
    other = train(tmp_path / "other", seed=1)
    default = json.loads((trained / "manifest.json").read_text())
    assert other.manifest["model"]["sha256"] != default["model"]["sha256"]


def test_manifest_digests_match_the_files_it_wrote(trained: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    for key in ("model", "reference", "metrics", "calibration"):
        entry = manifest[key]
        data = (trained / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], key
    assert manifest["model"]["format"] == "skops"
    assert manifest["seed"] == 42
    assert len(manifest["feature_names"]) == 30


def test_metrics_report_held_out_quality_and_versions(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.93
    assert metrics["roc_auc"] > 0.97
    assert metrics["n_train"] + metrics["n_test"] == 569
    assert {"sklearn_version", "python_version", "feature_names"} <= set(metrics)


def test_reference_is_the_float64_training_split(trained: Path) -> None:
    reference = np.load(trained / "reference.npy", allow_pickle=False)
    assert reference.dtype == np.float64
    assert reference.shape == (284, 30)


def test_non_empty_directory_needs_force(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        train(tmp_path)
    train(tmp_path, force=True)
    assert (tmp_path / "manifest.json").exists()
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_cli_train_prints_a_summary_and_refuses_to_overwrite(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "aiops_runtime.cli", "train", "--out", str(tmp_path / "m")]
    done = subprocess.run(cli, capture_output=True, text=True, check=True, timeout=120)
    assert "held-out accuracy" in done.stdout
    assert "model sha256" in done.stdout
    again = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert "--force" in again.stderr
