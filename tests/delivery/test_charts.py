"""The Helm charts: lint, rendering, the operator's settings and security, the monitoring chart's
Alloy pipeline (checked with Alloy's own parser), server-side validity on the local control
plane, and a real `helm install`."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiops_operator.manifests import CONTAINER_NAME
from aiops_operator.settings import ENV_PREFIX, OperatorSettings
from aiops_runtime.logs import JsonFormatter
from tests.delivery.delivery_helpers import (
    MONITORING_CHART,
    NO_DEPENDENCIES,
    OPERATOR_CHART,
    REPO_ROOT,
    alloy_attribute,
    alloy_blocks,
    alloy_config_values,
    alloy_object,
    alloy_string,
    alloy_strings,
    apply_crd,
    load_all,
    run,
)
from tests.helpers import pinned_tool

Render = Callable[..., list[dict[str, Any]]]
CRD_FILE = "modelservices.aiops-quality.io.yaml"
# Chart values that differ from the operator's own defaults, on purpose: a local run acts at once,
# the chart's replicas elect a leader.
CHART_OVERRIDES = {"leader_election": True}
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
        "loki,alloy,grafana"
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
        _camel(name): CHART_OVERRIDES.get(name, field.default)
        for name, field in OperatorSettings.model_fields.items()
    }
    assert values["settings"] == expected


def test_every_operator_setting_reaches_the_container_environment(render: Render) -> None:
    env = {e["name"]: e["value"] for e in _operator_container(render(OPERATOR_CHART))["env"]}
    for name, field in OperatorSettings.model_fields.items():
        key = f"{ENV_PREFIX}{name.upper()}"
        assert key in env, f"{key} is not rendered"
        # The operator parses what the chart renders back to its own default.
        parsed = OperatorSettings(**{name: env[key]})
        assert getattr(parsed, name) == CHART_OVERRIDES.get(name, field.default)


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


def test_operator_pod_is_restricted_two_replicas_and_probed_on_kopf_liveness(
    render: Render,
) -> None:
    docs = render(OPERATOR_CHART)
    (deployment,) = _by_kind(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
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
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}


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
    assert not _by_kind(render(OPERATOR_CHART, "--set", "settings.leaderElection=false"), "Role")
    # Serving listed namespaces: cluster-scoped reads only, a Role in each namespace.
    docs = render(OPERATOR_CHART, "--set-string", "settings.namespaces=team-a\\, team-b")
    operator, _ = _by_kind(docs, "ClusterRole")
    assert operator["rules"] == cluster_rules()
    served = [r for r in _by_kind(docs, "Role") if not _leader_election(r)]
    roles = {r["metadata"]["namespace"]: r["rules"] for r in served}
    assert roles == {"team-a": namespaced_rules(), "team-b": namespaced_rules()}
    bindings = [b for b in _by_kind(docs, "RoleBinding") if not _leader_election(b)]
    assert {b["metadata"]["namespace"] for b in bindings} == {"team-a", "team-b"}


def _leader_election(doc: dict[str, Any]) -> bool:
    return bool(doc["metadata"]["name"].endswith("-leader-election"))


def test_leader_election_may_write_only_its_one_lease_in_the_release_namespace(
    render: Render,
) -> None:
    from aiops_operator.rbac import lease_rules

    docs = render(OPERATOR_CHART, "--set", "settings.leaderElectionLeaseName=ops-lease")
    (role,) = _by_kind(docs, "Role")
    (binding,) = _by_kind(docs, "RoleBinding")
    assert _leader_election(role)
    assert role["metadata"]["namespace"] == "aiops-system"
    assert role["rules"] == lease_rules("ops-lease")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (account,) = _by_kind(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "aiops-system"}
    ]


def test_retrain_namespaces_are_opted_in_with_a_role_binding_to_the_trigger_reader(
    render: Render,
) -> None:
    docs = render(OPERATOR_CHART, "--set", "rbac.retrainNamespaces={ml-a,ml-b}",
                  "--set", "settings.retrainSecretName=ci-trigger")  # fmt: skip
    (_, reader) = _by_kind(docs, "ClusterRole")
    assert reader["rules"][0]["resourceNames"] == ["ci-trigger"]
    bindings = [b for b in _by_kind(docs, "RoleBinding") if not _leader_election(b)]
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


# --- the log pipeline: Grafana Alloy ------------------------------------------------------------
# The alloy chart cannot be downloaded here, so Alloy's ConfigMap is rendered the way that chart
# renders it (its templates/configmap.yaml: `tpl` of alloy.configMap.content) from a copy of our
# chart; Alloy itself does not run here.

# The labels Alloy gives the runtime's streams, which Loki queries (and the dashboard) select on.
ALLOY_POD_LABELS = {"namespace", "pod", "container", "app", "instance", "component", "node_name"}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


@pytest.fixture(scope="module")
def alloy_config(
    helm: Path,
    monitoring_chart_without_dependencies: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The Alloy configuration of release "release" in namespace "monitoring", rendered with
    the alloy chart's own template line."""
    chart = tmp_path_factory.mktemp("alloy") / MONITORING_CHART.name
    shutil.copytree(monitoring_chart_without_dependencies, chart)
    (chart / "templates" / "alloy-configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: alloy\ndata:\n"
        "  config.alloy: |- {{- (tpl .Values.alloy.alloy.configMap.content .) | nindent 4 }}\n"
    )
    out = run(
        helm, "template", "release", chart, "--namespace", "monitoring", *NO_DEPENDENCIES,
        "--show-only", "templates/alloy-configmap.yaml",
    ).stdout  # fmt: skip
    (configmap,) = load_all(out)
    return str(configmap["data"]["config.alloy"]) + "\n"


