"""Namespaced mode (AIOPS_OPERATOR_NAMESPACES=a,b) under exactly rbac.py's rules: Kopf serves
the listed namespaces without `namespaces: list/watch` (it needs that only for glob patterns),
and leaves every other namespace alone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.operator.operator_helpers import (
    Kube,
    OperatorProcess,
    example,
    install_operator_identity,
    rbac_denials,
)

pytestmark = pytest.mark.integration

# A field manager of its own shows that this operator, not the session's cluster-wide one, did
# the applies. The cluster-wide operator is paused meanwhile: both share Kopf's annotations, so
# whichever saw an object first would mark it handled for the other.
FIELD_MANAGER = "aiops-operator-namespaced"


def _namespace(cluster: Any, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def namespaces(cluster: Any, modelservice_crd: None) -> Iterator[tuple[str, str, str]]:
    """Two served namespaces and one the operator must not touch; deleted afterwards."""
    created = tuple(_namespace(cluster, p) for p in ("nsa", "nsb", "other"))
    try:
        yield created  # type: ignore[misc]
    finally:
        for name in created:
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def applied_by_us(kube: Kube, name: str) -> bool:
    """Whether this operator's field manager has applied the Deployment `name`."""
    proc = kube.kubectl(
        "get", "deployment", name, "-o", "json", "--show-managed-fields", check=False
    )
    if proc.returncode != 0:
        return False
    fields = json.loads(proc.stdout)["metadata"].get("managedFields", [])
    return any(m.get("manager") == FIELD_MANAGER for m in fields)


def _wait_served(kube: Kube) -> None:
    wait_for(f"our Deployment in {kube.namespace}", lambda: applied_by_us(kube, "served"), 30)
    wait_for(f"Ready in {kube.namespace}", lambda: kube.ready("served"), 60)


def test_namespaced_mode_serves_listed_namespaces_with_the_rbac_rules(
    cluster: Any, namespaces: tuple[str, str, str], tmp_path: Path, cluster_wide_paused: None
) -> None:
    served_a, served_b, other = namespaces
    operator = OperatorProcess(
        kubeconfig=install_operator_identity(cluster),
        log_path=tmp_path / "operator.log",
        env={
            **cluster.env,
            "AIOPS_OPERATOR_NAMESPACES": f"{served_a},{served_b}",
            "AIOPS_OPERATOR_FIELD_MANAGER": FIELD_MANAGER,
            "AIOPS_OPERATOR_METRICS_PORT": "0",
        },
    )
    operator.start()
    try:
        outside = Kube(cluster, other)
        outside.apply(example("outside"))
        for namespace in (served_a, served_b):
            Kube(cluster, namespace).apply(example("served"))
        for namespace in (served_a, served_b):
            _wait_served(Kube(cluster, namespace))
        assert outside.get("deployment", "outside") is None, "an unserved namespace was served"
    finally:
        operator.stop()
    denials = rbac_denials(operator.log_text())
    assert not denials, "RBAC denials in namespaced mode:\n" + "\n".join(denials[:5])
