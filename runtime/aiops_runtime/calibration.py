"""A false-alarm budget calibrated for one reference: the null distribution of a check's p-value.

The raw permutation p-value's false-flag rate depends on the reference (one reference flags 57 %
of no-drift checks at 0.05, another 0.6 %). At training time a null simulation on held-out rows
that are not in the reference runs the check as it will run and keeps its p-values (and MMD
statistics, which break the ties of a discrete permutation p-value). The runtime then flags a
check when the *calibrated* p-value, the share of null checks at least as extreme, is below
``pValueThreshold`` (so about that share of no-drift checks flags, for this reference), and picks
the number of flagged checks in a row that meets ``falseAlarmRows``.

Pure functions and a JSON artifact (``calibration.json``); the simulation itself needs the
monitor and lives in ``simulate`` (called by train.py and the benchmark, never on a request).
With the model at hand the simulation also keeps the output test's p-values on the same windows
(``null_outputs``), so ``drift.target: outputs`` and ``both`` are calibrated too.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

CALIBRATION_FILE = "calibration.json"
FORMAT_VERSION = 1
# Null checks simulated per reference: at alpha = 0.05 the 5 % quantile rests on ~100 of them.
NULL_CHECKS = 2000
# Significant digits kept of p-values and statistics: far above a BLAS's last-bit differences,
# so calibration.json has the same bytes on every machine (and its sha256 can be pinned).
DIGITS = 6
INTERVAL = 0.90  # two-sided probability of the reported range of expected rows


def rounded(value: float) -> float:
    """``value`` to DIGITS significant digits (inf stays inf)."""
    return float(f"{value:.{DIGITS}g}") if math.isfinite(value) else value


Part = str  # "inputs" (the detector on the rows) or "outputs" (the test on the predictions)
Null = tuple[tuple[float, float], ...]


def parts_of(target: str) -> tuple[Part, ...]:
    """The parts a check of this ``drift.target`` combines."""
    return {"inputs": ("inputs",), "outputs": ("outputs",)}.get(target, ("inputs", "outputs"))


def bonferroni(p_values: list[float]) -> float:
    """One p-value for several tests of one window: the smallest times their number (capped)."""
    return min(1.0, len(p_values) * min(p_values))


@dataclass(frozen=True)
class Calibration:
    """The null p-values of one reference under the settings they were simulated with.

    ``null`` holds the input detector's checks; ``null_outputs`` the output test's on the same
    windows (empty in a calibration made without the model), so a check that combines both is
    calibrated on their joint null.
    """

    detector: str
    window_size: int
    permutations: int
    # (p-value, statistic) of each null check, rounded; statistic -inf when the test was skipped.
    null: Null
    feature_names: tuple[str, ...] = ()
    held_out_rows: int = 0
    seed: int = 0
    null_outputs: Null = ()
    _keys: dict[Part, list[tuple[float, float]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        # More extreme = smaller p, then larger statistic: sorted keys (p, -statistic).
        for part, null in (("inputs", self.null), ("outputs", self.null_outputs)):
            self._keys[part] = sorted((rounded(p), -rounded(s)) for p, s in null)

    def covers(
        self, detector: str, window_size: int, permutations: int, target: str = "inputs"
    ) -> str:
        """Why these settings are not covered ("" when they are). The output test does not
        depend on the input detector, so ``target: outputs`` needs only the window size."""
        asked: dict[str, Any] = {"windowSize": window_size}
        have: dict[str, Any] = {"windowSize": self.window_size}
        if target != "outputs":
            asked.update(detector=detector, permutations=permutations)
            have.update(detector=self.detector, permutations=self.permutations)
        differ = [
            f"{k} {asked[k]} (calibrated for {have[k]})" for k in asked if asked[k] != have[k]
        ]
        if target != "inputs" and not self.null_outputs:
            differ.append(f"target {target} (the calibration has no output checks)")
        return "the calibration does not cover " + ", ".join(differ) if differ else ""

    def calibrated_p(self, p_value: float, statistic: float, part: Part = "inputs") -> float:
        """Share of null checks at least as extreme as this one, with +1 smoothing."""
        keys = self._keys[part]
        key = (rounded(p_value), -rounded(statistic))
        at_least_as_extreme = bisect.bisect_right(keys, key)
        return (1 + at_least_as_extreme) / (len(keys) + 1)

    def decision_p(self, p_value: float, statistic: float, part: Part = "inputs") -> float:
        """The p-value compared with the threshold: the larger of the raw and the calibrated one.

        A held-out sample of a few hundred rows is itself one draw: windows drawn from it vary
        less than fresh traffic and share its offset from the reference, so the calibrated
        p-value alone flagged 13.6 % of no-drift windows from rows it had not seen (bench, 100
        splits, alpha 0.05). The larger of the two keeps the permutation test's own validity and
        lets the calibration only add caution, for a reference that held-out rows already find
        unlike them.
        """
        return max(p_value, self.calibrated_p(p_value, statistic, part))

    def combined_decision_p(self, scores: dict[Part, tuple[float, float]]) -> float:
        """The decision p-value of a check of several parts: Bonferroni over each part's."""
        return bonferroni([self.decision_p(p, s, part) for part, (p, s) in scores.items()])

    def null_flag_count(self, alpha: float, target: str = "inputs") -> int:
        """How many of the null checks themselves would flag at ``alpha`` once calibrated."""
        nulls = {"inputs": self.null, "outputs": self.null_outputs}
        columns = [nulls[part] for part in parts_of(target)]
        return sum(
            self.combined_decision_p(dict(zip(parts_of(target), checks, strict=True))) < alpha
            for checks in zip(*columns, strict=True)
        )


