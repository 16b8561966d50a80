"""Monitoring proven on a real Prometheus (Debian's prometheus and promtool): the scrape job for
the operator's prometheus.io/* annotations, the alert rules, and every dashboard query against a
Prometheus scraping a real runtime."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from aiops_operator.manifests import Owner, RenderOptions, build_deployment
from aiops_operator.spec import ModelServiceSpec
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
    run,
    stop,
)
from tests.helpers import free_port, wait_runtime_ready

FILES = MONITORING_CHART / "files"
RULES = FILES / "prometheus-rules.yaml"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")
SCRAPE_JOBS = FILES / "scrape-configs.yaml"
DASHBOARD = FILES / "dashboards" / "aiops-quality.json"
EXAMPLE = REPO_ROOT / "examples" / "modelservice.yaml"
# What Grafana substitutes before a query reaches Prometheus ("All" is the regex .*).
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$modelservice": ".*"}
NAMESPACE = "aiops-quality"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """promtool from Debian's prometheus package (make system-deps installs it)."""
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run `make system-deps`"
    return run(binary, *args)


def prometheus_config(scrape_configs: list[dict[str, Any]]) -> dict[str, Any]:
    """A Prometheus config with our rules and the given scrape jobs."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": scrape_configs,
    }


def _prometheus_label(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def example_pod_template() -> tuple[dict[str, Any], dict[str, Any]]:
    """The runtime pod template the operator renders for examples/modelservice.yaml, in the
    annotations scrape mode (no ServiceMonitor CRD), and its container."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    spec = ModelServiceSpec.model_validate(doc["spec"])
    owner = Owner(name=doc["metadata"]["name"], namespace=NAMESPACE, uid="uid-1", generation=1)
    deployment = build_deployment(owner, spec, RenderOptions(servicemonitor_available=False))
    template = deployment["spec"]["template"]
    return template, template["spec"]["containers"][0]


def discovered_as_static(job: dict[str, Any], address: str, pod: dict[str, Any]) -> dict[str, Any]:
    """The scrape job with Kubernetes pod discovery replaced by one static target carrying the
    __meta_kubernetes_* labels discovery would give that pod; the job's relabelling is unchanged."""
    meta = pod["metadata"]
    labels = {
        "__meta_kubernetes_namespace": NAMESPACE,
        "__meta_kubernetes_pod_name": f"{meta['labels']['app.kubernetes.io/instance']}-0",
    }
    for key, value in meta["labels"].items():
        labels[f"__meta_kubernetes_pod_label_{_prometheus_label(key)}"] = value
    for key, value in meta.get("annotations", {}).items():
        labels[f"__meta_kubernetes_pod_annotation_{_prometheus_label(key)}"] = value
    static = {k: v for k, v in job.items() if k != "kubernetes_sd_configs"}
    static["static_configs"] = [{"targets": [address], "labels": labels}]
    return static


# --- promtool, no server --------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    out = promtool("check", "rules", RULES).stdout
    assert "SUCCESS: 7 rules found" in out


def test_every_alert_fires_and_stays_silent_in_promtool_unit_tests() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    for alert in alerts:
        cases = [c for t in tests for c in t["alert_rule_test"] if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in cases), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in cases), f"{alert}: no case where it is silent"
    assert "SUCCESS" in promtool("test", "rules", ALERT_TESTS).stdout


def test_prometheus_rule_of_the_chart_is_the_tested_rules_file(
    render: Any, monitoring_chart_without_dependencies: Path
) -> None:
    docs = render(monitoring_chart_without_dependencies, *NO_DEPENDENCIES)
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_scrape_job_for_operator_annotations_passes_promtool_check_config(
    tmp_path: Path,
    render: Any,
    monitoring_chart_without_dependencies: Path,
    promtool_with_kubernetes_sd: Path,
) -> None:
    docs = render(monitoring_chart_without_dependencies, *NO_DEPENDENCIES)
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    jobs = yaml.safe_load(secret["stringData"]["additional-scrape-configs.yaml"])
    assert jobs == yaml.safe_load(SCRAPE_JOBS.read_text())
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(jobs)))
    out = run(promtool_with_kubernetes_sd, "check", "config", config).stdout
    assert "SUCCESS" in out


def scrape_job(name: str) -> dict[str, Any]:
    """One job of files/scrape-configs.yaml by its job_name."""
    (job,) = [j for j in yaml.safe_load(SCRAPE_JOBS.read_text()) if j["job_name"] == name]
    return job  # type: ignore[no-any-return]


