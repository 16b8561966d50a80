"""Reads a runtime's drift state: `GET <base>/drift`, where the base URL comes from a pattern.

The pattern is an operator setting (default `http://{pod_ip}:{port}`: each ready pod of the
runtime, read one by one), so an operator running on a laptop can point it at `kubectl proxy`'s
pod proxy (`{pod}`), a port-forward or a local process. A pattern without `{pod}` or `{pod_ip}`
(the runtime's Service, say) is read once per ModelService: whichever replica answers.
Every failure becomes a `DriftReadError` with a short kind (unreachable, http, invalid) the
caller turns into a condition reason; nothing here raises anything else.

A runtime is the tenant's, so its answer is untrusted: the body is capped (bounded.py),
redirects are not followed, and each field is checked for type, range and length before it can
reach a status, an Event or a log line.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

import aiohttp

from aiops_operator.bounded import (
    HEADERS,
    AnswerRefused,
    answered,
    read_capped,
    session,
    strict_json,
)

PLACEHOLDERS = frozenset({"name", "namespace", "port", "pod", "pod_ip"})
POD_PLACEHOLDERS = frozenset({"pod", "pod_ip"})
# The keys of GET /drift (runtime/aiops_runtime/drift.py snapshot()) the operator relies on.
REQUIRED_KEYS = ("p_value_threshold", "checks", "drift", "drift_events")
# Longest text taken from a runtime's answer into a condition message.
MESSAGE_MAX = 400
# Largest /drift (a snapshot is about 1 KB) and /readyz answer read.
DRIFT_BODY_MAX = 64 * 1024
READYZ_BODY_MAX = 16 * 1024
COUNT_MAX = 2**53  # counters beyond a double's exact integers are not a runtime's
TEXT_MAX = 64  # times, detector names, not-ready reasons
FEATURES_MAX = 3  # drifted feature names taken from one answer (the runtime sends at most 3)
_TOKEN = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")


class DriftReadError(Exception):
    """GET /drift failed; `kind` is unreachable, http or invalid, `message` says what happened.

    Kind notloaded: the runtime answered that it has no model (loading, or a load that failed).
    The drift loop also uses kind notready for a Deployment it does not read: no ready replica.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _fields(pattern: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}


def check_pattern(pattern: str) -> None:
    """Raise ValueError unless `pattern` is an http(s) URL with only the known placeholders."""
    unknown = _fields(pattern) - PLACEHOLDERS
    if unknown:
        raise ValueError(
            f"drift URL pattern {pattern!r} uses unknown placeholders {sorted(unknown)};"
            " allowed are {name}, {namespace}, {port}, {pod} and {pod_ip}"
        )
    if not pattern.startswith(("http://", "https://")):
        raise ValueError(f"drift URL pattern {pattern!r} must start with http:// or https://")


def reads_each_pod(pattern: str) -> bool:
    """Whether `pattern` names one pod ({pod} or {pod_ip}), so each ready pod is read."""
    return bool(_fields(pattern) & POD_PLACEHOLDERS)


@dataclass(frozen=True)
class Pod:
    """One ready runtime pod: its name and IP."""

    name: str
    ip: str = ""


def drift_url(pattern: str, name: str, namespace: str, port: int, pod: Pod | None = None) -> str:
    """The /drift URL of one ModelService's runtime, or of one of its pods."""
    ip = pod.ip if pod else ""
    base = pattern.format(
        name=name,
        namespace=namespace,
        port=port,
        pod=pod.name if pod else "",
        pod_ip=f"[{ip}]" if ":" in ip else ip,  # an IPv6 address goes in brackets in a URL
    )
    return base.rstrip("/") + "/drift"


@dataclass(frozen=True)
class DriftReading:
    """What a runtime reported on GET /drift."""

    enabled: bool
    threshold: float | None = None
    last_p_value: float | None = None
    last_check_time: str | None = None
    checks: int = 0
    window_fill: int = 0
    window_size: int = 0
    drift: bool = False
    drift_events: int = 0
    last_drift_time: str | None = None
    detector: str = ""
    reason: str = ""  # why drift detection is off, when it is
    # The features that drifted most in the last check, with their adjusted p-values.
    drifted_features: tuple[tuple[str, float], ...] = ()
    # The event rule: calibrated | uncalibrated, why not, run length, achieved false-event spacing.
    calibration_status: str = ""
    calibration_reason: str = ""
    consecutive: int = 0
    expected_false_alarm_rows: float | None = None

    def features_text(self) -> str:
        """The drifted features for a message: `mean radius (p=0.001), worst area (p=0.02)`."""
        return ", ".join(f"{name} (p={p:.2g})" for name, p in self.drifted_features)


def parse_snapshot(doc: Any) -> DriftReading:
    """Validate a GET /drift body; raises DriftReadError("invalid") when it is not one."""
    if not isinstance(doc, dict):
        raise DriftReadError("invalid", "GET /drift did not answer a JSON object")
    if doc.get("enabled") is False:
        reason = _one_line(doc.get("reason"))[:MESSAGE_MAX] or "disabled"
        return DriftReading(enabled=False, reason=reason)
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise DriftReadError("invalid", f"GET /drift lacks {', '.join(missing)}")
    try:
        return DriftReading(
            enabled=True,
            threshold=_probability(doc["p_value_threshold"]),
            last_p_value=_probability(doc.get("last_p_value")),
            last_check_time=_token(doc.get("last_check_time")),
            checks=_count(doc["checks"]),
            window_fill=_count(doc.get("window_fill") or 0),
            window_size=_count(doc.get("window_size") or 0),
            drift=_bool(doc["drift"]),
            drift_events=_count(doc["drift_events"]),
            last_drift_time=_token(doc.get("last_drift_time")),
            detector=_token(doc.get("detector")) or "",
            drifted_features=_features(doc.get("drifted_features")),
            consecutive=_count(doc.get("consecutive") or 0),
            **_calibration(doc.get("calibration")),
        )
    except (TypeError, ValueError) as exc:
        raise DriftReadError("invalid", f"GET /drift has an invalid field: {exc}") from None


