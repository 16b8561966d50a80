"""Many replicas, one truth: the pure combination of every ready replica's GET /drift."""

from __future__ import annotations

import itertools
import random

from aiops_operator.drift_client import DriftReadError, Pod
from aiops_operator.replicas import ReplicaRead, aggregate, ready_pods, replicas_condition
from tests.operator.test_reactions import T0, T1, reading

QUIET = reading(last_p_value=0.4)
CLOSE = reading(last_p_value=0.07, checks=5)
DRIFTING = reading(drift=True, last_p_value=0.001, drift_events=2, last_drift_time=T1)
TIMED_OUT = DriftReadError("unreachable", "GET http://10.0.0.3:8000/drift timed out")


def test_one_drifting_replica_of_three_makes_the_modelservice_drift() -> None:
    agg = aggregate(
        [ReplicaRead("ms-a", QUIET), ReplicaRead("ms-b", DRIFTING), ReplicaRead("ms-c", CLOSE)]
    )
    assert agg.counts() == {"read": 3, "drifting": 1, "unreadable": 0}
    cond = replicas_condition(agg, 4)
    assert (cond["status"], cond["reason"]) == ("True", "PValueBelowThreshold")
    assert cond["message"].startswith("1 of 3 ready replicas drifting; last p-value 0.001")
    assert agg.reading is not None
    assert (agg.reading.checks, agg.reading.drift_events) == (11, 2)  # summed over replicas


def test_the_outcome_does_not_depend_on_which_replica_answered_first() -> None:
    reads = [
        ReplicaRead("ms-a", QUIET),
        ReplicaRead("ms-b", DRIFTING),
        ReplicaRead("ms-c", reading(drift=True, last_p_value=0.001, last_drift_time=T0)),
        ReplicaRead("ms-d", error=TIMED_OUT),
    ]
    outcomes = {
        repr((aggregate(order), replicas_condition(aggregate(order), 1)))
        for order in itertools.permutations(reads)
    }
    assert len(outcomes) == 1


def test_no_replica_drifting_reports_the_one_closest_to_drift() -> None:
    agg = aggregate([ReplicaRead("ms-a", QUIET), ReplicaRead("ms-b", CLOSE)])
    cond = replicas_condition(agg, 1)
    assert (cond["status"], cond["reason"]) == ("False", "NoDrift")
    assert agg.reading is not None
    assert agg.reading.last_p_value == 0.07
    assert agg.counts() == {"read": 2, "drifting": 0, "unreadable": 0}


def test_a_silent_replica_among_quiet_ones_is_unknown_and_named_not_dropped() -> None:
    agg = aggregate(
        [
            ReplicaRead("ms-a", QUIET),
            ReplicaRead("ms-b", QUIET),
            ReplicaRead("ms-c", error=TIMED_OUT),
        ]
    )
    assert agg.counts() == {"read": 2, "drifting": 0, "unreadable": 1}
    cond = replicas_condition(agg, 1)
    assert (cond["status"], cond["reason"]) == ("Unknown", "RuntimeUnreachable")
    assert cond["message"].startswith("1 of 3 ready replicas unreadable (ms-c): GET http://10.0")
    assert "the other 2: NoDrift" in cond["message"]


def test_a_silent_replica_does_not_hide_the_drift_of_another() -> None:
    agg = aggregate([ReplicaRead("ms-a", DRIFTING), ReplicaRead("ms-b", error=TIMED_OUT)])
    cond = replicas_condition(agg, 1)
    assert (cond["status"], cond["reason"]) == ("True", "PValueBelowThreshold")
    assert "1 of 2 ready replicas unreadable (ms-b)" in cond["message"]


def test_no_replica_answering_keeps_the_first_failures_reason() -> None:
    bad = DriftReadError("invalid", "GET http://10.0.0.1:8000/drift lacks checks")
    agg = aggregate([ReplicaRead("ms-b", error=TIMED_OUT), ReplicaRead("ms-a", error=bad)])
    assert agg.reading is None
    cond = replicas_condition(agg, 1)
    assert (cond["status"], cond["reason"]) == ("Unknown", "InvalidDriftResponse")
    assert cond["message"].startswith("2 of 2 ready replicas unreadable (ms-a, ms-b): GET")


def test_a_single_read_through_the_service_keeps_the_runtimes_own_message() -> None:
    cond = replicas_condition(aggregate([ReplicaRead("", error=TIMED_OUT)]), 1)
    assert (cond["reason"], cond["message"]) == ("RuntimeUnreachable", TIMED_OUT.message)
    drift = replicas_condition(aggregate([ReplicaRead("", DRIFTING)]), 1)
    assert drift["message"].startswith("last p-value 0.001")


def test_the_newest_drift_time_of_any_replica_is_the_modelservices() -> None:
    cleared = reading(drift=False, drift_events=1, last_drift_time=T1)
    older = reading(drift=True, last_p_value=0.01, drift_events=1, last_drift_time=T0)
    agg = aggregate([ReplicaRead("ms-a", older), ReplicaRead("ms-b", cleared)])
    assert agg.reading is not None
    assert (agg.reading.drift, agg.reading.last_drift_time) == (True, T1)
    assert agg.reading.drift_events == 2


def test_replicas_still_filling_their_windows_await_the_first_check() -> None:
    agg = aggregate(
        [
            ReplicaRead("ms-a", reading(checks=0, window_fill=20)),
            ReplicaRead("ms-b", reading(checks=0, window_fill=35)),
        ]
    )
    cond = replicas_condition(agg, 1)
    assert (cond["status"], cond["reason"]) == ("Unknown", "AwaitingFirstCheck")
    assert cond["message"].startswith("window 35/50 rows")


def test_only_ready_pods_with_an_ip_that_are_not_going_are_read() -> None:
    def pod(name: str, ready: str = "True", ip: str = "10.0.0.1", **meta: str) -> dict:
        cond = [{"type": "Ready", "status": ready}]
        return {"metadata": {"name": name, **meta}, "status": {"podIP": ip, "conditions": cond}}

    items = [
        pod("ms-c", ip="10.0.0.3"),
        pod("ms-a"),
        pod("ms-starting", ready="False"),
        pod("ms-going", deletionTimestamp="2026-01-01T00:00:00Z"),
        pod("ms-pending", ip=""),
    ]
    assert ready_pods(items) == [Pod("ms-a", "10.0.0.1"), Pod("ms-c", "10.0.0.3")]


def test_the_budget_holds_per_modelservice_with_each_pod_at_the_full_budget() -> None:
    """Rows split over N pods, each raising an event after k flagged checks in a row (the
    runtime's rule; flags independent with rate a): the false events of all pods together per
    row of the ModelService's traffic are those of one pod taking all rows, not N times more."""
    rng = random.Random(11)
    a, k, check_every, rows = 0.3, 3, 10, 600_000

    def events_per_row(pods: int) -> float:
        runs, seen, events = [0] * pods, [0] * pods, 0
        for _ in range(rows):
            pod = rng.randrange(pods)  # the Service sends each request to one pod
            seen[pod] += 1
            if seen[pod] % check_every:
                continue
            runs[pod] = runs[pod] + 1 if rng.random() < a else 0
            if runs[pod] == k:  # an event, then a clean check is needed to clear it
                events += 1
        return events / rows

    one, three = events_per_row(1), events_per_row(3)
    budget = check_every / ((1 - a) * a**k)  # rows between events of the runtime's rule
    assert abs(one * budget - 1) < 0.1
    assert abs(three / one - 1) < 0.1, f"3 pods: {three / one:.2f}x the events of one"
