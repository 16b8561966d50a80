"""Breast-cancer-like rows without end, for drift figures on fresh traffic.

The data set has 569 rows. A day at 100 req/s is 8.64 M rows, so a benchmark that streams real
rows streams the same ~140 held-out rows again and again: its windows share that sample's
offset from the reference, and a rule that needs k flagged checks in a row sees k correlated
checks where fresh traffic would give k independent ones. This module stands in for the
population: per class, a Gaussian copula of the data's normal scores with the data's own
empirical marginals (each column's sorted values, interpolated), so a drawn row has the
features' ranges, skew and ties at zero, and their rank correlations within the class. The
class share is the data's (212 malignant of 569).

Exact resampling is not the aim; a population that a finite data set, a reference and traffic
are all drawn from is. Reference, held-out rows and traffic then differ only by sampling, which
is the null hypothesis a false-alarm budget is about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri
from sklearn.datasets import load_breast_cancer


@dataclass(frozen=True)
class _ClassCopula:
    sorted_columns: np.ndarray  # (rows, features), each column sorted
    chol: np.ndarray  # Cholesky factor of the normal scores' correlation

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        rows = len(self.sorted_columns)
        u = ndtr(rng.standard_normal((n, self.chol.shape[0])) @ self.chol.T)
        # The empirical quantile: position u (rows + 1) - 1 between order statistics.
        pos = np.clip(u * (rows + 1) - 1, 0, rows - 1)
        low = np.floor(pos).astype(np.intp)
        high = np.minimum(low + 1, rows - 1)
        frac = pos - low
        cols = np.arange(self.chol.shape[0])
        lo, hi = self.sorted_columns[low, cols], self.sorted_columns[high, cols]
        return lo + frac * (hi - lo)  # type: ignore[no-any-return]


def _fit(x: np.ndarray) -> _ClassCopula:
    rows = len(x)
    ranks = x.argsort(axis=0, kind="stable").argsort(axis=0, kind="stable")
    scores = ndtri((ranks + 1) / (rows + 1))
    corr = np.corrcoef(scores, rowvar=False)
    # Nearly collinear columns (radius, perimeter, area) need a touch of ridge to factor.
    chol = np.linalg.cholesky(corr + 1e-6 * np.eye(len(corr)))
    return _ClassCopula(np.sort(x, axis=0), chol)


class Population:
    """Draws labelled rows like ``load_breast_cancer``'s, as many as asked."""

    def __init__(self) -> None:
        """Fit one copula per class of the real data."""
        data = load_breast_cancer()
        self.classes = np.unique(data.target)
        self.copulas = [_fit(data.data[data.target == c]) for c in self.classes]
        self.shares = np.array([(data.target == c).mean() for c in self.classes])
        self.size = len(data.target)

    def draw(
        self, n: int, rng: np.random.Generator, stratified: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows and their labels; ``stratified`` keeps the data's class counts exactly
        (a data set like the real one), otherwise each row's class is drawn."""
        if stratified:
            counts = np.round(self.shares * n).astype(int)
            counts[-1] = n - counts[:-1].sum()
        else:
            counts = rng.multinomial(n, self.shares)
        parts = [c.draw(k, rng) for c, k in zip(self.copulas, counts, strict=True)]
        labels = np.repeat(self.classes, counts)
        order = rng.permutation(n)
        return np.concatenate(parts)[order], labels[order]
