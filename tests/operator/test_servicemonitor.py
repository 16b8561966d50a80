"""Scrape configuration on the real control plane: prometheus.io/* pod annotations while the
Prometheus Operator's ServiceMonitor CRD is absent, a ServiceMonitor child once it is installed
(the Prometheus Operator's own CRD, from its pinned Go module)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.delivery.delivery_helpers import apply_crd
from tests.helpers import wait_for
from tests.operator.operator_helpers import Kube, OperatorProcess, example

pytestmark = pytest.mark.integration

SERVICEMONITOR_CRD = "servicemonitors.monitoring.coreos.com"
# The operator caches API discovery for AIOPS_OPERATOR_DISCOVERY_TTL_S (2 s in the tests).
DISCOVERY_TTL_S = 2


def pod_annotations(kube: Kube, name: str) -> dict[str, str]:
    deployment = kube.get("deployment", name) or {}
    template = (deployment.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("annotations") or {})


@pytest.fixture
def servicemonitor_crd(
    cluster: Any, third_party_crds: dict[str, Path], operator_process: OperatorProcess
) -> Iterator[None]:
    """The ServiceMonitor CRD for one test, installed while the operator runs (it asks for
    the kind again every discovery TTL); removed afterwards, and the operator's discovery cache
    given time to notice before the next test."""
    apply_crd(cluster, third_party_crds["servicemonitor"])
    try:
        yield
    finally:
        cluster.kubectl("delete", "crd", SERVICEMONITOR_CRD, "--timeout=60s", check=False)
        time.sleep(DISCOVERY_TTL_S + 1)


def test_without_the_crd_forced_servicemonitor_is_degraded_and_auto_uses_annotations(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    kube.apply(example("forced", monitoring={"scrape": "servicemonitor"}))
    kube.apply(example("auto"))
    degraded = wait_for(
        "Degraded ServiceMonitorUnavailable",
        lambda: kube.condition_where("forced", "Degraded", reason="ServiceMonitorUnavailable"),
        30,
    )
    assert degraded["status"] == "True"
    assert "install the Prometheus Operator CRDs" in degraded["message"]
    # Not blocking: the runtime is still deployed and becomes Ready.
    wait_for("Ready=True despite the missing CRD", lambda: kube.ready("forced"), 30)
    annotations = wait_for("the auto Deployment", lambda: pod_annotations(kube, "auto"), 30)
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_with_the_crd_a_servicemonitor_is_rendered_and_restored(
    kube: Kube, operator_process: OperatorProcess, servicemonitor_crd: None
) -> None:
    kube.apply(example("scraped", monitoring={"scrape": "auto", "interval": "30s"}))
    monitor = wait_for("the ServiceMonitor", lambda: kube.get("servicemonitor", "scraped"), 30)
    ms = kube.get("modelservice", "scraped")
    assert ms is not None
    (ref,) = monitor["metadata"]["ownerReferences"]
    assert ref["uid"] == ms["metadata"]["uid"]
    assert monitor["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "aiops-operator"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "30s"}
    service = kube.get("service", "scraped")
    assert service is not None
    assert "http" in {p["name"] for p in service["spec"]["ports"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    # One scrape configuration, not two: no pod annotations next to the ServiceMonitor.
    assert "prometheus.io/scrape" not in pod_annotations(kube, "scraped")

    # A hand edit is reverted: the operator watches ServiceMonitors (Kopf's first listing of a
    # kind it just found catches the edit too, while a deletion before it would go unseen).
    edit = '{"spec":{"endpoints":[{"port":"http","path":"/metrics","interval":"99s"}]}}'
    kube.kubectl("patch", "servicemonitor", "scraped", "--type", "merge", "-p", edit)
    wait_for(
        "the hand-edited interval reverted",
        lambda: (
            (m := kube.get("servicemonitor", "scraped"))
            and m["spec"]["endpoints"][0]["interval"] == "30s"
        ),
        60,
    )
    kube.kubectl("delete", "servicemonitor", "scraped")
    restored = wait_for(
        "the ServiceMonitor restored",
        lambda: (
            (m := kube.get("servicemonitor", "scraped"))
            and m["metadata"]["uid"] != monitor["metadata"]["uid"]
            and m
        ),
        30,
    )
    assert restored["spec"]["endpoints"] == monitor["spec"]["endpoints"]


def test_installing_and_removing_the_crd_switches_a_running_modelservices_scrape_config(
    cluster: Any, third_party_crds: dict[str, Path], kube: Kube, operator_process: OperatorProcess
) -> None:
    """scrape: auto created before the Prometheus Operator's CRDs: pod annotations; once the
    CRDs are installed (the operator still running) a ServiceMonitor instead, the annotations
    gone and a forced ServiceMonitor no longer Degraded; once they are removed, annotations
    again."""
    kube.apply(example("early", monitoring={"scrape": "auto", "interval": "30s"}))
    kube.apply(example("forced-early", monitoring={"scrape": "servicemonitor"}))
    wait_for(
        "annotations while no ServiceMonitor is served",
        lambda: pod_annotations(kube, "early").get("prometheus.io/scrape") == "true",
        30,
    )
    wait_for(
        "the forced one Degraded",
        lambda: kube.condition_where(
            "forced-early", "Degraded", reason="ServiceMonitorUnavailable"
        ),
        30,
    )
    apply_crd(cluster, third_party_crds["servicemonitor"])
    try:
        monitor = wait_for("the ServiceMonitor", lambda: kube.get("servicemonitor", "early"), 30)
        assert monitor["spec"]["endpoints"][0]["interval"] == "30s"
        wait_for("the forced one's", lambda: kube.get("servicemonitor", "forced-early"), 30)
        wait_for(
            "the annotations gone",
            lambda: "prometheus.io/scrape" not in pod_annotations(kube, "early"),
            30,
        )
        wait_for(
            "the forced one no longer Degraded",
            lambda: (
                not kube.condition_where(
                    "forced-early", "Degraded", reason="ServiceMonitorUnavailable"
                )
            ),
            30,
        )
    finally:
        cluster.kubectl("delete", "crd", SERVICEMONITOR_CRD, "--timeout=60s", check=False)
    wait_for(
        "annotations again once ServiceMonitors are not served",
        lambda: pod_annotations(kube, "early").get("prometheus.io/scrape") == "true",
        60,
    )
