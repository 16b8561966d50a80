"""Many replicas, one truth: one ModelService's drift state from every ready replica's GET /drift
in one poll (docs/drift.md, "Many replicas").

Each pod keeps its own drift window, so the operator reads each ready pod and combines:
- `DriftDetected` is True while any replica that answered reports an active drift event. The
  runtime's budget is in rows, and each request's rows reach one pod only, so N pods each at a
  budget of B rows raise, together, one false event per B rows of the ModelService's traffic:
  the budget holds per ModelService with each pod at B, and no agreement is required;
- a replica that does not answer is named in the condition's message; while no answering
  replica reports drift the condition is Unknown with that replica's reason (it may be the one
  drifting), never a `NoDrift` that depends on which replicas happened to answer;
- the result is a function of the set of readings, not of their order or of who answered first.
No I/O: the poller lists the pods and reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiops_operator.conditions import parse_time
from aiops_operator.drift_client import DriftReadError, DriftReading, Pod
from aiops_operator.reactions import ERROR_REASONS, STATUS_TEXT_MAX, drift_condition

# The longest part of a condition message spent on the replicas that did not answer.
UNREADABLE_NAMED = 3


@dataclass(frozen=True)
class ReplicaRead:
    """One pod's answer to GET /drift: a reading or the error; `pod` is empty for a read
    through a URL that names no pod (the Service)."""

    pod: str
    reading: DriftReading | None = None
    error: DriftReadError | None = None


@dataclass(frozen=True)
class Aggregate:
    """The ModelService's drift state from one poll of its replicas."""

    reading: DriftReading | None  # combined; None when no replica answered
    error: DriftReadError | None  # the first failure (by pod name); None when all answered
    read: int  # replicas that answered
    drifting: int  # of those, how many report an active drift event
    unreadable: tuple[str, ...] = ()  # pods that did not answer, by name

    def counts(self) -> dict[str, int]:
        """status.drift.replicas."""
        return {"read": self.read, "drifting": self.drifting, "unreadable": len(self.unreadable)}


def ready_pods(items: Iterable[dict[str, Any]]) -> list[Pod]:
    """The pods of a pod list that are Ready, not being deleted and have an IP, by name."""
    pods = []
    for item in items:
        meta, status = item.get("metadata") or {}, item.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if ready and status.get("podIP") and not meta.get("deletionTimestamp"):
            pods.append(Pod(str(meta.get("name") or ""), str(status["podIP"])))
    return sorted(pods, key=lambda p: p.name)


def _p_order(reading: DriftReading) -> float:
    return 1.0 if reading.last_p_value is None else reading.last_p_value


def _newest_drift_time(readings: Iterable[DriftReading]) -> str | None:
    times = [(parse_time(r.last_drift_time), r.last_drift_time) for r in readings]
    known = [(t, text) for t, text in times if t is not None]
    return max(known)[1] if known else None


def aggregate(reads: Sequence[ReplicaRead]) -> Aggregate:
    """Combine one poll's reads: drift when any answering replica drifts (module docstring).

    The combined reading is the replica that is closest to drift (a drifting one with the
    smallest p-value, else the checked one with the smallest p-value, else the fullest window),
    with `checks` and `drift_events` summed and `last_drift_time` the newest of all replicas.
    """
    ordered = sorted(reads, key=lambda r: r.pod)
    answered = [(r.pod, r.reading) for r in ordered if r.reading is not None]
    failed = [r for r in ordered if r.reading is None]
    error = next((r.error for r in failed if r.error is not None), None)
    if failed and error is None:
        error = DriftReadError("unreachable", "no answer")
    unreadable = tuple(r.pod for r in failed)
    enabled = [(pod, r) for pod, r in answered if r.enabled]
    if not enabled:
        first = answered[0][1] if answered else None
        return Aggregate(first, error, len(answered), 0, unreadable)
    checked = [(pod, r) for pod, r in enabled if r.checks > 0]
    drifting = [(pod, r) for pod, r in checked if r.drift]
    if drifting:
        _, chosen = min(drifting, key=lambda pr: (_p_order(pr[1]), pr[0]))
    elif checked:
        _, chosen = min(checked, key=lambda pr: (_p_order(pr[1]), pr[0]))
    else:
        _, chosen = min(enabled, key=lambda pr: (-pr[1].window_fill, pr[0]))
    readings = [r for _, r in enabled]
    combined = replace(
        chosen,
        checks=sum(r.checks for r in readings),
        drift=bool(drifting),
        drift_events=sum(r.drift_events for r in readings),
        last_drift_time=_newest_drift_time(readings),
    )
    return Aggregate(combined, error, len(answered), len(drifting), unreadable)


def _unreadable_text(agg: Aggregate) -> str:
    total = agg.read + len(agg.unreadable)
    named = ", ".join(p for p in agg.unreadable[:UNREADABLE_NAMED] if p)
    more = len(agg.unreadable) - UNREADABLE_NAMED
    if more > 0:
        named += f" and {more} more"
    detail = agg.error.message if agg.error else "no answer"
    who = f" ({named})" if named else ""
    return f"{len(agg.unreadable)} of {total} ready replicas unreadable{who}: {detail}"


def replicas_condition(agg: Aggregate, generation: int) -> dict[str, Any]:
    """The DriftDetected condition (without lastTransitionTime) of one poll's aggregate."""
    cond = _condition(agg, generation)
    return {**cond, "message": cond["message"][:STATUS_TEXT_MAX]}


def _condition(agg: Aggregate, generation: int) -> dict[str, Any]:
    total = agg.read + len(agg.unreadable)
    if agg.reading is None:
        cond = drift_condition(None, agg.error, generation)
        if total > 1:
            cond["message"] = _unreadable_text(agg)
        return cond
    cond = drift_condition(agg.reading, None, generation)
    if cond["status"] == "True" and total > 1:
        cond["message"] = f"{agg.drifting} of {total} ready replicas drifting; {cond['message']}"
    if not agg.unreadable:
        return cond
    if cond["status"] == "True":
        cond["message"] = f"{cond['message']}; {_unreadable_text(agg)}"
        return cond
    assert agg.error is not None
    others = f"the other {agg.read}: {cond['reason']}, {cond['message']}"
    return {
        **cond,
        "status": "Unknown",
        "reason": ERROR_REASONS.get(agg.error.kind, "RuntimeUnreachable"),
        "message": f"{_unreadable_text(agg)}; {others}",
    }
