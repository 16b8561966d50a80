"""Fixtures of the operator tests: the CRD installed, the operator running as its own
ServiceAccount, and a fresh namespace that enforces Pod Security `restricted`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.operator.operator_helpers import (
    REPO_ROOT,
    Kube,
    OperatorProcess,
    install_operator_identity,
    rbac_denials,
)

NAMESPACE_PREFIX = "op-"  # of every namespace the session's operator serves


@pytest.fixture(scope="session")
def modelservice_crd(cluster: Any) -> None:
    """The generated CRD, applied with kubectl and Established."""
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    # `kubectl wait` fails (instead of waiting) while the new CRD has no status yet.
    wait_for(
        "the CRD Established",
        lambda: cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=5s",
            "crd/modelservices.aiops-quality.io", check=False,
        ).returncode == 0,
        30,
    )  # fmt: skip


@pytest.fixture(scope="session")
def operator_process(
    cluster: Any, modelservice_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """`aiops-operator run` under a ServiceAccount bound to exactly rbac.py's rules, serving only
    this folder's namespaces (`op-*`, the `kube` fixture's): other test areas' ModelServices on
    the shared cluster are not its business."""
    kubeconfig = install_operator_identity(cluster)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    env = {**cluster.env, "AIOPS_OPERATOR_NAMESPACES": f"{NAMESPACE_PREFIX}*"}
    operator = OperatorProcess(kubeconfig=kubeconfig, log_path=log, env=env)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()
        denials = rbac_denials(operator.log_text())
        assert not denials, "the operator hit RBAC denials:\n" + "\n".join(denials[:5])


@pytest.fixture
def kube(cluster: Any, modelservice_crd: None) -> Iterator[Kube]:
    """A fresh namespace enforcing Pod Security `restricted`; deleted afterwards."""
    namespace = f"{NAMESPACE_PREFIX}{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl(
        "label", "namespace", namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    try:
        yield Kube(cluster, namespace)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def operator_log(operator_process: OperatorProcess) -> Path:
    """Path of the running operator's log file."""
    return operator_process.log_path


@pytest.fixture
def cluster_wide_paused(operator_process: OperatorProcess) -> Iterator[None]:
    """The session's cluster-wide operator stopped for one test, then started again.

    For tests that run an operator of their own: both share Kopf's annotations, so whichever
    saw an object first would mark it handled for the other.
    """
    operator_process.stop()
    try:
        yield
    finally:
        operator_process.start()
