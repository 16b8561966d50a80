"""The whole drift loop in real containers, in the order a user lives it: quiet traffic, drift,
a retrain trigger, repeated drift inside the cooldown.

The operator is the chart's pod (shared with the runbook tests); the runtime is a real pod in its
own `restricted` namespace with a small drift window. A local HTTP server stands in for GitLab's
pipeline trigger API; it listens on the host end of the node's link, so the operator pod reaches
it over the pod network as it would reach GitLab. The tests share that set-up and run in file
order."""

from __future__ import annotations

import json
import re
import secrets
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import yaml
from aiops_harness.localcluster import LocalCluster
from aiops_harness.traffic import RUNBOOK_OUT_OF_RANGE, held_out_rows, post

from tests.e2e.conftest import (
    EXAMPLE,
    OPERATOR_NAMESPACE,
    Images,
    kubectl_json,
    port_forward,
    restricted_namespace,
)
from tests.fakes import FakeServer, fake_server
from tests.helpers import wait_for
from tests.operator.operator_helpers import printed_columns, rbac_denials

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMESPACE = "aiops-loop"
NAME = "breast-cancer"
WINDOW, CHECK_EVERY = 50, 25
THRESHOLD = 0.02  # the mmd test with 100 permutations cannot go below ~0.011
SECRET_NAME, SECRET_KEY = "aiops-retrain-trigger", "trigger"  # the chart's one readable name


