"""The drift benchmark's stream sampling and request feeding, which its headline figures rest on."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from aiops_runtime.drift import DriftMonitor
from aiops_runtime.settings import DriftConfig
from tests.bench.bench_modules import load
from tests.runtime.drift_helpers import OUT_OF_RANGE, training_split

bench = load("drift_bench")
RowSampler, feed, flag_runs, no_drift_day = (
    bench.RowSampler,
    bench.feed,
    bench.flag_runs,
    bench.no_drift_day,
)


def _windows_are_distinct(picks: np.ndarray, window: int) -> bool:
    return all(
        len(set(picks[i : i + window].tolist())) == window for i in range(len(picks) - window + 1)
    )


def test_sampler_never_repeats_a_row_within_a_window_across_draws() -> None:
    sampler = RowSampler(np.arange(285.0)[:, None], 100, np.random.default_rng(0))
    picks = np.concatenate([sampler.indices(n) for n in (7, 250, 1, 3000)])

    assert _windows_are_distinct(picks, 100)


def test_sampler_draws_every_pool_row_about_equally_often() -> None:
    sampler = RowSampler(np.zeros((285, 1)), 100, np.random.default_rng(1))
    counts = np.bincount(sampler.indices(285 * 400), minlength=285)

    # 400 expected per row; blocking makes the counts more even than independent draws.
    assert counts.min() > 300
    assert counts.max() < 500


def test_sampler_on_a_pool_smaller_than_the_window_repeats_as_late_as_it_can() -> None:
    sampler = RowSampler(np.zeros((50, 1)), 100, np.random.default_rng(2))
    picks = sampler.indices(2000)

    assert _windows_are_distinct(picks, 49)
    assert set(picks.tolist()) == set(range(50))


def test_sampler_returns_the_pool_rows_it_picked() -> None:
    pool = np.arange(60.0).reshape(20, 3)
    rows = RowSampler(pool, 10, np.random.default_rng(3)).draw(15)

    assert rows.shape == (15, 3)
    assert all(any((row == p).all() for p in pool) for row in rows)


def _checks(monitor: DriftMonitor, rows: np.ndarray, chunk: int | None) -> list[tuple[object, ...]]:
    return [(*check, monitor.snapshot()["last_p_value"]) for check in feed(monitor, rows, chunk)]


def test_chunked_feeding_checks_the_same_windows_as_single_row_requests() -> None:
    split = training_split()
    config = DriftConfig(window_size=100, check_every=50, consecutive=2)
    rng = np.random.default_rng(4)
    quiet = RowSampler(split.held_out, 100, rng).draw(400)
    rows = np.concatenate((quiet, np.tile(OUT_OF_RANGE, (300, 1)), quiet[:230]))
    by_row = DriftMonitor(split.reference, config, seed=5)
    chunked = DriftMonitor(split.reference, config, seed=5)

    single = _checks(by_row, rows, chunk=1)
    in_chunks = _checks(chunked, rows, chunk=None)

    assert [at for at, *_ in single] == list(range(100, len(rows) + 1, 50))
    assert in_chunks == single
    assert any(event for _, _, event, _ in single)
    assert chunked.snapshot()["drift_events"] == by_row.snapshot()["drift_events"] == 1


def test_flag_runs_counts_maximal_runs_by_length() -> None:
    flags = [True, False, True, True, True, False, False, True, True, True, True, True, True]

    assert flag_runs(flags) == {1: 1, 3: 1, 6: 1}
    assert flag_runs([False, False]) == {}


def test_day_simulation_counts_checks_flags_and_events_consistently() -> None:
    # A loose threshold and short alarm so flags and events happen within a few hundred checks.
    config = DriftConfig(window_size=100, check_every=100, consecutive=2, p_value_threshold=0.3)

    day = no_drift_day(config, 25_050, block=7_000)

    assert (day["rows"], day["checks"]) == (25_050, 250)
    assert day["flags"] == sum(length * count for length, count in day["runs"].items()) > 0
    assert day["events"] == sum(count for length, count in day["runs"].items() if length >= 2)


def test_day_simulation_refuses_blocks_that_would_split_a_check_point() -> None:
    with pytest.raises(ValueError, match="multiple"):
        no_drift_day(DriftConfig(window_size=100, check_every=100), 1000, block=150)


def test_the_calibration_never_sees_the_rows_it_is_judged_on() -> None:
    split = bench.make_split(3000)
    calibration_rows, stream = bench.split_held_out(split, np.random.default_rng(0))
    seen = {row.tobytes() for row in calibration_rows}
    assert not seen & {row.tobytes() for row in stream.pool}
    assert len(calibration_rows) + len(stream.pool) == len(split.pool)
    assert len(stream.pool_labels) == len(stream.pool)


def test_the_event_start_rate_estimate_is_exact_at_the_extremes() -> None:
    assert bench.event_start_rate(0, 100, 5) == 0.0
    assert bench.event_start_rate(100, 100, 5) == 0.0  # every check flags: one endless run
    # 10 flags of 20 checks, k = 1: 10/20 - 10*9/(20*19).
    assert bench.event_start_rate(10, 20, 1) == pytest.approx(0.5 - 90 / 380)


def test_a_small_run_prints_the_promised_keys_as_its_last_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    argv = ["--calibrated-splits", "2", "--calibration-checks", "40", "--scenarios", "S2,S5",
            "--calibrated-stream-checks", "10", "--calibrated-detect-splits", "1",
            "--horizon", "600", "--skip-legacy", "--skip-timing"]  # fmt: skip
    # main() quiets the drift logger for the whole process, as a script may; give it back, or
    # the tests after this one (tests/runtime/test_logs.py) would see no drift log line.
    drift_log = logging.getLogger("aiops_runtime.drift")
    level = drift_log.level
    try:
        assert bench.main(argv) == 0
    finally:
        drift_log.setLevel(level)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for prefix in ("", "uncalibrated_", "fresh_", "fresh_uncalibrated_"):
        for key in ("false_events_per_day_mean", "false_events_per_day_p95",
                    "false_events_per_day_max", "detect_prob_S5", "median_delay_S2"):  # fmt: skip
            assert f"{prefix}{key}" in result
    assert result["detect_prob_S5"] == 1.0
    assert result["calibrated_consecutive"] == [5]
    assert 0 < result["calibration_s"] < 60
    assert result["fresh_detect_prob_S5"] == 1.0
    assert result["fresh_calibrated_splits"] == 2


def test_fresh_traffic_is_new_rows_and_the_calibration_gets_the_whole_held_out_part() -> None:
    source = bench.FreshTrafficSource(traffic_rows=3000)
    split, calibration_rows, stream = source(0)

    assert len(split.reference) + len(calibration_rows) == 569
    assert len(calibration_rows) == math.ceil(569 * bench.TEST_FRACTION)  # as sklearn rounds
    assert np.array_equal(stream.reference, split.reference)
    assert len(stream.pool) == len(stream.pool_labels) == 3000
    known = {row.tobytes() for row in np.concatenate((split.reference, calibration_rows))}
    assert not known & {row.tobytes() for row in stream.pool}
    # Another split is another data set, not the same one cut differently.
    other, _, _ = source(1)
    assert not {row.tobytes() for row in other.reference} & {r.tobytes() for r in split.reference}


class _FiresEvery:
    """A stand-in online detector that fires on every n-th row since its last reset."""

    def __init__(self, n: int) -> None:
        self.n, self.seen, self.resets = n, 0, 0

    def predict(self, row: np.ndarray, return_test_stat: bool = False) -> dict:
        self.seen += 1
        return {"data": {"is_drift": self.seen % self.n == 0}}

    def reset_state(self) -> None:
        self.seen, self.resets = 0, self.resets + 1


def test_alibi_online_counts_false_detections_resetting_after_each() -> None:
    online = load("drift_alibi_online")
    detector = _FiresEvery(7)
    assert online.false_detections(detector, np.zeros((50, 3))) == 7
    assert detector.resets == 7
    assert online.first_detection(_FiresEvery(4), np.zeros((10, 3))) == 4
    assert online.first_detection(_FiresEvery(40), np.zeros((10, 3))) is None


def test_alibi_online_summary_scales_false_detections_to_a_day_at_100_rps() -> None:
    online = load("drift_alibi_online")
    results = [
        {"configure_s": 3.0, "per_row_ms": 2.0, "false": 1, "rows": 1000, "delays": {"S2": 5.0}},
        {"configure_s": 9.0, "per_row_ms": 4.0, "false": 3, "rows": 1000, "delays": {"S2": 900.0}},
    ]
    out = online.summary(results, ["S2"])
    assert out["alibi_online_false_events_per_day_mean"] == 17280.0  # 2 per 1,000 rows x 8.64M
    assert out["alibi_online_false_events_per_day_max"] == 25920.0
    assert out["alibi_online_configure_s"] == 9.0
    assert out["alibi_online_detect_prob_S2"] == 0.5  # 900 rows is past DETECT_WITHIN
    assert "604,800,000" in online.infeasible_note(60_480_000)


def test_the_alibi_online_figures_say_why_they_are_missing(tmp_path: Path) -> None:
    missing = bench.alibi_online_figures(str(tmp_path / "python"), [], 60, 60_480_000)
    assert "missing" in missing["alibi_online_note"]
    failed = bench.alibi_online_figures(sys.executable, ["--no-such-flag"], 60, 60_480_000)
    assert failed["alibi_online_note"].startswith("exit 2")
