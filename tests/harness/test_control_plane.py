"""The local control plane is a real Kubernetes: GC, RBAC, Pod Security and KWOK pods work."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.integration

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: smoke}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: smoke}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""

PRIVILEGED_POD = """
apiVersion: v1
kind: Pod
metadata: {name: privileged, namespace: restricted-ns}
spec:
  containers:
  - name: c
    image: registry.invalid/c:1
    securityContext: {privileged: true}
"""


def wait_for(predicate, timeout: float = 30, interval: float = 0.3):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def get_json(cluster, *args: str) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def test_kubectl_reports_the_pinned_server_version(cluster):
    version = get_json(cluster, "version")
    assert version["serverVersion"]["gitVersion"] == "v1.35.4"
    assert version["clientVersion"]["gitVersion"] == "v1.35.4"


def test_deployment_pods_become_ready_on_the_kwok_node_and_are_garbage_collected(cluster):
    cluster.kubectl("create", "namespace", "smoke")
    cluster.kubectl("apply", "-f", "-", input=DEPLOYMENT)

    def ready_pods():
        pods = get_json(cluster, "-n", "smoke", "get", "pods", "-l", "app=web")["items"]
        ready = [
            p
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        return ready if len(ready) == 2 else None

    pods = wait_for(ready_pods)
    assert {p["spec"]["nodeName"] for p in pods} == {"kwok-node-0"}
    assert all(p["status"]["phase"] == "Running" for p in pods)
    deployment = get_json(cluster, "-n", "smoke", "get", "deployment", "web")
    wait_for(
        lambda: (
            get_json(cluster, "-n", "smoke", "get", "deployment", "web")["status"].get(
                "availableReplicas"
            )
            == 2
        )
    )
    assert deployment["metadata"]["uid"]
    service = get_json(cluster, "-n", "smoke", "get", "service", "web")
    assert service["spec"]["clusterIP"].startswith("198.19.")  # inside 198.18.0.0/15

    replica_sets = get_json(cluster, "-n", "smoke", "get", "replicasets", "-l", "app=web")["items"]
    assert len(replica_sets) == 1
    cluster.kubectl("-n", "smoke", "delete", "deployment", "web", "--wait=false")
    wait_for(
        lambda: (
            not get_json(cluster, "-n", "smoke", "get", "replicasets", "-l", "app=web")["items"]
        ),
        timeout=60,
    )
    wait_for(
        lambda: not get_json(cluster, "-n", "smoke", "get", "pods", "-l", "app=web")["items"],
        timeout=60,
    )


def test_service_account_without_rights_is_forbidden_to_list_secrets(cluster):
    cluster.kubectl("create", "namespace", "rbac-smoke")
    kubeconfig = cluster.service_account_kubeconfig("rbac-smoke", "nobody")
    denied = cluster.kubectl(
        "-n", "rbac-smoke", "get", "secrets", kubeconfig=kubeconfig, check=False
    )
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert "system:serviceaccount:rbac-smoke:nobody" in denied.stderr

    # The same identity gains exactly what a Role grants it: RBAC is enforced, not bypassed.
    cluster.kubectl(
        "-n", "rbac-smoke", "create", "role", "read-secrets", "--verb=list", "--resource=secrets"
    )
    cluster.kubectl(
        "-n",
        "rbac-smoke",
        "create",
        "rolebinding",
        "nobody-reads",
        "--role=read-secrets",
        "--serviceaccount=rbac-smoke:nobody",
    )
    wait_for(
        lambda: (
            cluster.kubectl(
                "-n", "rbac-smoke", "get", "secrets", kubeconfig=kubeconfig, check=False
            ).returncode
            == 0
        )
    )


def test_restricted_namespace_rejects_a_privileged_pod(cluster):
    cluster.kubectl("create", "namespace", "restricted-ns")
    cluster.kubectl(
        "label", "namespace", "restricted-ns", "pod-security.kubernetes.io/enforce=restricted"
    )
    rejected = cluster.kubectl("apply", "-f", "-", input=PRIVILEGED_POD, check=False)
    assert rejected.returncode != 0
    assert "violates PodSecurity" in rejected.stderr
    assert 'privileged (container "c" must not set securityContext.privileged=true)' in (
        rejected.stderr
    )
