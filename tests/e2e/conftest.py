"""Fixtures of the end-to-end stories in real containers: a cluster with a real node, our
images built from the Dockerfiles and imported into its containerd, the operator installed by
its Helm chart, and the example ModelService served by a real pod behind a port-forward.

Never skips: if the real node, the images or the chart cannot start, the fixture fails."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiops_harness.localcluster import ClusterError, LocalCluster, temporary_cluster

from tests.helpers import REPO_ROOT, free_port, wait_for

OPERATOR_NAMESPACE = "aiops-system"
NAMESPACE = "aiops-quality"
NAME = "breast-cancer"
EXAMPLE = REPO_ROOT / "examples" / "modelservice.yaml"


@dataclass(frozen=True)
class Images:
    """What hack/images.sh built: refs and OCI archives."""

    runtime: str
    operator: str
    archives: tuple[Path, ...]  # runtime and operator: what a node imports
    retrain: str  # the image CI's retrain-model job runs in
    retrain_archive: Path


@pytest.fixture(scope="session")
def images() -> Images:
    """Dockerfile.runtime and Dockerfile.operator built with buildah on the Debian base."""
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "images.sh")], capture_output=True, text=True,
        timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"hack/images.sh failed:\n{proc.stderr[-4000:]}", pytrace=False)
    out = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return Images(
        runtime=out["runtime"],
        operator=out["operator"],
        archives=(Path(out["runtime_archive"]), Path(out["operator_archive"])),
        retrain=out["retrain"],
        retrain_archive=Path(out["retrain_archive"]),
    )


@pytest.fixture(scope="session")
def real_cluster(images: Images) -> Iterator[LocalCluster]:
    """A control plane with a real node (containerd, runc, kubelet, kube-proxy, CoreDNS)."""
    try:
        cluster = temporary_cluster(real_node=True)
        cluster.start()
        cluster.import_images(list(images.archives))
    except ClusterError as exc:
        pytest.fail(f"the cluster with a real node could not start: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def restricted_namespace(cluster: LocalCluster, name: str) -> None:
    """Create namespace `name` enforcing Pod Security `restricted`."""
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")


@pytest.fixture(scope="session")
def trigger_base(real_cluster: LocalCluster) -> str:
    """Where the tests' stand-in for GitLab listens: a free port on the host end of the node's
    link (pods reach it as they reach the API server); the operator allows only this prefix."""
    with socket.socket() as probe:
        probe.bind((real_cluster.address, 0))
        port = probe.getsockname()[1]
    return f"http://{real_cluster.address}:{port}"


@pytest.fixture(scope="session")
def operator_release(
    real_cluster: LocalCluster, images: Images, helm: Path, trigger_base: str
) -> dict[str, Any]:
    """`helm install` of charts/aiops-operator with the built operator image; returns its pod."""
    restricted_namespace(real_cluster, OPERATOR_NAMESPACE)
    repository, tag = images.operator.rsplit(":", 1)
    proc = subprocess.run(
        [str(helm), "install", "aiops-operator", str(REPO_ROOT / "charts" / "aiops-operator"),
         "--namespace", OPERATOR_NAMESPACE, "--kubeconfig", str(real_cluster.kubeconfig),
         "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
         "--set", "image.pullPolicy=Never",
         # One pod whose log the stories read; it still elects itself on the chart's Lease.
         "--set", "replicaCount=1",
         # Quick drift reads for the test; the chart's defaults are 30 s and 300 s.
         "--set", "settings.driftPollIntervalS=2", "--set", "settings.driftBackoffMaxS=4",
         # Retrain triggers may go only to the tests' GitLab stand-in (plain http, on the host).
         "--set", f"settings.retrainUrlPrefixes={trigger_base}/api/v4/projects/",
         "--set", "settings.retrainAllowHttp=true",
         "--wait", "--timeout", "120s"],
        capture_output=True, text=True, timeout=180, env=real_cluster.env,
    )  # fmt: skip
    if proc.returncode != 0:
        pods = real_cluster.kubectl("-n", OPERATOR_NAMESPACE, "get", "pods", "-o", "wide",
                                    check=False).stdout  # fmt: skip
        pytest.fail(f"helm install failed: {proc.stderr}\n{pods}", pytrace=False)
    return pod_of(real_cluster, OPERATOR_NAMESPACE, "app.kubernetes.io/name=aiops-operator")


def pod_of(cluster: LocalCluster, namespace: str, selector: str) -> dict[str, Any]:
    """The one running pod matching `selector`."""

    def running() -> dict[str, Any] | None:
        pods = kubectl_json(cluster, "-n", namespace, "get", "pods", "-l", selector)["items"]
        live = [p for p in pods if p["status"].get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")]  # fmt: skip
        return live[0] if len(live) == 1 else None

    return wait_for(f"one running pod {selector} in {namespace}", running, 60)


def kubectl_json(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl(*args, "-o", "json").stdout))


@dataclass
class Runbook:
    """The example ModelService served by a real pod, reachable through a port-forward."""

    cluster: LocalCluster
    url: str
    image: str

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", NAMESPACE, *args, check=check, input=input)

    def modelservice(self, name: str = NAME) -> dict[str, Any]:
        return kubectl_json(self.cluster, "-n", NAMESPACE, "get", "modelservice", name)

    def condition(self, kind: str, name: str = NAME) -> dict[str, Any]:
        conditions = self.modelservice(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), {})

    def runtime_pod(self) -> dict[str, Any]:
        return pod_of(self.cluster, NAMESPACE, f"app.kubernetes.io/instance={NAME}")


def example_with_image(image: str, name: str = NAME, **model: Any) -> str:
    """examples/modelservice.yaml with the built runtime image (and model fields replaced)."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["image"] = image
    doc["spec"]["model"].update(model)
    return yaml.safe_dump(doc)


@contextlib.contextmanager
def port_forward(cluster: LocalCluster, namespace: str, target: str, port: int) -> Iterator[str]:
    """`kubectl port-forward <target> <local>:<port>`; yields the local base URL."""
    local = free_port()
    proc = subprocess.Popen(
        [str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig),
         "-n", namespace, "port-forward", target, f"{local}:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"kubectl port-forward {target} did not listen: {out}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{local}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def runbook(
    real_cluster: LocalCluster, operator_release: dict[str, Any], images: Images
) -> Iterator[Runbook]:
    """The example, image set to the built one, in a `restricted` namespace, Ready, forwarded."""
    restricted_namespace(real_cluster, NAMESPACE)
    real_cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-",
                         input=example_with_image(images.runtime))  # fmt: skip
    book = Runbook(cluster=real_cluster, url="", image=images.runtime)
    wait_for("the example Ready=True", lambda: book.condition("Ready").get("status") == "True",
             120)  # fmt: skip
    with port_forward(real_cluster, NAMESPACE, f"svc/{NAME}", 8000) as url:
        book.url = url
        yield book
    real_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
