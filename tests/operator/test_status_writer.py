"""The one status writer: merge patches, coalescing, one write at a time per ModelService."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiops_operator.kube import KubeApiError
from aiops_operator.memo import Operator
from aiops_operator.settings import OperatorSettings
from aiops_operator.state import Outcome
from aiops_operator.status_writer import merge_patch

KEY = ("ns", "ms")


class FakeKube:
    """write_status only: records each status written onto the object of `uid` (else 422, as a
    JSON Patch's failed uid test), optionally slowly or failing with a status."""

    def __init__(self, delay: float = 0.0, fail: int | None = None, uid: str = "u1") -> None:
        self.patches: list[dict[str, Any]] = []
        self.delay, self.fail, self.uid = delay, fail, uid
        self.in_flight = self.peak = 0

    async def write_status(self, *args: Any) -> None:
        uid, status = args[-2:]
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        if self.fail is not None:
            raise KubeApiError(self.fail, "Failure", "nope")
        if uid != self.uid:
            raise KubeApiError(422, "Invalid", "the server rejected our request")
        self.patches.append(status)

    async def uid_of(self, *_: Any) -> str:
        return self.uid


def memo_with(kube: FakeKube, status: dict[str, Any] | None = None) -> Operator:
    memo = Operator.create(OperatorSettings())
    memo.state.kube = kube  # type: ignore[assignment]
    memo.state.modelservices[KEY] = {
        "uid": "u1", "generation": 1, "deleting": False, "status": status or {},
    }  # fmt: skip
    return memo


def test_merge_patch_merges_objects_removes_nulls_and_replaces_lists() -> None:
    current = {"drift": {"a": 1, "b": 2}, "conditions": [{"type": "Ready"}], "x": 1}
    patch = {"drift": {"b": None, "c": 3}, "conditions": [], "y": {"z": None, "w": 1}}
    assert merge_patch(current, patch) == {
        "drift": {"a": 1, "c": 3}, "conditions": [], "x": 1, "y": {"w": 1},
    }  # fmt: skip
    assert current["drift"] == {"a": 1, "b": 2}, "the input was changed"


def test_a_change_is_written_and_merged_into_the_cache() -> None:
    kube = FakeKube()
    memo = memo_with(kube, {"drift": {"pValueThreshold": 0.05, "lastPValue": 0.3}})

    async def scenario() -> dict[str, Any] | None:
        return await memo.status.change(KEY, "u1", lambda s: {"drift": {"lastPValue": 0.01}})

    assert asyncio.run(scenario()) == {"drift": {"lastPValue": 0.01}}
    assert kube.patches == [{"drift": {"pValueThreshold": 0.05, "lastPValue": 0.01}}]
    cached = memo.state.modelservices[KEY]["status"]
    assert cached == {"drift": {"pValueThreshold": 0.05, "lastPValue": 0.01}}


def test_no_write_for_another_uid_a_deleting_object_or_an_empty_patch() -> None:
    kube = FakeKube()
    memo = memo_with(kube)

    async def scenario() -> list[Any]:
        results = [await memo.status.change(KEY, "other-uid", lambda s: {"a": 1})]
        results.append(await memo.status.change(KEY, "u1", lambda s: {}))
        memo.state.modelservices[KEY]["deleting"] = True
        results.append(await memo.status.change(KEY, "u1", lambda s: {"a": 1}))
        return results

    assert asyncio.run(scenario()) == [None, None, None]
    assert kube.patches == []


def test_a_deleted_object_is_no_error_but_other_api_errors_are_raised() -> None:
    async def change(kube: FakeKube) -> Any:
        return await memo_with(kube).status.change(KEY, "u1", lambda s: {"a": 1})

    assert asyncio.run(change(FakeKube(fail=404))) is None
    with pytest.raises(KubeApiError, match="nope"):
        asyncio.run(change(FakeKube(fail=500)))


def test_a_write_for_a_deleted_object_never_lands_on_a_re_created_one_of_its_name() -> None:
    kube = FakeKube(uid="u2")  # "ms" was deleted and created again meanwhile
    memo = memo_with(kube, {"observedGeneration": 2})

    async def change() -> Any:
        return await memo.status.change(KEY, "u1", lambda s: {"observedGeneration": 3})

    assert asyncio.run(change()) is None
    assert kube.patches == []
    assert memo.state.modelservices[KEY]["status"] == {"observedGeneration": 2}
    kube.uid, kube.fail = "u1", 422  # the same object: a status the API server refused
    with pytest.raises(KubeApiError, match="nope"):
        asyncio.run(change())


def test_writes_of_one_modelservice_never_overlap() -> None:
    kube = FakeKube(delay=0.02)
    memo = memo_with(kube)

    async def scenario() -> None:
        await asyncio.gather(
            *(memo.status.change(KEY, "u1", lambda s, i=i: {"n": i}) for i in range(5))
        )

    asyncio.run(scenario())
    assert len(kube.patches) == 5
    assert kube.peak == 1


def test_publishes_in_one_coalescing_window_write_once() -> None:
    kube = FakeKube()
    memo = memo_with(kube)
    memo.state.outcomes[KEY] = Outcome(1, "u1")

    async def scenario() -> None:
        await asyncio.gather(*(memo.status.publish(KEY, delay=0.05) for _ in range(4)))

    asyncio.run(scenario())
    assert len(kube.patches) == 1
    assert kube.patches[0]["observedGeneration"] == 1
    asyncio.run(scenario())  # the same facts again: nothing new to write
    assert len(kube.patches) == 1
