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
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from aiops_harness.gitops import COMPONENTS, GitOps
from aiops_harness.localcluster import ClusterError, LocalCluster, temporary_cluster
from aiops_harness.traffic import held_out_rows, post

from tests.delivery.delivery_helpers import job_script
from tests.e2e.conftest import EXAMPLE, NAME, NAMESPACE, Images, kubectl_json, port_forward
from tests.fakes import FakeServer, PackageRegistry, fake_server, package_registry
from tests.helpers import REPO_ROOT, pinned_tool, wait_for

pytestmark = pytest.mark.integration

ARGOCD = REPO_ROOT / "argocd"
GITOPS = [sys.executable, "-m", "aiops_harness.gitops"]
SECOND = "second-model"
# What the retrain job needs from the repository, beside the charts and the ModelServices.
JOB_FILES = (
    ".gitlab-ci.yml",
    ".ci/retrain/bump-modelservice.py",
    ".ci/retrain/upload-artifacts.py",
)
JOB_TOKEN = "glcbt-gitops-job-token"
TRIGGER_SECRET, TRIGGER_KEY = "aiops-retrain-trigger", "trigger"
# A small drift window so that a few hundred rows decide (as tests/e2e/test_drift_loop.py).
WINDOW, CHECK_EVERY, THRESHOLD = 50, 25, 0.02
# Push to Healthy, measured here at 8 s (the push's refresh, the sync, the rollout of a real pod).
SYNC_BOUND_S = 180


@dataclass
class Stack:
    """The cluster, the Argo CD beside it, and a work tree of the repository it syncs."""

    cluster: LocalCluster
    gitops: GitOps
    work: Path
    images: Images
    gitlab: FakeServer  # the pipeline trigger API, on the host end of the node's link
    registry: PackageRegistry  # the generic package API, where pods download models from

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
            got = self.cluster.kubectl("-n", "argocd", "get", "application", name, "-o", "json",
                                       check=False)  # fmt: skip
            status = json.loads(got.stdout).get("status", {}) if got.returncode == 0 else {}
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
        children = self.cluster.kubectl("-n", NAMESPACE, "get", "deployments,replicasets,pods",
                                        "-o", "wide", check=False)  # fmt: skip
        lines.append(f"--- children\n{children.stdout}{children.stderr}")
        rollout = self.cluster.kubectl("-n", NAMESPACE, "get", "deployments", "-o",
                                       "jsonpath={range .items[*]}{.metadata.name} "
                                       "{.metadata.generation} {.status}{'\\n'}{end}",
                                       check=False)  # fmt: skip
        lines.append(f"--- Deployment status\n{rollout.stdout}{rollout.stderr}")
        operator = self.cluster.kubectl("-n", "aiops-system", "logs", "deploy/aiops-operator",
                                        "--tail", "400", check=False)  # fmt: skip
        # The liveness probe's access lines would fill the tail; keep what the operator says.
        said = [line for line in operator.stdout.splitlines() if "GET /healthz" not in line]
        lines.append("--- operator\n" + "\n".join(said[-40:])[-6000:] + operator.stderr)
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
        [*GITOPS, "up", "--cluster-state", str(cluster.state_dir)],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    if up.returncode != 0:
        gitops.stop()
        cluster.stop()
        pytest.fail(f"gitops up failed:\n{up.stdout}\n{up.stderr[-4000:]}", pytrace=False)
    assert up.stdout.strip().splitlines()[-1] == f"git={gitops.git_url}"
    work = tmp_path_factory.mktemp("gitops") / "work"
    pipeline = {"id": 4711, "web_url": "http://gitlab.invalid/group/model/-/pipelines/4711"}
    try:
        with (
            fake_server(201, pipeline, host=cluster.address) as gitlab,
            package_registry(JOB_TOKEN, host=cluster.address) as registry,
        ):
            result = Stack(cluster, gitops, work, images, gitlab, registry)
            subprocess.run(["git", "clone", "-q", gitops.git_url, str(work)], check=True)
            subprocess.run(["cp", "-r", str(REPO_ROOT / "charts"), str(work / "charts")],
                           check=True)  # fmt: skip
            for name in JOB_FILES:
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                (work / name).write_bytes((REPO_ROOT / name).read_bytes())
            (work / "examples").mkdir()
            (work / "examples" / "modelservice.yaml").write_text(
                modelservice_file(images.runtime, NAME)
            )
            result.git("symbolic-ref", "HEAD", "refs/heads/main")
            result.commit_and_push("the operator chart, the example ModelService, the pipeline")
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
    values = app["spec"]["source"]["helm"]["valuesObject"]
    values["image"] = {"repository": repository, "tag": tag, "pullPolicy": "Never"}
    # Quick drift reads, and retrain triggers only to the tests' GitLab stand-in (plain http);
    # the ModelServices' namespace opts in to the trigger Secret from the chart.
    values["settings"] = {
        "driftPollIntervalS": 2, "driftBackoffMaxS": 4, "retrainAllowHttp": True,
        "retrainUrlPrefixes": f"{stack.gitlab.base}/api/v4/projects/",
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
    # The chart's two replicas: the leader and the standby are both ready.
    assert deployment["status"].get("readyReplicas") == 2
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
        try:
            health = wait_for(
                "the wrong-digest ModelService Degraded in Argo CD",
                lambda: (h := stack.resource_health("aiops-modelservices", "ModelService",
                                                    "wrong-digest")).get("status") == "Degraded"
                and h,
                SYNC_BOUND_S,
            )  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stack.diagnostics()}") from None
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


