"""Adaptive micro-batcher: concurrent requests share one ``predict_proba`` call.

A request enqueues its rows and awaits a future. One worker task takes everything queued, lets the
event loop run while more requests keep joining (at most ``max_wait_s``, at most ``max_rows``),
scores the stacked rows once and hands each caller back its own slice. With a single client the
queue stops growing at once, so a lone request waits only two loop turns, not ``max_wait_s``.

Batching pays only when a model call has a large fixed cost. The batcher times every call; while
calls cost less than ``direct_below_s`` (a hand-off to the worker costs tens of microseconds) and
nobody is queued, a caller's rows are scored at once in the caller's own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aiops_runtime.metrics import BATCH_SIZE

log = logging.getLogger("aiops_runtime.batcher")

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Collects rows from concurrent callers and scores them together."""

    def __init__(
        self,
        score: Scorer,
        *,
        max_rows: int = 1024,
        max_wait_s: float = 0.002,
        in_thread: bool = False,
        direct_below_s: float = 50e-6,
    ) -> None:
        self._score = score
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._in_thread = in_thread
        self._direct_below_s = direct_below_s
        # Moving average of one model call's duration; unknown (infinite) until measured.
        self._call_s = math.inf
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the worker task on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop the worker; callers still waiting get a RuntimeError."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail_all(RuntimeError("the micro-batcher stopped"))

    async def predict(self, rows: np.ndarray) -> np.ndarray:
        """Score ``rows`` (2-D) together with other callers' rows; returns their probabilities."""
        if self._task is None:
            raise RuntimeError("the micro-batcher is not running")
        if self._call_s < self._direct_below_s and not self._queue:
            BATCH_SIZE.observe(len(rows))
            return self._timed_score(rows)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(rows, future))
        self._queued_rows += len(rows)
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            await self._gather(loop.time() + self._max_wait_s)
            batch = self._take()
            if batch:
                await self._score_batch(batch)

    async def _gather(self, deadline: float) -> None:
        """Yield to the loop while requests keep joining, within the wait and size bounds."""
        loop = asyncio.get_running_loop()
        idle_turns = 0
        # Two quiet turns: requests whose bytes arrived in this loop turn get to run first.
        while idle_turns < 2 and self._queued_rows < self._max_rows and loop.time() < deadline:
            before = self._queued_rows
            await asyncio.sleep(0)
            idle_turns = idle_turns + 1 if self._queued_rows == before else 0

    def _take(self) -> list[_Pending]:
        """Take queued requests up to max_rows (at least one, however large it is)."""
        taken: list[_Pending] = []
        rows = 0
        while self._queue and (not taken or rows + len(self._queue[0].rows) <= self._max_rows):
            item = self._queue.popleft()
            rows += len(item.rows)
            taken.append(item)
        self._queued_rows -= rows
        if not self._queue:
            self._wakeup.clear()
        return taken

    async def _score_batch(self, batch: list[_Pending]) -> None:
        matrix = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
        BATCH_SIZE.observe(len(matrix))
        try:
            if self._in_thread:
                proba = await asyncio.to_thread(self._timed_score, matrix)
            else:
                proba = self._timed_score(matrix)
        except Exception as exc:  # the model failed: every caller of this batch gets the error
            log.exception("model scoring failed", extra={"rows": len(matrix)})
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        start = 0
        for pending in batch:
            end = start + len(pending.rows)
            if not pending.future.done():  # a caller that went away has a cancelled future
                pending.future.set_result(proba[start:end])
            start = end

    def _timed_score(self, rows: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        proba = self._score(rows)
        elapsed = time.perf_counter() - started
        if math.isinf(self._call_s):
            self._call_s = elapsed
        else:
            # Clipped so one call preempted by the OS cannot flip a cheap model to batching;
            # a model that is really slow still moves the average up by 30 % per call.
            self._call_s = 0.9 * self._call_s + 0.1 * min(elapsed, 4 * self._call_s)
        return proba

    @property
    def call_seconds(self) -> float:
        """Moving average of one model call's duration (inf before the first call)."""
        return self._call_s

    def _fail_all(self, exc: Exception) -> None:
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._queue.clear()
        self._queued_rows = 0
