"""handlers.py without a cluster: Kopf's connection pool, the ModelService status cache, the
child and ModelService caches across a delete and re-create of the same name, what a deleted
ModelService leaves behind, how many ModelServices a burst builds and applies at once."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from aiops_operator import heap
from aiops_operator.handlers import (
    _handled,
    configure,
    kopf_connection_limit,
    on_child_event,
    on_kind_served,
    remember_modelservice,
)
from aiops_operator.memo import Operator
from aiops_operator.settings import OperatorSettings
from aiops_operator.state import Outcome
from aiops_operator.status import Problem

KEY = ("ns", "a")


def test_kopfs_pool_has_streams_per_served_namespace_plus_the_request_connections() -> None:
    everywhere = kopf_connection_limit(OperatorSettings(api_connections=16))
    two = kopf_connection_limit(OperatorSettings(namespaces="a,b", api_connections=16))
    assert everywhere > 16
    assert two - 16 == 2 * (everywhere - 16) - 2  # 2 cluster-wide streams, the rest per namespace


def test_kopfs_pool_is_unbounded_for_namespace_globs() -> None:
    assert kopf_connection_limit(OperatorSettings(namespaces="op-*")) == 0
    assert kopf_connection_limit(OperatorSettings(namespaces="a, team-?")) == 0
    assert OperatorSettings(namespaces="a,b").namespace_globs() is False


def test_a_late_watch_event_does_not_bring_back_a_status_the_operator_already_replaced() -> None:
    """Watch events may trail our writes: the event of write 1 arriving after write 2 must not
    make the cache (which the next merge starts from) hold write 1's conditions again."""
    memo = Operator.create(OperatorSettings())
    memo.state.outcomes[KEY] = Outcome(1, "u1", applied=True)  # no first-sight apply

    def event(uid: str, status: dict[str, Any]) -> None:
        meta = {"name": KEY[1], "namespace": KEY[0], "uid": uid, "generation": 1}
        body = kopf.Body({"metadata": meta, "spec": {}, "status": status})
        asyncio.run(
            remember_modelservice(
                type="MODIFIED", body=body, namespace=KEY[0], name=KEY[1], memo=memo
            )
        )

    stale = {"conditions": [{"type": "Ready", "status": "False"}]}
    event("u1", stale)
    assert memo.state.modelservices[KEY]["status"] == stale  # first sight: the server's status
    written = {"conditions": [{"type": "Ready", "status": "True"}]}
    memo.state.modelservices[KEY]["status"] = written  # what StatusWriter._patch records
    event("u1", stale)
    assert memo.state.modelservices[KEY]["status"] == written
    # A write in flight while an event arrives records into the dict it started from
    # (StatusWriter._patch holds `ms` across the request): that must be the cached one.
    in_flight = memo.state.modelservices[KEY]
    event("u1", stale)
    newer = {"conditions": [{"type": "Ready", "status": "True", "reason": "ReplicasReady"}]}
    in_flight["status"] = newer
    assert memo.state.modelservices[KEY]["status"] == newer
    event("u2", stale)  # deleted and created again under the same name: a new object
    assert memo.state.modelservices[KEY]["status"] == stale


def _modelservice_event(memo: Operator, type: str, uid: str) -> None:
    meta = {"name": KEY[1], "namespace": KEY[0], "uid": uid, "generation": 1}
    body = kopf.Body({"metadata": meta, "spec": {}, "status": {}})
    asyncio.run(
        remember_modelservice(type=type, body=body, namespace=KEY[0], name=KEY[1], memo=memo)
    )


def test_the_deletion_of_an_old_object_seen_late_keeps_what_is_known_of_its_namesake() -> None:
    """Kopf handles each uid apart: the re-created ModelService's events may come before the
    old one's DELETED."""
    memo = Operator.create(OperatorSettings())
    memo.state.outcomes[KEY] = Outcome(1, "u2", applied=True)  # no first-sight apply
    _modelservice_event(memo, "ADDED", "u2")
    _modelservice_event(memo, "DELETED", "u1")
    assert memo.state.modelservices[KEY]["uid"] == "u2"
    assert memo.state.outcomes[KEY].uid == "u2"
    _modelservice_event(memo, "DELETED", "u2")
    assert KEY not in memo.state.modelservices
    assert KEY not in memo.state.outcomes


