"""What the request path reads and the lifecycle writes: readiness, the model, the batcher, the
drift monitor and its feed, the config watcher and the counters of the summary log line."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aiops_runtime.batcher import MicroBatcher
from aiops_runtime.model_store import LoadedModel
from aiops_runtime.settings import RuntimeSettings

if TYPE_CHECKING:  # imported when drift starts: a runtime with drift off never loads them
    from aiops_runtime.config_watch import Watcher
    from aiops_runtime.drift import DriftMonitor

log = logging.getLogger("aiops_runtime.state")


@dataclass
class RequestStats:
    """Counters behind the periodic summary log line (reset at each line)."""

    requests: int = 0
    rows: int = 0
    errors: int = 0
    latency_sum_s: float = 0.0
    latency_max_s: float = 0.0

    def add(self, latency_s: float, rows: int, error: bool) -> None:
        """Account one inference request."""
        self.requests += 1
        self.rows += rows
        self.errors += error
        self.latency_sum_s += latency_s
        self.latency_max_s = max(self.latency_max_s, latency_s)


class DriftFeed:
    """Hands rows to the drift monitor once per event-loop turn instead of once per request.

    ``DriftMonitor.append`` makes a few NumPy calls under a lock; requests handled in the same
    loop turn share one call (their rows are stacked), which matters at thousands of requests/s.
    The rows travel with the probabilities the request answered, so the drift worker's output
    test does not score them again.
    """

    def __init__(self, monitor: DriftMonitor, loop: asyncio.AbstractEventLoop) -> None:
        self._monitor = monitor
        self._loop = loop
        self._pending: list[np.ndarray] = []
        self._pending_proba: list[np.ndarray] = []

    def add(self, rows: np.ndarray, proba: np.ndarray) -> None:
        """Queue a request's rows and their probabilities for the next flush (request path:
        two list appends)."""
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(rows)
        self._pending_proba.append(proba)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        pending_proba, self._pending_proba = self._pending_proba, []
        rows = pending[0] if len(pending) == 1 else np.concatenate(pending)
        proba = pending_proba[0] if len(pending_proba) == 1 else np.concatenate(pending_proba)
        try:
            self._monitor.append(rows, proba)
        except Exception:  # drift bookkeeping must never fail a request
            log.exception("drift append failed", extra={"rows": len(rows)})


@dataclass
class RuntimeState:
    """What the request path reads: readiness, the model, the batcher and the drift monitor."""

    settings: RuntimeSettings
    ready: bool = False
    not_ready_reason: str = "loading"
    not_ready_message: str = "the model is loading"
    model: LoadedModel | None = None
    batcher: MicroBatcher | None = None
    drift: DriftMonitor | None = None
    drift_feed: DriftFeed | None = None
    drift_status: dict[str, Any] = field(default_factory=lambda: {"enabled": False})
    config_watcher: Watcher | None = None
    stats: RequestStats = field(default_factory=RequestStats)
