"""The micro-batcher scores concurrent callers together and gives each caller its own rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio

from aiops_runtime.batcher import MicroBatcher
from aiops_runtime.model_store import TRUSTED_TYPES
from tests.runtime.runtime_helpers import reference_rows

pytestmark = pytest.mark.anyio


class RecordingScorer:
    """A real model's predict_proba that records the size of every call."""

    def __init__(self, model_dir: Path) -> None:
        self.model = sio.load(model_dir / "model.skops", trusted=TRUSTED_TYPES)
        self.calls: list[int] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.calls.append(len(rows))
        return self.model.predict_proba(rows)


@pytest.mark.parametrize("in_thread", [False, True], ids=["inline", "thread"])
async def test_concurrent_callers_get_their_own_rows(
    example_model_dir: Path, in_thread: bool
) -> None:
    scorer = RecordingScorer(example_model_dir)
    rows = reference_rows(example_model_dir, 200)
    batcher = MicroBatcher(scorer, max_rows=64, max_wait_s=0.01, in_thread=in_thread)
    batcher.start()
    try:
        # Callers of 1, 2 and 3 rows, all in flight at once.
        chunks = [rows[i : i + 1 + i % 3] for i in range(0, 180, 3)]
        answers = await asyncio.gather(*(batcher.predict(chunk) for chunk in chunks))
    finally:
        await batcher.stop()
    # Equal up to BLAS rounding (a stacked matmul may differ in the last bit).
    for chunk, answer in zip(chunks, answers, strict=True):
        assert np.allclose(answer, scorer.model.predict_proba(chunk), rtol=0, atol=1e-12)
    assert sum(scorer.calls) == sum(len(c) for c in chunks)
    assert len(scorer.calls) < len(chunks), "concurrent callers were not batched"
    assert max(scorer.calls) <= 64


async def test_a_lone_caller_larger_than_max_rows_is_scored_alone(
    example_model_dir: Path,
) -> None:
    scorer = RecordingScorer(example_model_dir)
    batcher = MicroBatcher(scorer, max_rows=8, max_wait_s=0.01)
    batcher.start()
    try:
        answer = await batcher.predict(reference_rows(example_model_dir, 20))
    finally:
        await batcher.stop()
    assert answer.shape == (20, 2)
    assert scorer.calls == [20]


async def test_a_failing_model_fails_every_caller_of_the_batch() -> None:
    def broken(rows: np.ndarray) -> np.ndarray:
        raise ValueError("model exploded")

    batcher = MicroBatcher(broken, max_rows=100, max_wait_s=0.01)
    batcher.start()
    try:
        results = await asyncio.gather(
            *(batcher.predict(np.zeros((1, 3))) for _ in range(5)), return_exceptions=True
        )
    finally:
        await batcher.stop()
    assert all(isinstance(r, ValueError) for r in results)


async def test_the_batcher_keeps_serving_after_a_cancelled_caller(example_model_dir: Path) -> None:
    scorer = RecordingScorer(example_model_dir)
    rows = reference_rows(example_model_dir, 2)
    batcher = MicroBatcher(scorer, max_rows=100, max_wait_s=0.01)
    batcher.start()
    try:
        gone = asyncio.ensure_future(batcher.predict(rows[:1]))
        await asyncio.sleep(0)
        gone.cancel()
        answer = await batcher.predict(rows[1:])
    finally:
        await batcher.stop()
    # The row may be scored within a batch: BLAS kernels may then differ in the last bits.
    np.testing.assert_allclose(answer, scorer.model.predict_proba(rows[1:]), rtol=1e-12, atol=0)


async def test_predict_before_start_is_an_error() -> None:
    batcher = MicroBatcher(lambda rows: rows, max_rows=10, max_wait_s=0.0)
    with pytest.raises(RuntimeError):
        await batcher.predict(np.zeros((1, 3)))


async def test_many_concurrent_http_requests_each_get_their_row(
    client: httpx.AsyncClient, example_model_dir: Path
) -> None:
    model = sio.load(example_model_dir / "model.skops", trusted=TRUSTED_TYPES)
    rows = reference_rows(example_model_dir, 150)
    responses = await asyncio.gather(
        *(
            client.post("/predict", json={"features": row}, headers={"X-Request-ID": f"r{i}"})
            for i, row in enumerate(rows.tolist())
        )
    )
    expected = model.predict_proba(rows)
    for i, response in enumerate(responses):
        body = response.json()
        assert body["request_id"] == f"r{i}"
        assert np.allclose(body["probabilities"][0], expected[i], rtol=0, atol=1e-12)


async def test_a_cheap_model_is_scored_in_the_callers_task(example_model_dir: Path) -> None:
    rows = reference_rows(example_model_dir, 40)
    calls: list[int] = []

    def cheap(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch[:, :2]

    batcher = MicroBatcher(cheap, max_rows=100, max_wait_s=0.01, direct_below_s=1.0)
    batcher.start()
    try:
        await batcher.predict(rows[:1])  # the first call is timed on the batching path
        answers = await asyncio.gather(*(batcher.predict(rows[i : i + 1]) for i in range(40)))
    finally:
        await batcher.stop()
    assert calls == [1] * 41, "each caller scored alone, without waiting for others"
    assert all(np.array_equal(a, rows[i : i + 1, :2]) for i, a in enumerate(answers))
    assert batcher.call_seconds < 1.0