def test_the_deletion_of_an_older_child_seen_late_keeps_its_successors_deployment() -> None:
    memo = Operator.create(OperatorSettings())

    def event(type: str, uid: str) -> None:
        labels = {"app.kubernetes.io/instance": KEY[1]}
        meta = {"name": KEY[1], "namespace": KEY[0], "uid": uid, "labels": labels}
        child = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta}

        async def deliver() -> None:
            on_child_event(memo, type, child)
            await memo.status.settle()

        asyncio.run(deliver())

    event("ADDED", "d2")
    event("DELETED", "d1")
    assert KEY in memo.state.deployments
    assert memo.state.present[KEY, "Deployment"] == "d2"
    event("DELETED", "d2")
    assert KEY not in memo.state.deployments
    assert (KEY, "Deployment") not in memo.state.present


class StatusOnly:
    """A client that takes status writes (nothing here needs restoring)."""

    async def write_status(self, *_: Any) -> None:
        return None


def test_a_modelservice_deleted_before_its_children_leaves_nothing_behind() -> None:
    """Garbage collection deletes the children after their ModelService: their DELETED events
    (and the status publish a Deployment's triggers) come after the ModelService's was forgotten,
    and must not record anything about it again (a thousand deleted ModelServices would stay in
    the operator's memory)."""
    memo = Operator.create(OperatorSettings())
    memo.state.kube = StatusOnly()  # type: ignore[assignment]
    memo.state.outcomes[KEY] = Outcome(1, "u1", applied=True)  # no first-sight apply
    meta = {"name": KEY[1], "namespace": KEY[0], "uid": "u1", "generation": 1}
    ms = kopf.Body({"metadata": meta, "spec": {}, "status": {}})

    def child(kind: str) -> dict[str, Any]:
        labels = {"app.kubernetes.io/instance": KEY[1]}
        child_meta = {"name": KEY[1], "namespace": KEY[0], "uid": f"{kind}-1", "labels": labels}
        return {"apiVersion": "v1", "kind": kind, "metadata": child_meta}

    async def story() -> None:
        await remember_modelservice(type="ADDED", body=ms, namespace=KEY[0], name=KEY[1], memo=memo)
        for kind in ("Deployment", "Service", "ConfigMap"):
            on_child_event(memo, "ADDED", child(kind))
        assert memo.state.present
        assert memo.state.deployments
        await remember_modelservice(
            type="DELETED", body=ms, namespace=KEY[0], name=KEY[1], memo=memo
        )
        on_child_event(memo, "MODIFIED", child("Deployment"))
        for kind in ("Deployment", "Service", "ConfigMap"):
            on_child_event(memo, "DELETED", child(kind))
        await memo.status.settle()

    asyncio.run(story())
    assert memo.state.present == {}
    assert memo.state.deployments == {}
    assert memo.state.modelservices == {}
    assert memo.state.outcomes == {}
    assert memo.state.key_locks == {}
    assert memo.state.key_lock(KEY) is not memo.state.key_lock(KEY)  # not kept once forgotten
    assert memo.status._locks == {}
    assert memo.status._scheduled == {}


def test_the_heap_is_trimmed_after_the_children_of_deleted_modelservices_are_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A namespace of ModelServices deleted: their DELETED events come first, their children's
    (garbage collection) for a while after. The trim waits for the children's too: one due
    after the ModelServices' alone would run while their children's events are still parsed."""
    trims: list[float] = []
    monkeypatch.setattr(heap, "trim", lambda: trims.append(0.0) or True)
    memo = dataclasses.replace(Operator.create(OperatorSettings()), heap=heap.Trimmer(after_s=0.2))
    memo.state.kube = StatusOnly()  # type: ignore[assignment]
    labels = {"app.kubernetes.io/instance": KEY[1]}
    child = {"kind": "ConfigMap", "metadata": {"name": "c", "namespace": KEY[0], "labels": labels}}
    ms = kopf.Body({"metadata": {"name": KEY[1], "namespace": KEY[0], "uid": "u1"}, "spec": {}})

    async def story() -> None:
        await remember_modelservice(
            type="DELETED", body=ms, namespace=KEY[0], name=KEY[1], memo=memo
        )
        for _ in range(8):  # its children go over the next 0.4 s
            await asyncio.sleep(0.05)
            on_child_event(memo, "DELETED", child)
        assert trims == []  # 0.4 s after the ModelService's event: not yet
        await asyncio.sleep(0.4)
        assert len(trims) == 1
        await memo.heap.stop()

    asyncio.run(story())


class HeldStatus:
    """A client whose status writes wait until released, recording what they wrote."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.written: list[dict[str, Any]] = []

    async def write_status(self, *args: Any) -> None:
        await self.release.wait()
        self.written.append(args[-1])