def _block(text: str, name: str) -> str:
    (block,) = alloy_blocks(text, name)
    return block[2]


def _process_stages(config: str) -> dict[str, str]:
    return {name: body for name, _, body in alloy_blocks(_block(config, "loki.process"))}


def test_monitoring_chart_ships_logs_with_the_alloy_daemonset() -> None:
    chart = yaml.safe_load((MONITORING_CHART / "Chart.yaml").read_text())
    dependencies = {d["name"]: d for d in chart["dependencies"]}
    assert list(dependencies) == ["loki", "alloy", "grafana"]
    assert dependencies["alloy"]["condition"] == "alloy.enabled"
    assert {d["repository"] for d in dependencies.values()} == {
        "https://grafana.github.io/helm-charts"
    }
    values = yaml.safe_load((MONITORING_CHART / "values.yaml").read_text())
    # Our own keys, then exactly the three dependencies' (no stale key of a former one).
    assert list(values)[-3:] == ["loki", "alloy", "grafana"]
    assert set(values) - set(dependencies) == {
        "nameOverride", "fullnameOverride", "dashboards", "datasources", "prometheusRule",
        "scrapeConfig",
    }  # fmt: skip
    alloy = values["alloy"]
    assert alloy["enabled"] is True
    assert alloy["controller"]["type"] == "daemonset"
    # The logs come through the Kubernetes API (loki.source.kubernetes): no host path.
    assert alloy["alloy"]["mounts"]["varlog"] is False
    assert alloy["alloy"]["configMap"]["content"] == alloy_config_values()


def test_alloy_config_renders_with_this_releases_loki_gateway(
    alloy_config: str, render: Render, monitoring_chart_without_dependencies: Path
) -> None:
    assert "{{" not in alloy_config
    url = alloy_string(
        alloy_attribute(_block(_block(alloy_config, "loki.write"), "endpoint"), "url")
    )
    assert url == "http://release-loki-gateway/loki/api/v1/push"
    # Grafana's Loki datasource reads from the same gateway Service.
    docs = render(monitoring_chart_without_dependencies, *NO_DEPENDENCIES, namespace="monitoring")
    (configmap,) = [d for d in docs if d["metadata"]["name"].endswith("-datasources")]
    provisioning = yaml.safe_load(configmap["data"]["aiops-quality-datasources.yaml"])
    (loki,) = [d for d in provisioning["datasources"] if d["type"] == "loki"]
    assert loki["url"] == "http://release-loki-gateway.monitoring.svc"


def test_alloy_tails_only_the_runtime_containers_of_its_own_node(alloy_config: str) -> None:
    discovery = _block(alloy_config, "discovery.kubernetes")
    assert alloy_string(alloy_attribute(discovery, "role")) == "pod"
    selectors = _block(discovery, "selectors")
    assert alloy_string(alloy_attribute(selectors, "role")) == "pod"
    # The alloy chart sets HOSTNAME to spec.nodeName: each DaemonSet pod sees its node's pods.
    assert alloy_attribute(selectors, "field") == (
        '"spec.nodeName=" + coalesce(sys.env("HOSTNAME"), constants.hostname)'
    )
    relabel = _block(alloy_config, "discovery.relabel")
    assert alloy_attribute(relabel, "targets") == "discovery.kubernetes.pods.targets"
    keep, *rules = [body for _, _, body in alloy_blocks(relabel, "rule")]
    assert alloy_string(alloy_attribute(keep, "action")) == "keep"
    assert alloy_strings(alloy_attribute(keep, "source_labels")) == [
        "__meta_kubernetes_pod_container_name"
    ]
    assert alloy_string(alloy_attribute(keep, "regex")) == CONTAINER_NAME
    written = {alloy_string(alloy_attribute(rule, "target_label")) for rule in rules}
    assert written == ALLOY_POD_LABELS | {"job"}
    # Every label the dashboard's Loki queries select on is one Alloy writes.
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] == "loki":
                selector = re.match(r"\{([^}]*)\}", target["expr"])
                assert selector, target["expr"]
                used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector.group(1)))
                assert used <= written, f"{panel['title']}: {used - written}"
    source = _block(alloy_config, "loki.source.kubernetes")
    assert alloy_attribute(source, "targets") == "discovery.relabel.runtime.output"
    assert alloy_attribute(source, "forward_to") == "[loki.process.runtime.receiver]"


