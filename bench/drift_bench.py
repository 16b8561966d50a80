"""Drift detector quality and cost, through the runtime's real DriftMonitor (no HTTP).

Sampling. The breast-cancer data has 569 rows. Stream rows come only from a split's held-out part
(``TEST_FRACTION``, stratified the way ``aiops_runtime.train`` splits), the monitor's reference is
its training part. Rows are drawn uniformly, never repeating a row among the previous window - 1:
exact duplicates inside a window would make a no-drift window look like drift.

Headline. ``false_events_per_day_at_100rps`` counts drift events in one simulated day at 100
req/s (8,640,000 rows, a check every ``checkEvery`` rows) against the reference that
``aiops-runtime train --seed 42`` writes and the example deployment serves, with the default
settings. Rows are appended in chunks that end on every check point, so each check sees the
window one-row requests would give, and checks run in this thread through the worker's step.

Random splits. A fresh split per stream (seed 1000 + stream) averages over the luck of one
reference, which is what a threshold's false-flag rate (``fpr_per_check``) is about; its counted
and estimated events are reported with a ``_random_splits`` suffix. Windows drawn without
replacement from a pool of ~285 rows vary less than windows of fresh traffic, so the estimates
use the larger of the measured rate and the test's nominal size (exact under exchangeability).
The pool is the complement of the reference, so an unlucky split shows in every window of its
stream: per-split flag rates spread far more than one common rate would give
(``flag_dispersion_index_random_splits``), and runs of flags, hence events, cluster in few splits.

Scenarios (change point after 200 rows): none; S1 the ten "mean" features x1.10; S2 the same x1.5;
S3 Gaussian noise of 0.5 reference standard deviations on every feature; S4 only malignant rows;
S5 a burst of the runbook's out-of-range vector. The last line printed is one JSON object.

Calibrated rule (``calibrated_figures``, the keys ``false_events_per_day_*``, ``detect_prob_*``,
``median_delay_*``, ``calibration_s`` and their ``uncalibrated_*`` twins). Per random split (seed
3000 + i) the held-out part is cut in two: a calibration part, which ``aiops_runtime.train``'s
``calibrate`` simulates null checks on (as the retrain job does with its whole held-out part),
and a stream part, the only rows streamed, so the calibration never sees the rows it is judged
on. Each no-drift check is a fresh window of distinct stream rows (tumbling windows of new
traffic are independent given the population). False events per day at 100 req/s per split are
checks/day x the unbiased estimate of P(an event starts at a check) = f^k - f^(k+1) from the
split's flag count (falling factorials), since a day of checks per split would take hours; the
events counted in the streams are reported too. Detection: scenario rows from the stream part
after a change point, an event within ``DETECT_WITHIN`` rows counts. The same streams run
through a monitor without calibration (raw p-value, the spec's ``consecutive``) for the
``uncalibrated_*`` keys. alibi-detect's MMDDriftOnline runs on the same splits in
``.venv-alibi`` (``drift_alibi_online.py``, a subprocess) for the ``alibi_online_*`` keys: at a
small ERT, because at the budget's it cannot be configured (see that file).

Fresh traffic (the same figures with a ``fresh_`` prefix, ``--populations``). The real rows'
stream part is ~140 rows, so its 300 windows share that sample's own offset from the reference:
a day of such traffic replays one small sample, and a rule of k flagged checks in a row sees k
correlated checks. ``FreshTrafficSource`` draws each split's whole data set (569 rows) from
``drift_population.Population``, splits and trains as ``aiops_runtime.train`` does, calibrates
on the whole held-out part as the retrain job does, and streams fresh rows of that population,
so windows are independent given the reference, as the budget's promise assumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from drift_population import Population
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from aiops_runtime.calibration import Calibration
from aiops_runtime.detectors import AlibiMMD, NativeMMD, alibi_available
from aiops_runtime.drift import DETECTOR_WEIGHT, DriftMonitor
from aiops_runtime.settings import DriftConfig, RuntimeSettings
from aiops_runtime.train import TEST_FRACTION, build_model, calibrate

ROWS_PER_DAY_AT_100RPS = 100 * 86_400
# A scenario counts as detected when its event comes within this many rows of the change.
DETECT_WITHIN = 500
CHANGE_POINT = 200
OUT_OF_RANGE = np.array(
    [
        *(100, 150, 200, 300, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4),
        *(1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5),
        *(100, 120, 140, 160, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9),
    ],
    dtype=np.float64,
)
MEAN_FEATURES = slice(0, 10)
MALIGNANT = 0  # load_breast_cancer's target: 0 = malignant, 1 = benign
SAMPLING = (
    "rows come only from a split's held-out part (never the reference rows), drawn uniformly "
    "one by one, never repeating a row among the previous windowSize - 1, so a window holds no "
    "exact duplicates; headline day: one continuing stream from the seed-42 split's held-out "
    "part against its training part (the shipped reference), appended in chunks of "
    "gcd(windowSize, checkEvery) rows so every check sees exactly the window a stream of "
    "single-row requests gives, checks run synchronously through DriftMonitor.run_due_checks "
    "(the worker's step); random splits and scenarios: per stream a fresh stratified split like "
    "aiops_runtime.train (seed 1000+i resp. 2000+i; reference = training part)"
)


@dataclass
class Split:
    """One stratified split: the monitor's reference and the stream's pool of held-out rows."""

    reference: np.ndarray
    pool: np.ndarray
    pool_labels: np.ndarray
    reference_labels: np.ndarray | None = None


def make_split(seed: int) -> Split:
    """The split ``aiops_runtime.train`` would make with ``seed``."""
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=TEST_FRACTION, random_state=seed, stratify=data.target
    )
    return Split(reference=x_train, pool=x_test, pool_labels=y_test, reference_labels=y_train)


def split_model(split: Split, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The predict_proba of the model ``aiops_runtime.train`` would fit on the split."""
    assert split.reference_labels is not None
    model = build_model(seed).fit(split.reference, split.reference_labels)
    return model.predict_proba  # type: ignore[no-any-return]


