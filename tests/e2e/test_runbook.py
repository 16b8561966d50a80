"""The seed runbook in real containers: the operator as a pod under its chart's RBAC, the
example ModelService in a `restricted` namespace, the kubelet's probes, port-forward and
/predict, JSON logs, drift read through the Service's DNS name, a threshold change reaching the
same running container, a deleted pod replaced, and a deleted ModelService gone."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiops_harness.traffic import (
    RUNBOOK_SAMPLE,
    drift_burst,
    get_drift,
    held_out_rows,
    post,
    send_rows,
)

from tests.e2e.conftest import (
    NAME,
    NAMESPACE,
    OPERATOR_NAMESPACE,
    Runbook,
    example_with_image,
    kubectl_json,
    port_forward,
)
from tests.helpers import REPO_ROOT, free_port, pinned_tool, wait_for
from tests.operator.operator_helpers import rbac_denials

SCRAPE_JOBS = REPO_ROOT / "charts" / "aiops-monitoring" / "files" / "scrape-configs.yaml"

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROBE = """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
try:
    open("/etc/probe", "w")
    root_fs = "writable"
except OSError as exc:
    root_fs = exc.strerror
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "root_fs": root_fs,
    "token": os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"),
}))
"""


def test_the_operator_runs_as_a_pod_of_its_chart_with_only_its_rbac(
    runbook: Runbook, operator_release: dict[str, Any]
) -> None:
    pod = operator_release
    assert pod["spec"]["nodeName"] == "aiops-node-0"
    assert pod["spec"]["serviceAccountName"] == "aiops-operator"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is True
    logs = runbook.cluster.kubectl("-n", OPERATOR_NAMESPACE, "logs", pod["metadata"]["name"])
    assert "drift loop started" in logs.stdout
    assert not rbac_denials(logs.stdout)


def test_the_runtime_container_runs_restricted_as_checked_inside_it(runbook: Runbook) -> None:
    pod = runbook.runtime_pod()
    assert pod["spec"]["nodeName"] == "aiops-node-0"
    out = runbook.kubectl("exec", pod["metadata"]["name"], "--", "python3", "-c", PROBE).stdout
    seen = json.loads(out)
    assert seen == {
        "uid": 10001, "gid": 10001,
        "cap_eff": "0000000000000000", "cap_bnd": "0000000000000000",
        "no_new_privs": "1", "seccomp": "2",  # 2: a filter, the runtime's default profile
        "root_fs": "Read-only file system",
        "token": False,
    }  # fmt: skip


def test_ready_follows_the_kubelets_readiness_probe_on_readyz(runbook: Runbook) -> None:
    pod = runbook.runtime_pod()
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    ready = runbook.condition("Ready")
    assert ready["status"] == "True"
    assert ready["lastTransitionTime"] >= conditions["Ready"]["lastTransitionTime"]


def test_port_forward_predict_and_json_logs(runbook: Runbook) -> None:
    answer = post(runbook.url, {"features": RUNBOOK_SAMPLE})
    assert answer["predictions"] == ["benign"]
    assert answer["model"] == NAME
    logs = runbook.kubectl("logs", f"deployment/{NAME}").stdout.splitlines()
    records = [json.loads(line) for line in logs if line.startswith("{")]
    assert records, "the runtime logs JSON lines"
    ready = [r for r in records if r["message"] == "Model ready"]
    assert ready
    assert ready[0]["sha256"] == runbook.modelservice()["spec"]["model"]["sha256"]


def test_drift_is_read_through_the_service_dns_name_and_raises_an_event(runbook: Runbook) -> None:
    send_rows(runbook.url, held_out_rows(200))  # in distribution: no drift
    assert get_drift(runbook.url)["drift_events"] == 0
    assert drift_burst(runbook.url) == 0  # the runbook's out-of-range burst
    cond = wait_for(
        "DriftDetected=True",
        lambda: (c := runbook.condition("DriftDetected")).get("status") == "True" and c,
        60,
    )
    assert cond["reason"] == "PValueBelowThreshold"
    events = kubectl_json(runbook.cluster, "-n", NAMESPACE, "get", "events",
                          "--field-selector", "reason=DriftDetected")["items"]  # fmt: skip
    assert events
    assert events[0]["involvedObject"]["name"] == NAME
    logs = runbook.kubectl("logs", f"deployment/{NAME}").stdout
    assert '"Drift detection result"' in logs
    metrics = urllib.request.urlopen(f"{runbook.url}/metrics", timeout=10).read().decode()
    assert re.search(r"^model_drift_events_total [1-9]", metrics, re.MULTILINE)


def test_a_threshold_patch_reaches_the_same_running_container(runbook: Runbook) -> None:
    before = runbook.runtime_pod()
    samples = get_drift(runbook.url)["samples_seen"]
    patch = '{"spec":{"drift":{"pValueThreshold":0.5}}}'
    runbook.kubectl("patch", "modelservice", NAME, "--type", "merge", "-p", patch)
    # The kubelet projects the new ConfigMap into the pod; the runtime reloads the file.
    wait_for("the runtime's threshold 0.5",
             lambda: get_drift(runbook.url)["p_value_threshold"] == 0.5, 90, 1)  # fmt: skip
    in_status = lambda: runbook.modelservice()["status"]["drift"]["pValueThreshold"] == 0.5  # noqa: E731
    wait_for("status.drift.pValueThreshold 0.5", in_status, 30)
    after = runbook.runtime_pod()
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    assert get_drift(runbook.url)["samples_seen"] >= samples, "the drift window was reset"
    assert runbook.condition("Ready")["status"] == "True"


def test_the_runtime_has_a_network_policy_letting_in_the_operator_and_monitoring(
    runbook: Runbook,
) -> None:
    # Rendered and admitted here; this node's CNI (ptp) enforces no NetworkPolicy.
    policy = kubectl_json(runbook.cluster, "-n", NAMESPACE, "get", "networkpolicy", NAME)["spec"]
    (rule,) = policy["ingress"]
    allowed = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
               for p in rule["from"] if "namespaceSelector" in p]  # fmt: skip
    assert allowed == [OPERATOR_NAMESPACE, "monitoring"]  # the operator knows its own namespace
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == NAME


def test_a_wrong_sha256_is_never_ready_and_status_names_the_digest_mismatch(
    runbook: Runbook,
) -> None:
    wrong = "wrong-digest"
    manifest = example_with_image(runbook.image, name=wrong, sha256="0" * 64)
    runbook.kubectl("apply", "-f", "-", input=manifest)
    try:
        cond = wait_for(
            "DriftDetected ModelNotLoaded",
            lambda: (
                (c := runbook.condition("DriftDetected", wrong)).get("reason") == "ModelNotLoaded"
                and c
            ),
            90,
        )
        assert "digest_mismatch" in cond["message"]
        assert "0" * 64 in cond["message"]
        assert runbook.condition("Ready", wrong)["status"] == "False"
        # Degraded, not merely rolling out: what Argo CD's health check shows as Degraded.
        degraded = wait_for(
            "Degraded ModelNotLoaded",
            lambda: (c := runbook.condition("Degraded", wrong)).get("status") == "True" and c,
            30,
        )
        assert degraded["reason"] == "ModelNotLoaded"
        assert "digest_mismatch" in degraded["message"]
        described = runbook.kubectl("describe", "modelservice", wrong).stdout
        assert "digest_mismatch" in described
    finally:
        runbook.kubectl("delete", "modelservice", wrong, "--wait=false", check=False)


def test_a_real_prometheus_discovers_the_runtime_and_operator_pods_and_scrapes_them(
    runbook: Runbook, operator_release: dict[str, Any], tmp_path: Path
) -> None:
    # The shipped scrape jobs, as they are, with Kubernetes discovery pointed at this cluster:
    # the pods' prometheus.io/* annotations (the operator's on its runtime pods, the operator
    # chart's on its own) decide the targets.
    pki = runbook.cluster.state_dir / "pki"
    jobs = {j["job_name"]: j for j in yaml.safe_load(SCRAPE_JOBS.read_text())}
    for job in jobs.values():
        job["kubernetes_sd_configs"][0].update(
            api_server=runbook.cluster.server,
            tls_config={
                "ca_file": str(pki / "ca.crt"),
                "cert_file": str(pki / "admin.crt"),
                "key_file": str(pki / "admin.key"),
            },
        )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump({
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [jobs["aiops-runtime-pods"], jobs["aiops-operator"]],
        })
    )  # fmt: skip
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(pinned_tool("prometheus")), f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def scraped(query: str) -> list[dict[str, Any]] | None:
        assert proc.poll() is None, log.read_text()[-3000:]
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                result = json.loads(resp.read())["data"]["result"]
        except OSError:
            return None
        return [r for r in result if float(r["value"][1]) > 0] or None

    predictions = f'model_predictions_total{{namespace="{NAMESPACE}",modelservice="{NAME}"}}'
    leader = f'aiops_operator_leader{{job="aiops-operator",namespace="{OPERATOR_NAMESPACE}"}}'
    try:
        (series,) = wait_for(
            f"{predictions} > 0 in Prometheus", lambda: scraped(predictions), 60, 0.5
        )
        (elected,) = wait_for(f"{leader} = 1 in Prometheus", lambda: scraped(leader), 60, 0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert series["metric"]["pod"] == runbook.runtime_pod()["metadata"]["name"]
    assert series["metric"]["instance"].startswith(runbook.runtime_pod()["status"]["podIP"])
    # The chart-installed operator's own /metrics, found by the monitoring chart's job: the
    # gauge the AiopsOperatorNoLeader alert reads is there, from the one (elected) replica.
    assert elected["metric"]["pod"] == operator_release["metadata"]["name"]
    assert elected["value"][1] == "1"


def test_a_deleted_runtime_pod_is_replaced_and_ready_returns(runbook: Runbook) -> None:
    old = runbook.runtime_pod()["metadata"]["name"]
    runbook.kubectl("delete", "pod", old, "--wait=false")
    wait_for("Ready to drop", lambda: runbook.condition("Ready").get("status") != "True", 60, 0.1)
    wait_for("Ready to return", lambda: runbook.condition("Ready").get("status") == "True", 120)
    new = runbook.runtime_pod()
    assert new["metadata"]["name"] != old
    with port_forward(runbook.cluster, NAMESPACE, f"svc/{NAME}", 8000) as url:
        assert post(url, {"features": RUNBOOK_SAMPLE})["predictions"] == ["benign"]


def test_deleting_the_modelservice_removes_everything(runbook: Runbook) -> None:
    deleted = runbook.kubectl("delete", "modelservice", NAME, "--timeout=60s", check=False)
    if deleted.returncode != 0:
        logs = runbook.cluster.kubectl(
            "-n", OPERATOR_NAMESPACE, "logs", "deployment/aiops-operator", "--tail=40", check=False
        ).stdout  # fmt: skip
        left = runbook.kubectl("get", "modelservice", NAME, "-o", "yaml", check=False).stdout
        raise AssertionError(f"the ModelService was not deleted: {deleted.stderr}\n{left}\n{logs}")

    def gone() -> bool:
        selector = f"app.kubernetes.io/instance={NAME}"
        kinds = "deployment,service,configmap,networkpolicy,pods"
        left = runbook.kubectl("get", kinds, "-l", selector, "-o", "name").stdout
        return not left.strip()

    wait_for("the children and pods to go", gone, 90, 0.5)
