"""Statistical tests that compare a window of recent rows with the reference sample.

Every detector works on standardized features (the monitor standardizes with the reference's
mean and standard deviation). Two engines implement the ``mmd`` test:

- ``native``: NumPy/SciPy, Apache-2.0 like the rest of the runtime. Gaussian kernel, bandwidth by
  the median heuristic on the reference, unbiased MMD², permutation p-value. The reference-reference
  kernel is computed once; a check costs one window-by-reference kernel and one matrix product.
- ``alibi``: alibi-detect's ``MMDDrift`` (Business Source License 1.1 from 0.11.5 on). It is
  imported only when selected, so the native engine never loads alibi-detect, TensorFlow or PyTorch.

``ks`` is a per-feature Kolmogorov-Smirnov test with a Bonferroni correction. ``OutputKS`` tests
the model's predicted class probabilities instead of the inputs (``drift.target``). (alibi-detect's
online detectors were offered once and removed: untested, and configuring them at their defaults
took more than 10 minutes; issue 14.)
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import stats

from aiops_runtime.settings import DriftConfig

ALIBI_MODULE = "alibi_detect"
# scipy's ks_2samp behind its axis/NaN-policy decorator. The decorator costs ~0.5 ms a call
# (signature inspection, broadcasting) against ~0.15 ms for the test itself on a 100-row window;
# ``ks_columns`` hands it finite 1-D columns, which is all the decorator would do.
_KS_2SAMP = getattr(stats.ks_2samp, "__wrapped__", stats.ks_2samp)


@dataclass(frozen=True)
class TestResult:
    """One test's outcome."""

    p_value: float
    statistic: float

    __test__ = False  # not a pytest test class despite the name


class WindowDetector(Protocol):
    """A two-sample test of a window against the reference (both standardized)."""

    name: str
    engine: str

    def test(self, window: np.ndarray) -> TestResult:
        """Test the window (rows x features) against the reference."""
        ...


def alibi_available() -> bool:
    """Whether alibi-detect is installed (checked without importing it)."""
    return importlib.util.find_spec(ALIBI_MODULE) is not None


def sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances between the rows of ``a`` and ``b``."""
    a_sq = np.einsum("ij,ij->i", a, a)
    b_sq = np.einsum("ij,ij->i", b, b)
    dist = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    # Rounding can make tiny distances negative; a kernel of exp(+x) would exceed 1.
    np.maximum(dist, 0.0, out=dist)
    return dist


def median_heuristic_gamma(reference: np.ndarray) -> float:
    """``1 / (2 sigma^2)`` with ``sigma^2 = median squared distance / 2`` over reference pairs.

    The same bandwidth alibi-detect infers from the reference (lower median of the pairs), so
    the two engines test with one kernel.
    """
    dist = sq_distances(reference, reference)
    pairs = dist[np.triu_indices(len(reference), k=1)]
    median = float(np.partition(pairs, (len(pairs) - 1) // 2)[(len(pairs) - 1) // 2])
    return 1.0 / median if median > 0 else 1.0


class NativeMMD:
    """Permutation MMD test in NumPy, with the reference part of the kernel matrix cached."""

    name = "mmd"
    engine = "native"

    def __init__(
        self, reference: np.ndarray, permutations: int = 100, seed: int | None = None
    ) -> None:
        """Precompute the bandwidth and the reference-reference kernel (zero diagonal)."""
        if len(reference) < 2:
            raise ValueError("the mmd test needs at least 2 reference rows")
        self.reference = np.ascontiguousarray(reference, dtype=np.float64)
        self.permutations = permutations
        self.gamma = median_heuristic_gamma(self.reference)
        k_rr = np.exp(-self.gamma * sq_distances(self.reference, self.reference))
        np.fill_diagonal(k_rr, 0.0)
        self._k_rr = k_rr
        self._rng = np.random.default_rng(seed)

    def test(self, window: np.ndarray) -> TestResult:
        """Unbiased MMD² of window vs reference and its permutation p-value."""
        window = np.ascontiguousarray(window, dtype=np.float64)
        n_ref, n_win = len(self.reference), len(window)
        if n_win < 2:
            raise ValueError("the mmd test needs at least 2 window rows")
        kernel = self._joint_kernel(window)
        row_sums = kernel.sum(axis=1)
        total = float(row_sums.sum())
        observed = _mmd2_from_sums(
            total,
            float(row_sums[n_ref:].sum()),
            float(kernel[n_ref:, n_ref:].sum()),
            n_ref,
            n_win,
        )
        # Each permutation draws which n_win of the pooled rows play the window. With an indicator
        # matrix P (permutations x pooled rows), the window-window sums are diag(P K P^T): one
        # matrix product for all permutations instead of a Python loop.
        n_all = n_ref + n_win
        order = np.argpartition(self._rng.random((self.permutations, n_all)), n_win, axis=1)
        chosen = np.zeros((self.permutations, n_all))
        np.put_along_axis(chosen, order[:, :n_win], 1.0, axis=1)
        s_yy = np.einsum("ij,ij->i", chosen @ kernel, chosen)
        r_y = chosen @ row_sums
        permuted = _mmd2_from_sums(total, r_y, s_yy, n_ref, n_win)
        # Counting the observed statistic among the permutations keeps the p-value valid (> 0).
        p_value = (1.0 + float(np.count_nonzero(permuted >= observed))) / (self.permutations + 1)
        return TestResult(p_value=p_value, statistic=float(observed))

    def _joint_kernel(self, window: np.ndarray) -> np.ndarray:
        n_ref = len(self.reference)
        k_wr = np.exp(-self.gamma * sq_distances(window, self.reference))
        k_ww = np.exp(-self.gamma * sq_distances(window, window))
        np.fill_diagonal(k_ww, 0.0)
        n_all = n_ref + len(window)
        kernel = np.empty((n_all, n_all))
        kernel[:n_ref, :n_ref] = self._k_rr
        kernel[n_ref:, :n_ref] = k_wr
        kernel[:n_ref, n_ref:] = k_wr.T
        kernel[n_ref:, n_ref:] = k_ww
        return kernel


def _mmd2_from_sums(
    total: float, window_row_sum: Any, window_pair_sum: Any, n_ref: int, n_win: int
) -> Any:
    """Unbiased MMD² from kernel sums (zero diagonal): total, window rows, window-window block.

    With T the sum of all entries, R the sum of the window's rows and S_yy its block,
    S_xy = R - S_yy and S_xx = T - 2R + S_yy.
    """
    s_xy = window_row_sum - window_pair_sum
    s_xx = total - 2.0 * window_row_sum + window_pair_sum
    return (
        s_xx / (n_ref * (n_ref - 1))
        + window_pair_sum / (n_win * (n_win - 1))
        - 2.0 * s_xy / (n_ref * n_win)
    )


def distinct_rows(rows: np.ndarray) -> np.ndarray:
    """``np.unique(rows, axis=0)`` (the distinct rows in lexicographic order), about 5x cheaper:
    sorted by the first column alone unless it has ties (then by every column)."""
    if len(rows) < 2:
        return rows.copy()
    ordered = rows[np.argsort(rows[:, 0], kind="stable")]
    if np.any(ordered[1:, 0] == ordered[:-1, 0]):
        ordered = rows[np.lexsort(rows.T[::-1])]
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.any(ordered[1:] != ordered[:-1], axis=1, out=keep[1:])
    return ordered[keep]


def ks_columns(reference: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sample KS p-values and statistics of each column of ``window`` against the same
    column of ``reference`` (both 2-D and finite): ``stats.ks_2samp(..., axis=0)``, cheaper."""
    results = [_KS_2SAMP(reference[:, j], window[:, j]) for j in range(reference.shape[1])]
    p_values = np.array([float(r.pvalue) for r in results])
    statistics = np.array([float(r.statistic) for r in results])
    return p_values, statistics


