"""The children's watch: its scopes and namespace patterns, its keyed background jobs, and its
list+watch against a real API server (events in order, other objects left out, a watch from a
resourceVersion the server no longer has ends in a new list that reports what vanished)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiops_operator.child_watch import ChildWatch, KeyedJobs, scopes, served
from aiops_operator.kube import KubeApiError, KubeClient, load_connection
from aiops_operator.settings import OperatorSettings
from tests.helpers import wait_for
from tests.operator.operator_helpers import Kube


def test_one_stream_per_listed_namespace_else_one_cluster_wide() -> None:
    assert scopes(OperatorSettings()) == [None]
    assert scopes(OperatorSettings(namespaces="a, b")) == ["a", "b"]
    assert scopes(OperatorSettings(namespaces="a,team-*")) == [None]


@pytest.mark.parametrize(
    ("namespaces", "namespace", "expected"),
    [
        ("", "anything", True),
        ("a,b", "b", True),
        ("a,b", "c", False),
        ("team-*", "team-x", True),
        ("team-*", "other", False),
        ("team-?", "team-10", False),
        ("!kube-*", "default", True),
        ("!kube-*", "kube-system", False),
        ("op-*,!op-pr-*", "op-pr-1", True),  # as Kopf: each comma part is a pattern of its own
    ],
)
def test_served_namespaces_follow_kopfs_patterns(
    namespaces: str, namespace: str, expected: bool
) -> None:
    assert served(OperatorSettings(namespaces=namespaces), namespace) is expected


def test_keyed_jobs_run_one_at_a_time_per_key_and_the_latest_waiting_one_wins() -> None:
    ran: list[str] = []

    async def story() -> None:
        jobs = KeyedJobs()
        gate = asyncio.Event()

        def job(name: str, wait: bool = False, fail: bool = False) -> Any:
            async def run() -> None:
                if wait:
                    await gate.wait()
                ran.append(name)
                if fail:
                    raise RuntimeError(name)

            return run

        jobs.submit("k", job("first", wait=True, fail=True))
        jobs.submit("k", job("second"))
        jobs.submit("k", job("third"))  # replaces "second", still waiting
        jobs.submit("other", job("other"))
        await asyncio.sleep(0.05)
        assert ran == ["other"]
        gate.set()
        await jobs.settle()

    asyncio.run(story())
    assert ran == ["other", "first", "third"]


class AlwaysGone:
    """An API server whose watch cache lags: every list answers, every watch fails at once,
    half with an ERROR event, half by refusing the watch with 410."""

    def __init__(self) -> None:
        self.lists = 0

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        self.lists += 1
        await asyncio.sleep(0)  # as a real request: the loop runs others meanwhile
        return {"items": [], "metadata": {"resourceVersion": str(self.lists)}}

    async def watch(self, path: str, params: dict[str, str]) -> Any:
        if self.lists % 2:
            raise KubeApiError(410, "Expired", "too old resource version")
        yield {"type": "ERROR", "object": {"message": "Too large resource version"}}


def test_a_server_that_fails_every_watch_at_once_is_not_listed_in_a_loop() -> None:
    """A Gone long after the list lists again at once (as a reflector); one right after a list
    backs off 1, 2, 4 ... s, so 3.5 s see 3 lists, not thousands."""
    client = AlwaysGone()

    async def story() -> None:
        watch = ChildWatch(OperatorSettings())
        stream = watch.stream(client, "v1", "ConfigMap", None, lambda *_: None)  # type: ignore[arg-type]
        task = asyncio.ensure_future(stream)
        await asyncio.sleep(3.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(story())
    assert 2 <= client.lists <= 3


def configmap(kube: Kube, name: str, managed: bool = True) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": name}
    if managed:
        labels["app.kubernetes.io/managed-by"] = "aiops-operator"
    meta = {"name": name, "namespace": kube.namespace, "labels": labels}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "1"}}


@pytest.mark.integration
def test_the_stream_delivers_its_kinds_events_in_order_and_no_others(
    kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.cluster.kubeconfig))
    seen: list[tuple[str, str, str]] = []

    def on_event(type: str, obj: dict[str, Any]) -> None:
        seen.append((type, obj["kind"], obj["metadata"]["name"]))

    async def story() -> None:
        watch = ChildWatch(OperatorSettings(namespaces=kube.namespace))
        client = KubeClient(load_connection(), max_connections=0)
        kube.apply(configmap(kube, "before"))
        task = asyncio.ensure_future(
            watch.stream(client, "v1", "ConfigMap", kube.namespace, on_event)
        )
        try:
            await asyncio.to_thread(
                wait_for, "the listing", lambda: ("ADDED", "ConfigMap", "before") in seen, 30
            )
            await asyncio.to_thread(kube.apply, configmap(kube, "unmanaged", managed=False))
            await asyncio.to_thread(kube.apply, configmap(kube, "after"))
            changed = {**configmap(kube, "after"), "data": {"k": "2"}}
            await asyncio.to_thread(kube.apply, changed)
            await asyncio.to_thread(kube.kubectl, "delete", "configmap", "after")
            await asyncio.to_thread(
                wait_for, "the deletion", lambda: ("DELETED", "ConfigMap", "after") in seen, 30
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()

    asyncio.run(story())
    assert [s for s in seen if s[2] == "after"] == [
        ("ADDED", "ConfigMap", "after"),
        ("MODIFIED", "ConfigMap", "after"),
        ("DELETED", "ConfigMap", "after"),
    ]
    assert not [s for s in seen if s[2] == "unmanaged"]


class ExpiringWatch(KubeClient):
    """The real API server, except that the first watch ends, once `expire` is set, with the
    ERROR event a server sends for a resourceVersion it no longer has (410 Expired). Kubernetes
    1.35's watch cache serves old versions from its window, so a real 410 needs that window to
    roll over, which a test cannot bring about quickly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expire = asyncio.Event()
        self.expired = False

    async def watch(self, path: str, params: dict[str, str] | None = None) -> Any:
        if not self.expired:
            await self.expire.wait()
            self.expired = True
            status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
            yield {"type": "ERROR", "object": status}
            return
        async for event in super().watch(path, params):
            yield event


