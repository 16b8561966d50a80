"""Drift monitoring off the request path: a ring buffer of recent rows and a background worker.

``append`` (the request path) copies rows, and the class probabilities the request path computed
for them, into a fixed-size ring buffer under a lock held only for that copy. A daemon thread
wakes when ``check_every`` new rows have arrived, copies the last ``window_size`` rows out,
releases the lock and runs the test on features standardized with the reference's mean and
standard deviation (then decorrelated with the reference's correlations), so a slow test never
delays a request.

Each check's p-value combines two tests (weighted Bonferroni, so the false-flag rate per check stays
at most the threshold): the detector on the window's *distinct* rows (exact duplicates, such as a
client resending one sample, say nothing about a distribution and would fake a drift), and a count
of rows outside the reference's support (duplicates counted, so a burst of one out-of-range vector
is caught). With ``drift.target`` outputs (or both) the check tests the model's predicted
probabilities of the window's rows against the reference rows' (``OutputKS``; on the
probabilities the request path answered with, so the worker does not score the rows again; rows
appended without them are scored by the worker), and both combine by Bonferroni. A drift *event*
is raised when ``consecutive`` checks in a row flag; it clears after a clean check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from aiops_runtime import metrics
from aiops_runtime.calibration import Calibration, EventRule, bonferroni, event_rule
from aiops_runtime.detectors import (
    OutputKS,
    SupportCheck,
    WindowDetector,
    alibi_available,
    build_detector,
    distinct_rows,
    drifted_features,
    effective_engine,
    needs_alibi,
)
from aiops_runtime.settings import DriftConfig

log = logging.getLogger("aiops_runtime.drift")

CHECK_MESSAGE = "Drift detection result"
# Share of the per-check false-flag budget given to the distribution test; the support count
# gets the rest. The support count is rare under no drift, so it needs only a small share.
DETECTOR_WEIGHT = 0.9
SUPPORT_WEIGHT = 0.1
# Fewer distinct rows than this and the distribution test is skipped (the support count still runs).
MIN_DISTINCT_ROWS = 10
# Smallest eigenvalue of the reference's correlation matrix used when whitening, relative to the
# largest. The small eigenvalues of a 284-row estimate are too small; whitening fully with them
# makes new rows look unlike the reference (about 1.7x the nominal false flags on i.i.d. data),
# while a 10 % floor keeps the test near its size and still catches noise on every feature.
EIGENVALUE_FLOOR = 0.1


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RingBuffer:
    """The last ``capacity`` rows, written by the request path and read by the worker.

    Each row holds ``features`` values, then ``outputs`` more (the model's class probabilities
    for the row; NaN when the writer did not have them).
    """

    def __init__(self, capacity: int, features: int, outputs: int = 0) -> None:
        """An empty buffer of ``capacity`` rows of ``features`` (+ ``outputs``) floats."""
        self.capacity = capacity
        self.features = features
        self.outputs = outputs
        self._rows = np.zeros((capacity, features + outputs))
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Rows appended since the buffer was made (including those already overwritten)."""
        return self._total

    def append(self, rows: np.ndarray, outputs: np.ndarray | None = None) -> int:
        """Copy rows (and their outputs, else NaN) in, the oldest fall out; returns the new
        total. O(rows) under the lock."""
        n = len(rows)
        if n > self.capacity:
            rows, skipped = rows[-self.capacity :], n - self.capacity
            outputs = outputs[-self.capacity :] if outputs is not None else None
        else:
            skipped = 0
        with self._lock:
            start = (self._total + skipped) % self.capacity
            end = start + len(rows)
            if end <= self.capacity:
                self._write(slice(start, end), rows, outputs)
            else:
                split = self.capacity - start
                self._write(slice(start, None), rows[:split], _head(outputs, split))
                self._write(slice(0, end - self.capacity), rows[split:], _tail(outputs, split))
            self._total += n
            return self._total

    def _write(self, where: slice, rows: np.ndarray, outputs: np.ndarray | None) -> None:
        if not self.outputs:
            self._rows[where] = rows
            return
        self._rows[where, : self.features] = rows
        self._rows[where, self.features :] = np.nan if outputs is None else outputs

    def latest(self, n: int | None = None) -> tuple[np.ndarray, int]:
        """A copy of the last ``n`` rows (default: all held), oldest first, and the total then."""
        with self._lock:
            total = self._total
            held = min(total, self.capacity)
            n = held if n is None else min(n, held)
            end = total % self.capacity
            start = end - n
            if start >= 0:
                rows = self._rows[start:end].copy()
            else:
                rows = np.concatenate((self._rows[start:], self._rows[:end]))
        return rows, total

    def fill(self) -> int:
        """Rows currently held (up to the capacity)."""
        return min(self._total, self.capacity)


