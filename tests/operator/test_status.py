"""Status is derived from the Deployment's own conditions and never claims more than it shows."""

from __future__ import annotations

from typing import Any

from aiops_operator.manifests import INPUTS_ANNOTATION
from aiops_operator.status import Problem, derive_conditions, merge_conditions, runtime_problem


def deployment(
    *,
    rendered: str = "current",
    replicas: int = 2,
    ready: int = 2,
    updated: int = 2,
    current: int | None = None,
    available: str = "True",
    progressing: tuple[str, str] = ("True", "NewReplicaSetAvailable"),
    failure: dict[str, str] | None = None,
    observed: int = 5,
) -> dict[str, Any]:
    conditions = [
        {"type": "Available", "status": available, "reason": "MinimumReplicasAvailable"},
        {"type": "Progressing", "status": progressing[0], "reason": progressing[1]},
    ]
    if failure:
        conditions.append({"type": "ReplicaFailure", "status": "True", **failure})
    return {
        "metadata": {"generation": 5, "annotations": {INPUTS_ANNOTATION: rendered}},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas if current is None else current,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "conditions": conditions,
        },
    }


def by_type(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions}


def test_ready_when_every_replica_of_the_current_generation_is_ready() -> None:
    conds = by_type(derive_conditions(2, deployment(), None, "current"))
    assert conds["Ready"]["status"] == "True"
    assert conds["Progressing"]["status"] == "False"
    assert conds["Degraded"]["status"] == "False"
    assert conds["Ready"]["observedGeneration"] == 2


def test_not_ready_while_pods_are_not_ready() -> None:
    conds = by_type(derive_conditions(2, deployment(ready=0, available="False"), None, "current"))
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ReplicasNotReady"
    assert conds["Ready"]["message"] == "0/2 replicas ready"
    assert conds["Progressing"]["status"] == "True"


def test_not_ready_when_the_deployment_renders_an_older_generation() -> None:
    conds = by_type(derive_conditions(3, deployment(rendered="previous"), None, "current"))
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "Reconciling"


def test_a_generation_that_changes_only_drift_settings_keeps_ready_true() -> None:
    # A threshold change reaches only the ConfigMap: until the operator re-annotates the
    # Deployment, Ready must not flicker (Argo CD would show Progressing for every such commit).
    current = deployment(rendered="same-inputs")
    conds = by_type(derive_conditions(3, current, None, inputs="same-inputs"))
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("True", "ReplicasReady")
    assert conds["Progressing"]["status"] == "False"
    changed = by_type(derive_conditions(3, current, None, inputs="other-inputs"))
    assert (changed["Ready"]["status"], changed["Ready"]["reason"]) == ("False", "Reconciling")


def test_not_ready_while_old_pods_remain_in_a_rollout() -> None:
    conds = by_type(derive_conditions(2, deployment(updated=1, current=3), None, "current"))
    assert conds["Ready"]["reason"] == "RolloutInProgress"


def test_not_ready_before_the_deployment_controller_observed_the_change() -> None:
    conds = by_type(derive_conditions(2, deployment(observed=4), None, "current"))
    assert conds["Ready"]["status"] == "False"


def test_progress_deadline_exceeded_is_degraded() -> None:
    stalled = deployment(ready=0, progressing=("False", "ProgressDeadlineExceeded"))
    conds = by_type(derive_conditions(2, stalled, None, "current"))
    assert conds["Degraded"]["status"] == "True"
    assert conds["Degraded"]["reason"] == "ProgressDeadlineExceeded"
    assert conds["Ready"]["status"] == "False"


def test_replica_failure_is_degraded_with_its_reason() -> None:
    failing = deployment(ready=0, failure={"reason": "FailedCreate", "message": "forbidden"})
    conds = by_type(derive_conditions(2, failing, None, "current"))
    assert conds["Degraded"]["reason"] == "FailedCreate"


def test_blocking_problem_sets_every_condition() -> None:
    problem = Problem("InvalidSpec", "spec.model.sha256: bad")
    conds = by_type(derive_conditions(4, deployment(), problem, "current"))
    assert conds["Degraded"] == {
        "type": "Degraded",
        "status": "True",
        "reason": "InvalidSpec",
        "message": "spec.model.sha256: bad",
        "observedGeneration": 4,
    }
    assert conds["Ready"]["status"] == "False"


def test_non_blocking_problem_only_degrades() -> None:
    problem = Problem("ServiceMonitorUnavailable", "install the CRD", blocking=False)
    conds = by_type(derive_conditions(2, deployment(), problem, "current"))
    assert conds["Ready"]["status"] == "True"
    assert conds["Degraded"]["reason"] == "ServiceMonitorUnavailable"


def drift_condition(reason: str, generation: int) -> dict[str, Any]:
    message = "the runtime has no model: digest_mismatch: sha256 0000 expected, got 2835"
    return {"type": "DriftDetected", "status": "Unknown", "reason": reason, "message": message,
            "observedGeneration": generation}  # fmt: skip


def test_a_model_the_runtime_cannot_load_degrades_with_the_runtimes_words() -> None:
    problem = runtime_problem([drift_condition("ModelNotLoaded", 3)], 3)
    assert problem is not None
    conds = by_type(derive_conditions(3, deployment(ready=0, available="False"), problem, "c"))
    assert conds["Degraded"]["status"] == "True"
    assert conds["Degraded"]["reason"] == "ModelNotLoaded"
    assert "digest_mismatch" in conds["Degraded"]["message"]
    assert conds["Ready"]["status"] == "False"


def test_only_the_current_generations_load_failure_degrades() -> None:
    assert runtime_problem([drift_condition("ModelNotLoaded", 2)], 3) is None  # fixed since
    assert runtime_problem([drift_condition("RuntimeNotReady", 3)], 3) is None
    assert runtime_problem([], 3) is None
    assert runtime_problem(None, 3) is None


def test_missing_deployment_is_not_ready() -> None:
    conds = by_type(derive_conditions(1, None, None, "current"))
    assert conds["Ready"]["reason"] == "DeploymentMissing"


def test_transition_time_moves_only_when_status_changes() -> None:
    first = merge_conditions(None, derive_conditions(2, deployment(), None, "current"), "T1")
    second = merge_conditions(first, derive_conditions(2, deployment(), None, "current"), "T2")
    assert by_type(second)["Ready"]["lastTransitionTime"] == "T1"
    third = merge_conditions(
        second, derive_conditions(2, deployment(ready=0), None, "current"), "T3"
    )
    assert by_type(third)["Ready"]["lastTransitionTime"] == "T3"
    assert by_type(third)["Degraded"]["lastTransitionTime"] == "T1"


def test_foreign_conditions_are_kept_and_drift_starts_unknown() -> None:
    merged = merge_conditions(None, derive_conditions(2, deployment(), None, "current"), "T1")
    assert by_type(merged)["DriftDetected"]["status"] == "Unknown"
    drift = {"type": "DriftDetected", "status": "True", "reason": "Drift", "message": ""}
    later = merge_conditions([{**drift, "lastTransitionTime": "T0"}], [], "T2")
    assert by_type(later)["DriftDetected"]["status"] == "True"
