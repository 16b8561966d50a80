"""One tenant's ModelServices attack the shared operator, on the real API server.

The operator runs as a process under exactly rbac.py's rules, its drift URL pattern pointed at a
local server that plays each tenant's runtime by path:
- `bomb` answers GET /drift with 400 MiB (chunked, no length), on every read;
- `redirecting` reports drift; its trigger Secret names an allowed URL that answers 307 to
  another server (which would receive the token again if the redirect were followed);
- `outside` reports drift; its trigger Secret names an internal endpoint outside the allowed
  prefixes;
- `neighbour` is a well-behaved runtime in the same operator.
The operator must stay up and under its chart's memory limit, say what went wrong in each
status, call nothing outside its allowlist, and keep serving the neighbour.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.loop.loop_helpers import FakeServer, fake_server, raw_server
from tests.operator.operator_helpers import (
    Kube,
    OperatorProcess,
    example,
    install_operator_identity,
    rbac_denials,
    wait_for,
)

pytestmark = pytest.mark.integration

MEMORY_LIMIT = 256 * 1024 * 1024  # the chart's limit for the operator container
DRIFTING = {
    "enabled": True,
    "p_value_threshold": 0.05,
    "checks": 4,
    "drift": True,
    "drift_events": 1,
    "last_p_value": 0.001,
    "last_check_time": "2026-01-01T00:00:00.000+00:00",
    "last_drift_time": "2026-01-01T00:00:00.000+00:00",
    "detector": "mmd",
}
QUIET = {**DRIFTING, "drift": False, "drift_events": 0, "last_p_value": 0.6}
QUIET.pop("last_drift_time")
BOMB_READS = [0]


def runtimes(h: BaseHTTPRequestHandler) -> None:
    """Every tenant's runtime: /<namespace>/<name>/drift."""
    name = h.path.rstrip("/").split("/")[-2]
    if name == "bomb":
        BOMB_READS[0] += 1
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"9" * 65536
        h.wfile.write(b"3\r\n[1,\r\n")
        for _ in range(400 * 16):
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        return
    body = json.dumps(DRIFTING if name in ("redirecting", "outside") else QUIET).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def trigger_secret(name: str, url: str) -> dict[str, Any]:
    value = json.dumps({"url": url, "token": "glptt-tenant-attack-token", "ref": "main"})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"trigger": value},
    }


def modelservice(name: str, secret: str | None = None) -> dict[str, Any]:
    drift: dict[str, Any] = {"windowSize": 50, "checkEvery": 25}
    if secret is not None:
        drift |= {
            "action": "retrain",
            "retrain": {"triggerSecretRef": {"name": secret, "key": "trigger"}, "cooldown": "1h"},
        }
    return example(name, drift=drift)


@dataclass
class Attack:
    kube: Kube
    operator: OperatorProcess
    elsewhere: FakeServer  # where the redirect points
    internal: FakeServer  # the internal endpoint outside the prefixes

    def drift_condition(self, name: str) -> dict[str, Any]:
        return self.kube.condition(name, "DriftDetected") or {}

    def drift_status(self, name: str) -> dict[str, Any]:
        ms = self.kube.get("modelservice", name) or {}
        return dict((ms.get("status") or {}).get("drift") or {})


@pytest.fixture(scope="module")
def attack(
    cluster: Any,
    modelservice_crd: None,
    operator_process: OperatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Attack]:
    # The session's cluster-wide operator would share Kopf's annotations with this one.
    operator_process.stop()
    try:
        yield from _attack(cluster, tmp_path_factory)
    finally:
        operator_process.start()


