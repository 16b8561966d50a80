"""The one place for status conditions (metav1.Condition) and their RFC 3339 times.

`find` one condition by type, `set` one in place, `merge` a set of them over the previous list;
in both, `lastTransitionTime` moves only when a condition's status changes. No clock reads:
callers pass `now` (as `rfc3339(datetime)`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Condition = dict[str, Any]


def rfc3339(moment: datetime) -> str:
    """metav1.Time form of a datetime (UTC, second precision, Z suffix)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp (Z or offset) as an aware datetime; None when absent or invalid."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def find(conditions: list[Condition] | None, kind: str) -> Condition | None:
    """The condition of one type, if present."""
    return next((c for c in conditions or [] if c.get("type") == kind), None)


def _stamped(old: Condition | None, new: Condition, now: str) -> Condition:
    """`new` with the transition time of `old` when the status is unchanged, else `now`."""
    kept = old.get("lastTransitionTime") if old and old.get("status") == new["status"] else None
    return {**new, "lastTransitionTime": kept or now}


def set_condition(conditions: list[Condition] | None, new: Condition, now: str) -> list[Condition]:
    """Put `new` in place of the condition of its type (appended when absent); the others are
    kept as they are, in order."""
    current = list(conditions or [])
    old = find(current, new["type"])
    if old is None:
        return [*current, _stamped(None, new, now)]
    return [_stamped(c, new, now) if c.get("type") == new["type"] else c for c in current]


def merge(previous: list[Condition] | None, new: list[Condition], now: str) -> list[Condition]:
    """`new` (in its order, stamped) followed by the previous conditions of other types."""
    ours = {c["type"] for c in new}
    stamped = [_stamped(find(previous, c["type"]), c, now) for c in new]
    return stamped + [c for c in previous or [] if c.get("type") not in ours]


def put(conditions: list[Condition] | None, cond: Condition | None) -> list[Condition]:
    """`conditions` with `cond` (if any) in place of the condition of its type, as it is."""
    current = list(conditions or [])
    if cond is None:
        return current
    if find(current, cond["type"]) is None:
        return [*current, cond]
    return [cond if c.get("type") == cond["type"] else c for c in current]
