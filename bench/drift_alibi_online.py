"""alibi-detect's ``MMDDriftOnline`` on the streams of ``drift_bench.py``'s calibrated figures.

Runs in ``.venv-alibi`` (``make install-alibi``; alibi-detect with TensorFlow), started by
``drift_bench.py`` as a subprocess, which merges its last line, one JSON object of
``alibi_online_*`` keys, into its own.

alibi's online detector is configured by an expected run time (ERT, in rows) and bootstraps its
thresholds once, at construction, on the reference (Cobb, Van Looveren & Klaise, AISTATS 2022).
Its documentation asks for ``n_bootstraps`` well above the ERT (at least 10x), so the budget the
ModelService defaults to (``falseAlarmRows`` 60,480,000) cannot be configured at all: that is
reported, not attempted. At a small ERT that can be configured here the same splits (seed
3000 + i, the reference and the stream half of the held-out part as in ``calibrated_figures``)
give, per split: the configure time, the cost of one row, false detections per row of no-drift
traffic (each detection resets the detector, as a user would after an alert), and for S1-S5 the
rows from the change point to the first detection (within ``DETECT_WITHIN`` counts). Features are
standardized with the reference's mean and standard deviation first (alibi's RBF kernel has one
bandwidth for all features; the runtime's native MMD standardizes too).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drift_bench import (
    CHANGE_POINT,
    DETECT_WITHIN,
    ROWS_PER_DAY_AT_100RPS,
    RowSampler,
    make_split,
    scenario_rows,
    split_held_out,
)

# alibi-detect's advice: n_bootstraps >> ERT (its docs and warning say at least 10x).
BOOTSTRAPS_PER_ERT = 10


def infeasible_note(budget_rows: int) -> str:
    """Why alibi's online detector cannot run at the ModelService's budget."""
    return (
        f"at the default budget (ERT {budget_rows:,} rows) MMDDriftOnline needs n_bootstraps >= "
        f"{BOOTSTRAPS_PER_ERT * budget_rows:,} bootstrap streams at construction; not attempted"
    )


def first_detection(detector: Any, rows: np.ndarray) -> int | None:
    """1-based index of the first row at which the detector fires, or None."""
    for i, row in enumerate(rows, start=1):
        if detector.predict(row, return_test_stat=False)["data"]["is_drift"]:
            return i
    return None


def false_detections(detector: Any, rows: np.ndarray) -> int:
    """Detections over a no-drift stream, resetting after each."""
    count = 0
    for row in rows:
        if detector.predict(row, return_test_stat=False)["data"]["is_drift"]:
            count += 1
            detector.reset_state()
    return count


def run_split(
    i: int, ert: int, window: int, n_bootstraps: int, null_rows: int, scenarios: list[str]
) -> dict[str, Any]:
    from alibi_detect.cd import MMDDriftOnline

    split = make_split(3000 + i)
    _, stream = split_held_out(split, np.random.default_rng(i))
    mean, std = split.reference.mean(axis=0), split.reference.std(axis=0)
    std[std == 0] = 1.0

    def standardize(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    started = time.perf_counter()
    detector = MMDDriftOnline(
        split.reference,
        ert=ert,
        window_size=window,
        backend="tensorflow",
        n_bootstraps=n_bootstraps,
        preprocess_fn=standardize,
        verbose=False,
    )
    configure_s = time.perf_counter() - started

    rng = np.random.default_rng(10_000 + i)
    null = RowSampler(stream.pool, window, rng).draw(null_rows)
    started = time.perf_counter()
    false = false_detections(detector, null)
    per_row_ms = (time.perf_counter() - started) * 1000 / null_rows

    delays: dict[str, float] = {}
    for name in scenarios:
        rng = np.random.default_rng(20_000 + i)
        detector.reset_state()
        before = RowSampler(stream.pool, window, rng).draw(CHANGE_POINT)
        # Detections before the change are false ones, reset as a user would after an alert.
        false_detections(detector, before)
        after = scenario_rows(name, stream, DETECT_WITHIN * 2, window, rng)
        hit = first_detection(detector, after)
        delays[name] = float(hit) if hit is not None else math.inf
    return {
        "configure_s": configure_s,
        "per_row_ms": per_row_ms,
        "false": false,
        "rows": null_rows,
        "delays": delays,
    }


def summary(results: list[dict[str, Any]], scenarios: list[str]) -> dict[str, Any]:
    """The ``alibi_online_*`` keys from per-split results."""
    per_day = [r["false"] / r["rows"] * ROWS_PER_DAY_AT_100RPS for r in results]
    out: dict[str, Any] = {
        "alibi_online_splits": len(results),
        "alibi_online_false_events_per_day_mean": round(float(np.mean(per_day)), 1),
        "alibi_online_false_events_per_day_p95": round(float(np.percentile(per_day, 95)), 1),
        "alibi_online_false_events_per_day_max": round(float(np.max(per_day)), 1),
        "alibi_online_configure_s": round(max(r["configure_s"] for r in results), 1),
        "alibi_online_ms_per_row": round(statistics.median(r["per_row_ms"] for r in results), 3),
    }
    for name in scenarios:
        got = [r["delays"][name] for r in results]
        out[f"alibi_online_detect_prob_{name}"] = round(
            sum(d <= DETECT_WITHIN for d in got) / len(got), 3
        )
        finite = [d for d in got if math.isfinite(d)]
        out[f"alibi_online_median_delay_{name}"] = statistics.median(finite) if finite else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ert", type=int, default=100, help="expected run time, rows")
    parser.add_argument("--window-size", type=int, default=10)
    parser.add_argument("--n-bootstraps", type=int, default=0, help="default: 10 x ERT")
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--null-rows", type=int, default=1000)
    parser.add_argument("--scenarios", default="S1,S2,S3,S4,S5")
    parser.add_argument("--budget-rows", type=int, default=60_480_000)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    scenarios = args.scenarios.split(",")
    n_bootstraps = args.n_bootstraps or BOOTSTRAPS_PER_ERT * args.ert
    results = []
    for i in range(args.splits):
        results.append(
            run_split(i, args.ert, args.window_size, n_bootstraps, args.null_rows, scenarios)
        )
        print(f"alibi-online split {i}: {results[-1]}", file=sys.stderr, flush=True)
    out = {
        "alibi_online_ert": args.ert,
        "alibi_online_window_size": args.window_size,
        "alibi_online_n_bootstraps": n_bootstraps,
        "alibi_online_at_default_budget": None,
        "alibi_online_note": infeasible_note(args.budget_rows),
        **summary(results, scenarios),
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
