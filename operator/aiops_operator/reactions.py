"""Pure decisions of the drift loop: what a runtime's /drift reading means for the ModelService.

- `drift_status` turns a reading into the `status.drift` fields; `driftEvents` counts the drift
  events the operator has seen (the runtime's own counter restarts with its process, and
  replicas come and go, so the operator keeps its own count and the newest `lastDriftTime`;
  with several replicas the reading is their combination, replicas.py);
- `is_new_drift_event` compares the reading's `last_drift_time` with the status;
- `drift_condition` builds the `DriftDetected` condition (Ready is untouched);
- `plan_reaction` applies `spec.drift.action` and the retrain cooldown.
No I/O and no clock reads: callers pass `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiops_operator.conditions import parse_time, rfc3339
from aiops_operator.drift_client import DriftReadError, DriftReading
from aiops_operator.status import DRIFT_DETECTED, MODEL_NOT_LOADED

ERROR_REASONS = {
    "unreachable": "RuntimeUnreachable",
    "http": "DriftEndpointError",
    "invalid": "InvalidDriftResponse",
    "notready": "RuntimeNotReady",
    "notloaded": MODEL_NOT_LOADED,
}
TRIGGERED = "Triggered"
FAILED = "Failed"
# Longest message the loop writes into status (the CRD allows 32768 in a condition, 1024 in
# lastRetrainMessage); the texts are built here, so this only guards against a surprise.
STATUS_TEXT_MAX = 1024


def is_new_drift_event(reading: DriftReading, previous: dict[str, Any]) -> bool:
    """Whether the runtime reports a drift event newer than the one status.drift records."""
    if not reading.enabled:
        return False
    reported = parse_time(reading.last_drift_time)
    if reported is None:
        return False
    seen = parse_time(previous.get("lastDriftTime"))
    return seen is None or reported > seen


def _events_seen(reading: DriftReading, previous: dict[str, Any]) -> int:
    count = int(previous.get("driftEvents") or 0)
    if not is_new_drift_event(reading, previous):
        return count
    runtime_before = previous.get("runtimeDriftEvents")
    if runtime_before is None and count == 0:
        return max(1, reading.drift_events)  # first sight: adopt the runtime's own count
    if runtime_before is not None and reading.drift_events > int(runtime_before):
        return count + reading.drift_events - int(runtime_before)
    return count + 1  # restarted runtime or another replica: one new event at least


def drift_status(reading: DriftReading, previous: dict[str, Any]) -> dict[str, Any]:
    """The `status.drift` fields for a reading (retrain fields are left as they are)."""
    if not reading.enabled:
        return {}
    newest = reading.last_drift_time
    if not is_new_drift_event(reading, previous) and previous.get("lastDriftTime"):
        newest = previous["lastDriftTime"]
    return {
        "pValueThreshold": reading.threshold,
        "lastPValue": reading.last_p_value,
        "lastCheckTime": reading.last_check_time,
        "checks": reading.checks,
        "driftEvents": _events_seen(reading, previous),
        "lastDriftTime": newest,
        "runtimeDriftEvents": reading.drift_events,
        "calibration": _calibration(reading),
    }


def _calibration(reading: DriftReading) -> dict[str, Any] | None:
    """status.drift.calibration; no nulls inside (a merge patch would drop them and the next
    comparison would see a change), none at all from a runtime that reports no rule."""
    if not reading.calibration_status:
        return None
    block = {
        "status": reading.calibration_status,
        "reason": reading.calibration_reason,
        "consecutive": reading.consecutive,
        "expectedFalseAlarmRows": reading.expected_false_alarm_rows,
    }
    return {k: v for k, v in block.items() if v is not None}


def _condition(status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": DRIFT_DETECTED,
        "status": status,
        "reason": reason,
        "message": message[:STATUS_TEXT_MAX],
        "observedGeneration": generation,
    }


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def drift_condition(
    reading: DriftReading | None, error: DriftReadError | None, generation: int
) -> dict[str, Any]:
    """The DriftDetected condition (without lastTransitionTime) for a reading or a read error."""
    if error is not None or reading is None:
        reason = ERROR_REASONS.get(error.kind if error else "", "RuntimeUnreachable")
        message = error.message if error else "no reading"
        return _condition("Unknown", reason, message, generation)
    if not reading.enabled:
        return _condition("Unknown", "DriftDisabled", reading.reason, generation)
    if reading.checks == 0:
        message = (
            f"window {reading.window_fill}/{reading.window_size} rows;"
            " the first check runs when it is full"
        )
        return _condition("Unknown", "AwaitingFirstCheck", message, generation)
    threshold = _p(reading.threshold)
    if reading.drift:
        message = (
            f"last p-value {_p(reading.last_p_value)} < threshold {threshold};"
            f" drift raised at {reading.last_drift_time}"
        )
        if reading.drifted_features:
            message += f"; drifted most: {reading.features_text()}"
        return _condition("True", "PValueBelowThreshold", message, generation)
    message = f"last p-value {_p(reading.last_p_value)} >= threshold {threshold}"
    return _condition("False", "NoDrift", message, generation)


@dataclass(frozen=True)
class Reaction:
    """What to do about one reading: post the DriftDetected Event, trigger a retrain, or note
    that the cooldown holds a retrain back (until `cooldown_until`)."""

    event: bool = False
    retrain: bool = False
    cooldown_until: datetime | None = None


def plan_reaction(
    action: str,
    new_event: bool,
    last_retrain: datetime | None,
    cooldown_s: float,
    now: datetime,
) -> Reaction:
    """Apply spec.drift.action to a reading; retrain at most once per cooldown."""
    if not new_event or action == "none":
        return Reaction()
    if action != "retrain":
        return Reaction(event=True)
    if last_retrain is not None:
        until = last_retrain + timedelta(seconds=cooldown_s)
        if now < until:
            return Reaction(event=True, cooldown_until=until)
    return Reaction(event=True, retrain=True)


def retrain_status(outcome: str, message: str, now: datetime) -> dict[str, Any]:
    """The status.drift fields recording one retrain attempt (successful or not)."""
    return {
        "lastRetrainTime": rfc3339(now),
        "lastRetrainOutcome": outcome,
        "lastRetrainMessage": message[:STATUS_TEXT_MAX],
    }


def backoff_s(failures: int, interval_s: float, max_s: float) -> float:
    """Wait before the next read of a runtime that failed `failures` times in a row."""
    if failures <= 0:
        return 0.0
    return float(min(max_s, interval_s * 2 ** min(failures - 1, 16)))
