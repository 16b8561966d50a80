""".ci/retrain/upload-artifacts.py: what the retrain job uploads for the runtime to download."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from tests.delivery.delivery_helpers import REPO_ROOT

SCRIPT = REPO_ROOT / ".ci" / "retrain" / "upload-artifacts.py"
EXAMPLE_MODEL = REPO_ROOT / "examples" / "models" / "breast-cancer"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("upload_artifacts", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


upload = _load()


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    """A copy of the shipped training output (its manifest names model, reference, calibration)."""
    out = tmp_path / "retrained"
    shutil.copytree(EXAMPLE_MODEL, out)
    return out


def test_every_file_the_manifest_names_is_uploaded_with_the_manifest(trained: Path) -> None:
    """The bump points the ModelService's calibration.uri at the package as well: a calibration
    left out of the upload would leave the retrained pods not ready (404)."""
    manifest = json.loads((trained / "manifest.json").read_text())
    named = {manifest[kind]["file"] for kind in ("model", "reference", "calibration")}
    assert {p.name for p in upload.files_of(trained / "manifest.json")} == named | {"manifest.json"}


def test_a_manifest_without_a_calibration_uploads_model_and_reference(trained: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    del manifest["calibration"]
    (trained / "manifest.json").write_text(json.dumps(manifest))
    got = {p.name for p in upload.files_of(trained / "manifest.json")}
    assert got == {manifest["model"]["file"], manifest["reference"]["file"], "manifest.json"}


def test_a_file_unlike_its_digest_is_refused_before_anything_is_uploaded(trained: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    (trained / manifest["calibration"]["file"]).write_bytes(b"{}\n")
    with pytest.raises(ValueError, match=r"calibration\.json: sha256"):
        upload.files_of(trained / "manifest.json")