class RowSampler:
    """Draws pool rows uniformly, never one among the previous ``window - 1`` drawn.

    Successive calls continue one stream, so any ``window`` consecutive rows are distinct. The
    pool indices not blocked are kept in the first ``free`` slots of a list: a draw takes a
    random slot and refills it with the row that leaves the blocked span, O(1) per row.
    """

    def __init__(self, pool: np.ndarray, window: int, rng: np.random.Generator) -> None:
        """Start a stream over ``pool`` (rows x features)."""
        self.pool = pool
        # A pool smaller than the window (malignant rows only) repeats as late as it can.
        self.blocked = max(0, min(window, len(pool) - 1) - 1)
        self._slots = list(range(len(pool)))
        self._free = len(pool)
        self._recent: deque[int] = deque()
        self._rng = rng

    def indices(self, n: int) -> np.ndarray:
        """The pool indices of the next ``n`` rows."""
        slots, recent, free = self._slots, self._recent, self._free
        picks = []
        for u in self._rng.random(n).tolist():
            slot = int(u * free)
            pick = slots[slot]
            picks.append(pick)
            recent.append(pick)
            if len(recent) > self.blocked:
                slots[slot] = recent.popleft()
            else:
                free -= 1
                slots[slot] = slots[free]
                slots[free] = pick
        self._free = free
        return np.array(picks, dtype=np.intp)

    def draw(self, n: int) -> np.ndarray:
        """The next ``n`` rows (n x features)."""
        return self.pool[self.indices(n)]