def test_a_deployment_event_leaves_the_status_write_to_the_background() -> None:
    """The children's watch hands each event over and goes on reading its stream: a held status
    write must not hold it. The write still happens, with the latest facts."""
    memo = Operator.create(OperatorSettings())
    held = HeldStatus()
    memo.state.kube = held  # type: ignore[assignment]
    memo.state.outcomes[KEY] = Outcome(1, "u1", applied=True)  # no first-sight apply
    meta = {"name": KEY[1], "namespace": KEY[0], "uid": "u1", "generation": 1}
    ms = kopf.Body({"metadata": meta, "spec": {}, "status": {}})

    def deployment(ready: int) -> dict[str, Any]:
        labels = {"app.kubernetes.io/instance": KEY[1]}
        child_meta = {
            "name": KEY[1],
            "namespace": KEY[0],
            "uid": "d1",
            "labels": labels,
            "ownerReferences": [{"uid": "u1"}],
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": child_meta,
            "spec": {"replicas": 1},
            "status": {"replicas": 1, "readyReplicas": ready},
        }

    async def story() -> None:
        await remember_modelservice(type="ADDED", body=ms, namespace=KEY[0], name=KEY[1], memo=memo)
        for ready in (0, 1):
            on_child_event(memo, "MODIFIED", deployment(ready))  # returns: the write is held
            await asyncio.sleep(0.5)  # the publish's coalescing delay is over: it waits to write
        for _ in range(5):  # events while a publish waits join it: no task per event
            on_child_event(memo, "MODIFIED", deployment(1))
        assert len(memo.status._background) == 3  # two waiting to write, one scheduled
        assert held.written == []
        held.release.set()
        await memo.status.settle()

    asyncio.run(story())
    assert held.written, "the status was never written"
    assert held.written[-1]["readyReplicas"] == 1


def test_configure_hands_the_worker_bounds_to_kopf(tmp_path: Any, monkeypatch: Any) -> None:
    """worker_limit and worker_idle_s reach Kopf's queueing settings (a burst then waits in the
    watch stream instead of as N parsed events in memory)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    memo = Operator.create(OperatorSettings(worker_limit=48, worker_idle_s=1.5))
    settings = kopf.OperatorSettings()

    async def run() -> None:
        await configure(settings=settings, memo=memo)
        assert memo.state.kube is not None
        await memo.state.kube.close()

    asyncio.run(run())
    assert settings.queueing.worker_limit == 48
    assert settings.queueing.idle_timeout == 1.5
    assert kopf.OperatorSettings().queueing.idle_timeout != 1.5  # not Kopf's default by chance


class CountingApplies:
    """A client that answers each apply with the whole live object (managedFields and all),
    slowly, and counts the ModelServices whose applies are in flight at once."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.most = 0
        self.applied: list[tuple[str, str]] = []

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        self.in_flight[name] = self.in_flight.get(name, 0) + 1
        self.most = max(self.most, len(self.in_flight))
        await asyncio.sleep(0.01)
        self.in_flight[name] -= 1
        if not self.in_flight[name]:
            del self.in_flight[name]
        self.applied.append((manifest["kind"], name))
        live = {**manifest, "status": {"replicas": 1}}
        live["metadata"] = {**manifest["metadata"], "uid": f"{name}-child"}
        live["metadata"]["managedFields"] = [{"manager": "aiops-operator", "fieldsV1": {}}]
        return live

    async def write_status(self, *_: Any) -> None:
        return None


