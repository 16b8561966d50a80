"""conditions.py: find, set and merge conditions; lastTransitionTime moves only on a change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from aiops_operator import conditions

T0 = "2026-01-01T10:00:00Z"
READY = {"type": "Ready", "status": "True", "reason": "ReplicasReady", "message": ""}
NO_DRIFT = {"type": "DriftDetected", "status": "False", "reason": "NoDrift", "message": "a"}


def test_set_condition_keeps_other_conditions_and_moves_time_only_on_change() -> None:
    old = {**NO_DRIFT, "lastTransitionTime": T0}
    same = {**NO_DRIFT, "message": "b"}
    merged = conditions.set_condition([READY, old], same, "later")
    assert merged == [READY, {**same, "lastTransitionTime": T0}]
    flipped = conditions.set_condition(merged, {**same, "status": "True"}, "later")
    assert flipped[1]["status"] == "True"
    assert flipped[1]["lastTransitionTime"] == "later"
    assert conditions.set_condition(None, same, "now") == [{**same, "lastTransitionTime": "now"}]


def test_merge_puts_the_new_conditions_first_and_keeps_foreign_ones() -> None:
    drift = {**NO_DRIFT, "lastTransitionTime": T0}
    ready = {**READY, "lastTransitionTime": T0}
    merged = conditions.merge([drift, ready], [{**READY, "message": "1/1"}], "later")
    assert merged == [{**READY, "message": "1/1", "lastTransitionTime": T0}, drift]
    flipped = conditions.merge(merged, [{**READY, "status": "False"}], "later")
    assert flipped[0]["lastTransitionTime"] == "later"


def test_put_restores_a_condition_verbatim() -> None:
    stale = {**NO_DRIFT, "lastTransitionTime": T0}
    ours = {**NO_DRIFT, "status": "True", "lastTransitionTime": "T1"}
    assert conditions.put([READY, stale], ours) == [READY, ours]
    assert conditions.put([READY], ours) == [READY, ours]
    assert conditions.put([READY, stale], None) == [READY, stale]


def test_find_returns_the_condition_of_a_type_or_none() -> None:
    assert conditions.find([READY, NO_DRIFT], "DriftDetected") == NO_DRIFT
    assert conditions.find([READY], "DriftDetected") is None
    assert conditions.find(None, "Ready") is None


def test_times_are_utc_seconds_and_parse_back() -> None:
    moment = datetime(2026, 1, 1, 12, 0, 5, 999000, tzinfo=timezone(timedelta(hours=2)))
    assert conditions.rfc3339(moment) == "2026-01-01T10:00:05Z"
    assert conditions.parse_time("2026-01-01T10:00:05Z") == datetime(
        2026, 1, 1, 10, 0, 5, tzinfo=UTC
    )
    assert conditions.parse_time("2026-01-01T10:00:05") == datetime(
        2026, 1, 1, 10, 0, 5, tzinfo=UTC
    )
    assert conditions.parse_time("yesterday") is None
    assert conditions.parse_time(None) is None
