"""Helpers of the operator's integration tests: the operator as a real subprocess running under
its own ServiceAccount, kubectl JSON reads, and deadline-bounded waits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiops_operator.rbac import cluster_role, cluster_role_binding
from aiops_operator.settings import OperatorSettings
from tests.helpers import free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "modelservice.yaml"
OPERATOR_BIN = REPO_ROOT / ".venv" / "bin" / "aiops-operator"
OPERATOR_NAMESPACE = "aiops-system"
OPERATOR_ACCOUNT = "aiops-operator"
OPERATOR_CHART = REPO_ROOT / "charts" / "aiops-operator"
TRIGGER_SECRET = OperatorSettings().retrain_secret_name  # the one name a trigger is read from
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
MANAGED = "app.kubernetes.io/managed-by=aiops-operator"


def example(name: str | None = None, **spec_overrides: Any) -> dict[str, Any]:
    """The shipped example ModelService, optionally renamed and with spec keys replaced."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    if name:
        doc["metadata"]["name"] = name
    doc["spec"].update(spec_overrides)
    return doc


def install_operator_identity(cluster: Any) -> Path:
    """ServiceAccount + ClusterRole (rbac.py's rules, nothing more) + binding; its kubeconfig."""
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    role = cluster_role("aiops-operator-test")
    binding = cluster_role_binding("aiops-operator-test", OPERATOR_ACCOUNT, OPERATOR_NAMESPACE)
    docs = yaml.safe_dump_all([role, binding])
    cluster.kubectl("apply", "-f", "-", input=docs)
    return Path(cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT))