@pytest.mark.integration
def test_a_watch_the_server_cannot_resume_lists_again_and_reports_what_vanished(
    kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After 410 Gone (as after a long disconnection) the stream lists again, and reports the
    child deleted meanwhile as DELETED; the one still there is listed again, not deleted."""
    monkeypatch.setenv("KUBECONFIG", str(kube.cluster.kubeconfig))
    seen: list[tuple[str, str, str]] = []

    def deliver(type: str, obj: dict[str, Any]) -> None:
        seen.append((type, obj["metadata"]["name"], obj["metadata"]["uid"]))

    kube.apply(configmap(kube, "stays"))
    kube.apply(configmap(kube, "goes"))

    async def story() -> None:
        watch = ChildWatch(OperatorSettings(namespaces=kube.namespace))
        client = ExpiringWatch(load_connection(), max_connections=0)
        task = asyncio.ensure_future(
            watch.stream(client, "v1", "ConfigMap", kube.namespace, deliver)
        )
        try:
            await asyncio.to_thread(wait_for, "the listing", lambda: len(seen) == 2, 30)
            await asyncio.to_thread(kube.kubectl, "delete", "configmap", "goes")
            client.expire.set()
            await asyncio.to_thread(
                wait_for, "the relist", lambda: any(s[0] == "DELETED" for s in seen), 30
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()

    asyncio.run(story())
    listed = [s for s in seen if s[0] == "ADDED"]
    assert sorted(s[1] for s in listed) == ["goes", "stays", "stays"]  # listed twice, once
    goes_uid = next(s[2] for s in listed if s[1] == "goes")
    assert ("DELETED", "goes", goes_uid) in seen
    assert not [s for s in seen if s[0] == "DELETED" and s[1] == "stays"]
