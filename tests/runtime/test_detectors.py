"""The native tests: MMD² and its permutation p-value, the bandwidth, KS, the support count."""

from __future__ import annotations

import numpy as np
from scipy import stats

from aiops_runtime.detectors import (
    KSBonferroni,
    NativeMMD,
    SupportCheck,
    distinct_rows,
    ks_columns,
    median_heuristic_gamma,
    sq_distances,
)
from tests.runtime.drift_helpers import OUT_OF_RANGE, RUNBOOK_SAMPLE, MonitorFactory, Split


def unbiased_mmd2(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """MMD² written out term by term from its definition (slow, obviously right)."""

    def mean_kernel(a: np.ndarray, b: np.ndarray, same: bool) -> float:
        total, count = 0.0, 0
        for i in range(len(a)):
            for j in range(len(b)):
                if same and i == j:
                    continue
                total += np.exp(-gamma * np.sum((a[i] - b[j]) ** 2))
                count += 1
        return total / count

    return mean_kernel(x, x, True) + mean_kernel(y, y, True) - 2 * mean_kernel(x, y, False)


def test_mmd2_statistic_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    reference, window = rng.normal(size=(40, 4)), rng.normal(0.5, 1.0, size=(15, 4))
    detector = NativeMMD(reference, permutations=20, seed=0)
    expected = unbiased_mmd2(reference, window, detector.gamma)
    assert np.isclose(detector.test(window).statistic, expected, rtol=1e-10, atol=1e-12)


def test_bandwidth_is_the_median_of_squared_reference_distances() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(31, 3))
    pairs = sq_distances(reference, reference)[np.triu_indices(31, k=1)]
    assert np.isclose(1.0 / median_heuristic_gamma(reference), np.median(pairs))


def test_mmd_p_value_is_large_in_distribution_and_minimal_under_a_shift(
    make_monitor: MonitorFactory, split: Split
) -> None:
    monitor = make_monitor()
    detector = NativeMMD(monitor.reference, permutations=200, seed=3)
    same = detector.test(monitor.standardize(split.held_out[:100]))
    shifted_rows = split.held_out[100:200].copy()
    shifted_rows[:, :10] *= 1.5
    shifted = detector.test(monitor.standardize(shifted_rows))
    assert same.p_value is not None
    assert same.p_value > 0.05
    assert shifted.p_value == 1 / 201


def test_mmd_p_values_are_roughly_uniform_without_drift() -> None:
    """The permutation test keeps its size: about 5 % of null p-values fall below 0.05."""
    rng = np.random.default_rng(4)
    detector = NativeMMD(rng.normal(size=(150, 5)), permutations=100, seed=5)
    p_values = np.array([detector.test(rng.normal(size=(40, 5))).p_value for _ in range(300)])
    assert 0.01 <= np.mean(p_values < 0.05) <= 0.10
    assert 0.4 <= np.mean(p_values) <= 0.6


def test_ks_is_the_bonferroni_corrected_minimum_of_per_feature_tests() -> None:
    rng = np.random.default_rng(6)
    reference = rng.normal(size=(200, 3))
    window = rng.normal(size=(80, 3))
    window[:, 2] += 0.4
    result = KSBonferroni(reference).test(window)
    per_feature = [stats.ks_2samp(reference[:, j], window[:, j]).pvalue for j in range(3)]
    assert result.p_value is not None
    assert np.isclose(result.p_value, min(1.0, 3 * min(per_feature)))


def test_distinct_rows_are_numpys_unique_rows_in_its_order() -> None:
    rng = np.random.default_rng(8)
    for trial in range(60):
        window = rng.normal(size=(100, 5))
        if trial % 2:  # resent rows: exact duplicates
            window[rng.integers(0, 100, 30)] = window[rng.integers(0, 100, 30)]
        if trial % 3 == 0:  # ties in the first column only
            window[:, 0] = np.round(window[:, 0])
        np.testing.assert_array_equal(distinct_rows(window), np.unique(window, axis=0))
    assert distinct_rows(np.ones((1, 5))).shape == (1, 5)


def test_ks_columns_give_scipys_per_column_results_exactly() -> None:
    """The undecorated KS call gives what ``stats.ks_2samp(axis=0)`` gives, ties included."""
    rng = np.random.default_rng(7)
    reference = np.round(rng.random(size=(284, 3)), 2)
    window = np.round(rng.random(size=(100, 3)) ** 1.3, 2)
    p_values, statistics = ks_columns(reference, window)
    expected = stats.ks_2samp(reference, window, axis=0)
    assert p_values.tolist() == list(expected.pvalue)
    assert statistics.tolist() == list(expected.statistic)


def test_support_check_counts_the_out_of_range_vector_but_not_the_runbook_sample(
    make_monitor: MonitorFactory,
) -> None:
    monitor = make_monitor()
    support = SupportCheck(monitor.reference)
    assert support.outside(monitor.standardize(np.tile(OUT_OF_RANGE, (5, 1)))) == 5
    assert support.outside(monitor.standardize(np.tile(RUNBOOK_SAMPLE, (5, 1)))) == 0
    assert support.p_value(0, 100) == 1.0
    assert support.p_value(5, 100) < 1e-4