@dataclass(frozen=True)
class EventRule:
    """How many flagged checks in a row make an event, and the false-event spacing achieved."""

    consecutive: int
    expected_false_alarm_rows: float
    expected_false_alarm_rows_range: tuple[float, float]
    flag_rate: float


def consecutive_for_budget(
    alpha: float, check_every: int, window_size: int, budget_rows: float
) -> int:
    """The smallest run length whose false events come at most once per ``budget_rows`` rows.

    Tumbling windows (checkEvery >= windowSize) share no rows, so given the reference the checks
    are independent: an event starts at a check with probability (1 - a) a^k, that is every
    checkEvery / ((1 - a) a^k) rows. Overlapping windows are correlated; a run of m k checks
    (m = ceil(windowSize / checkEvery)) contains k disjoint windows, so its probability is at most
    a^k and k is chosen on checkEvery / a^k alone: a bound, conservative by design.
    """
    overlap = math.ceil(window_size / check_every)
    independent = 1.0 - alpha if overlap == 1 else 1.0
    k = 1
    while check_every / (independent * alpha**k) < budget_rows and k < 100:
        k += 1
    return min(100, k * overlap)


def rows_between_false_events(flag_rate: float, k: int, check_every: int, overlap: int) -> float:
    """Expected rows between false events for a per-check flag rate (see consecutive_for_budget)."""
    runs = max(1, k // overlap)
    start = (1.0 - flag_rate if overlap == 1 else 1.0) * flag_rate**runs
    return math.inf if start <= 0 else check_every / start


def event_rule(
    calibration: Calibration,
    alpha: float,
    check_every: int,
    window_size: int,
    budget: float,
    target: str = "inputs",
) -> EventRule:
    """The run length for the budget and what it achieves, with a range for the flag rate.

    The flag rate of a new no-drift check under calibration is the coverage of an order
    statistic of the N null checks: Beta(j, N + 1 - j) with j the null checks that flag, whose
    ``INTERVAL`` range gives the range of expected rows.
    """
    k = consecutive_for_budget(alpha, check_every, window_size, budget)
    overlap = math.ceil(window_size / check_every)
    n = len(calibration.null)
    j = max(1, calibration.null_flag_count(alpha, target))
    rate = j / (n + 1)
    low, high = stats.beta.ppf([(1 - INTERVAL) / 2, (1 + INTERVAL) / 2], j, n + 1 - j)
    spacing = [rows_between_false_events(f, k, check_every, overlap) for f in (rate, high, low)]
    return EventRule(
        consecutive=k,
        expected_false_alarm_rows=_sig(spacing[0]),
        expected_false_alarm_rows_range=(_sig(spacing[1]), _sig(spacing[2])),
        flag_rate=round(rate, 5),
    )


def _sig(value: float) -> float:
    return float(f"{value:.3g}") if math.isfinite(value) else value


def simulate(
    score: Callable[[np.ndarray], dict[Part, tuple[float, float]]],
    held_out: np.ndarray,
    window_size: int,
    checks: int = NULL_CHECKS,
    seed: int = 0,
) -> dict[Part, Null]:
    """Null (p-value, statistic) pairs of each part for ``checks`` windows of held-out rows.

    Each window is ``window_size`` distinct held-out rows (fewer rows than that: all of them,
    shuffled); ``score`` is the monitor's check of every part on raw rows.
    """
    rng = np.random.default_rng(seed)
    size = min(window_size, len(held_out))
    null: dict[Part, list[tuple[float, float]]] = {}
    for _ in range(checks):
        window = held_out[rng.choice(len(held_out), size, replace=False)]
        for part, (p_value, statistic) in score(window).items():
            null.setdefault(part, []).append((rounded(p_value), rounded(statistic)))
    return {part: tuple(pairs) for part, pairs in null.items()}


def to_json(calibration: Calibration) -> bytes:
    """The artifact's bytes: stable for equal calibrations (sorted keys, rounded numbers)."""
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "detector": calibration.detector,
        "window_size": calibration.window_size,
        "permutations": calibration.permutations,
        "held_out_rows": calibration.held_out_rows,
        "seed": calibration.seed,
        "feature_names": list(calibration.feature_names),
        "null_p_values": [p for p, _ in calibration.null],
        "null_statistics": [s if math.isfinite(s) else None for _, s in calibration.null],
    }
    if calibration.null_outputs:
        doc["null_output_p_values"] = [p for p, _ in calibration.null_outputs]
        doc["null_output_statistics"] = [s for _, s in calibration.null_outputs]
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


