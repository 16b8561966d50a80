""".ci/retrain/bump-modelservice.py: the retrain job's in-place edit of a ModelService YAML."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.delivery.delivery_helpers import REPO_ROOT, run

SCRIPT = REPO_ROOT / ".ci" / "retrain" / "bump-modelservice.py"
EXAMPLE = REPO_ROOT / "examples" / "modelservice.yaml"
MANIFEST = {"model": {"sha256": "a" * 64}, "reference": {"sha256": "b" * 64}}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bump_modelservice", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bump = _load()


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of examples/modelservice.yaml."""
    path = tmp_path / "modelservice.yaml"
    path.write_text(EXAMPLE.read_text())
    return path


def test_only_the_digests_and_image_change_and_comments_stay(example: Path) -> None:
    changed = bump.bump(example, MANIFEST, "registry.example/runtime:abc123")
    assert changed == ["spec.model.sha256", "spec.model.reference.sha256", "spec.image"]
    before, after = EXAMPLE.read_text().splitlines(), example.read_text().splitlines()
    differing = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(differing) == 3
    doc = yaml.safe_load(example.read_text())
    original = yaml.safe_load(EXAMPLE.read_text())
    assert doc["spec"]["model"]["sha256"] == "a" * 64
    assert doc["spec"]["model"]["reference"]["sha256"] == "b" * 64
    assert doc["spec"]["image"] == "registry.example/runtime:abc123"
    doc["spec"]["model"]["sha256"] = original["spec"]["model"]["sha256"]
    doc["spec"]["model"]["reference"]["sha256"] = original["spec"]["model"]["reference"]["sha256"]
    doc["spec"]["image"] = original["spec"]["image"]
    assert doc == original


def test_without_image_the_image_is_kept(example: Path) -> None:
    assert bump.bump(example, MANIFEST, None) == [
        "spec.model.sha256",
        "spec.model.reference.sha256",
    ]
    assert (
        yaml.safe_load(example.read_text())["spec"]["image"]
        == yaml.safe_load(EXAMPLE.read_text())["spec"]["image"]
    )


def test_a_second_bump_with_the_same_inputs_changes_nothing(example: Path) -> None:
    bump.bump(example, MANIFEST, "r/x:1")
    text = example.read_text()
    assert bump.bump(example, MANIFEST, "r/x:1") == []
    assert example.read_text() == text


def test_same_named_keys_elsewhere_are_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "ms.yaml"
    path.write_text(
        "metadata:\n  annotations:\n    sha256: keep  # not the model's\n"
        "spec:\n  image: old  # runtime\n  model:\n    uri: file:///m\n    sha256: old\n"
        "    reference:\n      uri: file:///r\n      sha256: old\n"
    )
    bump.bump(path, MANIFEST, "new:1")
    doc = yaml.safe_load(path.read_text())
    assert doc["metadata"]["annotations"]["sha256"] == "keep"
    assert "image: new:1  # runtime" in path.read_text()


def test_a_file_without_the_fields_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ms.yaml"
    path.write_text("spec:\n  image: x\n  model:\n    uri: file:///m\n    sha256: old\n")
    with pytest.raises(bump.BumpError, match=r"spec\.model\.reference\.sha256"):
        bump.bump(path, MANIFEST, None)
    assert "sha256: old" in path.read_text()


def test_command_line_reports_what_it_did(example: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST))
    out = run(sys.executable, SCRIPT, "--file", example, "--manifest", manifest).stdout
    assert out.strip().endswith(f"(model sha256 {'a' * 64})")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: {}\n")
    proc = run(sys.executable, SCRIPT, "--file", broken, "--manifest", manifest, check=False)
    assert proc.returncode == 2
    assert "missing field(s)" in proc.stderr


def _modelservices(tmp_path: Path, *docs: str) -> Path:
    """A directory of modelservice*.yaml files with these texts."""
    directory = tmp_path / "examples"
    directory.mkdir()
    for number, text in enumerate(docs):
        (directory / f"modelservice-{number}.yaml").write_text(text)
    return directory