def _head(outputs: np.ndarray | None, split: int) -> np.ndarray | None:
    return outputs[:split] if outputs is not None else None


def _tail(outputs: np.ndarray | None, split: int) -> np.ndarray | None:
    return outputs[split:] if outputs is not None else None


class DriftMonitor:
    """Windowed drift detection against a reference sample, run by a background thread."""

    def __init__(
        self,
        reference: np.ndarray,
        config: DriftConfig,
        *,
        model_name: str = "model",
        seed: int | None = None,
        detector: WindowDetector | None = None,
        feature_names: list[str] | None = None,
        calibration: Calibration | None = None,
        predict: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """Standardize the reference and prepare the detector; raises ValueError on bad input.

        ``seed`` fixes the permutations (reproducible benchmarks); ``detector`` replaces the one
        the config names until the config's detector settings change. ``feature_names`` (from
        the training artifacts) name the features in attributions; without them ``f0..fN``.
        ``calibration`` (calibration.json) turns on the calibrated rule where it covers the
        settings. ``predict`` (the model's ``predict_proba``) enables ``target`` outputs and both.
        """
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2 or len(reference) < 2 or not np.isfinite(reference).all():
            raise ValueError("the reference must be a finite 2-D array with at least 2 rows")
        reference_proba = predict(reference) if predict is not None else None
        self._outputs = OutputKS(reference_proba) if reference_proba is not None else None
        self._n_outputs = reference_proba.shape[1] if reference_proba is not None else 0
        self._predict = predict
        self._check_supported(config)
        self.model_name = model_name
        self.features = reference.shape[1]
        self.mean, self._transform = reference_transform(reference)
        self.reference = self.standardize(reference)
        if feature_names is None and calibration is not None and calibration.feature_names:
            feature_names = list(calibration.feature_names)
        self.feature_names = _names_or_default(feature_names, self.features)
        self._calibration = calibration
        self._rule, self._calibration_state = self._event_rule(config)
        # Attribution tests each feature on its own scale: standardized, not whitened.
        std = reference.std(axis=0)
        self._scale = np.where(std > 0, std, 1.0)
        self._reference_scaled = (reference - self.mean) / self._scale
        self._seed = seed
        self._config = config
        self._buffer = RingBuffer(config.window_size, self.features, self._n_outputs)
        self._support = SupportCheck(self.reference)
        self._detector: WindowDetector | None = detector
        self._detector_key: tuple[Any, ...] | None = _detector_key(config) if detector else None
        self._state_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_check_at = config.window_size
        self._last_checked_total = 0
        self._streak = 0
        self._state: dict[str, Any] = {
            "checks": 0,
            "checks_skipped": 0,
            "check_errors": 0,
            "last_p_value": None,
            "last_check_time": None,
            "last_check_ms": None,
            "last_distinct_rows": None,
            "last_outside_support": None,
            "drift": False,
            "drift_events": 0,
            "last_drift_time": None,
            "last_error": None,
            "drifted_features": [],
        }
        metrics.DRIFT_THRESHOLD.set(config.p_value_threshold)
        metrics.DRIFT_ACTIVE.set(0)
        metrics.DRIFT_WINDOW_FILL.set(0)

    @property
    def config(self) -> DriftConfig:
        """The drift settings in force."""
        return self._config

    def standardize(self, rows: np.ndarray) -> np.ndarray:
        """Rows standardized and decorrelated with the reference (see ``reference_transform``)."""
        return (np.asarray(rows, dtype=np.float64) - self.mean) @ self._transform

    def append(self, rows: np.ndarray, proba: np.ndarray | None = None) -> None:
        """Request path: copy rows (n x features, or one row) into the window; never waits.

        ``proba`` (n x classes) are the model's probabilities for the rows, as the request path
        answered them: the output test uses them instead of scoring the rows again. Without
        them (or on a monitor without a model) the worker scores the rows when it tests them.
        """
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != self.features:
            raise ValueError(f"expected rows of {self.features} features, got shape {rows.shape}")
        if proba is not None and self._n_outputs:
            proba = np.asarray(proba, dtype=np.float64).reshape(len(rows), -1)
            if proba.shape[1] != self._n_outputs:
                raise ValueError(
                    f"expected {self._n_outputs} class probabilities per row, got {proba.shape}"
                )
        total = self._buffer.append(rows, proba if self._n_outputs else None)
        if total >= self._next_check_at:
            self._wake.set()

    def start(self) -> None:
        """Start the background worker (a daemon thread); idempotent."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="drift-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker and wait for it (a running check finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def update_config(self, config: DriftConfig) -> None:
        """Apply new settings live. Fields not set explicitly in ``config`` keep their values.

        The window's rows survive (a smaller window keeps the newest). A detector, engine or
        permutations change rebuilds the detector and restarts the consecutive-flags count.
        An alibi configuration without alibi-detect installed is refused (logged, not raised).
        """
        changes = {name: getattr(config, name) for name in config.model_fields_set}
        with self._state_lock:
            merged = self._config.model_copy(update=changes)
            if merged == self._config:
                return
            try:
                merged = DriftConfig.model_validate(merged.model_dump())
                self._check_supported(merged)
            except ValueError as exc:
                log.error("drift config refused, keeping the last good one: %s", exc)
                return
            old = self._config
            if merged.window_size != old.window_size:
                self._resize(merged.window_size)
            rule, calibration_state = self._event_rule(merged)
            if (
                _detector_key(merged) != _detector_key(old)
                or merged.target != old.target
                or rule != self._rule
            ):
                self._streak = 0
            self._config = merged
            self._rule, self._calibration_state = rule, calibration_state
            self._next_check_at = max(
                self._last_checked_total + merged.check_every, merged.window_size
            )
        metrics.DRIFT_THRESHOLD.set(merged.p_value_threshold)
        log.info("drift config updated", extra={"drift_config": merged.model_dump(by_alias=True)})
        self._wake.set()

    def snapshot(self) -> dict[str, Any]:
        """The detector's state: the body of GET /drift."""
        with self._state_lock:
            config, state = self._config, dict(self._state)
            streak = self._streak
            needed = self._consecutive(config)
            calibration = dict(self._calibration_state)
        return {
            "model": self.model_name,
            "target": config.target,
            "detector": config.detector,
            "engine": effective_engine(config),
            "p_value_threshold": config.p_value_threshold,
            "window_size": config.window_size,
            "check_every": config.check_every,
            "consecutive": needed,
            "permutations": config.permutations,
            "window_fill": self._buffer.fill(),
            "samples_seen": self._buffer.total,
            "consecutive_flags": streak,
            "false_alarm_rows": config.false_alarm_rows,
            "calibration": calibration,
            **state,
        }

    def check_now(self) -> dict[str, Any] | None:
        """Run one check on the current window in the calling thread (tests, benchmarks)."""
        return self._check()

    def _resize(self, window_size: int) -> None:
        rows, total = self._buffer.latest(window_size)
        buffer = RingBuffer(window_size, self.features, self._n_outputs)
        buffer.append(rows[:, : self.features], rows[:, self.features :])
        # Keep counting from the old total so samples_seen and the check schedule stay monotonic.
        buffer._total = total
        self._buffer = buffer

    def run_due_checks(self) -> int:
        """Run the check that is due, if any (the worker's step); returns how many ran."""
        ran = 0
        while self._buffer.total >= self._next_check_at and not self._stop.is_set():
            self._check()
            ran += 1
        return ran

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            self.run_due_checks()

    def _check(self) -> dict[str, Any] | None:
        with self._state_lock:
            config = self._config
            buffer = self._buffer
        window, total = buffer.latest(config.window_size)
        if len(window) == 0:
            return None
        with self._state_lock:
            # Check points passed while the worker was busy are covered by this one check.
            skipped = max(0, (total - self._next_check_at) // config.check_every)
            self._last_checked_total = total
            self._next_check_at = max(total + config.check_every, config.window_size)
        started = time.perf_counter()
        raw, proba = window[:, : self.features], window[:, self.features :]
        try:
            flagged, p_value, details = self._test(config, raw, proba)
        except Exception as exc:  # a failing test must not kill the worker
            self._record_error(exc)
            return None
        check_ms = (time.perf_counter() - started) * 1000
        return self._record(config, len(raw), flagged, p_value, details, check_ms, skipped)

    def score(self, raw: np.ndarray) -> dict[str, tuple[float, float]]:
        """The raw (uncalibrated) p-value and statistic of each part this monitor can test on one
        window of raw rows, in the calling thread: what a calibration simulates."""
        every = "inputs" if self._outputs is None else "both"
        _, details = self._score(self._config.model_copy(update={"target": every}), raw)
        scores: dict[str, tuple[float, float]] = details["scores"]
        return scores

    def _check_supported(self, config: DriftConfig) -> None:
        _require_alibi_if_needed(config)
        if config.target != "inputs" and self._outputs is None:
            raise ValueError(
                f"drift target {config.target!r} needs the model's predictions, and this monitor"
                " has no model"
            )

    def _event_rule(self, config: DriftConfig) -> tuple[EventRule | None, dict[str, Any]]:
        """The calibrated rule for these settings, or None and the reason it runs uncalibrated."""
        if self._calibration is None:
            reason = "no calibration artifact configured (CALIBRATION_URI or MODEL_DIR)"
            return None, {"status": "uncalibrated", "reason": reason}
        gap = self._calibration.covers(
            config.detector, config.window_size, config.permutations, config.target
        )
        if not gap and config.target != "outputs" and effective_engine(config) != "native":
            gap = "the calibration was simulated with the native engine"
        if gap:
            # Recalibrating needs held-out rows, which the runtime does not have: say so.
            reason = f"{gap}; no held-out rows to recalibrate with, so the spec's consecutive"
            return None, {"status": "uncalibrated", "reason": reason + " rule is used"}
        rule = event_rule(
            self._calibration,
            config.p_value_threshold,
            config.check_every,
            config.window_size,
            config.false_alarm_rows,
            config.target,
        )
        return rule, {
            "status": "calibrated",
            "reason": "",
            "consecutive": rule.consecutive,
            "expected_false_alarm_rows": rule.expected_false_alarm_rows,
            "expected_false_alarm_rows_range": list(rule.expected_false_alarm_rows_range),
            "flag_rate": rule.flag_rate,
            "null_checks": len(self._calibration.null),
            "held_out_rows": self._calibration.held_out_rows,
        }

    def _consecutive(self, config: DriftConfig) -> int:
        return self._rule.consecutive if self._rule is not None else config.consecutive

    def _score(
        self, config: DriftConfig, raw: np.ndarray, proba: np.ndarray | None = None
    ) -> tuple[float, dict[str, Any]]:
        """The check's raw p-value (Bonferroni over the target's parts) and its details, with
        each part's p-value and statistic (``scores``) for the calibration. ``proba`` are the
        rows' known probabilities (NaN rows, or None, are scored here)."""
        details: dict[str, Any] = {}
        scores: dict[str, tuple[float, float]] = {}
        if config.target != "outputs":
            scores["inputs"] = self._score_inputs(config, raw, details)
        if config.target != "inputs":
            scores["outputs"] = self._score_outputs(raw, proba)
            details["p_value_outputs"] = scores["outputs"][0]
        details["scores"] = scores
        return bonferroni([p for p, _ in scores.values()]), details

    def _score_inputs(
        self, config: DriftConfig, raw: np.ndarray, details: dict[str, Any]
    ) -> tuple[float, float]:
        detector = self._ensure_detector(config)
        window = self.standardize(raw)
        outside = self._support.outside(window)
        p_support = self._support.p_value(outside, len(window))
        details.update(outside_support=outside, p_value_support=p_support)
        distinct = distinct_rows(window)
        details["distinct_rows"] = len(distinct)
        p_test = 1.0
        statistic = -np.inf
        if len(distinct) >= MIN_DISTINCT_ROWS:
            result = detector.test(distinct)
            p_test = float(result.p_value)
            statistic = details["statistic"] = result.statistic
        details["p_value_test"] = p_test
        p_value = min(1.0, p_test / DETECTOR_WEIGHT, p_support / SUPPORT_WEIGHT)
        return p_value, statistic

    def _score_outputs(self, raw: np.ndarray, proba: np.ndarray | None) -> tuple[float, float]:
        assert self._outputs is not None  # _check_supported
        assert self._predict is not None
        if proba is None or proba.shape[1] == 0:
            proba = self._predict(raw)
        else:
            missing = np.isnan(proba[:, 0])
            if missing.any():
                proba = proba.copy()
                proba[missing] = self._predict(raw[missing])
        result = self._outputs.test(proba)
        return result.p_value, result.statistic

    def _test(
        self, config: DriftConfig, raw: np.ndarray, proba: np.ndarray
    ) -> tuple[bool, float | None, dict[str, Any]]:
        p_value, details = self._score(config, raw, proba)
        scores = details.pop("scores")
        with self._state_lock:
            rule, calibration = self._rule, self._calibration
        if rule is not None and calibration is not None:
            details["p_value_raw"] = p_value
            p_value = calibration.combined_decision_p(scores)
        flagged = p_value < config.p_value_threshold
        # Only flagged checks pay for the per-feature tests: a clean window names nothing.
        details["drifted_features"] = (
            drifted_features(
                self._reference_scaled,
                (raw - self.mean) / self._scale,
                self.feature_names,
                config.p_value_threshold,
            )
            if flagged
            else []
        )
        return flagged, p_value, details

    def _ensure_detector(self, config: DriftConfig) -> WindowDetector:
        key = _detector_key(config)
        if self._detector is None or key != self._detector_key:
            self._detector = build_detector(config, self.reference, seed=self._seed)
            self._detector_key = key
        return self._detector

    def _record(
        self,
        config: DriftConfig,
        fill: int,
        flagged: bool,
        p_value: float | None,
        details: dict[str, Any],
        check_ms: float,
        skipped: int,
    ) -> dict[str, Any]:
        now = _now_rfc3339()
        with self._state_lock:
            state = self._state
            self._streak = self._streak + 1 if flagged else 0
            needed = self._consecutive(config)
            event = flagged and not state["drift"] and self._streak >= needed
            if event:
                state["drift"] = True
                state["drift_events"] += 1
                state["last_drift_time"] = now
            elif not flagged:
                state["drift"] = False
            state["checks"] += 1
            state["checks_skipped"] += skipped
            state["last_p_value"] = p_value
            state["last_check_time"] = now
            state["last_check_ms"] = round(check_ms, 3)
            state["last_distinct_rows"] = details.get("distinct_rows")
            state["last_outside_support"] = details.get("outside_support")
            state["drifted_features"] = details["drifted_features"]
            active, streak = state["drift"], self._streak
            calibration_status = self._calibration_state["status"]
        self._publish(flagged, p_value, fill, active, event, check_ms)
        fields = {
            "p_value": p_value,
            "threshold": config.p_value_threshold,
            "drift": flagged,
            "drift_active": active,
            "drift_event": event,
            "consecutive_flags": streak,
            "consecutive": needed,
            "calibration": calibration_status,
            "window_fill": fill,
            "window_size": config.window_size,
            "detector": config.detector,
            "engine": effective_engine(config),
            "check_ms": round(check_ms, 3),
            **details,
        }
        log.info(CHECK_MESSAGE, extra=fields)
        if event:
            log.warning(
                "Drift event raised",
                extra={
                    "p_value": p_value,
                    "window_fill": fill,
                    "drifted_features": details["drifted_features"],
                },
            )
        return fields

    def _publish(
        self,
        flagged: bool,
        p_value: float | None,
        fill: int,
        active: bool,
        event: bool,
        check_ms: float,
    ) -> None:
        metrics.DRIFT_CHECKS.labels(result="drift" if flagged else "no_drift").inc()
        metrics.DRIFT_CHECK_DURATION.observe(check_ms / 1000)
        if p_value is not None:
            metrics.DRIFT_P_VALUE.set(p_value)
        metrics.DRIFT_WINDOW_FILL.set(fill)
        metrics.DRIFT_ACTIVE.set(1 if active else 0)
        if event:
            metrics.DRIFT_EVENTS.inc()

    def _record_error(self, exc: Exception) -> None:
        with self._state_lock:
            self._state["check_errors"] += 1
            self._state["last_error"] = f"{type(exc).__name__}: {exc}"
        metrics.DRIFT_CHECKS.labels(result="error").inc()
        log.error("drift check failed", exc_info=exc)


def _names_or_default(names: list[str] | None, features: int) -> list[str]:
    if names is not None and len(names) == features:
        return [str(name) for name in names]
    if names is not None:
        log.warning("feature names ignored: %d names for %d features", len(names), features)
    return [f"f{i}" for i in range(features)]


def reference_transform(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and matrix A so that ``(x - mean) @ A`` is standardized and decorrelated.

    Each feature is scaled by the reference's standard deviation, then rotated onto the principal
    axes of the reference's correlation matrix and scaled to unit variance (PCA whitening). The
    breast-cancer features are strongly correlated (radius, perimeter, area); without whitening a
    change that breaks those relations, such as noise on every feature, hides behind the few
    directions that carry most of the variance. Eigenvalues below 10 % of the largest are
    floored, so poorly estimated near-constant directions are not blown up.
    """
    mean = reference.mean(axis=0)
    std = reference.std(axis=0)
    # A constant reference feature would divide by zero; leave it unscaled.
    std = np.where(std > 0, std, 1.0)
    z = (reference - mean) / std
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(z, rowvar=False))
    floor = max(float(eigenvalues.max()) * EIGENVALUE_FLOOR, np.finfo(float).tiny)
    whiten = eigenvectors / np.sqrt(np.maximum(eigenvalues, floor))
    return mean, whiten / std[:, None]


def _detector_key(config: DriftConfig) -> tuple[Any, ...]:
    return (config.detector, config.engine, config.permutations)


def _require_alibi_if_needed(config: DriftConfig) -> None:
    if needs_alibi(config) and not alibi_available():
        raise ValueError(
            f"detector {config.detector!r} with engine {effective_engine(config)!r} needs "
            "alibi-detect, which is not installed (install the runtime's 'alibi' extra)"
        )
