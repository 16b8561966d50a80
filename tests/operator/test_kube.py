"""How the operator classifies the API server's refusals (kube.KubeApiError)."""

from __future__ import annotations

import asyncio

import kopf
import pytest
from aiohttp import web
from aiops_harness.localcluster import free_port

from aiops_operator import heap, kube
from aiops_operator.kube import KubeApiError

NAMESPACE_GOING = (
    'deployments.apps "x" is forbidden: unable to create new content in namespace ns'
    " because it is being terminated"
)
CRD_GOING = (
    'servicemonitors.monitoring.coreos.com "x" is forbidden: create not allowed while custom'
    " resource definition is terminating"
)


def test_a_terminating_namespace_is_not_an_rbac_problem() -> None:
    err = KubeApiError(403, "Forbidden", NAMESPACE_GOING)
    assert err.namespace_going
    assert not err.kind_terminating
    assert not err.permanent


def test_a_terminating_crd_is_recognised() -> None:
    err = KubeApiError(403, "Forbidden", CRD_GOING)
    assert err.kind_terminating
    assert not err.namespace_going


def test_a_namespace_already_gone_is_told_from_a_missing_object() -> None:
    gone = KubeApiError(404, "NotFound", 'namespaces "op-1" not found')
    assert gone.namespace_going
    assert gone.permanent
    missing = KubeApiError(404, "NotFound", 'configmaps "namespaces" not found')
    assert not missing.namespace_going
    assert not KubeApiError(
        404, "NotFound", "the server could not find the requested resource"
    ).namespace_going


def test_a_real_rbac_denial_is_neither() -> None:
    err = KubeApiError(403, "Forbidden", 'secrets "t" is forbidden: User "sa" cannot get resource')
    assert not err.kind_terminating
    assert not err.namespace_going


def test_rejections_of_the_object_itself_are_permanent() -> None:
    assert KubeApiError(422, "Invalid", "spec.replicas: Invalid value").permanent
    assert not KubeApiError(500, "InternalError", "etcd timeout").permanent
    assert not KubeApiError(429, "TooManyRequests", "slow down").permanent


def test_an_idle_pooled_connection_is_closed_after_idle_connection_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst's connections go soon after it (their TLS buffers then return with the heap
    trim), while one in use between requests is kept."""
    monkeypatch.setattr(kube, "IDLE_CONNECTION_S", 0.5)
    transports: list[asyncio.BaseTransport] = []

    async def discovery(request: web.Request) -> web.Response:
        assert request.transport is not None
        transports.append(request.transport)
        return web.json_response({"resources": [{"name": "configmaps"}]})

    async def story() -> tuple[bool, bool, bool]:
        app = web.Application()
        app.router.add_get("/api/v1", discovery)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        client = kube.KubeClient(kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}"))
        try:
            assert await client.serves("v1", "configmaps")
            await asyncio.sleep(0.1)
            kept = not transports[0].is_closing()
            assert await client.serves("v1", "configmaps")
            reused = transports[1] is transports[0]
            await asyncio.sleep(kube.IDLE_CONNECTION_S * 3)
            return kept, reused, transports[0].is_closing()
        finally:
            await client.close()
            await runner.cleanup()

    kept, reused, closed = asyncio.run(story())
    assert kept
    assert reused
    assert closed


def test_the_connections_of_a_burst_are_gone_before_the_heap_is_trimmed() -> None:
    # aiohttp closes idle connections in a cleanup that runs every IDLE_CONNECTION_S, its
    # schedule rounded up to a whole second: a connection idle from t is gone by t + 2x + 1.
    assert kube.IDLE_CONNECTION_S * 2 + 1 < heap.TRIM_AFTER_S
