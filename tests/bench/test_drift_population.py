"""The stand-in population the fresh-traffic drift figures draw from."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.datasets import load_breast_cancer

from tests.bench.bench_modules import load

Population = load("drift_population").Population
DATA = load_breast_cancer()


def test_a_stratified_draw_has_the_data_sets_class_counts() -> None:
    rows, labels = Population().draw(569, np.random.default_rng(0), stratified=True)

    assert rows.shape == (569, 30)
    assert np.array_equal(np.bincount(labels), np.bincount(DATA.target))


def test_drawn_rows_keep_each_class_marginals_and_rank_correlations() -> None:
    rows, labels = Population().draw(40_000, np.random.default_rng(1))

    assert abs(labels.mean() - DATA.target.mean()) < 0.01
    for c in (0, 1):
        real, drawn = DATA.data[DATA.target == c], rows[labels == c]
        assert (drawn.min(axis=0) >= real.min(axis=0)).all()
        assert (drawn.max(axis=0) <= real.max(axis=0)).all()
        for q in (0.1, 0.5, 0.9):
            spread = real.std(axis=0)
            gap = np.abs(np.quantile(drawn, q, axis=0) - np.quantile(real, q, axis=0))
            assert (gap < 0.15 * spread).all(), (c, q, (gap / spread).max())
        rank_gap = np.abs(spearmanr(drawn[:5000]).statistic - spearmanr(real).statistic)
        assert rank_gap.max() < 0.1


def test_rows_are_new_and_a_seed_gives_the_same_rows() -> None:
    population = Population()
    first, _ = population.draw(1000, np.random.default_rng(2))
    again, _ = population.draw(1000, np.random.default_rng(2))

    assert np.array_equal(first, again)
    assert len(np.unique(first, axis=0)) == 1000
    real = {row.tobytes() for row in DATA.data}
    assert not real & {row.tobytes() for row in first}
