"""A small async Kubernetes client: server-side apply, delete, status patch and discovery.

Built on aiohttp (already Kopf's HTTP stack) and Kopf's own credential loaders, so the operator
carries no generated client models. Server-side apply with a fixed field manager and `force`
makes every reconcile idempotent and takes fields back from whoever edited them by hand.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf

# An idle pooled connection to the API server is closed after this (aiohttp's keep-alive
# timeout; its cleanup runs that often, so within twice this, rounded up to a second). A burst
# opens the whole pool; closed soon after it, the connections' TLS buffers (~0.4 MiB each) are
# free before the heap is trimmed (heap.TRIM_AFTER_S), not kept resident while the operator idles.
IDLE_CONNECTION_S = 4.0


def api_connector(connection: kopf.ConnectionInfo, limit: int) -> aiohttp.TCPConnector:
    """A pool of connections to the API server (ours and Kopf's): its TLS, at most `limit`
    (0: no bound), each closed after IDLE_CONNECTION_S idle."""
    return aiohttp.TCPConnector(
        ssl=connection.as_ssl_context(), limit=limit, keepalive_timeout=IDLE_CONNECTION_S
    )


PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "ConfigMap": "configmaps",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "ServiceMonitor": "servicemonitors",
    "NetworkPolicy": "networkpolicies",
    "ModelService": "modelservices",
}


class KubeApiError(Exception):
    """A non-2xx answer of the API server, with its Status reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def namespace_going(self) -> bool:
        """The namespace is being deleted (nothing new may be created in it) or is gone
        already: its ModelServices go with it, their DELETED events are on the way."""
        terminating = self.status == 403 and "being terminated" in self.message
        return terminating or (self.status == 404 and self.message.startswith('namespaces "'))

    @property
    def kind_terminating(self) -> bool:
        """The kind's CustomResourceDefinition is being deleted: no new object of it."""
        return self.status == 403 and "definition is terminating" in self.message

    @property
    def permanent(self) -> bool:
        """Retrying the same request cannot succeed (the object itself is rejected)."""
        return self.status in (400, 404, 409, 422)


def load_connection() -> kopf.ConnectionInfo:
    """Credentials the way kubectl finds them: in-cluster service account, else KUBECONFIG."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings)
    info = info or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no in-cluster service account and no kubeconfig found")
    return info


def resource_path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """REST path of a collection or object (core group under /api, others under /apis)."""
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{name}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def object_path(manifest: dict[str, Any]) -> str:
    """REST path of the object a manifest describes."""
    meta = manifest["metadata"]
    return resource_path(
        manifest["apiVersion"], PLURALS[manifest["kind"]], meta.get("namespace"), meta["name"]
    )


class KubeClient:
    """One aiohttp session to one API server. Create and use it inside the running event loop."""

    def __init__(
        self,
        connection: kopf.ConnectionInfo | None = None,
        *,
        field_manager: str = "aiops-operator",
        timeout_s: float = 30.0,
        max_connections: int = 100,
    ) -> None:
        self._connection = connection or load_connection()
        self._field_manager = field_manager
        # No total timeout: under a burst, requests queue for a pooled connection, and that wait
        # is not the server being slow. Connecting and each read are bounded instead.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_s, sock_read=timeout_s
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = api_connector(self._connection, self._max_connections)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._connection.as_http_headers(),
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the JSON answer or raise KubeApiError. Re-log in once on 401."""
        for attempt in range(2):
            session = self._open()
            data = None if body is None else json.dumps(body)
            headers = {"Content-Type": content_type} if body is not None else {}
            url = self._connection.server.rstrip("/") + path
            async with session.request(
                method, url, data=data, headers=headers, params=params
            ) as resp:
                text = await resp.text()
                if resp.status == 401 and attempt == 0:
                    # Bound tokens rotate: read the credentials again and retry once.
                    await self.close()
                    self._connection = load_connection()
                    continue
                if resp.status >= 400:
                    raise _api_error(resp.status, text)
                return json.loads(text) if text else {}
        raise AssertionError("unreachable")

    async def apply(self, manifest: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply `manifest` as this client's field manager; returns the live object."""
        params = {"fieldManager": self._field_manager, "force": "true" if force else "false"}
        return await self.request(
            "PATCH",
            object_path(manifest),
            body=manifest,
            content_type="application/apply-patch+yaml",
            params=params,
        )

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Plain POST of a new object (used by the benchmark's floor and by tests)."""
        meta = manifest["metadata"]
        path = resource_path(manifest["apiVersion"], PLURALS[manifest["kind"]], meta["namespace"])
        return await self.request("POST", path, body=manifest)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete one object; False when it was already gone."""
        path = resource_path(api_version, PLURALS[kind], namespace, name)
        try:
            await self.request("DELETE", path, body={"propagationPolicy": "Background"})
        except KubeApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    async def write_status(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        uid: str,
        status: dict[str, Any],
    ) -> dict[str, Any]:
        """Replace the status of the object `name` if it still has this uid (else 422).

        A JSON Patch whose first operation tests metadata.uid: the status subresource ignores
        metadata in a merge patch, so a write meant for a deleted object would otherwise land on
        a new object of the same name, where nothing would ever correct it.
        """
        path = resource_path(api_version, PLURALS[kind], namespace, name, "status")
        operations = [
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "add", "path": "/status", "value": status},
        ]
        return await self.request(
            "PATCH", path, body=operations, content_type="application/json-patch+json"
        )

    async def uid_of(self, api_version: str, kind: str, namespace: str, name: str) -> str | None:
        """The uid of the object `name` now, None if there is none (a list: RBAC has no get)."""
        path = resource_path(api_version, PLURALS[kind], namespace)
        answer = await self.request("GET", path, params={"fieldSelector": f"metadata.name={name}"})
        items = answer.get("items") or []
        return str(items[0]["metadata"]["uid"]) if items else None

    async def serves(self, api_version: str, plural: str) -> bool:
        """Whether the API server serves `plural` in `api_version` (discovery)."""
        try:
            answer = await self.request("GET", resource_path(api_version, "").rstrip("/"))
        except KubeApiError as err:
            if err.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in answer.get("resources", []))

    async def watch(
        self, path: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Stream the watch events ({type, object}) of a collection until the server ends it."""
        session = self._open()
        query = {"watch": "true", **(params or {})}
        no_timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        url = self._connection.server.rstrip("/") + path
        async with session.get(url, params=query, timeout=no_timeout) as resp:
            if resp.status >= 400:
                raise _api_error(resp.status, await resp.text())
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)


def _api_error(status: int, text: str) -> KubeApiError:
    try:
        answer = json.loads(text)
    except ValueError:
        return KubeApiError(status, "Unknown", text[:500])
    return KubeApiError(status, answer.get("reason", "Unknown"), answer.get("message", text[:500]))