def kept_by(job: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Whether the job's `keep` rules keep a pod with these labels and annotations, as
    Prometheus's kubernetes_sd names them (non-alphanumerics become `_`)."""
    meta = {}
    for kind, values in (("label", "labels"), ("annotation", "annotations")):
        for key, value in (metadata.get(values) or {}).items():
            meta[f"__meta_kubernetes_pod_{kind}_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}"] = value
    return all(
        re.fullmatch(rule["regex"], ";".join(meta.get(n, "") for n in rule["source_labels"]))
        for rule in job["relabel_configs"]
        if rule.get("action") == "keep"
    )


def operator_pod(render: Any, *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operator chart's pod metadata and its container."""
    docs = render(OPERATOR_CHART, *args)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    return template["metadata"], template["spec"]["containers"][0]


def test_the_operator_job_scrapes_every_operator_replica_and_no_runtime(render: Any) -> None:
    metadata, container = operator_pod(render)
    annotations = metadata["annotations"]
    (metrics,) = [p for p in container["ports"] if p["name"] == "metrics"]

    assert kept_by(scrape_job("aiops-operator"), metadata)
    assert annotations["prometheus.io/port"] == str(metrics["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    assert not kept_by(scrape_job("aiops-runtime-pods"), metadata)
    assert not kept_by(scrape_job("aiops-operator"), example_pod_template()[0]["metadata"])
    # No metrics port, nothing to scrape: no annotations that would make a target fail.
    metadata, _ = operator_pod(render, "--set", "settings.metricsPort=0")
    assert "prometheus.io/scrape" not in metadata["annotations"]
    metadata, _ = operator_pod(render, "--set", "metrics.scrapeAnnotations=false")
    assert not kept_by(scrape_job("aiops-operator"), metadata)


def test_scrape_job_keeps_exactly_the_annotations_the_operator_emits() -> None:
    template, container = example_pod_template()
    annotations = template["metadata"]["annotations"]
    job = scrape_job("aiops-runtime-pods")
    assert kept_by(job, template["metadata"])
    kept = {
        tuple(r["source_labels"]): r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    assert kept[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"
    assert annotations["prometheus.io/scrape"] == "true"
    managed_by = template["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    assert re.fullmatch(
        kept[("__meta_kubernetes_pod_label_app_kubernetes_io_managed_by",)], managed_by
    )
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


# --- a real Prometheus scraping a real runtime ----------------------------------------------------


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: process exited {proc.returncode}\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer 200 within {timeout_s}s\n{log.read_text()[-3000:]}")


@pytest.fixture
def runtime_server(tmp_path: Path, example_model_dir: Path) -> Iterator[tuple[str, Path]]:
    """`aiops-runtime serve` as a subprocess, with the drift settings the operator renders for
    the example ModelService; yields its base URL and its stdout log file."""
    _, container = example_pod_template()
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    drift_env = {k: v for k, v in env.items() if k.startswith("DRIFT_") or k == "MODEL_NAME"}
    drift_env.pop("DRIFT_CONFIG_FILE", None)  # the ConfigMap volume exists only in a pod
    port = free_port()
    log = tmp_path / "runtime.log"
    binary = Path(os.environ.get("VIRTUAL_ENV", REPO_ROOT / ".venv")) / "bin" / "aiops-runtime"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                *(str(binary), "serve", "--model-dir", str(example_model_dir)),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            env={**os.environ, **drift_env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_runtime_ready(url, 60, proc, log)
        yield url, log
    finally:
        stop(proc)


@pytest.fixture
def prometheus_server(tmp_path: Path, runtime_server: tuple[str, Path]) -> Iterator[str]:
    """Debian's prometheus on a free loopback port, tmp storage, scraping the runtime through the
    shipped scrape job (discovery replaced by the pod the operator would create)."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: run `make system-deps`"
    runtime_url, _ = runtime_server
    template, _ = example_pod_template()
    # The one liberty taken: the annotated port (8000 in a pod) is the local runtime's free port.
    local_port = runtime_url.rsplit(":", 1)[1]
    template["metadata"]["annotations"]["prometheus.io/port"] = local_port
    job = scrape_job("aiops-runtime-pods")
    static_job = discovered_as_static(job, "127.0.0.1:1", template)
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config([static_job])))
    promtool("check", "config", config)
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                *(binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"),
                *(f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/-/ready", 60, proc, log)
        yield url
    finally:
        stop(proc)


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return answer["data"]["result"]


def _wait_for_data(prometheus: str, expr: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = _query(prometheus, expr)
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"no data for {expr} within {timeout_s}s")


def _drive_traffic(runtime: str, reference: np.ndarray) -> None:
    """In-distribution traffic, rejected requests, then shifted rows until a drift event."""
    rng = np.random.default_rng(7)
    with httpx.Client(base_url=runtime, timeout=10) as client:
        for _ in range(10):
            rows = reference[rng.choice(len(reference), 25)]
            assert client.post("/predict", json={"instances": rows.tolist()}).status_code == 200
            assert client.post("/predict", json={"features": rows[0].tolist()}).status_code == 200
        for _ in range(5):
            assert client.post("/predict", json={"features": [1.0, 2.0]}).status_code == 422
        for _ in range(60):
            rows = reference[rng.choice(len(reference), 25)] * 3.0 + 5.0
            assert client.post("/predict", json={"instances": rows.tolist()}).status_code == 200
            if client.get("/drift").json().get("drift_events", 0) > 0:
                return
            time.sleep(0.05)
    pytest.fail("the runtime raised no drift event for heavily shifted traffic")


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every Prometheus target of the dashboard, variables resolved."""
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] != "prometheus":
                continue
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unresolved variable in {panel['title']}: {expr}"
            queries.append((panel["title"], expr))
    return queries


@pytest.mark.integration
def test_every_dashboard_query_returns_data_from_a_real_prometheus_scraping_the_runtime(
    runtime_server: tuple[str, Path], prometheus_server: str, example_model_dir: Path
) -> None:
    runtime, _ = runtime_server
    reference = np.load(example_model_dir / "reference.npy")
    # Two scrapes before the traffic, so rate() and increase() have a baseline.
    up = _wait_for_data(prometheus_server, 'up{job="aiops-runtime-pods"} == 1')
    assert up[0]["metric"]["modelservice"] == "breast-cancer"
    assert up[0]["metric"]["namespace"] == NAMESPACE
    time.sleep(2.5)
    _drive_traffic(runtime, reference)
    _wait_for_data(prometheus_server, "model_drift_events_total > 0")
    time.sleep(2.5)  # a few more scrapes after the last request
    missing = [
        f"{title}: {expr}"
        for title, expr in dashboard_queries()
        if not _query(prometheus_server, expr)
    ]
    assert missing == [], "panels without data:\n" + "\n".join(missing)
    # The dashboard's variables are fed by label_values(model_ready, ...).
    ready = _query(prometheus_server, "model_ready")
    assert ready[0]["metric"]["modelservice"] == "breast-cancer"


@pytest.mark.integration
def test_runtime_log_lines_carry_what_the_alloy_pipeline_parses(
    runtime_server: tuple[str, Path], example_model_dir: Path
) -> None:
    runtime, log = runtime_server
    _drive_traffic(runtime, np.load(example_model_dir / "reference.npy"))
    (process,) = alloy_blocks(alloy_config_values(), "loki.process")
    stages = {name: body for name, _, body in alloy_blocks(process[2])}
    expressions = alloy_object(alloy_attribute(stages["stage.json"], "expressions"))
    time_key = expressions[alloy_string(alloy_attribute(stages["stage.timestamp"], "source"))]
    assert alloy_string(alloy_attribute(stages["stage.timestamp"], "format")) == "RFC3339"
    labels = alloy_object(alloy_attribute(stages["stage.labels"], "values"))
    metadata = alloy_object(alloy_attribute(stages["stage.structured_metadata"], "values"))
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines, "the runtime wrote no log lines"
    # Every key the json stage extracts is one the runtime writes ...
    assert set(expressions.values()) <= set().union(*lines)
    # ... and the labels and the timestamp come from keys every line carries.
    for line in lines:
        for key in {time_key} | {expressions[label] for label in labels}:
            assert key in line, f"log line without {key!r}: {line}"
        datetime.fromisoformat(line[time_key].replace("Z", "+00:00"))
    request_lines = [line for line in lines if line["message"].startswith("Request ")]
    assert request_lines, "no request lines"
    for line in request_lines:
        for key in metadata:
            assert expressions[key] in line, f"request line without {key!r}: {line}"
    drift_lines = [line for line in lines if line["message"] == "Drift detection result"]
    assert drift_lines, "no 'Drift detection result' line"
    assert {"p_value", "threshold", "drift"} <= drift_lines[-1].keys()
    assert set(labels) | set(metadata) <= set(expressions)
