"""Argo CD: the ModelService health check run by a real Lua 5.1 interpreter (Argo CD runs
gopher-lua, a Lua 5.1), the Applications and their AppProjects validated server-side against
Argo CD's own CRDs, and what those projects let a commit to the repository sync."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.delivery.delivery_helpers import REPO_ROOT, apply_crd, load_all, run
from tests.helpers import pinned_tool

ARGOCD = REPO_ROOT / "argocd"
CM_PATCH = ARGOCD / "argocd-cm-patch.yaml"
HEALTH_KEY = "resource.customizations.health.aiops-quality.io_ModelService"
APPLICATIONS = ["operator.yaml", "monitoring.yaml", "modelservices.yaml"]
PROJECTS = ARGOCD / "projects.yaml"


def to_lua(value: Any) -> str:
    """A Lua 5.1 literal of a JSON-like value (None fields are left out, as nil)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua escapes for this data
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    if isinstance(value, dict):
        fields = [f"[{json.dumps(k)}] = {to_lua(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(fields) + "}"
    raise TypeError(f"no Lua literal for {value!r}")


def health(tmp_path: Path, obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) the shipped health script gives for a ModelService object."""
    lua = shutil.which("lua5.1")
    assert lua, "lua5.1 is missing: run `make system-deps`"
    script = tmp_path / "health.lua"
    script.write_text(yaml.safe_load(CM_PATCH.read_text())["data"][HEALTH_KEY])
    harness = tmp_path / "harness.lua"
    harness.write_text(
        f"obj = {to_lua(obj)}\n"
        f"local check = assert(loadfile({json.dumps(str(script))}))\n"
        "local hs = check()\n"
        'io.write(hs.status, "\\n", hs.message or "", "\\n")\n'
    )
    status, message = run(lua, harness).stdout.split("\n")[:2]
    return status, message


def condition(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    """A metav1.Condition as the operator writes it."""
    return {
        "type": kind,
        "status": status,
        "reason": reason or None,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def modelservice(status: dict[str, Any] | None, generation: int = 2) -> dict[str, Any]:
    """A ModelService object as Argo CD hands it to the health script."""
    return {
        "apiVersion": "aiops-quality.io/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "breast-cancer", "namespace": "ml", "generation": generation},
        "spec": {"image": "registry.example/aiops-quality-runtime:0.1.0"},
        "status": status,
    }


def observed(*conditions: dict[str, Any], generation: int = 2) -> dict[str, Any]:
    """A status that has observed `generation`, with these conditions."""
    return {"observedGeneration": generation, "conditions": list(conditions)}


READY = condition("Ready", "True", "ReplicasReady", "2/2 replicas ready")
SERVING_OK = [
    condition("Progressing", "False", "RolloutComplete", "rollout complete"),
    condition("Degraded", "False", "AsExpected"),
]


def test_ready_true_is_healthy(tmp_path: Path) -> None:
    status, message = health(tmp_path, modelservice(observed(READY, *SERVING_OK)))
    assert (status, message) == ("Healthy", "ReplicasReady: 2/2 replicas ready")


def test_drift_alone_is_healthy_with_a_message(tmp_path: Path) -> None:
    drift = condition("DriftDetected", "True", "DriftDetected", "p-value 0.0010 < 0.05")
    status, message = health(tmp_path, modelservice(observed(READY, *SERVING_OK, drift)))
    assert status == "Healthy"
    assert message == "Serving, but drift is detected (DriftDetected: p-value 0.0010 < 0.05)"


def test_no_drift_condition_false_keeps_the_ready_message(tmp_path: Path) -> None:
    quiet = condition("DriftDetected", "False", "NoDrift", "p-value 0.41")
    assert health(tmp_path, modelservice(observed(READY, quiet)))[0] == "Healthy"
    assert "drift" not in health(tmp_path, modelservice(observed(READY, quiet)))[1]


def test_ready_false_with_degraded_true_is_degraded(tmp_path: Path) -> None:
    obj = modelservice(
        observed(
            condition("Ready", "False", "ProgressDeadlineExceeded", "no progress for 600s"),
            condition("Progressing", "False", "ProgressDeadlineExceeded", "no progress"),
            condition("Degraded", "True", "ImagePullBackOff", "image not found"),
        )
    )
    assert health(tmp_path, obj) == ("Degraded", "ImagePullBackOff: image not found")


def test_ready_false_without_a_rollout_under_way_is_degraded(tmp_path: Path) -> None:
    obj = modelservice(observed(condition("Ready", "False", "InvalidSpec", "sha256 is not hex")))
    assert health(tmp_path, obj) == ("Degraded", "InvalidSpec: sha256 is not hex")


def test_ready_false_while_rolling_out_is_progressing(tmp_path: Path) -> None:
    obj = modelservice(
        observed(
            condition("Ready", "False", "RolloutInProgress", "1/2 replicas updated"),
            condition("Progressing", "True", "ReplicaSetUpdated", "rolling out"),
            condition("Degraded", "False", "AsExpected"),
        )
    )
    assert health(tmp_path, obj) == ("Progressing", "RolloutInProgress: 1/2 replicas updated")


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (None, "no status at all"),
        ({"observedGeneration": 2}, "status without conditions"),
        (observed(READY, generation=1), "stale observedGeneration"),
        ({"conditions": [READY]}, "observedGeneration missing"),
        (observed(condition("Progressing", "True", "Reconciling")), "no Ready condition"),
        (observed(condition("Ready", "Unknown", "Pending")), "Ready Unknown"),
    ],
)
def test_not_yet_observed_is_progressing(tmp_path: Path, status: Any, why: str) -> None:
    assert health(tmp_path, modelservice(status))[0] == "Progressing", why


def test_conditions_without_reason_do_not_break_the_script(tmp_path: Path) -> None:
    bare = {"type": "Ready", "status": "True"}
    assert health(tmp_path, modelservice(observed(bare))) == ("Healthy", "")


def test_applications_sync_automatically_with_prune_and_self_heal() -> None:
    for name in APPLICATIONS:
        (app,) = load_all((ARGOCD / name).read_text())
        assert app["kind"] == "Application"
        assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        assert (REPO_ROOT / app["spec"]["source"]["path"]).is_dir(), name


def test_namespaces_argo_cd_creates_for_our_pods_enforce_restricted() -> None:
    """The operator's and the ModelServices' namespaces; the monitoring one is left out: its pods
    come from the dependency charts (Loki, Grafana Alloy, Grafana), which cannot be rendered
    here, so nothing shows they meet `restricted` (Alloy's chart sets no securityContext by
    default)."""
    for name in ("operator.yaml", "modelservices.yaml"):
        (app,) = load_all((ARGOCD / name).read_text())
        policy = app["spec"]["syncPolicy"]
        assert "CreateNamespace=true" in policy["syncOptions"], name
        labels = policy["managedNamespaceMetadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", name


def test_modelservice_application_syncs_the_example_modelservice() -> None:
    (app,) = load_all((ARGOCD / "modelservices.yaml").read_text())
    source = app["spec"]["source"]
    included = sorted((REPO_ROOT / source["path"]).glob(source["directory"]["include"]))
    kinds = {doc["kind"] for path in included for doc in load_all(path.read_text())}
    assert REPO_ROOT / "examples" / "modelservice.yaml" in included
    assert kinds == {"ModelService"}


def projects() -> dict[str, dict[str, Any]]:
    """The shipped AppProjects by name."""
    return {doc["metadata"]["name"]: doc for doc in load_all(PROJECTS.read_text())}


def matches(rules: list[dict[str, str]], group: str, kind: str, name: str) -> bool:
    """Whether a (cluster) resource whitelist admits group/kind/name, as Argo CD matches them:
    group and kind exactly or `*`, name a filepath.Match-style glob (fnmatch is close enough for
    the plain `prefix-*` patterns shipped here), no name meaning every name."""
    return any(
        rule["group"] in (group, "*")
        and rule["kind"] in (kind, "*")
        and fnmatch.fnmatchcase(name, rule.get("name", "*"))
        for rule in rules
    )


def test_every_application_is_confined_to_a_shipped_project_not_default() -> None:
    shipped = projects()
    for name in APPLICATIONS:
        (app,) = load_all((ARGOCD / name).read_text())
        spec = app["spec"]
        project = shipped[spec["project"]]["spec"]
        assert spec["source"]["repoURL"] in project["sourceRepos"], name
        destination = {k: spec["destination"][k] for k in ("server", "namespace")}
        assert destination in project["destinations"], name
        if "CreateNamespace=true" in spec["syncPolicy"]["syncOptions"]:
            namespace = spec["destination"]["namespace"]
            assert matches(project["clusterResourceWhitelist"], "", "Namespace", namespace), name
        assert "*" not in str(project["sourceRepos"]) + str(project["destinations"]), name


def test_the_modelservices_project_syncs_only_modelservices() -> None:
    project = projects()["aiops-modelservices"]["spec"]
    assert project["namespaceResourceWhitelist"] == [
        {"group": "aiops-quality.io", "kind": "ModelService"}
    ]
    whitelist = project["clusterResourceWhitelist"]
    assert not matches(whitelist, "rbac.authorization.k8s.io", "ClusterRoleBinding", "x")
    assert not matches(whitelist, "", "Namespace", "kube-system")


def test_the_platform_project_admits_what_the_operator_chart_renders(tmp_path: Path) -> None:
    """Every cluster-scoped object `helm template` renders for the operator Application is
    whitelisted by name, and nothing else of its kind would be."""
    (app,) = load_all((ARGOCD / "operator.yaml").read_text())
    project = projects()[app["spec"]["project"]]["spec"]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(app["spec"]["source"]["helm"]["valuesObject"]))
    helm = pinned_tool("helm")
    rendered = run(
        helm, "template", app["spec"]["source"]["helm"]["releaseName"],
        REPO_ROOT / app["spec"]["source"]["path"], "--include-crds", "-f", values,
        "--namespace", app["spec"]["destination"]["namespace"],
    ).stdout  # fmt: skip
    cluster_scoped = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace"}
    seen = 0
    for doc in load_all(rendered):
        group = doc["apiVersion"].rpartition("/")[0]
        if doc["kind"] in cluster_scoped:
            seen += 1
            name = doc["metadata"]["name"]
            assert matches(project["clusterResourceWhitelist"], group, doc["kind"], name), name
        else:
            namespace = doc["metadata"].get("namespace", app["spec"]["destination"]["namespace"])
            assert {"server": "https://kubernetes.default.svc", "namespace": namespace} in (
                project["destinations"]
            )
    assert seen >= 3, "the CRD, the ClusterRoles and their binding"
    whitelist = project["clusterResourceWhitelist"]
    assert not matches(whitelist, "apiextensions.k8s.io", "CustomResourceDefinition", "x.io")
    assert not matches(whitelist, "rbac.authorization.k8s.io", "ClusterRole", "cluster-admin")


@pytest.mark.integration
def test_applications_pass_server_side_dry_run_against_argo_cds_crd(
    cluster: Any, third_party_crds: dict[str, Path]
) -> None:
    apply_crd(cluster, third_party_crds["application"])
    apply_crd(cluster, third_party_crds["appproject"])
    cluster.kubectl("create", "namespace", "argocd", check=False)
    for name in ["projects.yaml", *APPLICATIONS]:
        proc = cluster.kubectl(
            "apply", "--dry-run=server", "--validate=strict", "-f", str(ARGOCD / name),
            check=False,
        )  # fmt: skip
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        assert "created (server dry run)" in proc.stdout


@pytest.mark.integration
def test_a_misspelt_project_field_is_rejected_by_the_crd(
    cluster: Any, third_party_crds: dict[str, Path]
) -> None:
    apply_crd(cluster, third_party_crds["appproject"])
    cluster.kubectl("create", "namespace", "argocd", check=False)
    project = projects()["aiops-modelservices"]
    project["spec"]["namespaceResourceWhitelist"][0]["kinds"] = "ModelService"
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-",
        input=yaml.safe_dump(project), check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "kinds" in proc.stderr


@pytest.mark.integration
def test_a_misspelt_application_field_is_rejected_by_the_crd(
    cluster: Any, third_party_crds: dict[str, Path]
) -> None:
    """The dry run above can fail: Argo CD's schema rejects what it does not know."""
    apply_crd(cluster, third_party_crds["application"])
    cluster.kubectl("create", "namespace", "argocd", check=False)
    (app,) = load_all((ARGOCD / "operator.yaml").read_text())
    app["spec"]["syncPolicy"]["automated"]["selfHeal"] = "sometimes"
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(app), check=False
    )
    assert proc.returncode != 0
    assert "selfHeal" in proc.stderr


@pytest.mark.integration
def test_health_check_patch_merges_into_argocd_cm_server_side(cluster: Any) -> None:
    cluster.kubectl("create", "namespace", "argocd", check=False)
    cluster.kubectl("-n", "argocd", "create", "configmap", "argocd-cm", check=False)
    proc = cluster.kubectl(
        "-n", "argocd", "patch", "configmap", "argocd-cm", "--type", "merge",
        "--patch-file", str(CM_PATCH), "--dry-run=server", "-o", "json",
    )  # fmt: skip
    patched = json.loads(proc.stdout)
    shipped = yaml.safe_load(CM_PATCH.read_text())["data"][HEALTH_KEY]
    assert patched["data"][HEALTH_KEY] == shipped
