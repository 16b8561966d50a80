"""Fixtures for the drift tests: the training split, the runbook's vectors, a monitor factory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from aiops_runtime.detectors import alibi_available
from aiops_runtime.drift import DriftMonitor
from aiops_runtime.settings import DriftConfig
from aiops_runtime.train import TEST_FRACTION
from tests.drift.drift_helpers import Split


@pytest.fixture(scope="session")
def split() -> Split:
    """train.py's split with its default seed 42."""
    data = load_breast_cancer()
    x_train, x_test = train_test_split(
        data.data, test_size=TEST_FRACTION, random_state=42, stratify=data.target
    )
    return Split(reference=x_train, held_out=x_test)


MonitorFactory = Callable[..., DriftMonitor]


@pytest.fixture
def make_monitor(split: Split) -> Iterator[MonitorFactory]:
    """Build monitors on the reference (seeded permutations); their workers are stopped after."""
    made: list[DriftMonitor] = []

    def factory(**config: object) -> DriftMonitor:
        monitor = DriftMonitor(split.reference, DriftConfig(**config), seed=7)  # type: ignore[arg-type]
        made.append(monitor)
        return monitor

    yield factory
    for monitor in made:
        monitor.stop()


@pytest.fixture
def alibi() -> None:
    """Skip when alibi-detect is missing, except in CI (CI=true), where that is a failure."""
    if alibi_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("alibi-detect is not installed; CI must install the runtime's alibi extra")
    pytest.skip("alibi-detect is not installed (pip install -e './runtime[test,alibi]')")