def retrain_modelservice(image: str, secret: str) -> str:
    """The example with the retrain action, a small window, and a trigger Secret."""
    doc = yaml.safe_load(modelservice_file(image, NAME))
    doc["spec"]["drift"] = {
        "detector": "mmd", "pValueThreshold": THRESHOLD, "windowSize": WINDOW,
        "checkEvery": CHECK_EVERY, "consecutive": 2, "action": "retrain",
        "retrain": {"triggerSecretRef": {"name": secret, "key": TRIGGER_KEY}, "cooldown": "1h"},
    }  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False)


def drift_state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/drift", timeout=10) as resp:
        return dict(json.loads(resp.read()))


def send_checked(url: str, rows: np.ndarray) -> dict[str, Any]:
    """POST rows in batches of checkEvery and wait for the runtime to check each batch."""
    drift = drift_state(url)
    for start in range(0, len(rows), CHECK_EVERY):
        batch = rows[start : start + CHECK_EVERY].tolist()
        post(url, {"instances": batch})
        samples = drift["samples_seen"] + len(batch)
        due = 0 if samples < WINDOW else (samples - WINDOW) // CHECK_EVERY + 1
        drift = wait_for(f"{due} drift checks", lambda due=due: (
            (d := drift_state(url))["checks"] + d["checks_skipped"] >= due and d), 60)  # fmt: skip
    return drift


