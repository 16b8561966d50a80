"""The Helm charts: lint, rendering, the operator's settings and security, server-side validity
on the local control plane, and a real `helm install`."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiops_operator.settings import ENV_PREFIX, OperatorSettings
from tests.delivery.delivery_helpers import (
    MONITORING_CHART,
    NO_DEPENDENCIES,
    OPERATOR_CHART,
    REPO_ROOT,
    apply_crd,
    load_all,
    run,
)

Render = Callable[..., list[dict[str, Any]]]
CRD_FILE = "modelservices.aiops-quality.io.yaml"
DASHBOARD = MONITORING_CHART / "files" / "dashboards" / "aiops-quality.json"


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = _by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_operator_chart_lints_clean_in_strict_mode(helm: Path) -> None:
    out = run(helm, "lint", OPERATOR_CHART, "--strict").stdout
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out


def test_monitoring_chart_lint_only_misses_the_undownloadable_dependencies(helm: Path) -> None:
    out = run(helm, "lint", MONITORING_CHART).stdout
    warnings = [line for line in out.splitlines() if "[WARNING]" in line or "[ERROR]" in line]
    assert warnings == [
        f"[WARNING] {MONITORING_CHART}: chart directory is missing these dependencies: "
        "loki,promtail,grafana"
    ]


def test_monitoring_chart_own_templates_lint_clean_without_dependencies(
    helm: Path, monitoring_chart_without_dependencies: Path
) -> None:
    out = run(helm, "lint", monitoring_chart_without_dependencies, "--strict", *NO_DEPENDENCIES)
    assert "[WARNING]" not in out.stdout
    assert "0 chart(s) failed" in out.stdout


def test_operator_chart_ships_the_generated_crd() -> None:
    shipped = (OPERATOR_CHART / "crds" / CRD_FILE).read_text()
    assert shipped == (REPO_ROOT / "crds" / CRD_FILE).read_text()


def test_operator_chart_has_a_value_with_the_operators_default_for_every_setting() -> None:
    values = yaml.safe_load((OPERATOR_CHART / "values.yaml").read_text())
    expected = {
        _camel(name): field.default for name, field in OperatorSettings.model_fields.items()
    }
    assert values["settings"] == expected


def test_every_operator_setting_reaches_the_container_environment(render: Render) -> None:
    env = {e["name"]: e["value"] for e in _operator_container(render(OPERATOR_CHART))["env"]}
    for name, field in OperatorSettings.model_fields.items():
        key = f"{ENV_PREFIX}{name.upper()}"
        assert key in env, f"{key} is not rendered"
        # The operator parses what the chart renders back to its own default.
        parsed = OperatorSettings(**{name: env[key]})
        assert getattr(parsed, name) == field.default


def test_a_changed_setting_is_rendered_and_a_null_one_left_out(render: Render) -> None:
    docs = render(
        OPERATOR_CHART,
        "--set",
        "settings.namespaces=team-a\\,team-b",
        "--set",
        "settings.verbose=null",
    )
    env = {e["name"]: e["value"] for e in _operator_container(docs)["env"]}
    assert env[f"{ENV_PREFIX}NAMESPACES"] == "team-a,team-b"
    assert f"{ENV_PREFIX}VERBOSE" not in env


def test_operator_pod_is_restricted_single_and_probed_on_kopf_liveness(render: Render) -> None:
    docs = render(OPERATOR_CHART)
    (deployment,) = _by_kind(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    container = _operator_container(docs)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    default_url = OperatorSettings.model_fields["liveness_endpoint"].default
    assert default_url.endswith(":8080/healthz")
    metrics_port = OperatorSettings.model_fields["metrics_port"].default
    assert container["ports"] == [
        {"name": "liveness", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"},
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}


def test_liveness_probe_follows_the_liveness_endpoint_setting(render: Render) -> None:
    moved = _operator_container(
        render(OPERATOR_CHART, "--set", "settings.livenessEndpoint=http://0.0.0.0:9099/alive")
    )
    assert moved["ports"][0]["containerPort"] == 9099
    assert moved["livenessProbe"]["httpGet"]["path"] == "/alive"
    disabled = _operator_container(render(OPERATOR_CHART, "--set", "settings.livenessEndpoint="))
    assert "livenessProbe" not in disabled
    assert [p["name"] for p in disabled["ports"]] == ["metrics"]
    quiet = _operator_container(
        render(OPERATOR_CHART, "--set", "settings.livenessEndpoint=,settings.metricsPort=0")
    )
    assert "ports" not in quiet


def test_cluster_role_rules_are_the_generated_ones(render: Render) -> None:
    from aiops_operator.rbac import cluster_rules, namespaced_rules, rules, trigger_reader_rules

    operator, reader = _by_kind(render(OPERATOR_CHART), "ClusterRole")
    assert operator["rules"] == rules()
    assert reader["metadata"]["name"].endswith("-retrain-trigger")
    assert reader["rules"] == trigger_reader_rules("aiops-retrain-trigger")
    assert all("secrets" not in r["resources"] for r in operator["rules"])
    assert not _by_kind(render(OPERATOR_CHART), "Role")
    assert not _by_kind(render(OPERATOR_CHART), "RoleBinding")
    # Serving listed namespaces: cluster-scoped reads only, a Role in each namespace.
    docs = render(OPERATOR_CHART, "--set-string", "settings.namespaces=team-a\\, team-b")
    operator, _ = _by_kind(docs, "ClusterRole")
    assert operator["rules"] == cluster_rules()
    roles = {r["metadata"]["namespace"]: r["rules"] for r in _by_kind(docs, "Role")}
    assert roles == {"team-a": namespaced_rules(), "team-b": namespaced_rules()}
    bound = {b["metadata"]["namespace"] for b in _by_kind(docs, "RoleBinding")}
    assert bound == {"team-a", "team-b"}


def test_retrain_namespaces_are_opted_in_with_a_role_binding_to_the_trigger_reader(
    render: Render,
) -> None:
    docs = render(OPERATOR_CHART, "--set", "rbac.retrainNamespaces={ml-a,ml-b}",
                  "--set", "settings.retrainSecretName=ci-trigger")  # fmt: skip
    (_, reader) = _by_kind(docs, "ClusterRole")
    assert reader["rules"][0]["resourceNames"] == ["ci-trigger"]
    bindings = _by_kind(docs, "RoleBinding")
    assert {b["metadata"]["namespace"] for b in bindings} == {"ml-a", "ml-b"}
    assert {b["roleRef"]["name"] for b in bindings} == {reader["metadata"]["name"]}


@pytest.mark.parametrize("chart", ["operator", "monitoring"])
def test_namespaced_objects_land_in_the_release_namespace(
    chart: str, render: Render, monitoring_chart_without_dependencies: Path
) -> None:
    if chart == "operator":
        docs = render(OPERATOR_CHART, namespace="team-ns")
    else:
        docs = render(monitoring_chart_without_dependencies, *NO_DEPENDENCIES, namespace="team-ns")
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
    for doc in docs:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"]["namespace"] == "team-ns", doc["kind"]
    for binding in _by_kind(docs, "ClusterRoleBinding"):
        assert {s["namespace"] for s in binding["subjects"]} == {"team-ns"}


def test_dashboard_configmap_carries_every_dashboard_file(
    render: Render, monitoring_chart_without_dependencies: Path
) -> None:
    docs = render(monitoring_chart_without_dependencies, *NO_DEPENDENCIES)
    (configmap,) = [d for d in docs if d["metadata"]["name"].endswith("-dashboards")]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["aiops-quality.json"]) == json.loads(DASHBOARD.read_text())


def test_dashboard_covers_the_operational_questions() -> None:
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert {
        "Requests per second",
        "Latency p50 / p99",
        "Errors by reason",
        "Batch size (rows per model call)",
        "Drift p-value vs threshold",
        "Drift events and checks",
        "Drift window fill",
    } <= titles


def test_grafana_datasources_name_the_uids_the_dashboard_uses(
    render: Render, monitoring_chart_without_dependencies: Path
) -> None:
    docs = render(monitoring_chart_without_dependencies, *NO_DEPENDENCIES)
    (configmap,) = [d for d in docs if d["metadata"]["name"].endswith("-datasources")]
    provisioning = yaml.safe_load(configmap["data"]["aiops-quality-datasources.yaml"])
    provided = {(d["type"], d["uid"]) for d in provisioning["datasources"]}
    used = {
        (p["datasource"]["type"], p["datasource"]["uid"])
        for p in json.loads(DASHBOARD.read_text())["panels"]
    }
    assert used == provided == {("prometheus", "prometheus"), ("loki", "loki")}


# --- against the local control plane ------------------------------------------------------------


def _dry_run_server(cluster: Any, manifests: str, namespace: str) -> str:
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifests, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.integration
def test_operator_chart_validates_server_side(cluster: Any, helm: Path) -> None:
    cluster.kubectl("create", "namespace", "chart-dry-run")
    rendered = run(
        helm, "template", "aiops", OPERATOR_CHART, "--namespace", "chart-dry-run", "--include-crds"
    ).stdout
    out = _dry_run_server(cluster, rendered, "chart-dry-run")
    # Other tests of the session may have installed the CRD already: then it is unchanged.
    crd, *rest = out.splitlines()
    assert re.fullmatch(
        r"customresourcedefinition.apiextensions.k8s.io/modelservices.aiops-quality.io"
        r" (created|unchanged|configured) \(server dry run\)",
        crd,
    ), crd
    assert rest == [
        "serviceaccount/aiops-aiops-operator created (server dry run)",
        "clusterrole.rbac.authorization.k8s.io/aiops-aiops-operator created (server dry run)",
        "clusterrole.rbac.authorization.k8s.io/aiops-aiops-operator-retrain-trigger created"
        " (server dry run)",
        "clusterrolebinding.rbac.authorization.k8s.io/aiops-aiops-operator created"
        " (server dry run)",
        "deployment.apps/aiops-aiops-operator created (server dry run)",
    ]


@pytest.mark.integration
def test_monitoring_templates_validate_server_side(
    cluster: Any,
    helm: Path,
    third_party_crds: dict[str, Path],
    monitoring_chart_without_dependencies: Path,
) -> None:
    apply_crd(cluster, third_party_crds["prometheusrule"])
    cluster.kubectl("create", "namespace", "monitoring-dry-run")
    rendered = run(
        helm,
        "template",
        "aiops-monitoring",
        monitoring_chart_without_dependencies,
        "--namespace",
        "monitoring-dry-run",
        *NO_DEPENDENCIES,
    ).stdout
    kinds = {d["kind"] for d in load_all(rendered)}
    assert kinds == {"ConfigMap", "Secret", "PrometheusRule"}
    out = _dry_run_server(cluster, rendered, "monitoring-dry-run")
    assert "prometheusrule.monitoring.coreos.com/aiops-monitoring created (server dry run)" in out


@pytest.mark.integration
def test_helm_install_of_the_operator_chart_creates_everything(cluster: Any, helm: Path) -> None:
    release, namespace = "aiops", "delivery-helm-install"
    env = cluster.env
    # The namespace enforces the "restricted" Pod Security Standard: a pod that breaks it is
    # refused at admission and the install cannot become ready.
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    proc = run(
        helm, "install", release, OPERATOR_CHART, "--namespace", namespace,
        "--wait", "--timeout", "180s", env=env, timeout=240, check=False,
    )  # fmt: skip
    try:
        assert proc.returncode == 0, proc.stderr
        crd = json.loads(
            cluster.kubectl("get", "crd", "modelservices.aiops-quality.io", "-o", "json").stdout
        )
        established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert established["Established"] == "True"
        name = "aiops-aiops-operator"
        cluster.kubectl("-n", namespace, "get", f"serviceaccount/{name}")
        cluster.kubectl("get", f"clusterrole/{name}", f"clusterrolebinding/{name}")
        can = cluster.kubectl(
            "auth", "can-i", "watch", "modelservices.aiops-quality.io", "--all-namespaces",
            f"--as=system:serviceaccount:{namespace}:{name}", check=False,
        )  # fmt: skip
        assert can.stdout.strip() == "yes"
        deployment = json.loads(
            cluster.kubectl("-n", namespace, "get", f"deployment/{name}", "-o", "json").stdout
        )
        assert deployment["status"].get("readyReplicas") == 1
        status = run(helm, "status", release, "-n", namespace, "-o", "json", env=env).stdout
        assert json.loads(status)["info"]["status"] == "deployed"
    finally:
        run(helm, "uninstall", release, "-n", namespace, "--wait", env=env, check=False)
        _wait_gone(cluster, namespace, "deployment/aiops-aiops-operator")


def _wait_gone(cluster: Any, namespace: str, ref: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cluster.kubectl("-n", namespace, "get", ref, check=False).returncode != 0:
            return
        time.sleep(1)