def from_json(data: bytes) -> Calibration:
    """Parse calibration.json; raises ValueError on anything that is not one."""
    try:
        doc = json.loads(data)
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version {doc.get('format_version')!r} is not 1")
        p_values, statistics = doc["null_p_values"], doc["null_statistics"]
        if not isinstance(p_values, list) or len(p_values) != len(statistics) or not p_values:
            raise ValueError("null_p_values and null_statistics must be lists of equal length")
        null = tuple(
            (float(p), -math.inf if s is None else float(s))
            for p, s in zip(p_values, statistics, strict=True)
        )
        outputs = tuple(
            (float(p), float(s))
            for p, s in zip(
                doc.get("null_output_p_values") or (),
                doc.get("null_output_statistics") or (),
                strict=True,
            )
        )
        if outputs and len(outputs) != len(null):
            raise ValueError("the output null checks must match the input ones in number")
        if not all(0 < p <= 1 for p, _ in null + outputs):
            raise ValueError("a null p-value is outside (0, 1]")
        return Calibration(
            detector=str(doc["detector"]),
            window_size=int(doc["window_size"]),
            permutations=int(doc["permutations"]),
            null=null,
            feature_names=tuple(str(name) for name in doc.get("feature_names") or ()),
            held_out_rows=int(doc.get("held_out_rows", 0)),
            seed=int(doc.get("seed", 0)),
            null_outputs=outputs,
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a calibration.json: {exc!r}") from None