def run_retrain_job(stack: Stack, form: dict[str, str], tmp_path: Path) -> str:
    """What GitLab's runner does with the trigger: retrain-model with the trigger's inputs, in
    a fresh clone of the repository Argo CD syncs, pushing back to it; GitLab's API (the
    package registry) is the stand-in. Returns the job's output."""
    work = tmp_path / "job"
    subprocess.run(["git", "clone", "-q", stack.gitops.git_url, str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "remote", "set-url", "origin",
                    "https://gitlab.example.com/aiops/aiops-quality.git"], check=True)  # fmt: skip
    repository, tag = stack.images.runtime.rsplit(":", 1)
    push_token = "glpat-gitops-push"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{stack.gitops.git_url}.insteadOf",
        "GIT_CONFIG_VALUE_0": f"https://oauth2:{push_token}@gitlab.example.com/aiops/aiops-quality.git",
    }
    variables = {
        "CI_PIPELINE_SOURCE": "trigger", "RETRAIN_SEED": "7", "RETRAIN_PUSH_TOKEN": push_token,
        "CI_API_V4_URL": f"{stack.registry.base}/api/v4", "CI_PROJECT_ID": "1",
        "CI_JOB_TOKEN": JOB_TOKEN,
        # the runtime image CI built for this commit: here, the image the node already holds
        "RUNTIME_IMAGE": repository, "CI_COMMIT_SHORT_SHA": tag,
    }  # fmt: skip
    inputs = {k[len("inputs[") : -1]: v for k, v in form.items() if k.startswith("inputs[")}
    args = [
        "--stage",
        "retrain-model",
        "--force-shell-executor",
        "--home",
        str(tmp_path / "h"),
        "--ignore-predefined-vars",
        "CI_PIPELINE_SOURCE,CI_COMMIT_AUTHOR,CI_COMMIT_SHORT_SHA",
    ]
    for key, value in variables.items():
        args += ["--variable", f"{key}={value}"]
    # As strings, as GitLab gets them from the form (gitlab-ci-local's --input would make
    # "0.0123" a number): its inputs file, quoted by YAML.
    (work / ".gitlab-ci-local-inputs.yml").write_text(yaml.safe_dump(inputs))
    proc = subprocess.run([str(pinned_tool("gitlab-ci-local")), *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    return proc.stdout + proc.stderr


def test_drift_retrains_and_the_new_model_rolls_out_through_git(
    modelservices_app: tuple[Stack, float], tmp_path: Path
) -> None:
    """The loop, automated: drift on the runtime -> the operator triggers the pipeline -> the
    retrain-model job uploads the model and commits its digest -> Argo CD syncs -> the operator
    rolls the Deployment -> a pod serves the new model; more drift inside the cooldown does not
    trigger again."""
    stack, _ = modelservices_app
    token = f"glptt-{secrets.token_hex(8)}"
    trigger = f"{stack.gitlab.base}/api/v4/projects/1/trigger/pipeline"
    secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": TRIGGER_SECRET, "namespace": NAMESPACE},
        "stringData": {TRIGGER_KEY: json.dumps({"url": trigger, "token": token})},
    }  # fmt: skip
    stack.cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
    # The namespace admin lets the operator read that Secret (README, retrain set-up step 4).
    stack.cluster.kubectl(
        "-n", NAMESPACE, "create", "rolebinding", "aiops-retrain-trigger",
        "--clusterrole=aiops-operator-retrain-trigger",
        "--serviceaccount=aiops-system:aiops-operator",
    )  # fmt: skip
    (stack.work / "examples" / "modelservice.yaml").write_text(
        retrain_modelservice(stack.images.runtime, TRIGGER_SECRET)
    )
    stack.commit_and_push("breast-cancer retrains on drift")
    ms = lambda: kubectl_json(stack.cluster, "-n", NAMESPACE, "get", "modelservice", NAME)  # noqa: E731
    wait_for("the retrain spec observed and Ready", lambda: (
        (m := ms())["spec"]["drift"]["action"] == "retrain"
        and m["status"].get("observedGeneration") == m["metadata"]["generation"]
        and any(c["type"] == "Ready" and c["status"] == "True" for c in m["status"]["conditions"])
    ), SYNC_BOUND_S)  # fmt: skip
    old_digest = ms()["status"]["modelDigest"]
    rows = np.asarray(held_out_rows(300))
    with port_forward(stack.cluster, NAMESPACE, f"svc/{NAME}", 8000) as url:
        wait_for("the runtime to run the small window",
                 lambda: drift_state(url)["window_size"] == WINDOW, 60)  # fmt: skip
        send_checked(url, rows[:50])
        send_checked(url, rows[50:150] * 1.5)
        wait_for("a drift event in the runtime", lambda: drift_state(url)["drift_events"] >= 1, 60)
    drifted = time.monotonic()
    (request,) = wait_for("the retrain trigger", stack.gitlab.received, 60)
    assert request.form["token"] == token
    assert request.form["inputs[modelservice]"] == NAME
    assert request.form["inputs[namespace]"] == NAMESPACE
    out = run_retrain_job(stack, request.form, tmp_path)
    assert "PASS  retrain-model" in out, out
    stack.git("fetch", "-q", "origin")
    stack.git("reset", "-q", "--hard", "origin/main")  # the job's commit, as Argo CD sees it
    committed = yaml.safe_load((stack.work / "examples" / "modelservice.yaml").read_text())
    new_sha = committed["spec"]["model"]["sha256"]
    assert f"sha256:{new_sha}" != old_digest
    assert committed["spec"]["model"]["uri"].startswith(f"{stack.registry.base}/api/v4/")

    def rolled_out() -> bool:
        m = ms()
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in m["status"].get("conditions", []))  # fmt: skip
        return m["status"].get("modelDigest") == f"sha256:{new_sha}" and ready

    try:
        wait_for("the new digest in status and the new pods Ready", rolled_out, SYNC_BOUND_S)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.diagnostics()}") from None
    print(f"drift event to the new model served: {time.monotonic() - drifted:.1f}s"
          " (including the job)")  # fmt: skip
    with port_forward(stack.cluster, NAMESPACE, f"svc/{NAME}", 8000) as url:
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as resp:
            ready = json.loads(resp.read())
        assert ready["sha256"] == new_sha, ready  # the pod loaded the uploaded model
        # Drift again, inside the cooldown: no second pipeline.
        send_checked(url, rows[150:200])
        send_checked(url, rows[200:300] * 1.5)
        wait_for("a drift event on the new model",
                 lambda: drift_state(url)["drift_events"] >= 1, 60)  # fmt: skip

    def skipped() -> list[dict[str, Any]]:
        selector = "reason=RetrainSkipped"
        found = kubectl_json(stack.cluster, "-n", NAMESPACE, "get", "events",
                             "--field-selector", selector)["items"]  # fmt: skip
        return list(found)

    wait_for("the RetrainSkipped Event (cooldown)", skipped, 60)
    assert len(stack.gitlab.received()) == 1


