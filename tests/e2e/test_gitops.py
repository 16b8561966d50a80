"""GitOps for real: a real Argo CD (repo-server and application-controller built from the pinned
module) syncs our shipped Applications from a local Git server into a cluster with a real node.
The operator comes from the chart through `argocd/operator.yaml`, the ModelService from a commit
through `argocd/modelservices.yaml`; only repoURL (and the images, which no registry serves
here) are overridden. Self-heal reverts a hand edit; a commit that removes a file prunes it and,
through ownerReferences, its children.

Its own cluster (the session's has the operator installed by `helm install`, which would own the
same cluster-scoped names); never skips."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitops import COMPONENTS, GitOps
from localcluster import ClusterError, LocalCluster, temporary_cluster

from tests.e2e.conftest import EXAMPLE, NAME, NAMESPACE, Images, kubectl_json
from tests.helpers import REPO_ROOT
from tests.operator.operator_helpers import wait_for

pytestmark = pytest.mark.integration

ARGOCD = REPO_ROOT / "argocd"
GITOPS = REPO_ROOT / "hack" / "gitops.py"
SECOND = "second-model"
# Push to Healthy, measured here at 8 s (the push's refresh, the sync, the rollout of a real pod).
SYNC_BOUND_S = 180


@dataclass
class Stack:
    """The cluster, the Argo CD beside it, and a work tree of the repository it syncs."""

    cluster: LocalCluster
    gitops: GitOps
    work: Path
    images: Images

    def git(self, *args: str) -> str:
        dev = ["-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
        proc = subprocess.run(["git", "-C", str(self.work), *dev, *args], capture_output=True,
                              text=True, check=False)  # fmt: skip
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def commit_and_push(self, message: str) -> float:
        """Commit everything and push; returns when the push was accepted (monotonic)."""
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "main")
        return time.monotonic()

    def application(self, name: str) -> dict[str, Any]:
        return kubectl_json(self.cluster, "-n", "argocd", "get", "application", name)

    def synced_and_healthy(self, name: str) -> bool:
        status = self.application(name).get("status", {})
        return (
            status.get("sync", {}).get("status") == "Synced"
            and status.get("health", {}).get("status") == "Healthy"
        )

    def resource_health(self, app: str, kind: str, name: str) -> dict[str, Any]:
        for resource in self.application(app).get("status", {}).get("resources", []):
            if resource.get("kind") == kind and resource.get("name") == name:
                return dict(resource.get("health") or {})
        return {}

    def diagnostics(self) -> str:
        """What Argo CD, the ModelServices and the operator say, for a failure message."""
        lines = []
        for name in ("aiops-operator", "aiops-modelservices"):
            status = self.application(name).get("status", {})
            lines.append(f"--- Application {name}: sync {status.get('sync', {}).get('status')}"
                         f" health {status.get('health', {}).get('status')}"
                         f" op {status.get('operationState', {}).get('message')}")  # fmt: skip
            for r in status.get("resources", []):
                lines.append(f"  {r.get('kind')}/{r.get('name')}: {r.get('status')}"
                             f" {r.get('health')}")  # fmt: skip
        models = self.cluster.kubectl("get", "modelservices", "-A", "-o",
                                      "jsonpath={range .items[*]}{.metadata.name} "
                                      "{.status.conditions}{'\\n'}{end}", check=False)  # fmt: skip
        lines.append(f"--- ModelServices\n{models.stdout}{models.stderr}")
        operator = self.cluster.kubectl("-n", "aiops-system", "logs", "deploy/aiops-operator",
                                        "--tail", "30", check=False)  # fmt: skip
        lines.append(f"--- operator\n{operator.stdout[-3000:]}{operator.stderr}")
        return "\n".join(lines)


def modelservice_file(image: str, name: str) -> str:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["image"] = image
    return yaml.safe_dump(doc, sort_keys=False)


def shipped(name: str, git_url: str) -> list[dict[str, Any]]:
    """A shipped argocd/ file with repoURL (and sourceRepos) pointed at the local Git server."""
    docs = [d for d in yaml.safe_load_all((ARGOCD / name).read_text()) if d]
    for doc in docs:
        if doc["kind"] == "Application":
            doc["spec"]["source"]["repoURL"] = git_url
        if doc["kind"] == "AppProject":
            doc["spec"]["sourceRepos"] = [git_url]
    return docs


@pytest.fixture(scope="module")
def stack(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        cluster = temporary_cluster(real_node=True)
        cluster.start()
    except ClusterError as exc:
        pytest.fail(f"the cluster with a real node could not start: {exc}", pytrace=False)
    gitops = GitOps(cluster)
    try:
        cluster.import_images(list(images.archives))
    except ClusterError as exc:
        cluster.stop()
        pytest.fail(f"the images could not be imported: {exc}", pytrace=False)
    # As `make gitops-up` runs it; its last line names the repository.
    up = subprocess.run(
        [sys.executable, str(GITOPS), "up", "--cluster-state", str(cluster.state_dir)],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    if up.returncode != 0:
        gitops.stop()
        cluster.stop()
        pytest.fail(f"gitops up failed:\n{up.stdout}\n{up.stderr[-4000:]}", pytrace=False)
    assert up.stdout.strip().splitlines()[-1] == f"git={gitops.git_url}"
    work = tmp_path_factory.mktemp("gitops") / "work"
    result = Stack(cluster=cluster, gitops=gitops, work=work, images=images)
    try:
        subprocess.run(["git", "clone", "-q", gitops.git_url, str(work)], check=True)
        subprocess.run(["cp", "-r", str(REPO_ROOT / "charts"), str(work / "charts")], check=True)
        (work / "examples").mkdir()
        (work / "examples" / "modelservice.yaml").write_text(
            modelservice_file(images.runtime, NAME)
        )
        result.git("symbolic-ref", "HEAD", "refs/heads/main")
        result.commit_and_push("the operator chart and the example ModelService")
        yield result
    finally:
        gitops.stop()
        cluster.stop()


@pytest.fixture(scope="module")
def operator_app(stack: Stack) -> Stack:
    """The shipped projects and operator Application, images set to the built ones."""
    projects = shipped("projects.yaml", stack.gitops.git_url)
    (app,) = shipped("operator.yaml", stack.gitops.git_url)
    repository, tag = stack.images.operator.rsplit(":", 1)
    app["spec"]["source"]["helm"]["valuesObject"]["image"] = {
        "repository": repository, "tag": tag, "pullPolicy": "Never",
    }  # fmt: skip
    manifests = {"apiVersion": "v1", "kind": "List", "items": [*projects, app]}
    stack.cluster.kubectl("apply", "-f", "-", input=json.dumps(manifests))
    try:
        wait_for("aiops-operator Synced and Healthy",
                 lambda: stack.synced_and_healthy("aiops-operator"), 240)  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.diagnostics()}") from None
    return stack


@pytest.fixture(scope="module")
def modelservices_app(operator_app: Stack) -> tuple[Stack, float]:
    """The shipped ModelServices Application; returns the stack and the seconds from applying
    it to the ModelService's resource health Healthy."""
    stack = operator_app
    (app,) = shipped("modelservices.yaml", stack.gitops.git_url)
    started = time.monotonic()
    stack.cluster.kubectl("apply", "-f", "-", input=json.dumps(app))
    try:
        wait_for("the ModelService Healthy in aiops-modelservices",
                 lambda: stack.resource_health("aiops-modelservices", "ModelService", NAME)
                 .get("status") == "Healthy", SYNC_BOUND_S)  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.diagnostics()}") from None
    return stack, time.monotonic() - started