def install_chart_identity(
    cluster: Any, helm: Path, release: str, namespace: str, *values: str
) -> tuple[str, Path]:
    """The chart's ServiceAccount and RBAC only (rendered with `values`, e.g. --set ...), applied
    in `namespace`; returns the account's `system:serviceaccount:...` name and its kubeconfig."""
    rendered = subprocess.run(
        [str(helm), "template", release, str(OPERATOR_CHART), "--namespace", namespace, *values],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in RBAC_KINDS]
    cluster.kubectl("create", "namespace", namespace, check=False)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    (account,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    kubeconfig = Path(cluster.service_account_kubeconfig(namespace, account))
    return f"system:serviceaccount:{namespace}:{account}", kubeconfig


def can_i(cluster: Any, user: str, verb: str, what: str, namespace: str) -> bool:
    """`kubectl auth can-i VERB WHAT -n NAMESPACE --as USER`."""
    proc = cluster.kubectl("auth", "can-i", verb, what, "-n", namespace, "--as", user, check=False)
    return bool(proc.stdout.strip() == "yes")


@dataclass
class OperatorProcess:
    """`aiops-operator run` as a subprocess with the ServiceAccount's kubeconfig."""

    kubeconfig: Path
    log_path: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        """Start the operator and wait until its liveness endpoint answers."""
        env = {
            # A port of its own unless the test names one: 8081 may be another operator's.
            "AIOPS_OPERATOR_METRICS_PORT": str(self.metrics_port),
            # KWOK's pod IPs are fake and must never be dialled (the default reads each pod's):
            # the Service names resolve nowhere here, so reads fail at once, unless a test
            # points the pattern at its stand-ins.
            "AIOPS_OPERATOR_DRIFT_URL_PATTERN": "http://{name}.{namespace}.svc:{port}",
            **self.env,
            "KUBECONFIG": str(self.kubeconfig),
            "AIOPS_OPERATOR_LIVENESS_ENDPOINT": f"http://127.0.0.1:{self.port}/healthz",
            "AIOPS_OPERATOR_DISCOVERY_TTL_S": "2",
            # Outside the pod network: KWOK's pod IPs are fake and must never be dialled.
            "AIOPS_OPERATOR_PROBE_NOT_READY_PODS": "false",
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(OPERATOR_BIN), "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for("the operator's liveness endpoint", self._alive, timeout)

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9: no cleanup, no final patches."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class Kube:
    """kubectl reads in one namespace, as JSON."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def apply(self, doc: dict[str, Any] | str) -> None:
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
        self.cluster.kubectl("-n", self.namespace, "apply", "-f", "-", input=text)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        proc = self.cluster.kubectl(
            "-n", self.namespace, "get", kind, name, "-o", "json", check=False
        )
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        return dict(json.loads(proc.stdout))

    def list(self, kind: str, selector: str = MANAGED) -> list[dict[str, Any]]:
        proc = self.cluster.kubectl("-n", self.namespace, "get", kind, "-l", selector, "-o", "json")
        return list(json.loads(proc.stdout)["items"])

    def kubectl(
        self, *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = self.cluster.kubectl("-n", self.namespace, *args, check=check, input=input_text)
        return proc  # type: ignore[no-any-return]

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        ms = self.get("modelservice", name) or {}
        for cond in (ms.get("status") or {}).get("conditions") or []:
            if cond["type"] == kind:
                return dict(cond)
        return None

    def condition_where(self, name: str, kind: str, **fields: str) -> dict[str, Any] | None:
        """The condition `kind` if it has every given value (e.g. reason="X"), else None."""
        cond = self.condition(name, kind)
        return cond if cond and all(cond.get(k) == v for k, v in fields.items()) else None

    def ready(self, name: str) -> bool:
        cond = self.condition(name, "Ready")
        return bool(cond and cond["status"] == "True")


def rbac_denials(log_text: str) -> list[str]:
    """Operator log lines where the API server refused a request (403), except writes into a
    namespace or a CRD that is being deleted: those are refusals of timing, not of RBAC.
    `\b403\b` is a status code, not the digits of a timestamp such as 13:24:51.403818."""
    return [
        line
        for line in log_text.splitlines()
        if ("Forbidden" in line or re.search(r"\b403\b", line))
        and "being terminated" not in line
        and "definition is terminating" not in line
    ]


def printed_columns(table: str) -> dict[str, str]:
    """`kubectl get` output (header + one row) as {column: value}, cut at header positions."""
    header, row = table.splitlines()[:2]
    names = header.split()
    starts = [header.index(n) for n in names]
    ends = [*starts[1:], max(len(row), len(header))]
    return {n: row[s:e].strip() for n, s, e in zip(names, starts, ends, strict=True)}


KINDS = ("deployment", "service", "configmap")


def docs(names: list[str], threshold: float = 0.05) -> str:
    """The example ModelService under each name, with this drift threshold, as one YAML stream."""
    out = []
    for name in names:
        doc = example(name)
        doc["spec"]["drift"]["pValueThreshold"] = threshold
        out.append(doc)
    return yaml.safe_dump_all(out)


def converged(kube: Kube, expected: dict[str, float]) -> str | None:
    """None when every ModelService of `expected` (name: threshold) is Ready at its generation
    with exactly one of each child, owned by it, and nothing else is left; else what is off."""
    items = json.loads(kube.kubectl("get", "modelservices", "-o", "json").stdout)["items"]
    live = {ms["metadata"]["name"]: ms for ms in items}
    if set(live) != set(expected):
        return f"modelservices {sorted(live)}"
    for ms in live.values():
        status = ms.get("status") or {}
        ready = {c["type"]: c["status"] for c in status.get("conditions") or []}.get("Ready")
        if status.get("observedGeneration") != ms["metadata"]["generation"] or ready != "True":
            return f"{ms['metadata']['name']} not Ready at its generation"
    uids = {name: ms["metadata"]["uid"] for name, ms in live.items()}
    for kind in KINDS:
        children = kube.list(kind)
        owners = Counter(c["metadata"]["labels"]["app.kubernetes.io/instance"] for c in children)
        if set(owners) != set(expected) or any(n != 1 for n in owners.values()):
            return f"{kind}s per ModelService: {dict(owners)}"
        for child in children:
            refs = child["metadata"].get("ownerReferences") or []
            instance = child["metadata"]["labels"]["app.kubernetes.io/instance"]
            if [r["uid"] for r in refs] != [uids[instance]]:
                return f"{kind} {instance} owned by {refs}"
            if kind == "configmap":
                threshold = json.loads(child["data"]["drift.json"])["pValueThreshold"]
                if threshold != expected[instance]:
                    return f"configmap {instance} threshold {threshold}"
    return None


def wait_converged(kube: Kube, expected: dict[str, Any], what: str, timeout: float = 60) -> None:
    """Wait until `converged`; fail naming what is still off."""
    off = [""]

    def done() -> bool:
        off[0] = converged(kube, expected) or ""
        return not off[0]

    try:
        wait_for(what, done, timeout, 1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still off: {off[0]}") from None