def test_a_burst_builds_and_applies_only_api_connections_modelservices_at_once() -> None:
    """40 new ModelServices at once with api_connections=4: at most 4 have children in flight
    (the rest wait before their manifests are built), every child of all 40 is applied, and
    of each Deployment's answer only its status facts are kept."""
    example = yaml.safe_load((Path(__file__).parents[2] / "examples/modelservice.yaml").read_text())
    memo = Operator.create(OperatorSettings(api_connections=4))
    client = CountingApplies()
    memo.state.kube = client  # type: ignore[assignment]
    memo.state.servicemonitors = (float("inf"), False)  # discovery answered: not served

    def body(i: int) -> kopf.Body:
        meta = {"name": f"m{i}", "namespace": "ns", "uid": f"u{i}", "generation": 1}
        return kopf.Body({"metadata": meta, "spec": example["spec"], "status": {}})

    async def story() -> None:
        await asyncio.gather(
            *(
                remember_modelservice(
                    type="ADDED", body=body(i), namespace="ns", name=f"m{i}", memo=memo
                )
                for i in range(40)
            )
        )
        await memo.status.settle()

    asyncio.run(story())
    assert 1 < client.most <= 4
    assert {name for _, name in client.applied} == {f"m{i}" for i in range(40)}
    assert len(client.applied) == 40 * len({kind for kind, _ in client.applied})
    assert all(memo.state.outcomes[("ns", f"m{i}")].applied for i in range(40))
    facts = memo.state.deployments[("ns", "m7")]
    assert "managedFields" not in facts["metadata"]
    assert facts["status"] == {"replicas": 1}


class HeldApplies(CountingApplies):
    """Applies that wait until released (the first ModelService's, while the test acts)."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.release = asyncio.Event(), asyncio.Event()

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.started.set()
        await self.release.wait()
        return await super().apply(manifest)

    async def serves(self, *_: Any) -> bool:
        return True  # discovery, asked again by the re-apply: served now


def test_servicemonitors_served_while_a_modelservice_is_being_applied_reach_it_too() -> None:
    """A ModelService planned while ServiceMonitors were not served yet, and still being applied
    when the children's watch learns they are, gets its ServiceMonitor once that apply is done
    (it was skipped before: it was not applied yet when the news came, so nothing re-applied
    it; seen on a fresh CI machine)."""
    example = yaml.safe_load((Path(__file__).parents[2] / "examples/modelservice.yaml").read_text())
    memo = Operator.create(OperatorSettings())
    client = HeldApplies()
    memo.state.kube = client  # type: ignore[assignment]
    memo.state.servicemonitors = (float("inf"), False)  # cached: not served
    meta = {"name": KEY[1], "namespace": KEY[0], "uid": "u1", "generation": 1}
    body = kopf.Body({"metadata": meta, "spec": example["spec"], "status": {}})

    async def story() -> None:
        first = asyncio.create_task(
            remember_modelservice(type="ADDED", body=body, namespace=KEY[0], name=KEY[1], memo=memo)
        )
        await client.started.wait()  # planned, its applies held
        assert not memo.state.outcomes[KEY].applied
        memo.state.servicemonitors = (0.0, True)  # expired: a re-apply asks discovery again
        on_kind_served(memo, "ServiceMonitor", True)
        client.release.set()
        await first
        await memo.children.jobs.settle()
        await memo.status.settle()

    asyncio.run(story())
    kinds = [kind for kind, _ in client.applied]
    assert kinds.count("ServiceMonitor") == 1
    assert kinds.count("Deployment") == 2  # the first apply, and again with the ServiceMonitor
    outcome = memo.state.outcomes[KEY]
    assert outcome.applied
    assert outcome.recipe is not None
    assert outcome.recipe.options.servicemonitor_available


def test_kopf_is_told_a_generation_is_handled_once_applied_or_rejected_by_this_process() -> None:
    memo = Operator.create(OperatorSettings())
    meta = {"name": KEY[1], "namespace": KEY[0], "uid": "u1", "generation": 2}
    ms = kopf.Body({"metadata": meta, "spec": {}})
    assert not _handled(memo, ms)  # not known (e.g. after a restart): Kopf calls reconcile
    memo.state.outcomes[KEY] = Outcome(2, "u1")
    assert not _handled(memo, ms)  # planned, not applied yet
    memo.state.outcomes[KEY] = Outcome(2, "u1", applied=True)
    assert _handled(memo, ms)
    memo.state.outcomes[KEY] = Outcome(1, "u1", applied=True)
    assert not _handled(memo, ms)  # a new generation
    memo.state.outcomes[KEY] = Outcome(2, "u0", applied=True)
    assert not _handled(memo, ms)  # a namesake's
    memo.state.outcomes[KEY] = Outcome(2, "u1", Problem("InvalidSpec", "bad"))
    assert _handled(memo, ms)  # rejected: not retried until the spec changes
    memo.state.outcomes[KEY] = Outcome(2, "u1", Problem("X", "y", blocking=False))
    assert not _handled(memo, ms)