def modelservice(image: str) -> dict[str, Any]:
    """The example with the built image, a small window and the retrain action."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["namespace"] = NAMESPACE
    doc["spec"]["image"] = image
    doc["spec"]["drift"] = {
        "detector": "mmd",
        "pValueThreshold": THRESHOLD,
        "windowSize": WINDOW,
        "checkEvery": CHECK_EVERY,
        "consecutive": 2,
        "action": "retrain",
        "retrain": {
            "triggerSecretRef": {"name": SECRET_NAME, "key": SECRET_KEY},
            "cooldown": "1h",
        },
    }
    return dict(doc)


def trigger_secret(url: str, token: str) -> dict[str, Any]:
    value = json.dumps({"url": url, "token": token, "ref": "main"})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": NAMESPACE},
        "stringData": {SECRET_KEY: value},
    }


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text `text` (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match[1].split(",") for k, v in labels.items()):
            return float(match[2])
    return 0.0


@dataclass
class Loop:
    """Everything the tests of this module share."""

    cluster: LocalCluster
    url: str  # the runtime Service, port-forwarded
    operator_metrics: str  # the operator pod's /metrics, port-forwarded
    operator_pod: str
    gitlab: FakeServer
    token: str
    rows: np.ndarray

    def kubectl(self, *args: str) -> str:
        return self.cluster.kubectl("-n", NAMESPACE, *args).stdout

    def drift(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/drift", timeout=10) as resp:
            return dict(json.loads(resp.read()))

    def send(self, rows: Any) -> dict[str, Any]:
        """POST rows in batches of checkEvery, each landing on a check point, and wait for the
        runtime to check each one (so no check point is folded into a later check)."""
        rows = np.asarray(rows, dtype=float)
        drift = self.drift()
        for start in range(0, len(rows), CHECK_EVERY):
            batch = rows[start : start + CHECK_EVERY].tolist()
            post(self.url, {"instances": batch})
            drift = self.wait_checked(drift["samples_seen"] + len(batch))
        return drift

    def wait_checked(self, samples: int) -> dict[str, Any]:
        due = 0 if samples < WINDOW else (samples - WINDOW) // CHECK_EVERY + 1
        return wait_for(
            f"{due} drift checks in the runtime",
            lambda: (d := self.drift())["checks"] + d["checks_skipped"] >= due and d,
            60,
        )

    def status(self) -> dict[str, Any]:
        ms = kubectl_json(self.cluster, "-n", NAMESPACE, "get", "modelservice", NAME)
        return dict(ms.get("status") or {})

    def condition(self, kind: str = "DriftDetected") -> dict[str, Any]:
        conditions = self.status().get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), {})

    def events(self, reason: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.name={NAME},reason={reason}"
        found = kubectl_json(self.cluster, "-n", NAMESPACE, "get", "events",
                             "--field-selector", selector)["items"]  # fmt: skip
        return list(found)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.operator_metrics, timeout=10) as resp:
            return str(resp.read().decode())

    def operator_logs(self) -> str:
        return self.cluster.kubectl("-n", OPERATOR_NAMESPACE, "logs", self.operator_pod).stdout


@pytest.fixture(scope="module")
def loop(
    real_cluster: LocalCluster, operator_release: dict[str, Any], images: Images, trigger_base: str
) -> Iterator[Loop]:
    """Trigger Secret, ModelService and its Ready runtime pod, both port-forwarded."""
    restricted_namespace(real_cluster, NAMESPACE)
    token = f"glptt-{secrets.token_hex(16)}"
    where = urllib.parse.urlsplit(trigger_base)
    pipeline = {"id": 4711, "web_url": f"{trigger_base}/group/model/-/pipelines/4711"}
    with fake_server(201, pipeline, host=where.hostname or "", port=where.port or 0) as gitlab:
        trigger = f"{gitlab.base}/api/v4/projects/1/trigger/pipeline"
        real_cluster.kubectl("apply", "-f", "-", input=json.dumps(trigger_secret(trigger, token)))
        # The namespace admin opts in, as the README says: the operator may read this Secret.
        real_cluster.kubectl(
            "-n", NAMESPACE, "create", "rolebinding", "aiops-retrain-trigger",
            "--clusterrole=aiops-operator-retrain-trigger",
            f"--serviceaccount={OPERATOR_NAMESPACE}:aiops-operator",
        )  # fmt: skip
        real_cluster.kubectl("apply", "-f", "-", input=json.dumps(modelservice(images.runtime)))
        try:
            ready = lambda: any(  # noqa: E731
                c["type"] == "Ready" and c["status"] == "True"
                for c in kubectl_json(real_cluster, "-n", NAMESPACE, "get", "modelservice", NAME)
                .get("status", {}).get("conditions", [])
            )  # fmt: skip
            wait_for("the loop's ModelService Ready=True", ready, 120)
            operator_pod = operator_release["metadata"]["name"]
            with (
                port_forward(real_cluster, NAMESPACE, f"svc/{NAME}", 8000) as url,
                port_forward(
                    real_cluster, OPERATOR_NAMESPACE, f"pod/{operator_pod}", 8081
                ) as operator_url,
            ):
                yield Loop(
                    cluster=real_cluster,
                    url=url,
                    operator_metrics=f"{operator_url}/metrics",
                    operator_pod=operator_pod,
                    gitlab=gitlab,
                    token=token,
                    rows=np.asarray(held_out_rows(300)),
                )
        finally:
            real_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_the_runtime_pod_runs_the_spec_drift_window(loop: Loop) -> None:
    drift = loop.drift()
    assert (drift["window_size"], drift["check_every"]) == (WINDOW, CHECK_EVERY)
    assert drift["p_value_threshold"] == pytest.approx(THRESHOLD)
    assert drift["detector"] == "mmd"


def test_in_distribution_traffic_raises_no_drift(loop: Loop) -> None:
    drift = loop.send(loop.rows[:100])
    assert drift["checks"] == 3
    assert drift["drift_events"] == 0, drift
    cond = wait_for(
        "DriftDetected=False from the operator",
        lambda: (c := loop.condition()).get("status") == "False" and c,
        30,
    )
    assert cond["reason"] == "NoDrift"
    status = wait_for(
        "status.drift to show the runtime's last check",
        lambda: (
            (s := loop.status().get("drift") or {}).get("lastCheckTime") == drift["last_check_time"]
            and s
        ),
        30,
    )
    assert status["lastPValue"] == pytest.approx(drift["last_p_value"])
    assert status["driftEvents"] == 0
    assert status["checks"] == drift["checks"]
    assert loop.condition("Ready")["status"] == "True"
    assert not loop.events("DriftDetected")
    assert not loop.gitlab.received()


def test_shifted_traffic_sets_drift_detected_an_event_and_the_count(loop: Loop) -> None:
    loop.send(loop.rows[100:200] * 1.5)
    drift = wait_for("a drift event in the runtime", lambda: (d := loop.drift())["drift_events"]
                     >= 1 and d, 60)  # fmt: skip
    cond = wait_for(
        "DriftDetected=True",
        lambda: (c := loop.condition()).get("status") == "True" and c,
        30,
    )
    assert cond["reason"] == "PValueBelowThreshold"
    status = loop.status()
    assert status["drift"]["driftEvents"] >= 1
    assert status["drift"]["lastDriftTime"] == drift["last_drift_time"]
    assert loop.condition("Ready")["status"] == "True"  # drift is beside Ready, never through it
    events = wait_for("the DriftDetected Event", lambda: loop.events("DriftDetected"), 30)
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["kind"] == "ModelService"
    row = printed_columns(loop.kubectl("get", "msvc", NAME))
    assert row["DRIFT"] == "True"
    assert float(row["P-VALUE"]) < THRESHOLD


def test_retrain_is_triggered_once_with_the_token_despite_repeated_drift(loop: Loop) -> None:
    (request,) = wait_for("the retrain trigger request", loop.gitlab.received, 30)
    assert request.path == "/api/v4/projects/1/trigger/pipeline"
    assert request.form["token"] == loop.token
    assert request.form["ref"] == "main"
    assert request.form["inputs[modelservice]"] == NAME
    assert request.form["inputs[namespace]"] == NAMESPACE
    status = wait_for(
        "the retrain outcome in status",
        lambda: (s := loop.status()["drift"]).get("lastRetrainOutcome") and s,
        30,
    )
    assert status["lastRetrainOutcome"] == "Triggered"
    assert status["lastRetrainMessage"] == (
        f"pipeline 4711 created: {loop.gitlab.base}/group/model/-/pipelines/4711"
    )
    assert loop.events("RetrainTriggered")

    # Clear the drift with in-distribution rows, then drift again with the runbook's vector.
    loop.send(loop.rows[200:275])
    wait_for("the drift to clear", lambda: loop.drift()["drift"] is False, 60)
    wait_for("DriftDetected=False", lambda: loop.condition().get("status") == "False", 30)
    loop.send([RUNBOOK_OUT_OF_RANGE] * 75)
    wait_for("a second drift event", lambda: loop.drift()["drift_events"] >= 2, 60)
    wait_for("driftEvents >= 2", lambda: loop.status()["drift"]["driftEvents"] >= 2, 30)
    wait_for("the RetrainSkipped Event", lambda: loop.events("RetrainSkipped"), 30)
    assert len(loop.gitlab.received()) == 1  # the cooldown (1h) held the second trigger back
    raised = loop.drift()["drift_events"]
    assert loop.status()["drift"]["driftEvents"] == raised
    assert len(loop.events("DriftDetected")) == raised  # one Event per drift event, no repeats


def test_operator_metrics_count_drift_events_and_triggers(loop: Loop) -> None:
    text = loop.metrics()
    ref = {"namespace": NAMESPACE, "modelservice": NAME}
    raised = loop.drift()["drift_events"]
    assert metric(text, "aiops_operator_drift_events_total", action="retrain", **ref) == raised
    assert metric(text, "aiops_operator_retrain_triggers_total", result="sent", **ref) == 1
    assert metric(text, "aiops_operator_retrain_triggers_total", result="failed", **ref) == 0
    assert metric(text, "aiops_operator_retrain_skipped_total", **ref) >= 1
    assert metric(text, "aiops_operator_drift_reads_total", result="ok") >= 1


def test_the_token_appears_in_no_log_event_status_or_metric(loop: Loop) -> None:
    logs = loop.operator_logs()
    assert "retrain" in logs.lower()  # the logs do speak of the trigger
    assert loop.token not in logs
    assert not rbac_denials(logs)
    assert loop.token not in loop.kubectl("get", "events", "-o", "json")
    assert loop.token not in loop.kubectl("get", "modelservice", NAME, "-o", "json")
    assert loop.token not in loop.metrics()


def test_deleting_the_modelservice_removes_its_metric_series(loop: Loop) -> None:
    ref = {"namespace": NAMESPACE, "modelservice": NAME}
    assert metric(loop.metrics(), "aiops_operator_drift_events_total", **ref) >= 1
    loop.kubectl("delete", "modelservice", NAME, "--timeout=60s")
    wait_for(
        "its series to leave the operator's /metrics",
        lambda: f'modelservice="{NAME}",namespace="{NAMESPACE}"' not in loop.metrics(),
        30,
    )
