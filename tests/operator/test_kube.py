"""How the operator classifies the API server's refusals (kube.KubeApiError)."""

from __future__ import annotations

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