def test_alloy_references_only_components_it_defines(alloy_config: str) -> None:
    defined = {f"{name}.{label}" for name, label, _ in alloy_blocks(alloy_config)}
    # Dotted paths that are not block headers (those are followed by their label).
    paths = re.findall(r'\b(?:discovery|local|loki)(?:\.\w+)+(?![\w.])(?!\s*")', alloy_config)
    assert paths, "no references found"
    for path in paths:
        component, _, export = path.rpartition(".")
        assert component in defined, path
        assert export in {"targets", "output", "receiver"}, path
    assert alloy_attribute(_block(alloy_config, "loki.process"), "forward_to") == (
        "[loki.write.loki.receiver]"
    )


def test_alloy_parses_the_runtime_json_lines_into_labels_and_metadata(alloy_config: str) -> None:
    stages = _process_stages(alloy_config)
    assert list(stages) == [
        "stage.json",
        "stage.timestamp",
        "stage.labels",
        "stage.structured_metadata",
    ]
    expressions = alloy_object(alloy_attribute(stages["stage.json"], "expressions"))
    assert expressions == {k: k for k in ("time", "level", "model", "message", "request_id")}
    assert alloy_string(alloy_attribute(stages["stage.timestamp"], "source")) == "time"
    assert alloy_string(alloy_attribute(stages["stage.timestamp"], "format")) == "RFC3339"
    # Labels only for the few-valued keys; request_id (one per request) is structured metadata.
    labels = alloy_object(alloy_attribute(stages["stage.labels"], "values"))
    assert labels == {"level": "", "model": ""}
    metadata = alloy_object(alloy_attribute(stages["stage.structured_metadata"], "values"))
    assert metadata == {"request_id": ""}
    assert set(labels) | set(metadata) <= set(expressions)


def test_the_runtimes_json_formatter_writes_every_key_alloy_extracts(alloy_config: str) -> None:
    """The formatter alone; test_prometheus.py checks the lines of a real runtime too."""
    expressions = alloy_object(
        alloy_attribute(_process_stages(alloy_config)["stage.json"], "expressions")
    )
    record = logging.makeLogRecord(
        {"name": "aiops_runtime.access", "levelno": logging.INFO, "levelname": "INFO",
         "msg": "Request served", "request_id": "4f1c"}
    )  # fmt: skip
    line = json.loads(JsonFormatter("breast-cancer").format(record))
    assert set(expressions.values()) <= line.keys()
    assert line["model"] == "breast-cancer"
    assert line["level"] == "INFO"
    assert RFC3339.fullmatch(line["time"]), line["time"]
    datetime.fromisoformat(line["time"])


@pytest.fixture(scope="module")
def alloy_syntax() -> Path:
    """hack/alloy-syntax: the parser of Alloy's syntax module (cached per user)."""
    return pinned_tool("alloy-syntax")


@pytest.mark.integration
def test_alloy_config_parses_with_alloys_own_parser(
    alloy_syntax: Path, alloy_config: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.alloy"
    config.write_text(alloy_config)
    blocks = json.loads(run(alloy_syntax, config).stdout)
    assert [(b["name"], b["label"]) for b in blocks] == [
        (name, label) for name, label, _ in alloy_blocks(alloy_config)
    ]
    assert [b["name"] for b in blocks] == [
        "discovery.kubernetes",
        "discovery.relabel",
        "loki.source.kubernetes",
        "loki.process",
        "loki.write",
    ]
    # Formatted as `alloy fmt` prints it, but indented with two spaces instead of tabs (YAML).
    formatted = run(alloy_syntax, "-fmt", config).stdout
    spaces = re.sub(r"(?m)^\t+", lambda m: "  " * len(m.group(0)), formatted)
    assert spaces == alloy_config


@pytest.mark.integration
@pytest.mark.parametrize(
    ("good", "broken"),
    [
        ('format = "RFC3339"', 'format = "RFC3339'),  # unterminated string
        ('role = "pod"\n', 'role "pod"\n'),  # attribute without =
        (
            "  forward_to = [loki.write.loki.receiver]\n",
            "  forward_to = [loki.write.loki.receiver\n",
        ),
    ],
)
def test_a_broken_alloy_config_fails_to_parse(
    alloy_syntax: Path, alloy_config: str, tmp_path: Path, good: str, broken: str
) -> None:
    assert good in alloy_config
    config = tmp_path / "config.alloy"
    config.write_text(alloy_config.replace(good, broken, 1))
    proc = run(alloy_syntax, config, check=False)
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout == ""
    assert re.match(rf"{re.escape(str(config))}:\d+:\d+: ", proc.stderr), proc.stderr


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
        "role.rbac.authorization.k8s.io/aiops-aiops-operator-leader-election created"
        " (server dry run)",
        "rolebinding.rbac.authorization.k8s.io/aiops-aiops-operator-leader-election created"
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
        # Both ready: the leader serving, the standby standing by (readiness says which).
        assert deployment["status"].get("readyReplicas") == 2
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