class KSBonferroni:
    """Per-feature two-sample Kolmogorov-Smirnov tests; p-value = min p x features (capped at 1)."""

    name = "ks"
    engine = "native"

    def __init__(self, reference: np.ndarray) -> None:
        """Keep the (standardized) reference."""
        self.reference = np.asarray(reference, dtype=np.float64)

    def test(self, window: np.ndarray) -> TestResult:
        """The Bonferroni-corrected minimum p-value over features."""
        result = stats.ks_2samp(self.reference, window, axis=0)
        p_values = np.atleast_1d(result.pvalue)
        p_min = float(np.nanmin(p_values)) if np.isfinite(p_values).any() else 1.0
        return TestResult(
            p_value=min(1.0, p_min * self.reference.shape[1]),
            statistic=float(np.nanmax(np.atleast_1d(result.statistic))),
        )


class SupportCheck:
    """Counts window rows far outside the reference's support; catches bursts of one odd vector.

    A row is outside when its distance to the nearest reference row exceeds ``margin`` times the
    largest distance of a reference row to its own nearest neighbour (margin 10 on squared
    distances, about 3x on distances). Without the margin a new in-distribution row would be
    outside with probability at most 1/(n_ref + 1) (exchangeability), so the count is compared
    with that binomial; the margin makes this bound loose on purpose: the count is kept for gross
    errors (out-of-range vectors, wrong units), which sit hundreds of times farther out, and
    ordinary outliers of the held-out data stay inside. Duplicates are counted: a burst of one
    out-of-range vector is many rows outside, while a burst of one typical vector is none.
    """

    def __init__(self, reference: np.ndarray, margin: float = 10.0) -> None:
        """Compute the largest nearest-neighbour distance inside the reference."""
        self.reference = np.asarray(reference, dtype=np.float64)
        dist = sq_distances(self.reference, self.reference)
        np.fill_diagonal(dist, np.inf)
        self.radius_sq = margin * float(dist.min(axis=1).max())
        self.rate = 1.0 / (len(self.reference) + 1)

    def outside(self, window: np.ndarray) -> int:
        """How many window rows lie outside the reference's support."""
        nearest = sq_distances(window, self.reference).min(axis=1)
        return int(np.count_nonzero(nearest > self.radius_sq))

    def p_value(self, outside: int, rows: int) -> float:
        """P(at least ``outside`` of ``rows`` in-distribution rows are outside the support)."""
        if outside <= 0:
            return 1.0
        return float(stats.binom.sf(outside - 1, rows, self.rate))


