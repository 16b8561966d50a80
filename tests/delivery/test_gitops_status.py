"""Flux and kstatus: what GitOps engines other than Argo CD make of a ModelService's status.

hack/kstatus runs `status.Compute` of kstatus (sigs.k8s.io/cli-utils, the library Flux's health
checks and kubectl-wait-style tools compute health with; Flux's fork github.com/fluxcd/cli-utils
has the same package) on the statuses tests/delivery/test_argocd.py gives the Argo CD Lua check,
and applies the CEL expressions of docs/flux-health.yaml the way Flux's kustomize-controller
applies `healthCheckExprs`.

What kstatus does with our status, with no configuration: a `status.observedGeneration` that
differs from `metadata.generation` is InProgress; then `Ready=True` is Current and `Ready=False`
or `Ready=Unknown` is InProgress; with no `Ready` condition (no status, no conditions) it says
Current ("Resource is current"). It ignores `Progressing` and `Degraded`, and says Failed only for
a `Stalled=True` condition, which the operator does not write: **kstatus cannot say Failed for a
Degraded ModelService** (Flux waits on it as InProgress until its timeout), and it calls a
ModelService the operator has not reported on yet Current. The expressions of
docs/flux-health.yaml give Flux the Lua's verdicts instead, except for an object with no `status`
at all: no CEL expression can test a top-level field that does not exist, so every one fails and
Flux reports Unknown (and keeps waiting, as for InProgress).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.delivery.delivery_helpers import REPO_ROOT, run
from tests.delivery.test_argocd import READY, SERVING_OK, condition, health, modelservice, observed
from tests.helpers import pinned_tool

FLUX_HEALTH = REPO_ROOT / "docs" / "flux-health.yaml"
# The Argo CD health status the Lua gives -> the Flux (kstatus) status the CEL must give.
LUA_TO_FLUX = {"Healthy": "Current", "Progressing": "InProgress", "Degraded": "Failed"}

DRIFT = condition("DriftDetected", "True", "DriftDetected", "p-value 0.0010 < 0.05")
NO_DRIFT = condition("DriftDetected", "False", "NoDrift", "p-value 0.41")

# kstatus's messages for a Ready=True condition and for no condition it knows.
IS_READY, IS_CURRENT = "Resource is Ready", "Resource is current"

# (case, status, Lua verdict, kstatus status, kstatus message): the statuses of test_argocd.py.
CASES: list[tuple[str, Any, str, str, str]] = [
    ("ready", observed(READY, *SERVING_OK), "Healthy", "Current", IS_READY),
    ("drift", observed(READY, *SERVING_OK, DRIFT), "Healthy", "Current", IS_READY),
    ("no-drift", observed(READY, NO_DRIFT), "Healthy", "Current", IS_READY),
    (
        "degraded",
        observed(
            condition("Ready", "False", "ProgressDeadlineExceeded", "no progress for 600s"),
            condition("Progressing", "False", "ProgressDeadlineExceeded", "no progress"),
            condition("Degraded", "True", "ImagePullBackOff", "image not found"),
        ),
        "Degraded",
        "InProgress",
        "no progress for 600s",
    ),
    (
        "invalid-spec",
        observed(condition("Ready", "False", "InvalidSpec", "sha256 is not hex")),
        "Degraded",
        "InProgress",
        "sha256 is not hex",
    ),
    (
        "rolling-out",
        observed(
            condition("Ready", "False", "RolloutInProgress", "1/2 replicas updated"),
            condition("Progressing", "True", "ReplicaSetUpdated", "rolling out"),
            condition("Degraded", "False", "AsExpected"),
        ),
        "Progressing",
        "InProgress",
        "1/2 replicas updated",
    ),
    ("no-status", None, "Progressing", "Current", IS_CURRENT),
    ("no-conditions", {"observedGeneration": 2}, "Progressing", "Current", IS_CURRENT),
    (
        "stale-generation",
        observed(READY, generation=1),
        "Progressing",
        "InProgress",
        "ModelService generation is 2, but latest observed generation is 1",
    ),
    ("no-observed-generation", {"conditions": [READY]}, "Progressing", "Current", IS_READY),
    (
        "no-ready",
        observed(condition("Progressing", "True", "Reconciling")),
        "Progressing",
        "Current",
        IS_CURRENT,
    ),
    (
        "ready-unknown",
        observed(condition("Ready", "Unknown", "Pending")),
        "Progressing",
        "InProgress",
        "",
    ),
    ("bare-ready", observed({"type": "Ready", "status": "True"}), "Healthy", "Current", IS_READY),
]


@pytest.fixture(scope="session")
def kstatus() -> Path:
    """hack/kstatus built from its pinned module (cached per user)."""
    return pinned_tool("kstatus")


def served(value: Any) -> Any:
    """The object as the API server serves it: fields without a value are left out."""
    if isinstance(value, dict):
        return {k: served(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [served(v) for v in value]
    return value


def verdict(
    kstatus: Path, obj: dict[str, Any], cel_file: Path | None = FLUX_HEALTH
) -> dict[str, Any]:
    """The JSON line hack/kstatus prints for obj (with the expressions of cel_file, if any)."""
    args = ["--cel-file", cel_file] if cel_file else []
    out = run(kstatus, *args, input=json.dumps(served(obj))).stdout
    assert len(out.splitlines()) == 1, out
    return json.loads(out)


def flux_exprs() -> dict[str, str]:
    """The healthCheckExprs entry for ModelService in docs/flux-health.yaml."""
    (entry,) = yaml.safe_load(FLUX_HEALTH.read_text())["spec"]["healthCheckExprs"]
    return entry


def with_exprs(tmp_path: Path, **exprs: str) -> Path:
    """A copy of docs/flux-health.yaml whose ModelService expressions are replaced by exprs."""
    doc = yaml.safe_load(FLUX_HEALTH.read_text())
    entry = doc["spec"]["healthCheckExprs"][0]
    for key in ("inProgress", "failed", "current"):
        entry.pop(key, None)
    entry.update(exprs)
    path = tmp_path / "flux-health.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_snippet_is_a_kustomization_with_expressions_for_modelservice() -> None:
    doc = yaml.safe_load(FLUX_HEALTH.read_text())
    assert doc["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert doc["kind"] == "Kustomization"
    assert doc["spec"]["wait"] is True, "Flux checks health only with wait or healthChecks"
    entry = flux_exprs()
    assert (entry["apiVersion"], entry["kind"]) == ("aiops-quality.io/v1alpha1", "ModelService")
    assert set(entry) == {"apiVersion", "kind", "inProgress", "failed", "current"}


def test_the_cases_are_the_statuses_the_lua_check_is_tested_with() -> None:
    """The table covers both outcomes of every branch of the Lua: a case dropped would show."""
    verdicts = [lua for _, _, lua, _, _ in CASES]
    assert sorted(set(verdicts)) == ["Degraded", "Healthy", "Progressing"]
    assert len(CASES) == 13
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("status", "lua", "kstatus_status", "kstatus_message"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_kstatus_and_the_flux_expressions_against_the_lua_check(
    kstatus: Path,
    tmp_path: Path,
    status: Any,
    lua: str,
    kstatus_status: str,
    kstatus_message: str,
) -> None:
    obj = modelservice(copy.deepcopy(status))
    assert health(tmp_path, obj)[0] == lua, "the Lua check changed: update the table"
    got = verdict(kstatus, obj)
    assert (got["status"], got["message"]) == (kstatus_status, kstatus_message)
    if status is None:  # no CEL expression can read a top-level field that is missing
        assert got["cel"] == "Unknown"
        assert "no such attribute(s): status" in got["celError"]
    else:
        assert got["cel"] == LUA_TO_FLUX[lua], got.get("celError")
        assert "celError" not in got


@pytest.mark.integration
def test_kstatus_never_says_failed_for_a_degraded_modelservice(kstatus: Path) -> None:
    """Of every case, kstatus alone says Failed for none; it does for a Stalled condition, which
    is what it would take (the operator writes Ready, Progressing and Degraded)."""
    for _, status, _, _, _ in CASES:
        assert verdict(kstatus, modelservice(status), cel_file=None)["status"] != "Failed"
    stalled = observed(READY, condition("Stalled", "True", "ImagePullBackOff", "image not found"))
    got = verdict(kstatus, modelservice(stalled), cel_file=None)
    assert got == {"status": "Failed", "message": "image not found"}


@pytest.mark.integration
def test_expressions_are_applied_in_fluxs_order(kstatus: Path, tmp_path: Path) -> None:
    """inProgress, then failed, then current; none true is InProgress (as fluxcd/pkg's
    StatusEvaluator), and the expressions come from the file given."""
    obj = modelservice(observed(READY))
    cases = [
        ({"inProgress": "true", "failed": "true", "current": "true"}, "InProgress"),
        ({"inProgress": "false", "failed": "true", "current": "true"}, "Failed"),
        ({"failed": "false", "current": "true"}, "Current"),
        ({"inProgress": "false", "failed": "false", "current": "false"}, "InProgress"),
        ({"current": "status.conditions.exists(c, c.type == 'Ready')"}, "Current"),
    ]
    for exprs, expected in cases:
        assert verdict(kstatus, obj, with_exprs(tmp_path, **exprs))["cel"] == expected, exprs


@pytest.mark.integration
def test_a_changed_generation_is_in_progress_before_any_expression(
    kstatus: Path, tmp_path: Path
) -> None:
    """Flux checks observedGeneration against generation itself, before the expressions."""
    cel_file = with_exprs(tmp_path, current="true")
    assert verdict(kstatus, modelservice(observed(READY, generation=1)), cel_file)["cel"] == (
        "InProgress"
    )
    assert verdict(kstatus, modelservice(observed(READY)), cel_file)["cel"] == "Current"


@pytest.mark.integration
def test_an_expression_that_fails_to_evaluate_is_unknown(kstatus: Path, tmp_path: Path) -> None:
    cel_file = with_exprs(tmp_path, current="status.phase == 'Running'")
    got = verdict(kstatus, modelservice(observed(READY)), cel_file)
    assert got["cel"] == "Unknown"
    assert "no such key: phase" in got["celError"]


@pytest.mark.integration
def test_a_file_without_modelservice_expressions_is_an_error(kstatus: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load(FLUX_HEALTH.read_text())
    doc["spec"]["healthCheckExprs"][0]["kind"] = "Deployment"
    cel_file = tmp_path / "other.yaml"
    cel_file.write_text(yaml.safe_dump(doc))
    proc = run(kstatus, "--cel-file", cel_file, input=json.dumps(served(modelservice(None))),
               check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "no spec.healthCheckExprs entry for ModelService.aiops-quality.io" in proc.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("exprs", "error"),
    [
        ({"current": "status."}, "healthCheckExprs current: "),
        ({"failed": "true"}, "current is required"),
    ],
)
def test_expressions_flux_would_refuse_are_an_error(
    kstatus: Path, tmp_path: Path, exprs: dict[str, str], error: str
) -> None:
    cel_file = with_exprs(tmp_path, **exprs)
    proc = run(kstatus, "--cel-file", cel_file, input=json.dumps(served(modelservice(None))),
               check=False)  # fmt: skip
    assert proc.returncode != 0
    assert error in proc.stderr
