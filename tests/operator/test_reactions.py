"""The drift loop's pure decisions: new drift events, status.drift, DriftDetected, cooldown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiops_operator.drift_client import DriftReadError, DriftReading
from aiops_operator.reactions import (
    backoff_s,
    drift_condition,
    drift_status,
    is_new_drift_event,
    plan_reaction,
)
from aiops_operator.spec import parse_duration

T0 = "2026-01-01T10:00:00.000Z"
T1 = "2026-01-01T10:05:00.500Z"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def reading(**kw: object) -> DriftReading:
    base: dict[str, object] = {
        "enabled": True,
        "threshold": 0.05,
        "last_p_value": 0.4,
        "last_check_time": T0,
        "checks": 3,
        "window_fill": 50,
        "window_size": 50,
        "drift": False,
        "drift_events": 0,
        "last_drift_time": None,
        "detector": "mmd",
    }
    base.update(kw)
    return DriftReading(**base)  # type: ignore[arg-type]


def test_a_runtime_without_drift_events_raises_no_new_event() -> None:
    assert not is_new_drift_event(reading(), {})
    assert drift_status(reading(), {})["driftEvents"] == 0


def test_a_drift_time_newer_than_the_status_is_a_new_event() -> None:
    drifted = reading(drift=True, drift_events=1, last_drift_time=T1)
    assert is_new_drift_event(drifted, {})
    assert is_new_drift_event(drifted, {"lastDriftTime": T0})


def test_the_same_drift_event_read_again_is_not_new() -> None:
    drifted = reading(drift=True, drift_events=1, last_drift_time=T1)
    status = drift_status(drifted, {})
    assert status["driftEvents"] == 1
    assert not is_new_drift_event(drifted, status)
    assert drift_status(drifted, status)["driftEvents"] == 1


def test_an_older_drift_time_from_another_replica_does_not_go_back() -> None:
    previous = {"lastDriftTime": T1, "driftEvents": 2, "runtimeDriftEvents": 2}
    other = reading(drift=True, drift_events=1, last_drift_time=T0)
    assert not is_new_drift_event(other, previous)
    status = drift_status(other, previous)
    assert status["lastDriftTime"] == T1
    assert status["driftEvents"] == 2


def test_events_between_two_reads_are_all_counted() -> None:
    previous = {"lastDriftTime": T0, "driftEvents": 1, "runtimeDriftEvents": 1}
    status = drift_status(reading(drift_events=3, last_drift_time=T1), previous)
    assert status["driftEvents"] == 3


def test_a_restarted_runtime_counts_one_new_event_not_its_reset_counter() -> None:
    previous = {"lastDriftTime": T0, "driftEvents": 5, "runtimeDriftEvents": 5}
    status = drift_status(reading(drift=True, drift_events=1, last_drift_time=T1), previous)
    assert status["driftEvents"] == 6
    assert status["runtimeDriftEvents"] == 1


def test_status_reports_the_threshold_the_runtime_has_in_force() -> None:
    status = drift_status(reading(threshold=0.2, last_p_value=0.03), {"pValueThreshold": 0.05})
    assert status["pValueThreshold"] == 0.2
    assert status["lastPValue"] == 0.03
    assert status["lastCheckTime"] == T0


def test_status_shows_the_event_rule_the_runtime_runs() -> None:
    calibrated = reading(
        calibration_status="calibrated", consecutive=5, expected_false_alarm_rows=3.55e8
    )
    assert drift_status(calibrated, {})["calibration"] == {
        "status": "calibrated",
        "reason": "",
        "consecutive": 5,
        "expectedFalseAlarmRows": 3.55e8,
    }
    why = "the calibration does not cover windowSize 50 (calibrated for 100)"
    uncalibrated = reading(calibration_status="uncalibrated", calibration_reason=why)
    assert drift_status(uncalibrated, {})["calibration"] == {
        "status": "uncalibrated",
        "reason": why,
        "consecutive": 0,
    }  # no null inside: a merge patch would drop it and every read would look like a change
    assert drift_status(reading(), {})["calibration"] is None  # an older runtime reports none


def test_a_disabled_runtime_writes_no_drift_fields() -> None:
    assert drift_status(DriftReading(enabled=False, reason="no reference"), {}) == {}


@pytest.mark.parametrize(
    ("kw", "status", "reason"),
    [
        (
            {"drift": True, "last_p_value": 0.001, "last_drift_time": T1},
            "True",
            "PValueBelowThreshold",
        ),
        ({}, "False", "NoDrift"),
        ({"checks": 0, "window_fill": 10}, "Unknown", "AwaitingFirstCheck"),
    ],
)
def test_drift_condition_follows_the_runtime(kw: dict, status: str, reason: str) -> None:
    cond = drift_condition(reading(**kw), None, generation=4)
    assert (cond["type"], cond["status"], cond["reason"]) == ("DriftDetected", status, reason)
    assert cond["observedGeneration"] == 4
    assert cond["message"]


def test_the_drift_condition_names_the_features_that_drifted_most() -> None:
    features = (("worst area", 0.0001), ("mean radius", 0.004))
    drifted = reading(drift=True, last_p_value=0.001, last_drift_time=T1, drifted_features=features)
    message = drift_condition(drifted, None, generation=1)["message"]
    assert message.endswith("drifted most: worst area (p=0.0001), mean radius (p=0.004)")
    assert "drifted most" not in drift_condition(reading(), None, generation=1)["message"]


def test_an_unreachable_runtime_gives_a_reason_not_a_crash() -> None:
    error = DriftReadError("unreachable", "GET http://x/drift failed: ClientConnectorError")
    cond = drift_condition(None, error, generation=1)
    assert (cond["status"], cond["reason"]) == ("Unknown", "RuntimeUnreachable")
    assert "ClientConnectorError" in cond["message"]
    invalid = drift_condition(None, DriftReadError("invalid", "not JSON"), generation=1)
    assert invalid["reason"] == "InvalidDriftResponse"


def test_no_ready_replica_gives_runtime_not_ready() -> None:
    error = DriftReadError("notready", "the Deployment has no ready replica")
    cond = drift_condition(None, error, generation=3)
    assert (cond["status"], cond["reason"]) == ("Unknown", "RuntimeNotReady")
    assert cond["observedGeneration"] == 3


def test_a_runtime_without_a_model_is_model_not_loaded_not_drift_disabled() -> None:
    error = DriftReadError("notloaded", "the runtime has no model: digest_mismatch: expected a")
    cond = drift_condition(None, error, generation=2)
    assert (cond["status"], cond["reason"]) == ("Unknown", "ModelNotLoaded")
    assert "digest_mismatch" in cond["message"]


def test_drift_disabled_in_the_runtime_is_unknown_with_its_reason() -> None:
    cond = drift_condition(DriftReading(enabled=False, reason="no reference"), None, 1)
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "Unknown",
        "DriftDisabled",
        "no reference",
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5), ("1.5h", 5400)],
)
def test_cooldown_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1d", "h", "10", "5m x", "m5"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_action_none_posts_nothing_and_alert_posts_an_event() -> None:
    assert plan_reaction("none", True, None, 3600, NOW).event is False
    alert = plan_reaction("alert", True, None, 3600, NOW)
    assert alert.event
    assert not alert.retrain


def test_no_new_event_means_no_reaction_whatever_the_action() -> None:
    for action in ("none", "alert", "retrain"):
        reaction = plan_reaction(action, False, None, 3600, NOW)
        assert not reaction.event
        assert not reaction.retrain


def test_retrain_triggers_once_per_cooldown() -> None:
    first = plan_reaction("retrain", True, None, 3600, NOW)
    assert first.retrain
    assert first.event
    inside = plan_reaction("retrain", True, NOW, 3600, NOW + timedelta(minutes=59))
    assert not inside.retrain
    assert inside.event
    assert inside.cooldown_until == NOW + timedelta(hours=1)
    after = plan_reaction("retrain", True, NOW, 3600, NOW + timedelta(hours=1))
    assert after.retrain


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [backoff_s(n, 2.0, 60.0) for n in range(7)]
    assert delays == [0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