def draw_rows(pool: np.ndarray, n: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows from ``pool``, none equal to a row among the previous ``window - 1`` drawn."""
    return RowSampler(pool, window, rng).draw(n)


def scenario_rows(name: str, split: Split, n: int, window: int, rng: np.random.Generator) -> Any:
    """Post-change rows of a scenario."""
    if name == "S4":
        return draw_rows(split.pool[split.pool_labels == MALIGNANT], n, window, rng)
    if name == "S5":
        return np.tile(OUT_OF_RANGE, (n, 1))
    rows = draw_rows(split.pool, n, window, rng)
    if name in ("S1", "S2"):
        rows[:, MEAN_FEATURES] *= 1.10 if name == "S1" else 1.5
    elif name == "S3":
        rows += rng.normal(0.0, 0.5, rows.shape) * split.reference.std(axis=0)
    return rows


def request_chunk(config: DriftConfig) -> int:
    """Rows per append such that every check point (windowSize + k checkEvery) ends a chunk."""
    return math.gcd(config.window_size, config.check_every)


def feed(
    monitor: DriftMonitor, rows: np.ndarray, chunk: int | None = None
) -> Iterator[tuple[int, bool, bool]]:
    """Append rows as requests would and run each check when due, as the worker's step does.

    Rows go in ``chunk`` at a time (default ``request_chunk``): check points fall on chunk ends,
    so the ring buffer and the check schedule are those of one-row requests. Yields (rows fed so
    far, flagged, event raised) for each check.
    """
    chunk = chunk or request_chunk(monitor.config)
    events = monitor.snapshot()["drift_events"]
    for end in range(chunk, len(rows) + chunk, chunk):
        monitor.append(rows[end - chunk : end])
        if monitor.run_due_checks():
            snap = monitor.snapshot()
            yield min(end, len(rows)), snap["consecutive_flags"] > 0, snap["drift_events"] > events
            events = snap["drift_events"]


def run_stream(monitor: DriftMonitor, rows: np.ndarray) -> list[tuple[int, bool, bool]]:
    """(row count at the check, flagged, event raised) for each check of one stream."""
    return list(feed(monitor, rows))


def no_drift(
    config: DriftConfig, streams: int, rows_per_stream: int, split_seed: int | None = None
) -> dict[str, Any]:
    """Per-check false-flag rate and counted false events on in-distribution streams.

    Each stream has its own split unless ``split_seed`` fixes one (the shipped reference).
    """
    flags = events = checks = 0
    per_split: list[tuple[int, int]] = []
    for seed in range(streams):
        split = make_split(1000 + seed if split_seed is None else split_seed)
        rng = np.random.default_rng(seed)
        monitor = DriftMonitor(split.reference, config, seed=seed)
        trace = run_stream(monitor, draw_rows(split.pool, rows_per_stream, config.window_size, rng))
        stream_flags = sum(flagged for _, flagged, _ in trace)
        per_split.append((stream_flags, len(trace)))
        flags += stream_flags
        events += sum(event for _, _, event in trace)
        checks += len(trace)
    return {
        "checks": checks,
        "flags": flags,
        "events": events,
        "rows": streams * rows_per_stream,
        "per_split": per_split,
    }


def no_drift_day(
    config: DriftConfig, requests: int, split_seed: int = 42, block: int = 100_000
) -> dict[str, Any]:
    """A day of in-distribution single-row requests against one reference (the shipped one).

    Rows are drawn block by block from one continuing stream (no row repeats within a window);
    returns the counted checks, flags and events and the lengths of runs of flagged checks.
    """
    if block % request_chunk(config):
        # A block ending between check points would make a check see rows past its point.
        raise ValueError(f"block {block} must be a multiple of {request_chunk(config)} rows")
    split = make_split(split_seed)
    sampler = RowSampler(split.pool, config.window_size, np.random.default_rng(split_seed))
    monitor = DriftMonitor(split.reference, config, seed=split_seed)
    flags: list[bool] = []
    events = 0
    for start in range(0, requests, block):
        for _, flagged, event in feed(monitor, sampler.draw(min(block, requests - start))):
            flags.append(flagged)
            events += event
    snap = monitor.snapshot()
    counted = (snap["drift_events"], snap["checks"], snap["samples_seen"], snap["checks_skipped"])
    if counted != (events, len(flags), requests, 0):
        # The monitor's own counters (what /drift and the metrics show) must match the bench's.
        raise RuntimeError(f"monitor counted {counted}, bench {events, len(flags), requests, 0}")
    return {
        "checks": len(flags),
        "flags": sum(flags),
        "events": events,
        "rows": requests,
        "runs": flag_runs(flags),
    }


def flag_runs(flags: list[bool]) -> dict[int, int]:
    """How many maximal runs of flagged checks have each length."""
    runs: dict[int, int] = {}
    length = 0
    for flagged in [*flags, False]:
        if flagged:
            length += 1
        elif length:
            runs[length] = runs.get(length, 0) + 1
            length = 0
    return dict(sorted(runs.items()))


def with_drift(config: DriftConfig, name: str, streams: int, horizon: int) -> dict[str, Any]:
    """Detection probability and delay (rows after the change point until the event)."""
    delays: list[float] = []
    early_events = 0
    for seed in range(streams):
        split = make_split(2000 + seed)
        rng = np.random.default_rng(10_000 + seed)
        monitor = DriftMonitor(split.reference, config, seed=seed)
        before = draw_rows(split.pool, CHANGE_POINT, config.window_size, rng)
        after = scenario_rows(name, split, horizon, config.window_size, rng)
        trace = run_stream(monitor, np.concatenate((before, after)))
        early_events += sum(event for at, _, event in trace if at <= CHANGE_POINT)
        hits = [at - CHANGE_POINT for at, _, event in trace if event and at > CHANGE_POINT]
        delays.append(float(hits[0]) if hits else float("inf"))
    detected = [d for d in delays if d != float("inf")]
    median = statistics.median(delays)
    return {
        "detect_prob": len(detected) / streams,
        "median_delay": None if median == float("inf") else median,
        "events_before_change": early_events,
    }


def time_checks(config: DriftConfig, repeats: int) -> dict[str, Any]:
    """Milliseconds per check: the native test alone, the whole monitor check, alibi's test."""
    split = make_split(42)
    monitor = DriftMonitor(split.reference, config, seed=0)
    window = monitor.standardize(split.pool[: config.window_size])
    native = NativeMMD(monitor.reference, config.permutations, seed=0)
    out: dict[str, Any] = {
        "reference_rows": len(split.reference),
        "check_ms_native": _median_ms(lambda: native.test(window), repeats),
    }
    monitor.append(split.pool[: config.window_size])
    out["check_ms_native_monitor"] = _median_ms(monitor.check_now, repeats)
    if alibi_available():
        started = time.perf_counter()
        alibi = AlibiMMD(monitor.reference, config.permutations)
        out["alibi_import_and_init_s"] = round(time.perf_counter() - started, 2)
        out["check_ms_alibi"] = _median_ms(lambda: alibi.test(window), max(5, repeats // 10))
    else:
        out["check_ms_alibi"] = None
        out["check_ms_alibi_note"] = "alibi-detect not installed (the runtime's alibi extra)"
    return out


def time_append(config: DriftConfig, calls: int) -> dict[str, float]:
    """Microseconds per one-row append, idle and while the worker runs checks back to back."""
    split = make_split(42)
    monitor = DriftMonitor(split.reference, config, seed=0)
    row = split.pool[0]
    out = {"append_us_idle": _append_us(monitor, row, calls)}
    busy = threading.Event()
    stop = threading.Event()

    def keep_checking() -> None:
        while not stop.is_set():
            monitor.check_now()
            busy.set()

    worker = threading.Thread(target=keep_checking, daemon=True)
    worker.start()
    busy.wait(10)
    out["append_us_per_request"] = _append_us(monitor, row, calls)
    stop.set()
    worker.join()
    return out


def _append_us(monitor: DriftMonitor, row: np.ndarray, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        monitor.append(row)
    return round((time.perf_counter() - started) / calls * 1e6, 3)


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 3)


def nominal_size(config: DriftConfig, support_share: float = 0.0005) -> float:
    """The no-drift flag probability of one check when windows and reference are exchangeable.

    The permutation p-value (1 + c) / (B + 1) is below threshold x weight for exactly
    ceil(threshold x weight x (B + 1) - 1) values of c out of B + 1 equally likely ranks; the
    support count adds about ``support_share`` (binomial tail at threshold x its weight).
    """
    b = config.permutations
    allowed = math.ceil(config.p_value_threshold * DETECTOR_WEIGHT * (b + 1) - 1)
    return max(0, allowed) / (b + 1) + support_share


def event_rate_estimates(
    config: DriftConfig, fpr: float, counts: list[tuple[int, int]]
) -> dict[str, float]:
    """False events per day at 100 req/s implied by the per-check false-flag rate.

    An event starts at a check that flags after a clean check and is followed by consecutive - 1
    more flags. With checkEvery >= windowSize successive windows share no rows, so given the
    reference the checks are independent: rate = (1 - f) f^k per check. Averaging over the splits
    instead of using the mean f accounts for references that are luckier or unluckier; each
    split's f^k is estimated without bias from its flag count X of n checks as the falling
    factorials X^(k) / n^(k) (plugging in X / n would add the binomial noise).
    """
    k = config.consecutive
    checks_per_day = ROWS_PER_DAY_AT_100RPS / config.check_every

    def power(x: int, n: int, j: int) -> float:
        return math.prod((x - i) / (n - i) for i in range(j)) if n > j else float(x == n)

    per_split = [power(x, n, k) - power(x, n, k + 1) for x, n in counts]
    return {
        "from_mean_rate": checks_per_day * (1 - fpr) * fpr**k,
        "from_per_split_rates": checks_per_day * float(np.mean(per_split)) if counts else 0.0,
    }


def random_split_figures(config: DriftConfig, streams: int, rows: int) -> dict[str, Any]:
    """No-drift figures averaged over references: a fresh split per stream."""
    quiet = no_drift(config, streams, rows)
    fpr = quiet["flags"] / quiet["checks"]
    estimates = event_rate_estimates(config, max(fpr, nominal_size(config)), quiet["per_split"])
    return {
        # The test's calibration is about references in general, so fpr_per_check averages them.
        "fpr_per_check": round(fpr, 4),
        "fpr_per_check_target": round(1.2 * config.p_value_threshold, 4),
        "fpr_per_check_nominal": round(nominal_size(config), 4),
        "no_drift_streams_random_splits": streams,
        "no_drift_checks_random_splits": quiet["checks"],
        "no_drift_requests_random_splits": quiet["rows"],
        "false_events_counted_random_splits": quiet["events"],
        "false_events_per_day_at_100rps_random_splits": round(
            quiet["events"] / quiet["rows"] * ROWS_PER_DAY_AT_100RPS, 2
        ),
        "false_events_per_day_at_100rps_estimated_random_splits": round(
            estimates["from_mean_rate"], 3
        ),
        "false_events_per_day_at_100rps_estimated_per_split_random_splits": round(
            estimates["from_per_split_rates"], 3
        ),
        "max_flags_of_one_split_random_splits": max(x for x, _ in quiet["per_split"]),
        "flag_dispersion_index_random_splits": round(dispersion_index(quiet["per_split"]), 2),
        "checks_per_split_random_splits": quiet["per_split"][0][1],
    }


def day_figures(config: DriftConfig, requests: int) -> dict[str, Any]:
    """The headline: false events counted in a simulated day with the shipped seed-42 reference."""
    day = no_drift_day(config, requests)
    fpr = day["flags"] / day["checks"]
    estimated = event_rate_estimates(config, max(fpr, nominal_size(config)), [])
    scale = ROWS_PER_DAY_AT_100RPS / day["rows"]
    return {
        "false_events_per_day_at_100rps": round(day["events"] * scale, 2),
        "false_events_per_day_at_100rps_estimated": round(estimated["from_mean_rate"], 4),
        "false_events_per_day_at_100rps_estimated_from_day_rate": round(
            event_rate_estimates(config, fpr, [])["from_mean_rate"], 6
        ),
        "false_events_counted_day_seed42_reference": day["events"],
        "no_drift_checks_day_seed42_reference": day["checks"],
        "no_drift_requests_day_seed42_reference": day["rows"],
        "fpr_per_check_day_seed42_reference": round(fpr, 5),
        "flag_runs_by_length_day_seed42_reference": {str(k): v for k, v in day["runs"].items()},
    }


def dispersion_index(counts: list[tuple[int, int]]) -> float:
    """Variance of the per-split flag counts over the binomial variance one common rate gives.

    About 1 when every split flags at the same rate; above 1 when some references (with their
    held-out pools) flag more often than others, which makes runs of flags, hence events, likelier
    than the mean rate suggests.
    """
    flags = np.array([x for x, _ in counts], dtype=float)
    n = float(np.mean([n for _, n in counts]))
    rate = flags.sum() / sum(n for _, n in counts)
    binomial = n * rate * (1 - rate)
    return float(flags.var(ddof=1) / binomial) if binomial > 0 and len(counts) > 1 else 0.0


def split_held_out(split: Split, rng: np.random.Generator) -> tuple[np.ndarray, Split]:
    """The held-out part cut in two at random: calibration rows, and a split whose pool is the
    stream rows (with their labels, for the malignant-only scenario)."""
    order = rng.permutation(len(split.pool))
    half = len(order) // 2
    cal, stream = order[:half], order[half:]
    pool = Split(split.reference, split.pool[stream], split.pool_labels[stream])
    return split.pool[cal], pool


def fresh_windows(pool: np.ndarray, windows: int, size: int, rng: np.random.Generator) -> Any:
    """``windows`` windows of ``size`` distinct pool rows each, one after the other."""
    size = min(size, len(pool))
    return np.concatenate(
        [pool[rng.choice(len(pool), size, replace=False)] for _ in range(windows)]
    )


def event_start_rate(flags: int, checks: int, k: int) -> float:
    """Unbiased estimate of f^k - f^(k+1) from ``flags`` of ``checks`` independent checks."""

    def power(j: int) -> float:
        if checks <= j:
            return float(flags == checks)
        return math.prod((flags - i) / (checks - i) for i in range(j))

    return power(k) - power(k + 1)


def _run_split(
    config: DriftConfig,
    monitor: DriftMonitor,
    stream: Split,
    checks: int,
    rng_seed: int,
) -> dict[str, Any]:
    rng = np.random.default_rng(rng_seed)
    size = config.window_size
    trace = run_stream(monitor, fresh_windows(stream.pool, checks, size, rng))
    flags = sum(flagged for _, flagged, _ in trace)
    k = monitor.snapshot()["consecutive"]
    out: dict[str, Any] = {
        "flags": flags,
        "checks": len(trace),
        "events": sum(event for _, _, event in trace),
        "k": k,
        "per_day": ROWS_PER_DAY_AT_100RPS
        / config.check_every
        * event_start_rate(flags, len(trace), k),
    }
    return out


def _delays(
    config: DriftConfig,
    make: Callable[[], DriftMonitor],
    stream: Split,
    scenarios: list[str],
    horizon: int,
    rng_seed: int,
) -> dict[str, float]:
    delays = {}
    for name in scenarios:
        rng = np.random.default_rng(rng_seed)
        monitor = make()
        before = fresh_windows(
            stream.pool, CHANGE_POINT // config.window_size, config.window_size, rng
        )
        after = scenario_rows(name, stream, horizon, config.window_size, rng)
        trace = run_stream(monitor, np.concatenate((before, after)))
        hits = [at - CHANGE_POINT for at, _, event in trace if event and at > CHANGE_POINT]
        delays[name] = float(hits[0]) if hits else math.inf
    return delays


def _summary(
    prefix: str, per_day: list[float], delays: list[dict[str, float]], scenarios: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        f"{prefix}false_events_per_day_mean": round(float(np.mean(per_day)), 4),
        f"{prefix}false_events_per_day_p95": round(float(np.percentile(per_day, 95)), 4),
        f"{prefix}false_events_per_day_max": round(float(np.max(per_day)), 4),
    }
    for name in scenarios:
        got = [d[name] for d in delays]
        out[f"{prefix}detect_prob_{name}"] = round(
            sum(d <= DETECT_WITHIN for d in got) / len(got), 3
        )
        median = statistics.median(got)
        out[f"{prefix}median_delay_{name}"] = None if math.isinf(median) else median
    return out


SplitSource = Callable[[int], tuple[Split, np.ndarray, Split]]


def real_rows_source(i: int) -> tuple[Split, np.ndarray, Split]:
    """Split i of the real data (seed 3000 + i); its held-out part cut in two: calibration rows
    and the stream's pool."""
    split = make_split(3000 + i)
    held_for_calibration, stream = split_held_out(split, np.random.default_rng(i))
    return split, held_for_calibration, stream


class FreshTrafficSource:
    """Split i of a data set drawn from ``Population`` (569 rows, stratified, split as
    ``aiops_runtime.train`` splits), calibrated on its whole held-out part as the retrain job
    does; the stream's pool is ``traffic_rows`` fresh rows of the same population, so windows
    are independent given the reference, as fresh traffic is."""

    sampling = (
        "per split (seed 7000+i) 569 rows drawn from drift_population.Population with the data's "
        "class counts, split as aiops_runtime.train splits (reference = training part); null "
        "checks of the calibration on the whole held-out part; no-drift checks of windows of "
        "fresh rows of the population; false events/day from each split's flag count"
    )

    def __init__(self, traffic_rows: int) -> None:
        """Fit the population once."""
        self.population = Population()
        self.traffic_rows = traffic_rows

    def __call__(self, i: int) -> tuple[Split, np.ndarray, Split]:
        """Reference, calibration rows and fresh traffic of split i (seed 7000 + i)."""
        rng = np.random.default_rng(7000 + i)
        data, labels = self.population.draw(self.population.size, rng, stratified=True)
        x_train, x_test, y_train, y_test = train_test_split(
            data, labels, test_size=TEST_FRACTION, random_state=3000 + i, stratify=labels
        )
        split = Split(reference=x_train, pool=x_test, pool_labels=y_test, reference_labels=y_train)
        traffic, traffic_labels = self.population.draw(self.traffic_rows, rng)
        return split, x_test, Split(x_train, traffic, traffic_labels, y_train)


def calibrated_figures(
    config: DriftConfig,
    source: SplitSource,
    splits: int,
    calibration_checks: int,
    stream_checks: int,
    detect_splits: int,
    scenarios: list[str],
    horizon: int,
    targets: list[str] | None = None,
) -> dict[str, Any]:
    """False events per day and detection for the calibrated and the uncalibrated rule, and the
    calibrated rule for each other ``drift.target`` (keys prefixed ``target_<name>_``).

    Each split's model is the one train.py would fit on its reference; one calibration per split
    simulates inputs and outputs on the same windows and serves every target.
    """
    others = [t for t in (targets or []) if t != config.target]
    prefixes = ["", "uncalibrated_", *(f"target_{t}_" for t in others)]
    per_day: dict[str, list[float]] = {prefix: [] for prefix in prefixes}
    delays: dict[str, list[dict[str, float]]] = {prefix: [] for prefix in prefixes}
    counted = dict.fromkeys(prefixes, 0)
    flags = dict.fromkeys(prefixes, 0)
    checks = 0
    calibration_s: list[float] = []
    ks: list[int] = []
    for i in range(splits):
        split, held_for_calibration, stream = source(i)
        predict = split_model(split, 3000 + i)
        started = time.perf_counter()
        calibration: Calibration = calibrate(
            split.reference, held_for_calibration, config, [], calibration_checks, i, predict
        )
        calibration_s.append(time.perf_counter() - started)
        makers = {
            "": partial(
                DriftMonitor,
                split.reference,
                config,
                seed=i,
                calibration=calibration,
                predict=predict,
            ),
            "uncalibrated_": partial(
                DriftMonitor, split.reference, config, seed=i, predict=predict
            ),
        }
        for target in others:
            makers[f"target_{target}_"] = partial(
                DriftMonitor,
                split.reference,
                config.model_copy(update={"target": target}),
                seed=i,
                calibration=calibration,
                predict=predict,
            )
        for prefix, make in makers.items():
            got = _run_split(config, make(), stream, stream_checks, 50_000 + i)
            per_day[prefix].append(got["per_day"])
            counted[prefix] += got["events"]
            flags[prefix] += got["flags"]
            if prefix == "":
                ks.append(got["k"])
                checks += got["checks"]
            if i < detect_splits:
                delays[prefix].append(_delays(config, make, stream, scenarios, horizon, 60_000 + i))
    result: dict[str, Any] = {"target": config.target, "targets_compared": others}
    for prefix in per_day:
        result.update(_summary(prefix, per_day[prefix], delays[prefix], scenarios))
        result[f"{prefix}false_events_counted"] = counted[prefix]
        result[f"{prefix}fpr_per_check_stream"] = round(flags[prefix] / checks, 4)
    result.update(
        {
            "calibration_s": round(max(calibration_s), 2),
            "calibration_s_median": round(statistics.median(calibration_s), 2),
            "calibration_checks": calibration_checks,
            "calibrated_splits": splits,
            "calibrated_stream_checks_per_split": stream_checks,
            "calibrated_detect_splits": detect_splits,
            "calibrated_consecutive": sorted(set(ks)),
            "false_alarm_rows": config.false_alarm_rows,
            "detect_within_rows": DETECT_WITHIN,
            "sampling_calibrated": (
                "per split (seed 3000+i) the held-out part cut in two at random: null checks of "
                "the calibration on one half, no-drift checks of fresh windows of distinct rows "
                "from the other half; false events/day from each split's flag count"
            ),
        }
    )
    return result


HEADLINES = {
    "fpr_per_check": "flagged share of no-drift checks over random splits (one reference each)",
    "false_events_per_day_at_100rps": (
        "drift events counted in one simulated day at 100 req/s (single-row requests, a check "
        "every checkEvery rows) against the shipped seed-42 reference, default settings"
    ),
    "false_events_per_day_at_100rps_estimated": (
        "checks/day x (1 - f) x f^consecutive with f = max(that day's flag rate, nominal size)"
    ),
}


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALIBI_PYTHON = os.path.join(REPO, ".venv-alibi", "bin", "python")


def alibi_online_figures(
    python: str, extra: list[str], timeout_s: float, budget_rows: int
) -> dict[str, Any]:
    """The ``alibi_online_*`` keys from ``drift_alibi_online.py`` run by ``python``.

    A missing virtualenv, a failure or a timeout gives ``alibi_online_note`` saying which, so the
    JSON line always has the key and never a silent gap."""
    if not os.path.exists(python):
        return {"alibi_online_note": f"{python} missing (make install-alibi)"}
    script = os.path.join(REPO, "bench", "drift_alibi_online.py")
    cmd = [python, script, "--budget-rows", str(budget_rows), *extra]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"alibi_online_note": f"timed out after {timeout_s:.0f} s: {' '.join(cmd[1:])}"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"alibi_online_note": f"exit {done.returncode}: {tail[0]}"}
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the summary JSON as the last line."""
    settings = RuntimeSettings()
    defaults = settings.initial_drift_config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-size", type=int, default=defaults.window_size)
    parser.add_argument("--check-every", type=int, default=defaults.check_every)
    parser.add_argument("--consecutive", type=int, default=defaults.consecutive)
    parser.add_argument("--threshold", type=float, default=defaults.p_value_threshold)
    parser.add_argument("--no-drift-streams", type=int, default=100)
    parser.add_argument("--no-drift-rows", type=int, default=10_000)
    parser.add_argument("--day-requests", type=int, default=ROWS_PER_DAY_AT_100RPS)
    parser.add_argument("--drift-streams", type=int, default=40)
    parser.add_argument("--horizon", type=int, default=1500)
    parser.add_argument("--scenarios", default="S1,S2,S3,S4,S5")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--calibrated-splits", type=int, default=100)
    parser.add_argument("--calibration-checks", type=int, default=2000)
    parser.add_argument("--calibrated-stream-checks", type=int, default=300)
    parser.add_argument("--calibrated-detect-splits", type=int, default=40)
    parser.add_argument("--skip-legacy", action="store_true", help="only the calibrated figures")
    parser.add_argument(
        "--populations",
        default="real,fresh",
        help="calibrated figures on the real rows (unprefixed keys) and on fresh traffic from "
        "drift_population.Population (fresh_ keys)",
    )
    parser.add_argument("--fresh-traffic-rows", type=int, default=40_000)
    parser.add_argument("--target", default=defaults.target, choices=("inputs", "outputs", "both"))
    parser.add_argument(
        "--compare-targets", default="inputs,outputs,both", help="drift.target values compared"
    )
    parser.add_argument("--alibi-python", default=ALIBI_PYTHON, help="'' skips alibi-detect")
    parser.add_argument(
        "--alibi-args", default="", help="arguments for drift_alibi_online.py, e.g. '--ert 100'"
    )
    parser.add_argument("--alibi-timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    logging.getLogger("aiops_runtime.drift").setLevel(logging.ERROR)
    if settings.blas_threads > 0:
        # As the runtime does: multi-threaded BLAS busy-waits; on 2 shared, loaded cores a
        # check took 55 ms with the default threads against 2.4 ms with one.
        threadpool_limits(limits=settings.blas_threads, user_api="blas")
    config = defaults.model_copy(
        update={
            "window_size": args.window_size,
            "check_every": args.check_every,
            "consecutive": args.consecutive,
            "p_value_threshold": args.threshold,
            "target": args.target,
        }
    )
    started = time.time()
    result: dict[str, Any] = {"alpha": config.p_value_threshold}
    scenarios = args.scenarios.split(",")
    sources: dict[str, tuple[str, SplitSource]] = {
        "real": ("", real_rows_source),
        "fresh": ("fresh_", FreshTrafficSource(args.fresh_traffic_rows)),
    }
    for population in args.populations.split(",") if args.populations else []:
        prefix, source = sources[population]
        calibrated_started = time.time()
        figures = calibrated_figures(
            config,
            source,
            args.calibrated_splits,
            args.calibration_checks,
            args.calibrated_stream_checks,
            args.calibrated_detect_splits,
            scenarios,
            args.horizon,
            args.compare_targets.split(",") if args.compare_targets else [],
        )
        figures["calibrated_simulation_s"] = round(time.time() - calibrated_started, 1)
        figures["sampling_calibrated"] = getattr(source, "sampling", figures["sampling_calibrated"])
        result.update({f"{prefix}{key}": value for key, value in figures.items()})
        print(f"calibrated, {population} rows: {json.dumps(figures)}", file=sys.stderr)
    # The figures from before calibration and the timings are of the input detector alone (a
    # monitor of those builds no model).
    inputs_only = config.model_copy(update={"target": "inputs"})
    if not args.skip_legacy:
        day_started = time.time()
        result.update(day_figures(inputs_only, args.day_requests))
        result["day_simulation_s"] = round(time.time() - day_started, 1)
        print(f"one day, seed-42 reference: {json.dumps(result)}", file=sys.stderr)
        result.update(random_split_figures(inputs_only, args.no_drift_streams, args.no_drift_rows))
        print(f"no drift: {json.dumps(result)}", file=sys.stderr)
        # The fixed-consecutive rule on whole held-out pools, as measured before calibration.
        for name in scenarios:
            scored = with_drift(inputs_only, name, args.drift_streams, args.horizon)
            result[f"legacy_detect_prob_{name}"] = scored["detect_prob"]
            result[f"legacy_median_delay_{name}"] = scored["median_delay"]
            result[f"events_before_change_{name}"] = scored["events_before_change"]
            print(f"{name}: {json.dumps(scored)}", file=sys.stderr)
    if args.alibi_python:
        alibi_started = time.time()
        result.update(
            alibi_online_figures(
                args.alibi_python,
                args.alibi_args.split(),
                args.alibi_timeout,
                config.false_alarm_rows,
            )
        )
        result["alibi_online_wall_s"] = round(time.time() - alibi_started, 1)
    if not args.skip_timing:
        result.update(time_checks(inputs_only.model_copy(update={"window_size": 100}), 200))
        result.update(time_append(inputs_only, 200_000))
    result.update(
        {
            "settings": config.model_dump(by_alias=True),
            "blas_threads": settings.blas_threads,
            "sampling": SAMPLING,
            "headlines": HEADLINES,
            "streams_per_shift": args.drift_streams,
            "horizon_rows": args.horizon,
            "change_point": CHANGE_POINT,
            "cpu_count": os.cpu_count(),
            "wall_s": round(time.time() - started, 1),
        }
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
