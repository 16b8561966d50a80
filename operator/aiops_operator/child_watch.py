"""The children's watch: one list+watch stream per child kind and scope, no worker per object.

Kopf starts a worker task per object of every watched kind, and an idle worker keeps its
object's last event, parsed whole, for its idle timeout. Mid-burst at N=600 that was ~3,900
tasks and ~1,200 full Deployments (with managedFields) alive at once, most of the operator's
peak memory. Children need none of Kopf's machinery (no progress, no diff, no retries), so their
events are read here, as client-go's reflector reads them: list, then watch from the list's
resourceVersion, again when the server ends the stream, and a new list after `410 Gone` (or any
ERROR event; repeats right after a list back off), which also reports as DELETED what vanished
meanwhile. Each event is handed to `on_event` at once (it must not wait on the API: it reduces
the object to the facts the operator keeps) and dropped; the API work an event asks for (a
restore) goes to `KeyedJobs`.

Scopes: one stream per served namespace, or one cluster-wide when all namespaces or namespace
globs are served (globs need the cluster-wide rights anyway); with globs, events of other
namespaces are dropped here (`served`). A kind the API server does not serve (the Prometheus
Operator's ServiceMonitor) is asked for again every `discovery_ttl_s`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import aiohttp

from aiops_operator import manifests
from aiops_operator.kube import PLURALS, KubeApiError, KubeClient, resource_path
from aiops_operator.settings import OperatorSettings

log = logging.getLogger("aiops_operator")

OnEvent = Callable[[str, dict[str, Any]], None]  # (ADDED|MODIFIED|DELETED, child object)
OnServed = Callable[[str, bool], None]  # (kind, whether the API server serves it now)
PAGE = 500  # objects per list request
WATCH_TIMEOUT_S = 300  # the server ends each watch after this; the stream then watches again
BACKOFF_MAX_S = 60.0
GONE_QUICK_S = 5.0  # a Gone this soon after the list counts as a repeat: back off


class Gone(Exception):
    """The watch cannot go on from its resourceVersion: list again."""


def scopes(settings: OperatorSettings) -> list[str | None]:
    """The namespaces to watch children in; [None] for one cluster-wide watch."""
    names = settings.namespace_list()
    if not names or settings.namespace_globs():
        return [None]
    return list(names)


def served(settings: OperatorSettings, namespace: str) -> bool:
    """Whether `namespace` is one the operator serves (Kopf's patterns: each part a glob, a
    part starting with ! matching every namespace but those)."""
    patterns = settings.namespace_list()
    if not patterns:
        return True
    for pattern in patterns:
        if pattern.startswith("!"):
            if not fnmatch.fnmatchcase(namespace, pattern[1:]):
                return True
        elif fnmatch.fnmatchcase(namespace, pattern):
            return True
    return False


def stub(
    api_version: str, kind: str, namespace: str, name: str, uid: str, instance: str
) -> dict[str, Any]:
    """The least of a child that its DELETED handling reads, for one that vanished unseen."""
    labels = {manifests.LABEL_INSTANCE: instance}
    meta = {"name": name, "namespace": namespace, "uid": uid, "labels": labels}
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


class KeyedJobs:
    """Background API work, at most one job per key at a time; a job submitted while one of
    its key runs replaces any waiting one and runs after it (the latest word wins)."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[None]] = {}
        self._waiting: dict[Hashable, Callable[[], Awaitable[None]]] = {}

    def submit(self, key: Hashable, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job()` now, or after the running job of `key`."""
        if key in self._running:
            self._waiting[key] = job
            return
        self._running[key] = asyncio.ensure_future(self._run(key, job))

    async def _run(self, key: Hashable, job: Callable[[], Awaitable[None]]) -> None:
        try:
            while True:
                try:
                    await job()
                except Exception as exc:  # one failed restore must not stop the next
                    log.warning("child job failed: %r", exc)
                next_job = self._waiting.pop(key, None)
                if next_job is None:
                    return
                job = next_job
        finally:
            self._running.pop(key, None)

    async def settle(self) -> None:
        """Wait until no job runs or waits."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every job."""
        self._waiting.clear()
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)


class ChildWatch:
    """The streams of every child kind in every scope; `start` at operator startup."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.jobs = KeyedJobs()
        self._client: KubeClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # (kind, scope) -> whether its last list was answered (False: the kind is not served)
        self.served: dict[tuple[str, str | None], bool] = {}
        self._on_served: OnServed | None = None

    def start(
        self, client: KubeClient, on_event: OnEvent, on_served: OnServed | None = None
    ) -> None:
        """Start one stream per child kind and scope. `client` is the streams' own: each
        stream holds one of its connections for as long as it runs. `on_served(kind, served)`
        is told when a stream first learns whether its kind is served, and whenever that
        changes (the Prometheus Operator's CRDs installed or removed while the operator runs)."""
        self._client, self._on_served = client, on_served
        for api_version, kind in manifests.CHILD_KINDS:
            for namespace in scopes(self.settings):
                stream = self.stream(client, api_version, kind, namespace, on_event)
                self._tasks.append(asyncio.ensure_future(stream))

    def _report_served(self, kind: str, namespace: str | None, served: bool) -> None:
        if self.served.get((kind, namespace)) is served:
            return
        self.served[(kind, namespace)] = served
        if self._on_served is not None:
            try:
                self._on_served(kind, served)
            except Exception:
                log.exception("change of a served kind not handled: %s", kind)

    async def stop(self) -> None:
        """Stop the streams and the jobs; close the streams' client."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.jobs.stop()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def stream(
        self,
        client: KubeClient,
        api_version: str,
        kind: str,
        namespace: str | None,
        on_event: OnEvent,
    ) -> None:
        """List and watch one child kind in one scope, forever."""
        plural = PLURALS[kind]
        path = resource_path(api_version, plural, namespace)
        known: dict[str, tuple[str, str, str]] = {}  # uid -> (namespace, name, instance label)
        failures = gones = 0
        listed_at = 0.0
        clock = asyncio.get_running_loop().time

        def deliver(type: str, obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            ns, uid = meta.get("namespace") or "", meta.get("uid") or ""
            if namespace is None and not served(self.settings, ns):
                return
            if type == "DELETED":
                known.pop(uid, None)
            else:
                instance = (meta.get("labels") or {}).get(manifests.LABEL_INSTANCE) or ""
                known[uid] = (ns, meta.get("name") or "", instance)
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", kind)
            try:
                on_event(type, obj)
            except Exception:  # a bug for one object must not end the stream of all
                log.exception("child event not handled: %s %s/%s", kind, ns, meta.get("name"))

        while True:
            try:
                version = await self._list(client, path, api_version, kind, known, deliver)
                self._report_served(kind, namespace, True)
                failures, listed_at = 0, clock()
                while True:
                    began = clock()
                    version = await self._watch(client, path, version, deliver)
                    if clock() - began < 1:
                        await asyncio.sleep(1)  # a server that ends watches at once: no spin
            except Gone:
                # List again at once, as a reflector does; but a server that answers each new
                # watch with an ERROR (a lagging watch cache) is not listed in a loop.
                gones = gones + 1 if clock() - listed_at < GONE_QUICK_S else 0
                if gones:
                    await asyncio.sleep(min(BACKOFF_MAX_S, float(2 ** min(gones - 1, 6))))
                continue
            except KubeApiError as err:
                failures += 1
                if err.status == 404:  # the kind is not served (yet): ask again later
                    self._report_served(kind, namespace, False)
                    log.debug("%s not served; asking again later", plural)
                    await asyncio.sleep(self.settings.discovery_ttl_s)
                    continue
                log.warning("cannot watch %s in %s: %s", plural, namespace or "all namespaces", err)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                failures += 1
                log.info("watch of %s ended: %r; watching again", plural, exc)
            await asyncio.sleep(min(BACKOFF_MAX_S, float(2 ** min(failures, 6))))

    async def _list(
        self,
        client: KubeClient,
        path: str,
        api_version: str,
        kind: str,
        known: dict[str, tuple[str, str, str]],
        deliver: Callable[[str, dict[str, Any]], None],
    ) -> str:
        """Deliver every child as ADDED, and as DELETED every one known before that is gone;
        return the list's resourceVersion."""
        params = {"labelSelector": manifests.MANAGED_SELECTOR, "limit": str(PAGE)}
        before, seen = dict(known), set[str]()
        while True:
            try:
                answer = await client.request("GET", path, params=params)
            except KubeApiError as err:
                if err.status == 410 and "continue" in params:  # the paging token expired
                    raise Gone(str(err)) from err
                raise
            for obj in answer.get("items") or []:
                seen.add((obj.get("metadata") or {}).get("uid") or "")
                deliver("ADDED", obj)
            meta = answer.get("metadata") or {}
            if not meta.get("continue"):
                break
            params = {**params, "continue": meta["continue"]}
        for uid, (ns, name, instance) in before.items():
            if uid not in seen:
                deliver("DELETED", stub(api_version, kind, ns, name, uid, instance))
        return str(meta.get("resourceVersion") or "")

    async def _watch(
        self,
        client: KubeClient,
        path: str,
        version: str,
        deliver: Callable[[str, dict[str, Any]], None],
    ) -> str:
        """Deliver the events from `version` until the server ends the watch; return the last
        resourceVersion seen. Raises Gone when the stream must be listed again."""
        params = {
            "labelSelector": manifests.MANAGED_SELECTOR,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_TIMEOUT_S),
        }
        try:
            async for event in client.watch(path, params):
                type, obj = event.get("type"), event.get("object") or {}
                if type == "ERROR":  # 410 Gone, or a lagging watch cache: only a list recovers
                    raise Gone(obj.get("message") or "")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if type in ("ADDED", "MODIFIED", "DELETED"):
                    deliver(type, obj)
        except KubeApiError as err:
            if err.status == 410:  # the watch itself refused: the resourceVersion is too old
                raise Gone(str(err)) from err
            raise
        return version