def _attack(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    namespace = f"tenant-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    kube = Kube(cluster, namespace)

    with (
        raw_server(runtimes) as runtime,
        fake_server(201, {"id": 1}) as elsewhere,
        fake_server(403, {"message": "internal admin console"}) as internal,
    ):

        def redirect(h: BaseHTTPRequestHandler) -> None:
            h.send_response(307)
            h.send_header("Location", f"{elsewhere.base}/api/v4/projects/1/trigger/pipeline")
            h.send_header("Content-Length", "0")
            h.end_headers()

        with raw_server(redirect) as gitlab:
            operator = OperatorProcess(
                kubeconfig=install_operator_identity(cluster),
                log_path=tmp_path_factory.mktemp("attack") / "operator.log",
                env={
                    **cluster.env,
                    "AIOPS_OPERATOR_NAMESPACES": namespace,
                    "AIOPS_OPERATOR_FIELD_MANAGER": "aiops-operator-attacked",
                    "AIOPS_OPERATOR_METRICS_PORT": "0",
                    "AIOPS_OPERATOR_DRIFT_URL_PATTERN": f"{runtime.base}/{{namespace}}/{{name}}",
                    "AIOPS_OPERATOR_DRIFT_POLL_INTERVAL_S": "1",
                    "AIOPS_OPERATOR_DRIFT_BACKOFF_MAX_S": "1",
                    "AIOPS_OPERATOR_RETRAIN_URL_PREFIXES": f"{gitlab.base}/api/v4/projects/",
                    "AIOPS_OPERATOR_RETRAIN_ALLOW_HTTP": "true",
                },
            )
            operator.start()
            try:
                kube.apply(trigger_secret("redirecting", f"{gitlab.base}/api/v4/projects/1/"
                                          "trigger/pipeline"))  # fmt: skip
                kube.apply(trigger_secret("outside", f"{internal.base}/api/v4/projects/1/admin"))
                kube.apply(modelservice("bomb"))
                kube.apply(modelservice("redirecting", secret="redirecting"))
                kube.apply(modelservice("outside", secret="outside"))
                kube.apply(modelservice("neighbour"))
                yield Attack(kube, operator, elsewhere, internal)
            finally:
                for name in ("bomb", "redirecting", "outside", "neighbour"):
                    kube.kubectl("delete", "modelservice", name, "--timeout=30s", check=False)
                operator.stop()
                cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
                denials = rbac_denials(operator.log_text())
                assert not denials, "RBAC denials:\n" + "\n".join(denials[:5])


def test_an_oversized_drift_answer_is_a_reason_and_memory_stays_under_the_limit(
    attack: Attack,
) -> None:
    cond = wait_for(
        "bomb: DriftDetected InvalidDriftResponse",
        lambda: (c := attack.drift_condition("bomb")).get("reason") == "InvalidDriftResponse" and c,
        60,
    )
    assert "longer than the 65536 bytes read" in cond["message"]
    wait_for("three reads of the 400 MiB answer", lambda: BOMB_READS[0] >= 3, 30)
    neighbour = wait_for(
        "neighbour: DriftDetected NoDrift",
        lambda: (c := attack.drift_condition("neighbour")).get("reason") == "NoDrift" and c,
        60,
    )
    assert neighbour["status"] == "False"
    assert attack.operator.proc is not None
    assert attack.operator.proc.poll() is None
    peak = peak_rss(attack.operator.proc.pid)
    print(f"\nfigure: operator peak RSS after the 400 MiB answers: {peak / 2**20:.0f} MiB")
    assert peak < MEMORY_LIMIT / 2


def test_a_redirecting_trigger_fails_and_the_token_goes_nowhere_else(attack: Attack) -> None:
    status = wait_for(
        "redirecting: lastRetrainOutcome",
        lambda: (s := attack.drift_status("redirecting")).get("lastRetrainOutcome") and s,
        60,
    )
    assert status["lastRetrainOutcome"] == "Failed"
    assert "307 (redirects are not followed)" in status["lastRetrainMessage"]
    assert not attack.elsewhere.received()


def test_a_trigger_outside_the_allowed_prefixes_is_never_called(attack: Attack) -> None:
    status = wait_for(
        "outside: lastRetrainOutcome",
        lambda: (s := attack.drift_status("outside")).get("lastRetrainOutcome") and s,
        60,
    )
    assert status["lastRetrainOutcome"] == "Failed"
    assert status["lastRetrainMessage"].startswith("TriggerURLNotAllowed:")
    assert "internal admin console" not in json.dumps(attack.drift_status("outside"))
    assert not attack.internal.received()
    events = attack.kube.kubectl(
        "get", "events", "-o", "json", "--field-selector", "reason=RetrainFailed"
    ).stdout
    assert "TriggerURLNotAllowed" in events
