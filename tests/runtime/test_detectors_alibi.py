"""The native and the alibi-detect engine of the mmd test give the same p-values.

Both see the same standardized data and use the same kernel and bandwidth; their p-values differ
only by Monte Carlo error of the permutations (and the native +1 in (1 + c) / (B + 1)).
"""

from __future__ import annotations

import numpy as np
import pytest

from aiops_runtime.detectors import NativeMMD
from tests.runtime.drift_helpers import OUT_OF_RANGE, MonitorFactory, Split

pytestmark = pytest.mark.alibi

PERMUTATIONS = 2000


def windows(split: Split) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    noisy = split.held_out[100:200] + rng.normal(0, 0.15, (100, 30)) * split.reference.std(axis=0)
    shifted = split.held_out[200:280].copy()
    shifted[:, :10] *= 1.5
    return {
        "in_distribution": split.held_out[:100],
        "slight_noise": noisy,
        "shifted": shifted,
    }


@pytest.mark.usefixtures("alibi")
def test_native_and_alibi_mmd_p_values_agree_within_monte_carlo_error(
    make_monitor: MonitorFactory, split: Split
) -> None:
    from aiops_runtime.detectors import AlibiMMD

    monitor = make_monitor()
    native = NativeMMD(monitor.reference, PERMUTATIONS, seed=0)
    np.random.seed(0)  # alibi-detect draws its permutations from NumPy's global generator
    alibi = AlibiMMD(monitor.reference, PERMUTATIONS)
    for name, rows in windows(split).items():
        window = monitor.standardize(rows)
        p_native = native.test(window).p_value
        p_alibi = alibi.test(window).p_value
        assert p_native is not None
        assert p_alibi is not None
        # Two independent estimates of one p: the difference has sd sqrt(2 p (1 - p) / B).
        p = (p_native + p_alibi) / 2
        tolerance = 4 * np.sqrt(2 * p * (1 - p) / PERMUTATIONS) + 2 / PERMUTATIONS
        assert abs(p_native - p_alibi) <= tolerance, (name, p_native, p_alibi)
        statistic_native = native.test(window).statistic
        statistic_alibi = alibi.test(window).statistic
        assert np.isclose(statistic_native, statistic_alibi, rtol=1e-3, atol=1e-5), name


@pytest.mark.usefixtures("alibi")
def test_alibi_engine_runs_in_the_monitor_and_flags_the_out_of_range_burst(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor(engine="alibi", window_size=50, check_every=50, consecutive=1)
    monitor.append(split.held_out[:50])
    clean = monitor.check_now()
    monitor.append(np.tile(OUT_OF_RANGE, (50, 1)))
    drifted = monitor.check_now()
    assert clean is not None
    assert drifted is not None
    assert clean["engine"] == "alibi"
    assert clean["drift"] is False
    assert drifted["drift"] is True
    assert monitor.snapshot()["drift_events"] == 1