def not_loaded_error(url: str, body: bytes) -> DriftReadError:
    """The error for a 503 answer of /drift or /readyz: the runtime's own not-ready reason when
    it gives one."""
    try:
        doc = strict_json(body)
    except AnswerRefused:
        doc = None
    not_ready = isinstance(doc, dict) and (
        doc.get("ready") is False or doc.get("status") == "not_ready"
    )
    if not isinstance(doc, dict) or not not_ready:
        return DriftReadError("http", f"GET {url} answered HTTP 503")
    reason = doc.get("reason")
    reason = reason if isinstance(reason, str) and _TOKEN.fullmatch(reason) else "not_ready"
    message = _one_line(doc.get("message"))[:MESSAGE_MAX]
    said = f"{reason}: {message}" if message else reason
    return DriftReadError("notloaded", f"the runtime has no model: {said}"[:MESSAGE_MAX])


def _one_line(value: Any) -> str:
    return " ".join(str(value).split()) if isinstance(value, str) else ""


def _probability(value: Any) -> float | None:
    """A p-value or threshold: a finite number in [0, 1] (bounded.strict_json refused NaN)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{str(value)[:20]!r} is not a probability")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_MAX:
        raise ValueError(f"{str(value)[:20]!r} is not a count")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{str(value)[:20]!r} is not true or false")
    return value


def _token(value: Any) -> str | None:
    """A short text without spaces (a timestamp, a detector name), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError(f"{str(value)[:20]!r} is not a timestamp or a name")
    return value


def _calibration(value: Any) -> dict[str, Any]:
    """The calibration block of /drift, checked; {} when the runtime sends none (older ones)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("calibration is not an object")
    rows = value.get("expected_false_alarm_rows")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int | float)):
        raise ValueError(f"{str(rows)[:20]!r} is not a number of rows")
    return {
        "calibration_status": _token(value.get("status")) or "",
        "calibration_reason": _one_line(value.get("reason"))[:MESSAGE_MAX],
        "expected_false_alarm_rows": None if rows is None else min(float(rows), 1e300),
    }


def _features(value: Any) -> tuple[tuple[str, float], ...]:
    """`[{name, p_value}]`: at most FEATURES_MAX names of printable text, each a p-value."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > FEATURES_MAX:
        raise ValueError(f"drifted_features is not a list of at most {FEATURES_MAX}")
    features = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.isprintable() or not 0 < len(name) <= TEXT_MAX:
            raise ValueError(f"{str(name)[:20]!r} is not a feature name")
        p_value = _probability(item.get("p_value"))
        if p_value is None:
            raise ValueError(f"feature {name[:20]!r} has no p_value")
        features.append((name, p_value))
    return tuple(features)


class DriftClient:
    """One aiohttp session for every runtime; create and use it inside the running event loop."""

    def __init__(self, pattern: str, port: int, timeout_s: float) -> None:
        check_pattern(pattern)
        self.pattern = pattern
        self.port = port
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def url(self, name: str, namespace: str, pod: Pod | None = None) -> str:
        """The /drift URL of one ModelService (or of one of its pods)."""
        return drift_url(self.pattern, name, namespace, self.port, pod)

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session of runtime reads (never inflating, see bounded.py)."""
        if self._session is None or self._session.closed:
            self._session = session(self.timeout_s)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def why_not_ready(self, pod_ip: str) -> DriftReadError | None:
        """A pod's own reason for not being ready (GET /readyz at its IP), unless it is only
        still loading or does not answer in time; never raises."""
        url = f"http://{pod_ip}:{self.port}/readyz"
        try:
            async with self.session().get(
                url, headers=HEADERS, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                if resp.status != 503:
                    return None
                body = await read_capped(resp, READYZ_BODY_MAX)
        except (TimeoutError, aiohttp.ClientError, AnswerRefused):
            return None
        error = not_loaded_error(url, body)
        loading = error.message.startswith("the runtime has no model: loading")
        return error if error.kind == "notloaded" and not loading else None

    async def read(self, name: str, namespace: str, pod: Pod | None = None) -> DriftReading:
        """GET the runtime's (or one pod's) /drift; raises DriftReadError on any failure."""
        url = self.url(name, namespace, pod)
        try:
            async with self.session().get(url, headers=HEADERS, allow_redirects=False) as resp:
                if resp.status == 503:
                    raise not_loaded_error(url, await read_capped(resp, READYZ_BODY_MAX))
                if resp.status != 200:
                    raise DriftReadError("http", f"GET {url} {answered(resp.status)}")
                body = await read_capped(resp, DRIFT_BODY_MAX)
        except TimeoutError:
            raise DriftReadError("unreachable", f"GET {url} timed out") from None
        except aiohttp.ClientError as exc:
            raise DriftReadError("unreachable", f"GET {url} failed: {_short(exc)}") from None
        except AnswerRefused as exc:
            raise DriftReadError("invalid", f"GET {url}: {exc.message}") from None
        try:
            doc = strict_json(body)
        except AnswerRefused as exc:
            raise DriftReadError("invalid", f"GET {url}: {exc.message}") from None
        return parse_snapshot(doc)


def _short(exc: BaseException) -> str:
    """A one-line description of a client error (type and first line)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
