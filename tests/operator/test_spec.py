"""The pydantic models accept the shipped example and reject what the CRD rejects."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from aiops_operator.spec import ModelServiceSpec, validation_message

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "modelservice.yaml"
INVALID = sorted((REPO_ROOT / "examples" / "invalid").glob("*.yaml"))


def expected_field(path: Path) -> str:
    """The `# expect: <field>` line of an invalid example."""
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# expect:' line")


def test_example_is_a_valid_spec_with_the_documented_defaults() -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    spec = ModelServiceSpec.model_validate(doc["spec"])
    assert spec.model.format == "skops"
    assert spec.drift.p_value_threshold == 0.05
    assert spec.desired_replicas == 1


def test_minimal_spec_gets_runtime_defaults() -> None:
    spec = ModelServiceSpec.model_validate(
        {"image": "img:1", "model": {"uri": "file:///m.skops", "sha256": "a" * 64}}
    )
    # The CRD's defaults are the runtime's own (chosen by bench/drift_bench.py), as a runtime
    # started without drift settings in its environment runs them.
    from aiops_runtime.settings import RuntimeSettings

    runtime_defaults = RuntimeSettings().initial_drift_config().model_dump(by_alias=True)
    config = spec.drift.runtime_config()
    assert config == {key: runtime_defaults[key] for key in config}
    assert config["windowSize"] == 100
    assert config["consecutive"] == 4
    assert spec.monitoring.scrape == "auto"
    assert spec.replicas is None
    assert spec.desired_replicas == 1


def test_there_are_at_least_15_invalid_examples() -> None:
    assert len(INVALID) >= 15


# metadata.name rules live in the CRD only (the spec model has no name).
INVALID_SPECS = [p for p in INVALID if expected_field(p).startswith("spec.")]


@pytest.mark.parametrize("path", INVALID_SPECS, ids=lambda p: p.stem)
def test_invalid_example_is_rejected_by_the_models_too(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    field = expected_field(path)
    with pytest.raises(ValidationError) as info:
        ModelServiceSpec.model_validate(doc["spec"])
    message = validation_message(info.value)
    leaf = field.rsplit(".", 1)[-1]
    assert leaf in message, message


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        ModelServiceSpec.model_validate(
            {"image": "i", "model": {"uri": "file:///m", "sha256": "a" * 64}, "replica": 2}
        )
    assert "spec.replica" in validation_message(info.value)


def test_the_spec_offers_exactly_the_detectors_and_formats_the_runtime_runs() -> None:
    """The two packages define their enums apart (the operator has no ML libraries to import);
    a value one accepts and the other refuses would fail only in a pod."""
    from typing import get_args

    from aiops_operator import spec
    from aiops_runtime import settings

    assert set(get_args(spec.Detector)) == set(get_args(settings.Detector))
    assert set(get_args(spec.ModelFormat)) == set(get_args(settings.ModelFormat))
    # The engine is the runtime's own choice (DRIFT_ENGINE), not a ModelService field.
    assert "engine" not in spec.DriftSpec.model_fields


@pytest.mark.parametrize("detector", ["mmd-online", "lsdd-online"])
def test_the_removed_online_detectors_are_refused_naming_the_supported_ones(detector: str) -> None:
    """They were offered untested and never finished configuring (issue 14)."""
    with pytest.raises(ValidationError) as info:
        ModelServiceSpec.model_validate(
            {
                "image": "i",
                "model": {"uri": "file:///m", "sha256": "a" * 64},
                "drift": {"detector": detector},
            }
        )
    message = validation_message(info.value)
    assert "spec.drift.detector" in message
    assert "'mmd' or 'ks'" in message, message


def test_the_false_alarm_budget_defaults_to_a_week_at_100_rps_and_refuses_tiny_ones() -> None:
    base = {"image": "i", "model": {"uri": "file:///m", "sha256": "a" * 64}}
    assert ModelServiceSpec.model_validate(base).drift.false_alarm_rows == 100 * 86_400 * 7
    with pytest.raises(ValidationError) as info:
        ModelServiceSpec.model_validate({**base, "drift": {"falseAlarmRows": 9_999}})
    assert "spec.drift.falseAlarmRows" in validation_message(info.value)
