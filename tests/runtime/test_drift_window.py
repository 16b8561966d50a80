"""The ring buffer, the window the worker tests, the check schedule and the standardization."""

from __future__ import annotations

import numpy as np
import pytest

from aiops_runtime.drift import RingBuffer
from tests.runtime.drift_helpers import MonitorFactory, Split


def rows(start: int, stop: int, features: int = 3) -> np.ndarray:
    """Rows whose first column is their sequence number."""
    out = np.zeros((stop - start, features))
    out[:, 0] = np.arange(start, stop)
    return out


def test_ring_buffer_fills_then_keeps_the_newest_rows_in_order() -> None:
    buffer = RingBuffer(capacity=5, features=3)
    buffer.append(rows(0, 3))
    window, total = buffer.latest()
    assert total == 3
    assert buffer.fill() == 3
    assert window[:, 0].tolist() == [0, 1, 2]

    buffer.append(rows(3, 7))  # wraps around the end of the array
    window, total = buffer.latest()
    assert total == 7
    assert buffer.fill() == 5
    assert window[:, 0].tolist() == [2, 3, 4, 5, 6]
    assert buffer.latest(2)[0][:, 0].tolist() == [5, 6]


def test_ring_buffer_keeps_the_tail_of_a_batch_larger_than_itself() -> None:
    buffer = RingBuffer(capacity=4, features=3)
    buffer.append(rows(0, 2))
    buffer.append(rows(2, 13))
    window, total = buffer.latest()
    assert total == 13
    assert window[:, 0].tolist() == [9, 10, 11, 12]


def test_ring_buffer_keeps_each_rows_outputs_beside_it_and_nan_when_none_came() -> None:
    buffer = RingBuffer(capacity=5, features=3, outputs=2)
    buffer.append(rows(0, 3), np.arange(6.0).reshape(3, 2))
    buffer.append(rows(3, 7))  # wraps around, no outputs
    buffer.append(rows(7, 13), np.arange(12.0).reshape(6, 2))  # larger than the buffer
    window, total = buffer.latest()
    assert total == 13
    assert window[:, 0].tolist() == [8, 9, 10, 11, 12]
    assert window[:, 3:].tolist() == np.arange(2.0, 12.0).reshape(5, 2).tolist()
    buffer.append(rows(13, 14))
    assert np.isnan(buffer.latest(1)[0][:, 3:]).all()


def test_latest_returns_a_copy_that_later_appends_do_not_change() -> None:
    buffer = RingBuffer(capacity=4, features=3)
    buffer.append(rows(0, 4))
    window, _ = buffer.latest()
    buffer.append(rows(4, 8))
    assert window[:, 0].tolist() == [0, 1, 2, 3]


def test_first_check_waits_for_a_full_window_then_runs_every_check_every_rows(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor(window_size=50, check_every=20)
    checks_after = []
    for i, row in enumerate(split.held_out[:130], start=1):
        monitor.append(row)
        if monitor.run_due_checks():
            checks_after.append(i)
    assert checks_after == [50, 70, 90, 110, 130]
    snap = monitor.snapshot()
    assert snap["checks"] == 5
    assert snap["samples_seen"] == 130
    assert snap["window_fill"] == 50


def test_a_batch_spanning_several_check_points_runs_one_check_and_counts_the_skipped(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor(window_size=20, check_every=10)
    monitor.append(split.held_out[:20])
    assert monitor.run_due_checks() == 1
    monitor.append(split.held_out[20:55])
    assert monitor.run_due_checks() == 1
    snap = monitor.snapshot()
    assert snap["checks"] == 2
    assert snap["checks_skipped"] == 2


def test_append_accepts_one_row_or_a_batch_and_rejects_other_widths(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor()
    monitor.append(split.held_out[0])
    monitor.append(split.held_out[1:4])
    monitor.append(split.held_out[4:5].tolist())
    assert monitor.snapshot()["samples_seen"] == 5
    with pytest.raises(ValueError, match="30 features"):
        monitor.append(np.zeros((2, 29)))


def test_reference_is_standardized_and_decorrelated(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor()
    z = monitor.reference
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-9)
    cov = np.cov(z, rowvar=False)
    # Off-diagonal correlations are gone; variances are 1 except on floored directions.
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-8)
    assert np.all(np.diag(cov) <= 1.0 + 1e-8)
    assert np.sum(np.isclose(np.diag(cov), 1.0)) >= 3  # the leading principal directions
    # The same transform applies to new rows: the mean row maps to the origin.
    np.testing.assert_allclose(monitor.standardize(split.reference.mean(axis=0)), 0.0, atol=1e-9)


def test_standardization_removes_units(make_monitor: MonitorFactory, split: Split) -> None:
    """Rescaling a feature of reference and rows alike leaves the standardized rows unchanged."""
    monitor = make_monitor()
    scaled_reference = split.reference.copy()
    scaled_reference[:, 3] *= 1000.0  # area in other units
    from aiops_runtime.drift import DriftMonitor
    from aiops_runtime.settings import DriftConfig

    scaled = DriftMonitor(scaled_reference, DriftConfig())
    row = split.held_out[:3].copy()
    scaled_row = row.copy()
    scaled_row[:, 3] *= 1000.0
    np.testing.assert_allclose(
        np.abs(monitor.standardize(row)), np.abs(scaled.standardize(scaled_row)), atol=1e-6
    )