def test_locate_finds_the_named_modelservice_by_name_and_namespace(tmp_path: Path) -> None:
    ours = EXAMPLE.read_text()
    theirs = ours.replace("  name: breast-cancer\n", "  name: breast-cancer\n  namespace: team-b\n")
    directory = _modelservices(tmp_path, ours, theirs)
    assert bump.locate(directory, "breast-cancer", "aiops-quality", "aiops-quality").name == (
        "modelservice-0.yaml"
    )
    assert bump.locate(directory, "breast-cancer", "team-b", "aiops-quality").name == (
        "modelservice-1.yaml"
    )
    with pytest.raises(bump.BumpError, match="no ModelService team-c/breast-cancer"):
        bump.locate(directory, "breast-cancer", "team-c", "aiops-quality")


def test_locate_refuses_a_modelservice_defined_twice(tmp_path: Path) -> None:
    directory = _modelservices(tmp_path, EXAMPLE.read_text(), EXAMPLE.read_text())
    with pytest.raises(bump.BumpError, match="is in 2 files"):
        bump.locate(directory, "breast-cancer", "aiops-quality", "aiops-quality")


def test_artifacts_url_points_both_uris_at_the_uploaded_files(example: Path) -> None:
    manifest = {
        "model": {"sha256": "a" * 64, "file": "model.skops"},
        "reference": {"sha256": "b" * 64, "file": "reference.npy"},
    }
    base = "https://gitlab.example/api/v4/projects/42/packages/generic/ml-bc/aaaaaaaaaaaa/"
    changed = bump.bump(example, manifest, None, base)
    assert changed == [
        "spec.model.sha256", "spec.model.reference.sha256", "spec.model.uri",
        "spec.model.reference.uri",
    ]  # fmt: skip
    model = yaml.safe_load(example.read_text())["spec"]["model"]
    assert model["uri"] == base + "model.skops"
    assert model["reference"]["uri"] == base + "reference.npy"
    assert bump.bump(example, manifest, None, base) == []


def test_command_line_with_dir_bumps_only_the_named_modelservice(tmp_path: Path) -> None:
    ours = EXAMPLE.read_text()
    theirs = ours.replace("  name: breast-cancer\n", "  name: breast-cancer\n  namespace: team-b\n")
    directory = _modelservices(tmp_path, ours, theirs)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST))
    common = [
        sys.executable, SCRIPT, "--dir", directory, "--default-namespace", "aiops-quality",
        "--manifest", manifest,
    ]  # fmt: skip
    out = run(*common, "--name", "breast-cancer", "--namespace", "team-b").stdout
    assert out.startswith(f"{directory / 'modelservice-1.yaml'}: updated")
    assert (directory / "modelservice-0.yaml").read_text() == ours
    proc = run(*common, "--name", "other", "--namespace", "aiops-quality", check=False)
    assert proc.returncode == 2
    assert "no ModelService aiops-quality/other" in proc.stderr


def test_a_calibration_in_the_manifest_bumps_the_pinned_calibration(example: Path) -> None:
    manifest = {
        "model": {"sha256": "a" * 64, "file": "model.skops"},
        "reference": {"sha256": "b" * 64, "file": "reference.npy"},
        "calibration": {"sha256": "c" * 64, "file": "calibration.json"},
    }
    changed = bump.bump(example, manifest, None, "https://pkg.example/x")
    assert "spec.model.calibration.sha256" in changed
    calibration = yaml.safe_load(example.read_text())["spec"]["model"]["calibration"]
    assert calibration == {"uri": "https://pkg.example/x/calibration.json", "sha256": "c" * 64}


def test_a_modelservice_pinning_no_calibration_keeps_running_without_one(tmp_path: Path) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    del doc["spec"]["model"]["calibration"]
    path = tmp_path / "modelservice.yaml"
    path.write_text(yaml.safe_dump(doc))
    manifest = {**MANIFEST, "calibration": {"file": "calibration.json", "sha256": "c" * 64}}
    assert bump.bump(path, manifest, None) == ["spec.model.sha256", "spec.model.reference.sha256"]
    assert "calibration" not in yaml.safe_load(path.read_text())["spec"]["model"]