class AlibiMMD:
    """alibi-detect's MMDDrift on the standardized reference (imported on first use)."""

    name = "mmd"
    engine = "alibi"

    def __init__(self, reference: np.ndarray, permutations: int = 100) -> None:
        """Build MMDDrift with its default Gaussian kernel and bandwidth from the reference."""
        from alibi_detect.cd import MMDDrift

        self._detector = MMDDrift(
            np.asarray(reference, dtype=np.float32),
            backend=alibi_backend(),
            p_val=0.05,
            n_permutations=permutations,
            configure_kernel_from_x_ref=True,
        )

    def test(self, window: np.ndarray) -> TestResult:
        """alibi-detect's permutation p-value (its own threshold is ignored; ours decides)."""
        if len(window) < 2:
            # MMDDrift divides by n(n-1) for the window and raises ZeroDivisionError on one row.
            raise ValueError("the mmd test needs at least 2 window rows")
        p_value, mmd2, _ = self._detector.score(np.asarray(window, dtype=np.float32))
        return TestResult(p_value=float(p_value), statistic=float(mmd2))


# Decimals kept of a predicted probability before the output test ranks it: a BLAS kernel's
# last-bit differences must not reorder two probabilities (the calibration's bytes are pinned),
# and saturated probabilities (1 - 1e-12 against 1 - 2e-12) carry no distributional signal.
PROBABILITY_DECIMALS = 6


def probability_columns(proba: np.ndarray) -> np.ndarray:
    """The probability columns an output test compares: for two classes the last one (the other
    is its complement), otherwise every class; rounded to PROBABILITY_DECIMALS."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"expected class probabilities (rows x classes), got {proba.shape}")
    columns = proba[:, 1:] if proba.shape[1] == 2 else proba
    return np.round(columns, PROBABILITY_DECIMALS)


class OutputKS:
    """Black-box shift detection on the model's outputs (BBSD; Rabanser, Günnemann & Lipton,
    "Failing Loudly", NeurIPS 2019, found it among the strongest single tests): a two-sample
    Kolmogorov-Smirnov test per class probability against the reference rows' predictions,
    Bonferroni over the columns. The statistic is the largest KS distance (it breaks ties of the
    calibration's null p-values)."""

    name = "ks-outputs"

    def __init__(self, reference_proba: np.ndarray) -> None:
        """Keep the reference's predicted probabilities (rows x classes)."""
        self.reference = probability_columns(reference_proba)

    def test(self, window_proba: np.ndarray) -> TestResult:
        """The Bonferroni-corrected minimum p-value over the probability columns."""
        p_values, statistics = ks_columns(self.reference, probability_columns(window_proba))
        p_values = np.nan_to_num(p_values, nan=1.0)
        return TestResult(
            p_value=min(1.0, float(p_values.min()) * self.reference.shape[1]),
            statistic=float(np.nanmax(statistics)),
        )


def alibi_backend() -> str:
    """The installed alibi-detect backend: TensorFlow if present, else PyTorch."""
    if importlib.util.find_spec("tensorflow") is not None:
        return "tensorflow"
    return "pytorch"


def effective_engine(config: DriftConfig) -> str:
    """Which implementation runs: ``engine`` matters only for mmd; ks is always native."""
    return config.engine if config.detector == "mmd" else "native"


def needs_alibi(config: DriftConfig) -> bool:
    """Whether the configuration runs alibi-detect code."""
    return effective_engine(config) == "alibi"


def build_detector(
    config: DriftConfig, reference: np.ndarray, seed: int | None = None
) -> WindowDetector:
    """The detector the configuration names, on the standardized reference."""
    if config.detector == "ks":
        return KSBonferroni(reference)
    if config.engine == "native":
        return NativeMMD(reference, config.permutations, seed=seed)
    return AlibiMMD(reference, config.permutations)


# Most feature names an attribution reports: enough to act on, short enough for a condition.
ATTRIBUTION_MAX = 3


def drifted_features(
    reference: np.ndarray,
    window: np.ndarray,
    names: list[str],
    alpha: float,
    limit: int = ATTRIBUTION_MAX,
) -> list[dict[str, Any]]:
    """The features whose marginal distribution moved, most significant first (at most ``limit``).

    A two-sample Kolmogorov-Smirnov test per feature on standardized (not whitened) rows, so each
    p-value belongs to a named feature, with the Benjamini-Hochberg correction over features: among
    the names reported, the expected share of features that did not move is at most ``alpha``.
    ``p_value`` is the adjusted one, rounded for logs and conditions.
    """
    result = stats.ks_2samp(reference, window, axis=0)
    p_values = np.nan_to_num(np.atleast_1d(result.pvalue), nan=1.0)
    adjusted = stats.false_discovery_control(p_values, method="bh")
    order = np.argsort(adjusted, kind="stable")[:limit]
    return [
        {"name": names[i], "p_value": float(f"{adjusted[i]:.3g}")}
        for i in order
        if adjusted[i] < alpha
    ]
