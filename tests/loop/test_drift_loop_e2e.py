"""The whole drift loop on the local control plane, in the order a user lives it.

The operator runs as a subprocess under its own ServiceAccount (exactly rbac.py's rules; cluster-
wide, because serving listed namespaces makes Kopf list namespaces, which those rules do not
allow), with its drift URL pattern pointed at a runtime that really runs:
hack/localpod.py starts the container the operator rendered (command, env, drift ConfigMap kept
in sync as a kubelet would). A local HTTP server stands in for GitLab's pipeline trigger API.

The tests share that one set-up and run in file order: quiet traffic, drift, repeated drift
inside the retrain cooldown, then a threshold change.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from tests.helpers import wait_runtime_ready
from tests.loop.loop_helpers import FakeServer, fake_server
from tests.operator.operator_helpers import (
    REPO_ROOT,
    Kube,
    OperatorProcess,
    example,
    free_port,
    install_operator_identity,
    printed_columns,
    rbac_denials,
    wait_for,
)

pytestmark = pytest.mark.integration

NAME = "breast-cancer"
POLL_S = 1.0  # the operator's drift poll interval in this test
WINDOW, CHECK_EVERY = 50, 25
THRESHOLD = 0.02  # the mmd test with 100 permutations cannot go below ~0.011
SECRET_NAME, SECRET_KEY = "gitlab-trigger", "trigger"
# The runbook's out-of-range vector (step 10 of the seed runbook).
RUNBOOK_DRIFT_ROW = [100, 150, 200, 300, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 1, 1, 1, 1, 0.5, 0.5, 0.5,
                     0.5, 0.5, 0.5, 100, 120, 140, 160, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]  # fmt: skip


def held_out_rows() -> np.ndarray:
    """Rows the model and the drift reference never saw (the training split, seed 42)."""
    data = load_breast_cancer()
    labels = np.asarray(data.target_names)[data.target]
    _, x_test, _, _ = train_test_split(
        data.data, labels, test_size=0.5, random_state=42, stratify=labels
    )
    return np.asarray(x_test)


def http_json(url: str, body: Any = None, timeout: float = 10) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class Loop:
    """Everything the tests of this module share."""

    kube: Kube
    operator: OperatorProcess
    runtime_url: str
    localpod: subprocess.Popen[bytes]
    metrics_url: str
    gitlab: FakeServer
    token: str
    rows: np.ndarray
    before_runtime: dict[str, Any]  # DriftDetected while the runtime was not running yet

    def send(self, rows: np.ndarray | list[list[float]]) -> dict[str, Any]:
        """POST rows in batches of checkEvery, each landing on a check point, and wait for the
        runtime to check each one (so no check point is merged into a later check)."""
        rows = np.asarray(rows, dtype=float)
        drift = self.drift()
        for start in range(0, len(rows), CHECK_EVERY):
            batch = rows[start : start + CHECK_EVERY].tolist()
            http_json(f"{self.runtime_url}/predict", {"instances": batch})
            drift = self.wait_checked(drift["samples_seen"] + len(batch))
        return drift

    def drift(self) -> dict[str, Any]:
        return dict(http_json(f"{self.runtime_url}/drift"))

    def wait_checked(self, samples: int) -> dict[str, Any]:
        """Wait until the runtime has checked every check point up to `samples` rows."""
        due = 0 if samples < WINDOW else (samples - WINDOW) // CHECK_EVERY + 1
        last: dict[str, Any] = {}

        def done() -> dict[str, Any] | None:
            nonlocal last
            last = self.drift()
            return last if last["checks"] + last["checks_skipped"] >= due else None

        try:
            return wait_for(f"{due} drift checks in the runtime", done, timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last /drift: {last}") from None

    def status(self) -> dict[str, Any]:
        ms = self.kube.get("modelservice", NAME) or {}
        return dict(ms.get("status") or {})

    def condition(self) -> dict[str, Any]:
        return self.kube.condition(NAME, "DriftDetected") or {}

    def events(self, reason: str) -> list[dict[str, Any]]:
        out = self.kube.kubectl(
            "get", "events", "-o", "json",
            "--field-selector", f"involvedObject.name={NAME},reason={reason}",
        ).stdout  # fmt: skip
        return list(json.loads(out)["items"])

    def runtime_pid(self) -> int:
        """PID of the runtime process localpod started (its other children are kubectl calls)."""
        children = Path(f"/proc/{self.localpod.pid}/task/{self.localpod.pid}/children")
        runtimes = []
        for pid in children.read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:  # a kubectl call that just ended
                continue
            if b"aiops-runtime" in cmdline:
                runtimes.append(int(pid))
        (pid,) = runtimes
        return pid

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            return str(resp.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text `text` (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def trigger_secret(namespace: str, url: str, token: str) -> dict[str, Any]:
    value = json.dumps({"url": url, "token": token, "ref": "main"})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": namespace},
        "stringData": {SECRET_KEY: value},
    }


def modelservice() -> dict[str, Any]:
    doc = example(NAME)
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
    return doc


def start_localpod(
    cluster: Any, namespace: str, model_dir: Path, port: int, log: Path
) -> subprocess.Popen[bytes]:
    env = dict(cluster.env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable, str(REPO_ROOT / "hack" / "localpod.py"),
                "-n", namespace, "--deployment", NAME,
                "--map", f"/models/breast-cancer={model_dir}",
                "--port", str(port), "--kubeconfig", str(cluster.kubeconfig),
            ],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def loop(
    cluster: Any, example_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loop]:
    """CRD, namespace, trigger Secret, operator, ModelService and its runtime running locally."""
    logs = tmp_path_factory.mktemp("loop")
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s",
        "crd/modelservices.aiops-quality.io",
    )  # fmt: skip
    namespace = f"loop-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    kube = Kube(cluster, namespace)
    token = f"glptt-{secrets.token_hex(16)}"
    runtime_port, metrics_port = free_port(), free_port()
    with fake_server(
        201, {"id": 4711, "web_url": "https://gitlab.example/p/-/pipelines/4711"}
    ) as gitlab:
        kube.apply(
            trigger_secret(namespace, f"{gitlab.base}/api/v4/projects/1/trigger/pipeline", token)
        )
        operator = OperatorProcess(
            kubeconfig=install_operator_identity(cluster),
            log_path=logs / "operator.log",
            env={
                **cluster.env,
                "AIOPS_OPERATOR_DRIFT_URL_PATTERN": f"http://127.0.0.1:{runtime_port}",
                "AIOPS_OPERATOR_PROBE_NOT_READY_PODS": "false",
                "AIOPS_OPERATOR_DRIFT_POLL_INTERVAL_S": str(POLL_S),
                "AIOPS_OPERATOR_DRIFT_BACKOFF_MAX_S": "2",
                "AIOPS_OPERATOR_METRICS_PORT": str(metrics_port),
            },
        )
        operator.start()
        localpod = None
        try:
            kube.apply(modelservice())
            wait_for("the rendered Deployment", lambda: kube.get("deployment", NAME), 30)
            before_runtime = wait_for(
                "DriftDetected while no runtime answers",
                lambda: kube.condition_where(NAME, "DriftDetected", reason="RuntimeUnreachable"),
                timeout=15,
            )
            runtime_log = logs / "runtime.log"
            localpod = start_localpod(
                cluster, namespace, example_model_dir, runtime_port, runtime_log
            )
            url = f"http://127.0.0.1:{runtime_port}"
            wait_runtime_ready(url, 90, localpod, runtime_log)
            yield Loop(
                kube=kube,
                operator=operator,
                runtime_url=url,
                localpod=localpod,
                metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
                gitlab=gitlab,
                token=token,
                rows=held_out_rows(),
                before_runtime=before_runtime,
            )
        finally:
            if localpod is not None:
                stop_process(localpod)
            # Delete while the operator runs: its drift timer holds a Kopf finalizer.
            kube.kubectl("delete", "modelservice", NAME, "--timeout=30s", check=False)
            operator.stop()
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
            denials = rbac_denials(operator.log_text())
            assert not denials, "the operator hit RBAC denials:\n" + "\n".join(denials[:5])


def test_an_unreachable_runtime_is_a_condition_reason_not_a_crash(loop: Loop) -> None:
    assert loop.before_runtime["status"] == "Unknown"
    assert "127.0.0.1" in loop.before_runtime["message"]
    assert loop.operator.proc is not None
    assert loop.operator.proc.poll() is None
    assert metric(loop.metrics(), "aiops_operator_drift_reads_total", result="unreachable") >= 1


def test_in_distribution_traffic_raises_no_drift(loop: Loop) -> None:
    drift = loop.send(loop.rows[:100])
    assert drift["checks"] == 3
    assert drift["drift_events"] == 0, drift
    cond = wait_for(
        "DriftDetected=False from the operator",
        lambda: (c := loop.condition()).get("status") == "False" and c,
        timeout=10 * POLL_S,
    )
    assert cond["reason"] == "NoDrift"
    status = wait_for(
        "status.drift to show the runtime's last check",
        lambda: (
            (s := loop.status().get("drift") or {}).get("lastCheckTime") == drift["last_check_time"]
            and s
        ),
        timeout=10 * POLL_S,
    )
    assert status["lastPValue"] == pytest.approx(drift["last_p_value"])
    assert status["driftEvents"] == 0
    assert status["pValueThreshold"] == pytest.approx(THRESHOLD)
    assert status["checks"] == drift["checks"]
    wait_for("Ready=True (KWOK pods are Ready)", lambda: loop.kube.ready(NAME), 30)
    assert not loop.events("DriftDetected")
    assert not loop.gitlab.received()


def test_shifted_traffic_sets_drift_detected_an_event_and_the_count(loop: Loop) -> None:
    checks = loop.drift()["checks"]
    loop.send(loop.rows[100:200] * 1.5)
    drift = wait_for(
        "the runtime to raise a drift event",
        lambda: (d := loop.drift())["drift_events"] >= 1 and d,
        timeout=60,
    )
    assert drift["checks"] > checks
    raised = time.monotonic()
    # The operator reads every POLL_S: two poll periods (+ one kubectl read) must be enough.
    cond = wait_for(
        "DriftDetected=True",
        lambda: (c := loop.condition()).get("status") == "True" and c,
        timeout=2 * POLL_S + 2,
    )
    print(
        f"\nfigure: runtime drift event -> DriftDetected=True in {time.monotonic() - raised:.2f}s"
    )
    assert cond["reason"] == "PValueBelowThreshold"
    status = loop.status()
    assert status["drift"]["driftEvents"] >= 1
    assert status["drift"]["lastDriftTime"] == drift["last_drift_time"]
    assert loop.kube.ready(NAME)  # drift is reported beside Ready, never through it
    events = wait_for("the DriftDetected Event", lambda: loop.events("DriftDetected"), 10)
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["kind"] == "ModelService"
    row = printed_columns(loop.kube.kubectl("get", "msvc", NAME).stdout)
    assert row["DRIFT"] == "True"
    assert float(row["P-VALUE"]) < THRESHOLD


def test_retrain_is_triggered_once_with_the_token_despite_repeated_drift(loop: Loop) -> None:
    (request,) = wait_for("the retrain trigger request", loop.gitlab.received, 10)
    assert request.path == "/api/v4/projects/1/trigger/pipeline"
    assert request.form["token"] == loop.token
    assert request.form["ref"] == "main"
    assert request.form["variables[AIOPS_MODELSERVICE]"] == NAME
    assert request.form["variables[AIOPS_NAMESPACE]"] == loop.kube.namespace
    status = wait_for(
        "the retrain outcome in status",
        lambda: (s := loop.status()["drift"]).get("lastRetrainOutcome") and s,
        10,
    )
    assert status["lastRetrainOutcome"] == "Triggered"
    assert "4711" in status["lastRetrainMessage"]
    assert loop.events("RetrainTriggered")

    # Clear the drift with in-distribution rows, then drift again with the runbook's vector.
    loop.send(loop.rows[200:275])
    wait_for("the drift to clear", lambda: loop.drift()["drift"] is False, 60)
    wait_for("DriftDetected=False", lambda: loop.condition().get("status") == "False", 10)
    loop.send([RUNBOOK_DRIFT_ROW] * 75)
    wait_for("a second drift event", lambda: loop.drift()["drift_events"] >= 2, 60)
    wait_for("driftEvents >= 2", lambda: loop.status()["drift"]["driftEvents"] >= 2, 10)
    wait_for("the RetrainSkipped Event", lambda: loop.events("RetrainSkipped"), 10)
    assert len(loop.gitlab.received()) == 1  # the cooldown (1h) held the second trigger back
    raised = loop.drift()["drift_events"]
    assert loop.status()["drift"]["driftEvents"] == raised
    assert len(loop.events("DriftDetected")) == raised  # one Event per drift event, no repeats


def test_operator_metrics_count_drift_events_and_triggers(loop: Loop) -> None:
    text = loop.metrics()
    ref = {"namespace": loop.kube.namespace, "modelservice": NAME}
    raised = loop.drift()["drift_events"]
    assert metric(text, "aiops_operator_drift_events_total", action="retrain", **ref) == raised
    assert metric(text, "aiops_operator_retrain_triggers_total", result="sent", **ref) == 1
    assert metric(text, "aiops_operator_retrain_triggers_total", result="failed", **ref) == 0
    assert metric(text, "aiops_operator_retrain_skipped_total", **ref) >= 1
    assert metric(text, "aiops_operator_reconciles_total", handler="reconcile") >= 1
    assert metric(text, "aiops_operator_drift_reads_total", result="ok") >= 1


def test_the_token_appears_in_no_log_event_or_status(loop: Loop) -> None:
    assert loop.token not in loop.operator.log_text()
    events = loop.kube.kubectl("get", "events", "-o", "json").stdout
    assert loop.token not in events
    ms = loop.kube.kubectl("get", "modelservice", NAME, "-o", "json").stdout
    assert loop.token not in ms
    assert loop.token not in loop.metrics()


def test_threshold_patch_reaches_the_running_runtime_without_restart(loop: Loop) -> None:
    pid = loop.runtime_pid()
    loop.kube.kubectl(
        "patch", "modelservice", NAME, "--type", "merge",
        "-p", json.dumps({"spec": {"drift": {"pValueThreshold": 0.3}}}),
    )  # fmt: skip
    drift = wait_for(
        "the runtime's threshold to change",
        lambda: (d := loop.drift())["p_value_threshold"] == pytest.approx(0.3) and d,
        timeout=15,
    )
    assert drift["samples_seen"] >= 250  # same window: nothing was reset
    assert loop.runtime_pid() == pid
    wait_for(
        "status.drift.pValueThreshold 0.3",
        lambda: loop.status()["drift"]["pValueThreshold"] == pytest.approx(0.3),
        timeout=10,
    )
