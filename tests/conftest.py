"""Fixtures shared by every test area: the example model's shipped artifacts, the local control
plane and third-party CRDs from pinned Go modules."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiops_harness.localcluster import ClusterError, LocalCluster, temporary_cluster

REPO_ROOT = Path(__file__).resolve().parent.parent
# The example ModelService's artifacts, fixed bytes whose digests examples/modelservice.yaml pins.
EXAMPLE_MODEL_DIR = REPO_ROOT / "examples" / "models" / "breast-cancer"


@pytest.fixture(scope="session")
def example_model_dir() -> Path:
    """The example model's shipped artifacts (read-only: copy them before tampering)."""
    return EXAMPLE_MODEL_DIR


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm built from the pinned wrapper module hack/helm (cached per user)."""
    from tests.helpers import pinned_tool

    return pinned_tool("helm")


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A real local control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK).

    Never skips: a test that asks for a cluster and cannot get one fails, with the logs' tail.
    """
    try:
        local = temporary_cluster()
        local.start()
    except ClusterError as exc:
        pytest.fail(f"the local control plane could not start: {exc}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def third_party_crds() -> dict[str, Path]:
    """Argo CD's Application and AppProject CRDs and the Prometheus Operator's CRDs, from
    pinned Go modules."""
    proc = subprocess.run(
        [str(REPO_ROOT / "hack" / "third-party-crds.sh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"hack/third-party-crds.sh failed:\n{proc.stderr[-4000:]}", pytrace=False)
    crds = {}
    for line in proc.stdout.splitlines():
        name, _, path = line.partition("=")
        crds[name] = Path(path)
        assert crds[name].is_file(), f"{path} missing from the module"
    return crds
