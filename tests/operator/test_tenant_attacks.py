"""One tenant's ModelServices attack the shared operator, on the real API server.

The operator runs as a process under exactly the chart's RBAC for a namespaced install (a Role
in each of two served namespaces, the first opted in to trigger reads by rbac.retrainNamespaces),
its drift URL pattern pointed at a local server that plays each tenant's runtime by path:
- `bomb` answers GET /drift with 400 MiB (chunked, no length), on every read;
- `redirecting` reports drift; its trigger Secret names an allowed URL that answers 307 to
  another server (which would receive the token again if the redirect were followed);
- `outside` reports drift; its trigger Secret names an internal endpoint outside the allowed
  prefixes;
- `wrong-secret` reports drift; its triggerSecretRef names a Secret other than the one allowed;
- `forbidden` (in the second namespace, not opted in) reports drift;
- `neighbour` is a well-behaved runtime in the same operator.
The operator must stay up and under its chart's memory limit, say what went wrong in each
status, call nothing outside its allowlist, read no Secret it was not granted, and keep serving
the neighbour. `kubectl auth can-i` shows what the chart's rights no longer allow.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeServer, fake_server, raw_server
from tests.helpers import wait_for
from tests.operator.operator_helpers import (
    TRIGGER_SECRET,
    Kube,
    OperatorProcess,
    can_i,
    example,
    install_chart_identity,
    rbac_denials,
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
FORBIDDEN_READS = [0]


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
    doc = QUIET if name == "neighbour" else DRIFTING
    if name == "forbidden":  # a new drift event on every read
        FORBIDDEN_READS[0] += 1
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        doc = {**DRIFTING, "drift_events": FORBIDDEN_READS[0], "last_drift_time": now}
    body = json.dumps(doc).encode()
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


def trigger_secret(urls: dict[str, str], name: str = TRIGGER_SECRET) -> dict[str, Any]:
    """One Secret, one trigger per key (the key is the ModelService's name)."""
    data = {
        key: json.dumps({"url": url, "token": "glptt-tenant-attack-token", "ref": "main"})
        for key, url in urls.items()
    }
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def modelservice(name: str, secret: str | None = None) -> dict[str, Any]:
    drift: dict[str, Any] = {"windowSize": 50, "checkEvery": 25}
    if secret is not None:
        ref = {"name": secret, "key": name}
        drift |= {"action": "retrain", "retrain": {"triggerSecretRef": ref, "cooldown": "1h"}}
    return example(name, drift=drift)


@dataclass
class Attack:
    kube: Kube
    other: Kube  # the second served namespace, not opted in to trigger reads
    operator: OperatorProcess
    user: str  # the operator's ServiceAccount, as `--as` takes it
    elsewhere: FakeServer  # where the redirect points
    internal: FakeServer  # the internal endpoint outside the prefixes

    def drift_condition(self, name: str) -> dict[str, Any]:
        return self.kube.condition(name, "DriftDetected") or {}

    def drift_status(self, name: str, kube: Kube | None = None) -> dict[str, Any]:
        ms = (kube or self.kube).get("modelservice", name) or {}
        return dict((ms.get("status") or {}).get("drift") or {})

    def retrain_outcome(self, name: str, kube: Kube | None = None) -> dict[str, Any]:
        return wait_for(
            f"{name}: lastRetrainOutcome",
            lambda: (s := self.drift_status(name, kube)).get("lastRetrainOutcome") and s,
            60,
        )


@pytest.fixture(scope="module")
def attack(
    cluster: Any,
    modelservice_crd: None,
    operator_process: OperatorProcess,
    helm: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Attack]:
    # The session's cluster-wide operator would share Kopf's annotations with this one.
    operator_process.stop()
    try:
        yield from _attack(cluster, helm, tmp_path_factory)
    finally:
        operator_process.start()


def _attack(cluster: Any, helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    suffix = uuid.uuid4().hex[:6]
    namespace, other = f"tenant-{suffix}", f"tenant2-{suffix}"
    for name in (namespace, other):
        cluster.kubectl("create", "namespace", name)
    kube = Kube(cluster, namespace)
    user, kubeconfig = install_chart_identity(
        cluster, helm, f"attacked-{suffix}", f"attacked-{suffix}",
        "--set-string", f"settings.namespaces={namespace}\\,{other}",
        "--set", f"rbac.retrainNamespaces={{{namespace}}}",
    )  # fmt: skip

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
                kubeconfig=kubeconfig,
                log_path=tmp_path_factory.mktemp("attack") / "operator.log",
                env={
                    **cluster.env,
                    "AIOPS_OPERATOR_NAMESPACES": f"{namespace},{other}",
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
            allowed = f"{gitlab.base}/api/v4/projects/1/trigger/pipeline"
            second = Kube(cluster, other)
            try:
                kube.apply(trigger_secret({
                    "redirecting": allowed,
                    "outside": f"{internal.base}/api/v4/projects/1/admin",
                }))  # fmt: skip
                kube.apply(trigger_secret({"wrong-secret": allowed}, name="gitlab-trigger"))
                second.apply(trigger_secret({"forbidden": allowed}))
                kube.apply(modelservice("bomb"))
                kube.apply(modelservice("redirecting", secret=TRIGGER_SECRET))
                kube.apply(modelservice("outside", secret=TRIGGER_SECRET))
                kube.apply(modelservice("wrong-secret", secret="gitlab-trigger"))
                kube.apply(modelservice("neighbour"))
                second.apply(modelservice("forbidden", secret=TRIGGER_SECRET))
                yield Attack(kube, second, operator, user, elsewhere, internal)
            finally:
                for k in (kube, second):
                    k.kubectl("delete", "modelservice", "--all", "--timeout=30s", check=False)
                operator.stop()
                for name in (namespace, other):
                    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
                denials = [  # the one 403 expected: the namespace that did not opt in
                    d for d in rbac_denials(operator.log_text())
                    if "TriggerSecretForbidden" not in d
                ]  # fmt: skip
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


def test_a_secret_other_than_the_allowed_name_is_not_read(attack: Attack) -> None:
    status = attack.retrain_outcome("wrong-secret")
    assert status["lastRetrainOutcome"] == "Failed"
    assert status["lastRetrainMessage"].startswith("TriggerSecretNotAllowed:")
    assert TRIGGER_SECRET in status["lastRetrainMessage"]


def test_a_namespace_that_did_not_opt_in_gets_a_reason_not_a_retry_storm(attack: Attack) -> None:
    status = attack.retrain_outcome("forbidden", attack.other)
    assert status["lastRetrainOutcome"] == "Failed"
    assert status["lastRetrainMessage"].startswith("TriggerSecretForbidden:")
    assert "retrain-trigger" in status["lastRetrainMessage"]
    attempts = attack.operator.log_text().count("retrain trigger failed")
    # The runtime reports a new drift event on every read (each second): the cooldown holds
    # every further attempt back, whatever the failure.
    reads = FORBIDDEN_READS[0]
    wait_for("three more drift events", lambda: FORBIDDEN_READS[0] >= reads + 3, 15)
    time.sleep(1)
    assert (
        attack.drift_status("forbidden", attack.other)["lastRetrainTime"]
        == (status["lastRetrainTime"])
    )
    assert attack.operator.log_text().count("retrain trigger failed") == attempts
    skipped = attack.other.kubectl(
        "get", "events", "-o", "json", "--field-selector", "reason=RetrainSkipped"
    ).stdout
    assert json.loads(skipped)["items"]


@pytest.mark.parametrize(
    ("verb", "what", "where", "allowed"),
    [
        ("get", "secrets", "kube-system", False),
        ("list", "secrets", "tenant", False),
        ("get", f"secrets/{TRIGGER_SECRET}", "tenant", True),
        ("get", "secrets/gitlab-trigger", "tenant", False),
        ("get", f"secrets/{TRIGGER_SECRET}", "tenant2", False),
        ("create", "deployments", "kube-system", False),
        ("patch", "configmaps", "default", False),
        ("patch", "deployments", "tenant2", True),
        ("patch", "modelservices/status", "tenant", True),
        ("list", "modelservices", "default", False),
    ],
)
def test_the_namespaced_charts_rights_are_these_and_no_more(
    attack: Attack, verb: str, what: str, where: str, allowed: bool
) -> None:
    namespace = {"tenant": attack.kube.namespace, "tenant2": attack.other.namespace}.get(
        where, where
    )
    assert can_i(attack.kube.cluster, attack.user, verb, what, namespace) is allowed


def test_the_cluster_wide_chart_reads_no_secret_until_a_namespace_opts_in(
    cluster: Any, helm: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    release = f"everywhere-{suffix}"
    user, _ = install_chart_identity(cluster, helm, release, release)
    team = f"team-{suffix}"
    cluster.kubectl("create", "namespace", team)
    try:
        assert can_i(cluster, user, "patch", "deployments", "kube-system")  # it serves all
        for namespace in ("kube-system", "default", team):
            assert not can_i(cluster, user, "get", "secrets", namespace)
            assert not can_i(cluster, user, "get", f"secrets/{TRIGGER_SECRET}", namespace)
        # What the README tells a namespace admin to run to opt in.
        cluster.kubectl(
            "-n", team, "create", "rolebinding", "aiops-retrain-trigger",
            f"--clusterrole={release}-aiops-operator-retrain-trigger",
            f"--serviceaccount={release}:{release}-aiops-operator",
        )  # fmt: skip
        assert can_i(cluster, user, "get", f"secrets/{TRIGGER_SECRET}", team)
        assert not can_i(cluster, user, "get", "secrets/anything-else", team)
        assert not can_i(cluster, user, "get", f"secrets/{TRIGGER_SECRET}", "default")
    finally:
        cluster.kubectl("delete", "namespace", team, release, "--wait=false", check=False)
