"""Many replicas, one truth, on the real API server: a ModelService with three ready pods (KWOK),
each pod's GET /drift played by a local server through the pattern's {pod}, only one of them
seeing drifted traffic. DriftDetected follows all three replicas in every poll, never the one
that happened to answer, and a replica that stops answering is named, not dropped."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.fakes import raw_server, send_json
from tests.helpers import wait_for
from tests.operator.operator_helpers import Kube, OperatorProcess, example

pytestmark = pytest.mark.integration

NAME = "fleet"
QUIET = {
    "enabled": True,
    "p_value_threshold": 0.05,
    "checks": 8,
    "drift": False,
    "drift_events": 0,
    "last_p_value": 0.5,
    "last_check_time": "2026-01-01T00:00:00.000+00:00",
    "detector": "mmd",
}
DRIFTING = {
    **QUIET,
    "drift": True,
    "drift_events": 1,
    "last_p_value": 0.001,
    "last_drift_time": "2026-01-01T00:00:00.000+00:00",
    "drifted_features": [{"name": "worst area", "p_value": 0.0001}],
}


class Runtimes:
    """Each pod's /drift at /<namespace>/<pod>/drift: QUIET unless told otherwise."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        self.reads: Counter[str] = Counter()

    def set(self, pod: str, status: int, body: dict[str, Any]) -> None:
        with self.lock:
            self.answers[pod] = (status, body)

    def respond(self, h: BaseHTTPRequestHandler) -> None:
        pod = h.path.rstrip("/").split("/")[-2]
        with self.lock:
            self.reads[pod] += 1
            status, doc = self.answers.get(pod, (200, QUIET))
        send_json(h, status, doc)


@pytest.fixture
def fleet(
    cluster: Any,
    kube: Kube,
    operator_process: OperatorProcess,
    cluster_wide_paused: None,
    tmp_path: Any,
) -> Iterator[tuple[Runtimes, list[str]]]:
    """An operator of this test's own (the pattern names each pod) and three ready pods."""
    runtimes = Runtimes()
    with raw_server(runtimes.respond) as server:
        operator = OperatorProcess(
            kubeconfig=operator_process.kubeconfig,
            log_path=tmp_path / "operator.log",
            env={
                **cluster.env,
                "AIOPS_OPERATOR_NAMESPACES": kube.namespace,
                "AIOPS_OPERATOR_METRICS_PORT": "0",
                "AIOPS_OPERATOR_DRIFT_URL_PATTERN": f"{server.base}/{{namespace}}/{{pod}}",
                "AIOPS_OPERATOR_DRIFT_POLL_INTERVAL_S": "0.5",
                "AIOPS_OPERATOR_DRIFT_BACKOFF_MAX_S": "1",
            },
        )
        operator.start()
        try:
            kube.apply(example(NAME, replicas=3))
            wait_for("Ready=True", lambda: kube.ready(NAME), 60)
            pods = wait_for(
                "three ready pods",
                lambda: len(p := ready_pod_names(kube)) == 3 and p,
                60,
            )
            yield runtimes, pods
        finally:
            kube.kubectl("delete", "modelservice", NAME, "--timeout=30s", check=False)
            operator.stop()


def ready_pod_names(kube: Kube) -> list[str]:
    names = []
    for pod in kube.list("pods", f"app.kubernetes.io/instance={NAME}"):
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            names.append(pod["metadata"]["name"])
    return sorted(names)


def drift_status(kube: Kube) -> dict[str, Any]:
    ms = kube.get("modelservice", NAME) or {}
    return dict((ms.get("status") or {}).get("drift") or {})


def test_one_replica_of_three_drifting_sets_drift_detected_without_flapping(
    kube: Kube, fleet: tuple[Runtimes, list[str]]
) -> None:
    runtimes, pods = fleet
    wait_for(
        "DriftDetected False NoDrift from three replicas",
        lambda: (
            kube.condition_where(NAME, "DriftDetected", reason="NoDrift")
            and drift_status(kube).get("replicas") == {"read": 3, "drifting": 0, "unreadable": 0}
        ),
        60,
    )
    runtimes.set(pods[1], 200, DRIFTING)
    cond = wait_for(
        "DriftDetected True",
        lambda: kube.condition_where(NAME, "DriftDetected", status="True"),
        30,
    )
    assert cond["message"].startswith("1 of 3 ready replicas drifting; last p-value 0.001")
    assert "drifted most: worst area" in cond["message"]
    assert drift_status(kube)["replicas"] == {"read": 3, "drifting": 1, "unreadable": 0}
    assert drift_status(kube)["lastPValue"] == 0.001

    # Every poll reads all three; whichever answers first, the condition stays where it is.
    reads_before = dict(runtimes.reads)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = kube.condition(NAME, "DriftDetected") or {}
        assert (now["status"], now["lastTransitionTime"]) == ("True", cond["lastTransitionTime"])
        time.sleep(0.3)
    assert all(runtimes.reads[p] - reads_before.get(p, 0) >= 4 for p in pods), runtimes.reads
    assert drift_status(kube)["driftEvents"] == 1

    # A replica that stops answering is named beside the one drifting ...
    runtimes.set(pods[2], 500, {"detail": "boom"})
    cond = wait_for(
        "DriftDetected names the silent replica",
        lambda: (
            (c := kube.condition(NAME, "DriftDetected") or {})
            and f"1 of 3 ready replicas unreadable ({pods[2]})" in c["message"]
            and c
        ),
        30,
    )
    assert cond["status"] == "True"
    assert drift_status(kube)["replicas"] == {"read": 2, "drifting": 1, "unreadable": 1}

    # ... and when the others are quiet, it makes the condition Unknown, not NoDrift.
    runtimes.set(pods[1], 200, QUIET)
    cond = wait_for(
        "DriftDetected Unknown DriftEndpointError",
        lambda: kube.condition_where(NAME, "DriftDetected", reason="DriftEndpointError"),
        30,
    )
    assert cond["status"] == "Unknown"
    assert cond["message"].startswith(f"1 of 3 ready replicas unreadable ({pods[2]}): GET")
    assert "the other 2: NoDrift" in cond["message"]
