"""Invalid ModelServices never reach the operator: the API server rejects them with a message
that names the field (OpenAPI validation and CEL rules of the generated CRD)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.operator.operator_helpers import EXAMPLE, REPO_ROOT
from tests.operator.test_spec import expected_field

INVALID = sorted((REPO_ROOT / "examples" / "invalid").glob("*.yaml"))

pytestmark = pytest.mark.integration


def test_at_least_15_invalid_examples_are_checked() -> None:
    assert len(INVALID) >= 15


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_modelservice_is_rejected_naming_the_field(
    cluster: Any, modelservice_crd: None, path: Path
) -> None:
    proc = cluster.kubectl(
        "apply", "-n", "default", "--dry-run=server", "-f", str(path), check=False
    )
    assert proc.returncode != 0, f"{path.name} was admitted"
    assert expected_field(path) in proc.stderr, proc.stderr


def test_the_example_is_admitted(cluster: Any, modelservice_crd: None) -> None:
    proc = cluster.kubectl(
        "apply", "-n", "default", "--dry-run=server", "-f", str(EXAMPLE), check=False
    )
    assert proc.returncode == 0, proc.stderr
