"""handlers.py without a cluster: Kopf's connection pool for the served namespaces."""

from __future__ import annotations

from aiops_operator.handlers import kopf_connection_limit
from aiops_operator.settings import OperatorSettings


def test_kopfs_pool_has_streams_per_served_namespace_plus_the_request_connections() -> None:
    everywhere = kopf_connection_limit(OperatorSettings(api_connections=16))
    two = kopf_connection_limit(OperatorSettings(namespaces="a,b", api_connections=16))
    assert everywhere > 16
    assert two - 16 == 2 * (everywhere - 16) - 2  # 2 cluster-wide streams, the rest per namespace


def test_kopfs_pool_is_unbounded_for_namespace_globs() -> None:
    assert kopf_connection_limit(OperatorSettings(namespaces="op-*")) == 0
    assert kopf_connection_limit(OperatorSettings(namespaces="a, team-?")) == 0
    assert OperatorSettings(namespaces="a,b").namespace_globs() is False
