"""Fixtures of the runtime tests: settings on the trained artifacts, an in-process client, a
real uvicorn server on 127.0.0.1, and for the drift tests the training split and a monitor
factory."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiops_runtime.detectors import alibi_available
from aiops_runtime.drift import DriftMonitor
from aiops_runtime.settings import DriftConfig, RuntimeSettings
from tests.runtime.drift_helpers import MonitorFactory, Split, training_split
from tests.runtime.runtime_helpers import LiveServer, app_client

# Settings the environment of the test run must not leak into the runtime under test.
_RUNTIME_ENV = {name.upper() for name in RuntimeSettings.model_fields} | {"DRIFT_P_THRESHOLD"}


@pytest.fixture(autouse=True)
def _clean_runtime_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _RUNTIME_ENV & set(os.environ):
        monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_settings(example_model_dir: Path) -> Callable[..., RuntimeSettings]:
    """Settings serving the session's trained model; keyword arguments override fields."""

    def make(**overrides: Any) -> RuntimeSettings:
        base: dict[str, Any] = {
            "model_dir": example_model_dir,
            "drift_enabled": False,
            "log_summary_interval_s": 0,
        }
        return RuntimeSettings(**{**base, **overrides})

    return make


@pytest.fixture
def model_copy(example_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the trained artifacts that a test may tamper with."""
    target = tmp_path / "model"
    shutil.copytree(example_model_dir, target)
    return target


@pytest.fixture
async def client(make_settings: Callable[..., RuntimeSettings]) -> AsyncIterator[httpx.AsyncClient]:
    """A ready runtime on the trained model, drift off."""
    async with app_client(make_settings()) as c:
        assert c.app.state.runtime.ready  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="module")
def live_server(example_model_dir: Path) -> Iterator[LiveServer]:
    """A real HTTP server on the trained model (drift off), shared by a module's tests."""
    settings = RuntimeSettings(
        model_dir=example_model_dir, drift_enabled=False, log_summary_interval_s=0, api_docs=True
    )
    with LiveServer(settings) as server:
        yield server


@pytest.fixture(scope="session")
def split() -> Split:
    """train.py's split with its default seed 42."""
    return training_split()


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
