"""kill -9 of the operator in the middle of a burst of creates, updates and deletes; after a
restart everything converges: every child exactly once, owned by the live ModelService, with the
spec's values, and nothing left of the deleted ones."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import yaml

from tests.helpers import wait_for
from tests.operator.operator_helpers import Kube, OperatorProcess, example

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KINDS = ("deployment", "service", "configmap")


def docs(names: list[str], threshold: float = 0.05) -> str:
    out = []
    for name in names:
        doc = example(name)
        doc["spec"]["drift"]["pValueThreshold"] = threshold
        out.append(doc)
    return yaml.safe_dump_all(out)


def converged(kube: Kube, expected: dict[str, float]) -> str | None:
    """None when converged, else what is still off (for the timeout message)."""
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


def test_kill_9_during_a_burst_then_restart_converges(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    first = [f"first-{i:02d}" for i in range(10)]
    second = [f"second-{i:02d}" for i in range(10)]
    third = [f"third-{i:02d}" for i in range(10)]

    kube.kubectl("apply", "-f", "-", input_text=docs(first))
    kube.kubectl("apply", "-f", "-", input_text=docs(second))
    operator_process.kill()  # while it is still working through the creates
    try:
        kube.kubectl("apply", "-f", "-", input_text=docs(third))
        kube.kubectl("apply", "-f", "-", input_text=docs(first, threshold=0.2))
        kube.kubectl("delete", "modelservices", *second, "--wait=false")
    finally:
        operator_process.start()

    expected: dict[str, Any] = {n: 0.2 for n in first} | {n: 0.05 for n in third}
    off = [""]

    def done() -> bool:
        off[0] = converged(kube, expected) or ""
        return not off[0]

    try:
        wait_for("convergence after the restart", done, 60, 1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still off: {off[0]}") from None