def test_the_operator_application_syncs_the_chart_into_a_running_operator(
    operator_app: Stack,
) -> None:
    stack = operator_app
    app = stack.application("aiops-operator")
    assert app["spec"]["project"] == "aiops-platform"
    kinds = {(r["kind"], r.get("status")) for r in app["status"]["resources"]}
    assert ("CustomResourceDefinition", "Synced") in kinds
    assert ("Deployment", "Synced") in kinds
    deployment = kubectl_json(stack.cluster, "-n", "aiops-system", "get", "deployment",
                              "aiops-operator")  # fmt: skip
    assert deployment["status"].get("readyReplicas") == 1
    namespace = kubectl_json(stack.cluster, "get", "namespace", "aiops-system")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_a_committed_modelservice_is_synced_reconciled_and_healthy(
    modelservices_app: tuple[Stack, float],
) -> None:
    stack, seconds = modelservices_app
    print(f"applied to Healthy: {seconds:.1f}s")
    ms = kubectl_json(stack.cluster, "-n", NAMESPACE, "get", "modelservice", NAME)
    ready = next(c for c in ms["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert stack.application("aiops-modelservices")["status"]["health"]["status"] == "Healthy"
    # The operator's children are the operator's: Argo CD tracks only what Git holds.
    tracked = {r["kind"] for r in stack.application("aiops-modelservices")["status"]["resources"]}
    assert tracked == {"ModelService"}
    namespace = kubectl_json(stack.cluster, "get", "namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert seconds < SYNC_BOUND_S


def test_a_hand_edit_of_the_spec_is_reverted_by_self_heal(
    modelservices_app: tuple[Stack, float],
) -> None:
    stack, _ = modelservices_app
    stack.cluster.kubectl("-n", NAMESPACE, "patch", "modelservice", NAME, "--type", "merge",
                          "-p", '{"spec": {"replicas": 2}}')  # fmt: skip

    def reverted() -> bool:
        ms = kubectl_json(stack.cluster, "-n", NAMESPACE, "get", "modelservice", NAME)
        return ms["spec"].get("replicas") == 1

    wait_for("self-heal to put replicas back to 1", reverted, 60)


def test_a_commit_adds_a_modelservice_and_removing_it_prunes_it_and_its_children(
    modelservices_app: tuple[Stack, float],
) -> None:
    stack, _ = modelservices_app
    second = stack.work / "examples" / "modelservice-second.yaml"
    second.write_text(modelservice_file(stack.images.runtime, SECOND))
    pushed = stack.commit_and_push("a second ModelService")
    wait_for("the second ModelService Healthy",
             lambda: stack.resource_health("aiops-modelservices", "ModelService", SECOND)
             .get("status") == "Healthy", SYNC_BOUND_S)  # fmt: skip
    print(f"push to Healthy: {time.monotonic() - pushed:.1f}s")
    children = ("deployment", "service", "configmap")
    for kind in children:
        stack.cluster.kubectl("-n", NAMESPACE, "get", kind, SECOND)

    second.unlink()
    pushed = stack.commit_and_push("remove the second ModelService")

    def pruned() -> bool:
        proc = stack.cluster.kubectl("-n", NAMESPACE, "get", "modelservice,deployment,service",
                                     "-o", "name", check=False)  # fmt: skip
        return SECOND not in proc.stdout

    wait_for("the second ModelService and its children pruned", pruned, SYNC_BOUND_S)
    print(f"push to pruned: {time.monotonic() - pushed:.1f}s")
    kubectl_json(stack.cluster, "-n", NAMESPACE, "get", "modelservice", NAME)  # the first stays


def test_a_commit_with_a_wrong_sha256_shows_degraded_with_the_reason(
    modelservices_app: tuple[Stack, float],
) -> None:
    stack, _ = modelservices_app
    wrong = stack.work / "examples" / "modelservice-wrong.yaml"
    doc = yaml.safe_load(modelservice_file(stack.images.runtime, "wrong-digest"))
    doc["spec"]["model"]["sha256"] = "0" * 64
    wrong.write_text(yaml.safe_dump(doc, sort_keys=False))
    stack.commit_and_push("a ModelService whose digest does not match its model")
    try:
        health = wait_for(
            "the wrong-digest ModelService Degraded in Argo CD",
            lambda: (h := stack.resource_health("aiops-modelservices", "ModelService",
                                                "wrong-digest")).get("status") == "Degraded"
            and h,
            SYNC_BOUND_S,
        )  # fmt: skip
        assert health["message"].startswith("ModelNotLoaded: ")
        assert "digest_mismatch" in health["message"]
        app = stack.application("aiops-modelservices")
        assert app["status"]["health"]["status"] == "Degraded"
    finally:
        wrong.unlink()
        stack.commit_and_push("remove the wrong-digest ModelService")
    wait_for("the Application Healthy again",
             lambda: stack.synced_and_healthy("aiops-modelservices"), SYNC_BOUND_S)  # fmt: skip


def test_the_project_refuses_a_committed_configmap_and_the_fix_syncs_at_once(
    modelservices_app: tuple[Stack, float],
) -> None:
    """aiops-modelservices syncs only ModelServices; retry.refresh lets the next commit through
    instead of retrying the rejected one for minutes."""
    stack, _ = modelservices_app
    smuggled = stack.work / "examples" / "modelservice-smuggled.yaml"
    smuggled.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: smuggled\n")
    stack.commit_and_push("a ConfigMap where only ModelServices belong")

    def refused() -> str | None:
        state = stack.application("aiops-modelservices").get("status", {})
        message = str(state.get("operationState", {}).get("message", ""))
        return message if "not permitted in project" in message else None

    message = wait_for("the sync refused by the project", refused, 60)
    assert "ConfigMap is not permitted in project aiops-modelservices" in message
    assert "smuggled" not in stack.cluster.kubectl("-n", NAMESPACE, "get", "configmap",
                                                   "-o", "name").stdout  # fmt: skip
    smuggled.unlink()
    pushed = stack.commit_and_push("remove the ConfigMap")
    head = stack.git("rev-parse", "HEAD").strip()
    wait_for("the fix Synced",
             lambda: stack.application("aiops-modelservices")["status"]["sync"]
             .get("revision") == head and stack.synced_and_healthy("aiops-modelservices"),
             60)  # fmt: skip
    print(f"fix push to Synced: {time.monotonic() - pushed:.1f}s")


def test_gitops_down_stops_every_process_it_started(stack: Stack) -> None:
    pids = stack.gitops.running_pids()
    assert set(pids) == set(COMPONENTS)
    down = subprocess.run(
        [sys.executable, str(GITOPS), "down", "--cluster-state", str(stack.cluster.state_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert down.stdout.startswith("gitops stopped: ")
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"{name} ({pid}) still runs"
    assert stack.gitops.running_pids() == {}
    assert not (stack.gitops.state_dir / "git").exists()


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    return True