def test_the_retrain_job_runs_as_a_pod_in_the_retrain_image(
    modelservices_app: tuple[Stack, float],
) -> None:
    """retrain-model as GitLab's Kubernetes executor runs it: a pod of the image CI builds for
    it (`Dockerfile.runtime --target retrain`) on the real node clones the repository, runs the
    job's script (inputs interpolated), uploads to the package registry stand-in and pushes with
    the image's own git to the Git server Argo CD syncs from."""
    stack, _ = modelservices_app
    stack.cluster.import_images([stack.images.retrain_archive])
    # A developer's commit on top: the job never retrains on a commit of its own bot.
    stack.git("fetch", "-q", "origin")
    stack.git("reset", "-q", "--hard", "origin/main")
    stack.git("commit", "-q", "--allow-empty", "-m", "docs: a developer's commit")
    stack.git("push", "-q", "origin", "main")
    _, pipeline = yaml.safe_load_all((REPO_ROOT / ".gitlab-ci.yml").read_text())
    retrain = pipeline["retrain-model"]
    script = job_script(retrain, {"modelservice": NAME, "namespace": NAMESPACE,
                                  "drift_time": "", "drift_p_value": ""})  # fmt: skip
    clone = f"git clone -q {stack.gitops.pod_git_url} /builds/work && cd /builds/work\n"
    push_token = "glpat-pod-push"
    repository, tag = stack.images.runtime.rsplit(":", 1)
    variables = {
        **{k: str(v) for k, v in retrain["variables"].items()},
        "HOME": "/root", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_SHORT_SHA": tag, "CI_PIPELINE_ID": "8", "RUNTIME_IMAGE": repository,
        "CI_SERVER_HOST": "gitlab.example.com", "CI_PROJECT_PATH": "aiops/aiops-quality",
        "CI_API_V4_URL": f"{stack.registry.base}/api/v4", "CI_PROJECT_ID": "1",
        "CI_JOB_TOKEN": JOB_TOKEN, "RETRAIN_SEED": "8", "RETRAIN_PUSH_TOKEN": push_token,
        "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{stack.gitops.pod_git_url}.insteadOf",
        "GIT_CONFIG_VALUE_0":
            f"https://oauth2:{push_token}@gitlab.example.com/aiops/aiops-quality.git",
    }  # fmt: skip
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "retrain-model", "namespace": "ci-jobs"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "job", "image": stack.images.retrain, "imagePullPolicy": "Never",
                # the job's `image: docker: user: root`
                "securityContext": {"runAsUser": 0, "runAsGroup": 0},
                "command": ["bash", "-eo", "pipefail", "-c", clone + script],
                "env": [{"name": k, "value": v} for k, v in variables.items()],
            }],
        },
    }  # fmt: skip
    stack.cluster.kubectl("create", "namespace", "ci-jobs")
    wait_for(
        "the namespace's default ServiceAccount",
        lambda: (
            stack.cluster.kubectl(
                "-n", "ci-jobs", "get", "serviceaccount", "default", check=False
            ).returncode
            == 0
        ),
        30,
    )
    stack.cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    before = stack.git("ls-remote", "origin", "refs/heads/main").split()[0]

    def finished() -> str | None:
        got = kubectl_json(stack.cluster, "-n", "ci-jobs", "get", "pod", "retrain-model")
        phase = str(got.get("status", {}).get("phase"))
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for("the job's pod to finish", finished, 300)
    logs = stack.cluster.kubectl("-n", "ci-jobs", "logs", "retrain-model", check=False).stdout
    assert phase == "Succeeded", logs
    after = stack.git("ls-remote", "origin", "refs/heads/main").split()[0]
    assert after != before, logs
    stack.git("fetch", "-q", "origin")
    author = stack.git("log", "-1", "--format=%an %s", "origin/main").strip()
    assert author.startswith("aiops-retrain-bot retrain: model sha256 "), author
    stack.git("reset", "-q", "--hard", "origin/main")
    model = yaml.safe_load((stack.work / "examples" / "modelservice.yaml").read_text())["spec"]
    stored = {stack.registry.base + k: v for k, v in stack.registry.stored().items()}
    assert hashlib.sha256(stored[model["model"]["uri"]]).hexdigest() == model["model"]["sha256"]


def test_gitops_down_stops_every_process_it_started(stack: Stack) -> None:
    pids = stack.gitops.running_pids()
    assert set(pids) == set(COMPONENTS)
    down = subprocess.run(
        [*GITOPS, "down", "--cluster-state", str(stack.cluster.state_dir)],
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
