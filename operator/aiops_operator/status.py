"""Pure status derivation: the ModelService's conditions from its Deployment's own status.

`Ready` is True only when the Deployment renders the current ModelService generation, the
Deployment controller has observed it, every desired replica is updated and ready, and the
Deployment reports Available. Anything else is False with the reason, so a ModelService never
looks Ready while its pods are pending, crash-looping or rolling out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiops_operator import conditions
from aiops_operator.manifests import INPUTS_ANNOTATION

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
DRIFT_DETECTED = "DriftDetected"
OWNED_TYPES = (READY, PROGRESSING, DEGRADED)
# The DriftDetected reason for a runtime that cannot load its model (and the Degraded one then).
MODEL_NOT_LOADED = "ModelNotLoaded"


@dataclass(frozen=True)
class Problem:
    """Why the operator cannot (fully) serve a spec: a CamelCase reason and an actionable message.

    `blocking` problems mean the children were not (all) applied; others are reported as
    Degraded while the Deployment still runs.
    """

    reason: str
    message: str
    blocking: bool = True


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> dict:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def _deployment_condition(deployment: dict, kind: str) -> dict[str, Any]:
    for cond in deployment.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


@dataclass(frozen=True)
class RolloutFacts:
    """The numbers a Deployment reports, read once."""

    desired: int
    replicas: int
    updated: int
    ready: int
    available_cond: dict[str, Any]
    progressing_cond: dict[str, Any]
    failure_cond: dict[str, Any]
    renders_inputs: str | None
    controller_caught_up: bool

    @classmethod
    def of(cls, deployment: dict) -> RolloutFacts:
        """Extract the facts from a Deployment object."""
        meta, spec, status = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
        return cls(
            desired=int(spec.get("replicas", 1)),
            replicas=int(status.get("replicas", 0)),
            updated=int(status.get("updatedReplicas", 0)),
            ready=int(status.get("readyReplicas", 0)),
            available_cond=_deployment_condition(deployment, "Available"),
            progressing_cond=_deployment_condition(deployment, "Progressing"),
            failure_cond=_deployment_condition(deployment, "ReplicaFailure"),
            renders_inputs=(meta.get("annotations") or {}).get(INPUTS_ANNOTATION),
            controller_caught_up=int(status.get("observedGeneration", 0))
            >= int(meta.get("generation", 1)),
        )

    def renders(self, inputs: str | None) -> bool:
        """The Deployment is rendered from these inputs (a spec.drift change keeps them)."""
        return inputs is not None and self.renders_inputs == inputs

    @property
    def stalled(self) -> bool:
        """The Deployment controller gave up (progress deadline exceeded)."""
        return self.progressing_cond.get("status") == "False"

    @property
    def rollout_done(self) -> bool:
        """Every desired replica runs the current template and is ready; no old pods remain."""
        return (
            self.controller_caught_up
            and self.updated >= self.desired
            and self.ready >= self.desired
            and self.replicas <= self.desired
        )


def _ready(facts: RolloutFacts, generation: int, inputs: str | None) -> dict:
    counts = f"{facts.ready}/{facts.desired} replicas ready"
    if not facts.renders(inputs):
        return _condition(READY, False, "Reconciling", "children not yet updated", generation)
    if facts.stalled:
        msg = facts.progressing_cond.get("message", "") or counts
        return _condition(READY, False, "ProgressDeadlineExceeded", msg, generation)
    if facts.desired == 0:
        return _condition(READY, False, "ScaledToZero", "replicas is 0", generation)
    if not facts.rollout_done:
        reason = "ReplicasNotReady" if facts.updated >= facts.desired else "RolloutInProgress"
        return _condition(READY, False, reason, counts, generation)
    if facts.available_cond.get("status") != "True":
        reason = facts.available_cond.get("reason") or "DeploymentUnavailable"
        return _condition(
            READY, False, reason, facts.available_cond.get("message", counts), generation
        )
    return _condition(READY, True, "ReplicasReady", counts, generation)


def _progressing(facts: RolloutFacts, generation: int, inputs: str | None) -> dict:
    if facts.stalled:
        msg = facts.progressing_cond.get("message", "")
        return _condition(PROGRESSING, False, "ProgressDeadlineExceeded", msg, generation)
    if facts.renders(inputs) and facts.rollout_done:
        return _condition(PROGRESSING, False, "RolloutComplete", "rollout complete", generation)
    reason = facts.progressing_cond.get("reason") or "Reconciling"
    message = f"{facts.updated}/{facts.desired} updated, {facts.ready}/{facts.desired} ready"
    return _condition(PROGRESSING, True, reason, message, generation)


def _degraded(facts: RolloutFacts, generation: int) -> dict:
    if facts.stalled:
        msg = facts.progressing_cond.get("message", "")
        return _condition(DEGRADED, True, "ProgressDeadlineExceeded", msg, generation)
    if facts.failure_cond.get("status") == "True":
        reason = facts.failure_cond.get("reason") or "ReplicaFailure"
        return _condition(DEGRADED, True, reason, facts.failure_cond.get("message", ""), generation)
    return _condition(DEGRADED, False, "AsExpected", "", generation)


def runtime_problem(conditions: list[dict] | None, generation: int) -> Problem | None:
    """The runtime's own word that it cannot load this generation's model (a digest mismatch,
    a download refused): the drift loop's DriftDetected ModelNotLoaded. Such pods never become
    ready, so the ModelService is Degraded, not merely still rolling out (Argo CD shows it)."""
    drift = next((c for c in conditions or [] if c.get("type") == DRIFT_DETECTED), None)
    if drift is None or drift.get("reason") != MODEL_NOT_LOADED:
        return None
    if drift.get("observedGeneration") != generation:
        return None  # said of an earlier spec; the next read says whether it still holds
    return Problem(MODEL_NOT_LOADED, str(drift.get("message") or ""), blocking=False)


def derive_conditions(
    generation: int,
    deployment: dict | None,
    problem: Problem | None,
    inputs: str | None,
) -> list[dict]:
    """Ready, Progressing and Degraded (without timestamps) for one ModelService; `inputs` is
    manifests.deployment_inputs of the generation's spec, when it is valid."""
    if problem is not None and problem.blocking:
        return [
            _condition(READY, False, problem.reason, problem.message, generation),
            _condition(PROGRESSING, False, problem.reason, problem.message, generation),
            _condition(DEGRADED, True, problem.reason, problem.message, generation),
        ]
    if deployment is None:
        waiting = "waiting for the Deployment"
        return [
            _condition(READY, False, "DeploymentMissing", waiting, generation),
            _condition(PROGRESSING, True, "Reconciling", waiting, generation),
            _condition(DEGRADED, False, "AsExpected", "", generation),
        ]
    facts = RolloutFacts.of(deployment)
    degraded = _degraded(facts, generation)
    if problem is not None:
        degraded = _condition(DEGRADED, True, problem.reason, problem.message, generation)
    return [_ready(facts, generation, inputs), _progressing(facts, generation, inputs), degraded]


def merge_conditions(previous: list[dict] | None, new: list[dict], now: str) -> list[dict]:
    """Replace our condition types, keep others (e.g. DriftDetected), which starts Unknown."""
    merged = conditions.merge(previous, new, now)
    if conditions.find(merged, DRIFT_DETECTED) is None:
        merged.append(
            {
                "type": DRIFT_DETECTED,
                "status": "Unknown",
                "reason": "AwaitingFirstCheck",
                "message": "the runtime has not reported a drift check yet",
                "lastTransitionTime": now,
            }
        )
    return merged


def replica_counts(deployment: dict | None) -> dict[str, int]:
    """status.replicas and status.readyReplicas copied from the Deployment."""
    status = (deployment or {}).get("status") or {}
    return {
        "replicas": int(status.get("replicas", 0)),
        "readyReplicas": int(status.get("readyReplicas", 0)),
    }
