"""Chaos: 20 kill -9 of the operator at random points of 200 ModelService operations (creates,
spec updates, deletes, re-creates over a pool of names). Within 30 s of the last restart every
live ModelService is Ready at its generation with each child exactly once, owned by it, with
the spec's latest values; nothing is left of the deleted ones and no ModelService is stuck.
The plan is seeded and printed, so a failing run can be replayed."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.operator.operator_helpers import MANAGED, Kube, OperatorProcess, example

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 15_05  # issue 15 item 5
OPERATIONS = 200
KILLS = 20
POOL = [f"chaos-{i:02d}" for i in range(16)]
THRESHOLDS = (0.01, 0.05, 0.1, 0.2)
REPLICAS = (1, 2)
CONVERGE_S = 30  # issue 15: every object converges within 30 s of the last restart
# Children every ModelService of this plan has (the example's spec, the operator's defaults);
# any other managed child (a ServiceMonitor once its CRD is served) is counted too.
REQUIRED = ("Deployment", "Service", "ConfigMap", "NetworkPolicy")

Spec = tuple[float, int]  # (drift.pValueThreshold, replicas)


@dataclass(frozen=True)
class Operation:
    verb: str  # "create" (or re-create), "update" (of the spec) or "delete"
    name: str
    spec: Spec | None = None


@dataclass(frozen=True)
class Plan:
    operations: list[Operation]
    kills: dict[int, int]  # operation index: operations applied while the operator is down
    expected: dict[str, Spec]  # what is live after the last operation


def plan(seed: int) -> Plan:
    """200 operations over the pool and 20 kills, one at a random point of each tenth."""
    rng = random.Random(seed)
    live: dict[str, Spec] = {}
    operations = []
    for _ in range(OPERATIONS):
        name = rng.choice(POOL)
        if name in live and rng.random() < 0.3:
            del live[name]
            operations.append(Operation("delete", name))
            continue
        spec = live.get(name)
        while (new := (rng.choice(THRESHOLDS), rng.choice(REPLICAS))) == spec:
            pass  # an update changes the spec, so it is a new generation
        live[name] = new
        operations.append(Operation("create" if spec is None else "update", name, new))
    slot = OPERATIONS // KILLS
    kills = {}
    for start in range(0, OPERATIONS, slot):
        down = rng.randint(0, 3)
        kills[start + rng.randint(1, slot - 1 - down)] = down
    return Plan(operations, kills, live)


def apply(kube: Kube, operation: Operation) -> None:
    if operation.verb == "delete":
        kube.kubectl("delete", "modelservice", operation.name, "--wait=false")
        return
    assert operation.spec is not None
    threshold, replicas = operation.spec
    doc = example(operation.name, replicas=replicas)
    doc["spec"]["drift"]["pValueThreshold"] = threshold
    kube.apply(doc)


@dataclass
class Census:
    """What is off, by class: each entry names the object and why."""

    lost: list[str] = field(default_factory=list)  # a live ModelService missing a child
    duplicate: list[str] = field(default_factory=list)  # a kind twice, or a child owned twice
    orphaned: list[str] = field(default_factory=list)  # a child of a deleted ModelService
    stuck: list[str] = field(default_factory=list)  # a delete not done, a finalizer
    stale: list[str] = field(default_factory=list)  # not Ready at its generation, old values

    def clean(self) -> bool:
        return not (self.lost or self.duplicate or self.orphaned or self.stuck or self.stale)

    def counts(self) -> str:
        return (
            f"lost={len(self.lost)} duplicate={len(self.duplicate)}"
            f" orphaned={len(self.orphaned)} stuck={len(self.stuck)} stale={len(self.stale)}"
        )

    def detail(self) -> str:
        return "; ".join(f"{k}: {v[:5]}" for k, v in vars(self).items() if v)


def child_kinds(kube: Kube) -> list[str]:
    """Plurals of the child kinds this cluster serves (ServiceMonitor only with its CRD)."""
    kinds = ["deployments", "services", "configmaps", "networkpolicies", "horizontalpodautoscalers"]
    served = kube.kubectl("get", "servicemonitors", check=False).returncode == 0
    return [*kinds, "servicemonitors"] if served else kinds


def census(kube: Kube, plurals: list[str], expected: dict[str, Spec]) -> Census:
    """Every ModelService and every managed child of the namespace against `expected`."""
    off = Census()
    items = json.loads(kube.kubectl("get", "modelservices", "-o", "json").stdout)["items"]
    live = {ms["metadata"]["name"]: ms for ms in items}
    for name, ms in live.items():
        meta, status = ms["metadata"], ms.get("status") or {}
        if name not in expected or meta.get("deletionTimestamp"):
            off.stuck.append(f"{name} still there")
        if meta.get("finalizers"):
            off.stuck.append(f"{name} finalizers {meta['finalizers']}")
        ready = {c["type"]: c for c in status.get("conditions") or []}.get("Ready") or {}
        observed = status.get("observedGeneration")
        if observed != meta["generation"] or ready.get("status") != "True":
            off.stale.append(
                f"{name} not Ready at generation {meta['generation']} (observed {observed},"
                f" Ready {ready.get('status')} {ready.get('reason')}: {ready.get('message')})"
            )
    off.lost += [f"{name} ModelService" for name in expected if name not in live]
    uids = {name: ms["metadata"]["uid"] for name, ms in live.items() if name in expected}
    selector = ",".join(plurals)
    children = json.loads(kube.kubectl("get", selector, "-l", MANAGED, "-o", "json").stdout)
    per_owner: Counter[tuple[str, str]] = Counter()
    for child in children["items"]:
        kind, meta = child["kind"], child["metadata"]
        instance = meta["labels"]["app.kubernetes.io/instance"]
        per_owner[instance, kind] += 1
        refs = [r["uid"] for r in meta.get("ownerReferences") or []]
        if instance not in uids or uids[instance] not in refs:
            off.orphaned.append(f"{kind} {meta['name']} owned by {refs}")
            continue
        if len(refs) > 1:
            off.duplicate.append(f"{kind} {meta['name']} owned by {refs}")
        off.stale += _stale_values(kind, child, expected[instance])
    for (instance, kind), count in per_owner.items():
        if count > 1:
            off.duplicate.append(f"{count} {kind}s of {instance}")
    for name in uids:
        off.lost += [f"{kind} of {name}" for kind in REQUIRED if not per_owner[name, kind]]
    return off


def _stale_values(kind: str, child: dict[str, Any], spec: Spec) -> list[str]:
    threshold, replicas = spec
    name = child["metadata"]["name"]
    if kind == "ConfigMap":
        applied = json.loads(child["data"]["drift.json"])["pValueThreshold"]
        return [] if applied == threshold else [f"ConfigMap {name} threshold {applied}"]
    if kind == "Deployment":
        applied = child["spec"]["replicas"]
        return [] if applied == replicas else [f"Deployment {name} replicas {applied}"]
    return []


def wait_clean(
    probe: Callable[[], Census], since: float, timeout: float
) -> tuple[float | None, Census]:
    """Seconds from `since` until `probe` finds nothing off (None if not within `timeout`)."""
    last = probe()
    while not last.clean():
        if time.monotonic() - since > timeout:
            return None, last
        time.sleep(0.5)
        last = probe()
    return time.monotonic() - since, last


def test_20_kills_during_200_operations_converge_within_30_s_of_the_last_restart(
    kube: Kube, operator_process: OperatorProcess, record_property: Callable[[str, Any], None]
) -> None:
    chaos = plan(SEED)
    print(f"\nchaos plan: seed {SEED}, kills at operations {sorted(chaos.kills)}")
    began = time.monotonic()
    restarts, downtime, restart_at, restarted = 0, 0.0, None, began
    killed_at: float | None = None
    try:
        for index, operation in enumerate(chaos.operations):
            if index in chaos.kills:
                operator_process.kill()
                killed_at, restart_at = time.monotonic(), index + chaos.kills[index]
            if index == restart_at and killed_at is not None:
                restarted = time.monotonic()
                operator_process.start()
                restarts, downtime = restarts + 1, downtime + time.monotonic() - killed_at
                killed_at = None
            apply(kube, operation)
    finally:
        if killed_at is not None:  # the operator must be up for the session's next test
            restarted = time.monotonic()
            operator_process.start()
            restarts, downtime = restarts + 1, downtime + time.monotonic() - killed_at
    applied = time.monotonic()

    plurals = child_kinds(kube)
    converge, off = wait_clean(lambda: census(kube, plurals, chaos.expected), restarted, 90)
    after_ops = None if converge is None else converge - (applied - restarted)
    figures = {
        "seed": SEED,
        "kills": len(chaos.kills),
        "restarts": restarts,
        "operations": len(chaos.operations),
        **Counter(operation.verb for operation in chaos.operations),
        "live": len(chaos.expected),
        "converge_after_last_restart_s": None if converge is None else round(converge, 1),
        "converge_after_last_operation_s": None if after_ops is None else round(after_ops, 1),
        "mean_downtime_s": round(downtime / max(1, restarts), 1),
        "burst_s": round(applied - began, 1),
        "lost": len(off.lost),
        "duplicate": len(off.duplicate),
        "orphaned": len(off.orphaned),
        "stuck": len(off.stuck),
    }
    for key, value in figures.items():
        record_property(key, value)
    print("chaos figures: " + json.dumps(figures))
    assert converge is not None, f"not converged 90 s after the last restart: {off.detail()}"
    assert converge <= CONVERGE_S, f"converged {converge:.1f} s after the last restart"
    assert off.clean(), off.counts()
