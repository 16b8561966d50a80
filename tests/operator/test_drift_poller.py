"""The one drift poller: its targets, its jittered schedule, its bounds, and no finalizer."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import kopf

from aiops_operator import drift_poller, handlers
from aiops_operator.conditions import rfc3339
from aiops_operator.drift_client import DriftReadError, DriftReading
from aiops_operator.drift_poller import DriftPoller, Target
from aiops_operator.kube import KubeApiError
from aiops_operator.memo import Operator
from aiops_operator.retrain import TriggerOutcome
from aiops_operator.settings import OperatorSettings


def poller(**settings: Any) -> DriftPoller:
    memo = Operator.create(OperatorSettings(**settings))
    memo.drift._rng = random.Random(7)
    return memo.drift


def test_no_handler_of_the_operator_needs_a_finalizer() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    drift_poller.register(registry)
    resource_handlers = [
        *registry._changing.get_all_handlers(),
        *registry._spawning.get_all_handlers(),
    ]
    assert resource_handlers, "no handlers were registered"
    assert not [h.id for h in resource_handlers if h.requires_finalizer]
    assert not registry._spawning.get_all_handlers(), "a timer or daemon per object is back"


def test_intervals_are_jittered_within_ten_percent() -> None:
    drift = poller(drift_poll_interval_s=30)
    intervals = [drift.interval() for _ in range(200)]
    assert all(27.0 <= i <= 33.0 for i in intervals)
    assert max(intervals) - min(intervals) > 3.0, "not spread over the ±10 %"


def test_a_new_modelservice_is_read_within_two_seconds_and_an_update_keeps_its_schedule() -> None:
    drift = poller(drift_poll_interval_s=30)
    drift.track(("ns", "a"), "uid-1", 1, {}, now=100.0)
    first = drift.targets[("ns", "a")]
    assert 100.0 < first.due <= 102.2
    first.due = 130.0
    drift.track(("ns", "a"), "uid-1", 2, {"drift": {"action": "none"}}, now=101.0)
    assert drift.targets[("ns", "a")] is first
    assert (first.generation, first.spec, first.due) == (2, {"drift": {"action": "none"}}, 130.0)
    drift.track(("ns", "a"), "uid-2", 1, {}, now=140.0)  # deleted and created again
    assert drift.targets[("ns", "a")].due < 142.2
    drift.forget(("ns", "a"))
    assert drift.targets == {}


def _targets(drift: DriftPoller, per_namespace: dict[str, int], due: float = 0.0) -> None:
    for namespace, count in per_namespace.items():
        for i in range(count):
            key = (namespace, f"ms-{i}")
            drift.targets[key] = Target(key, f"uid-{namespace}-{i}", 1, {}, due)


def test_due_targets_respect_the_global_and_the_per_namespace_bounds() -> None:
    drift = poller(drift_reads_max=5, drift_reads_per_namespace=2)
    _targets(drift, {"greedy": 10, "quiet": 1, "other": 3})
    picked = drift.due(now=1.0)
    by_namespace = {ns: sum(t.key[0] == ns for t in picked) for ns in ("greedy", "quiet", "other")}
    assert len(picked) == 5
    assert by_namespace["greedy"] <= 2
    assert by_namespace["quiet"] == 1
    assert by_namespace["other"] <= 2


def test_targets_not_due_or_busy_are_not_picked() -> None:
    drift = poller()
    _targets(drift, {"ns": 3}, due=10.0)
    drift.targets[("ns", "ms-0")].due = 0.0
    drift.targets[("ns", "ms-1")].due = 0.0
    drift.targets[("ns", "ms-1")].busy = True
    assert [t.key for t in drift.due(now=5.0)] == [("ns", "ms-0")]


def test_the_loop_ticks_every_target_with_at_most_drift_reads_max_in_flight() -> None:
    drift = poller(drift_reads_max=3, drift_reads_per_namespace=100, drift_poll_interval_s=60)
    in_flight, peak, ticked = [0], [0], set()

    async def tick(target: Target) -> None:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.01)
        ticked.add(target.key)
        in_flight[0] -= 1

    async def scenario() -> None:
        drift.tick = tick  # type: ignore[method-assign]
        await drift.start()
        now = asyncio.get_running_loop().time()
        _targets(drift, {"a": 10, "b": 10}, due=now)
        drift._wakeup()
        try:
            for _ in range(200):
                if len(ticked) == 20:
                    break
                await asyncio.sleep(0.01)
        finally:
            await drift.stop()

    asyncio.run(scenario())
    assert len(ticked) == 20
    assert peak[0] == 3
    assert all(t.due > 50 for t in drift.targets.values()), "not rescheduled an interval later"


def test_a_failing_tick_does_not_stop_the_loop() -> None:
    drift = poller(drift_poll_interval_s=0.05)
    ticks = [0]

    async def tick(target: Target) -> None:
        ticks[0] += 1
        raise RuntimeError("boom")

    async def scenario() -> None:
        drift.tick = tick  # type: ignore[method-assign]
        await drift.start()
        _targets(drift, {"ns": 1}, due=asyncio.get_running_loop().time())
        drift._wakeup()
        try:
            await asyncio.sleep(0.5)
        finally:
            await drift.stop()

    asyncio.run(scenario())
    assert ticks[0] >= 3


def test_deleting_or_deleted_modelservices_are_no_longer_read() -> None:
    memo = Operator.create(OperatorSettings())
    meta: dict[str, Any] = {"name": "a", "namespace": "ns", "uid": "u", "generation": 1}
    body = kopf.Body({"metadata": meta, "spec": {}})

    async def event(type: str, body: kopf.Body) -> None:
        await drift_poller.track_modelservice(
            type=type, body=body, namespace="ns", name="a", memo=memo
        )

    async def scenario() -> list[int]:
        seen = []
        await event("ADDED", body)
        seen.append(len(memo.drift.targets))
        deleting = kopf.Body({"metadata": {**meta, "deletionTimestamp": "now"}, "spec": {}})
        await event("MODIFIED", deleting)
        seen.append(len(memo.drift.targets))
        await event("MODIFIED", body)
        await event("DELETED", body)
        seen.append(len(memo.drift.targets))
        return seen

    assert asyncio.run(scenario()) == [1, 0, 0]


RETRAIN_SPEC = {
    "drift": {
        "action": "retrain",
        "retrain": {"triggerSecretRef": {"name": "aiops-retrain-trigger", "key": "k"},
                    "cooldown": "1h"},
    }
}  # fmt: skip


def _new_leader(status_drift: dict[str, Any]) -> tuple[DriftPoller, Target, list[str]]:
    """A fresh operator (no memory) whose watch showed the ModelService with this status.drift;
    the writes and triggers it makes are recorded in order instead of sent."""
    memo = Operator.create(OperatorSettings())
    key = ("ns", "a")
    memo.state.modelservices[key] = {
        "uid": "u", "generation": 1, "deleting": False, "status": {"drift": status_drift},
    }  # fmt: skip
    target = Target(key, "u", 1, RETRAIN_SPEC, due=0.0)
    drift, calls = memo.drift, []

    async def change(key: Any, uid: str, compute: Any) -> dict[str, Any]:
        patch = compute({})
        calls.append(f"write {sorted(patch['drift'])}")
        return dict(patch)

    async def retrain(*_: Any) -> Any:
        calls.append("trigger")
        return TriggerOutcome(ok=True, message="pipeline 1 created")

    drift.writer.change = change  # type: ignore[method-assign]
    drift._retrain = retrain  # type: ignore[method-assign]
    drift._post = lambda _fn, _target, **kw: calls.append(f"event {kw['reason']}")  # type: ignore[method-assign]
    return drift, target, calls


def _drift_event(time: str = "2026-12-02T18:00:00Z") -> Any:
    return DriftReading(enabled=True, threshold=0.05, last_p_value=0.001,
                                     drift=True, last_drift_time=time)  # fmt: skip


def test_a_new_leader_reads_the_retrain_cooldown_from_the_objects_status() -> None:
    just_now = rfc3339(datetime.now(UTC))
    drift, target, calls = _new_leader({"lastRetrainTime": just_now})
    asyncio.run(drift._react(target, _drift_event()))
    assert "trigger" not in calls
    assert "event RetrainSkipped" in calls


def test_the_retrain_time_is_written_before_the_trigger_is_sent() -> None:
    drift, target, calls = _new_leader({"lastRetrainTime": "2026-01-01T00:00:00Z"})
    asyncio.run(drift._react(target, _drift_event()))
    first_write = calls.index("write ['lastRetrainTime']")
    assert first_write < calls.index("trigger")
    assert calls[first_write:] == [
        "write ['lastRetrainTime']",
        "trigger",
        "write ['lastRetrainMessage', 'lastRetrainOutcome', 'lastRetrainTime']",
        "event RetrainTriggered",
    ]


def test_no_trigger_is_sent_when_its_time_cannot_be_recorded() -> None:
    drift, target, calls = _new_leader({})

    async def refused(*_: Any) -> None:
        raise KubeApiError(500, "InternalError", "etcd unavailable")

    drift.writer.change = refused  # type: ignore[method-assign]
    asyncio.run(drift._react(target, _drift_event()))
    assert "trigger" not in calls


class PodList:
    """The API client's pod list: `pods` ready pods of any ModelService, by name."""

    def __init__(self, pods: int) -> None:
        self.items = [
            {
                "metadata": {"name": f"ms-{i}"},
                "status": {
                    "podIP": f"10.0.0.{i}",
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
            for i in range(pods)
        ]
        self.selectors: list[str] = []

    async def request(self, method: str, path: str, params: dict[str, str]) -> dict[str, Any]:
        self.selectors.append(params["labelSelector"])
        return {"items": self.items}


def test_a_tick_reads_every_ready_pod_within_the_namespaces_read_slots() -> None:
    drift = poller(drift_reads_per_namespace=2)
    pods = PodList(5)
    drift.state.kube = pods  # type: ignore[assignment]
    in_flight, peak, urls = [0], [0], []
    answers = {"ms-3": {"drift": True, "last_drift_time": "2026-01-01T00:00:00Z"}}

    async def read(name: str, namespace: str, pod: Any = None) -> DriftReading:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.01)
        in_flight[0] -= 1
        urls.append(drift.client.url(name, namespace, pod))  # type: ignore[union-attr]
        if pod.name == "ms-1":
            raise DriftReadError("http", "GET http://10.0.0.1:8000/drift answered HTTP 500")
        more = answers.get(pod.name, {})
        return DriftReading(enabled=True, threshold=0.05, last_p_value=0.5, checks=2, **more)

    published: list[tuple[dict[str, Any], Any]] = []

    async def publish(target: Target, condition: dict[str, Any], agg: Any = None) -> bool:
        published.append((condition, agg))
        return False

    async def scenario() -> None:
        await drift.start()
        drift.client.read = read  # type: ignore[method-assign, union-attr]
        drift._publish = publish  # type: ignore[method-assign]
        key = ("ns", "ms")
        drift.state.deployments[key] = {"status": {"readyReplicas": 5}}
        try:
            await drift.tick(target)
        finally:
            await drift.stop()

    target = Target(("ns", "ms"), "uid", 1, {}, 0.0)

    asyncio.run(scenario())
    assert sorted(urls) == [f"http://10.0.0.{i}:8000/drift" for i in range(5)]
    assert peak[0] == 2
    assert pods.selectors == ["app.kubernetes.io/name=aiops-runtime,app.kubernetes.io/instance=ms"]
    ((condition, agg),) = published
    assert agg.counts() == {"read": 4, "drifting": 1, "unreadable": 1}
    assert condition["status"] == "True"
    assert "1 of 5 ready replicas unreadable (ms-1)" in condition["message"]
    assert (target.memory.failures, target.memory.next_read) == (0, 0.0), "backed off"


def test_a_pattern_naming_no_pod_is_read_once_and_lists_no_pods() -> None:
    drift = poller(drift_url_pattern="http://127.0.0.1:18702/{namespace}/{name}")
    pods = PodList(3)
    drift.state.kube = pods  # type: ignore[assignment]
    asked: list[Any] = []

    async def read(name: str, namespace: str, pod: Any = None) -> DriftReading:
        asked.append(pod)
        return DriftReading(enabled=True, threshold=0.05, last_p_value=0.5, checks=2)

    async def scenario() -> list[Any]:
        await drift.start()
        drift.client.read = read  # type: ignore[method-assign, union-attr]
        try:
            return [one.reading for one in await drift._read_replicas(drift.client, ("ns", "ms"))]  # type: ignore[arg-type]
        finally:
            await drift.stop()

    readings = asyncio.run(scenario())
    assert (asked, pods.selectors, len(readings)) == ([None], [], 1)
