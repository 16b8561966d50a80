"""The operator on the real local control plane, running as its own ServiceAccount: children,
status, threshold changes, self-healing, garbage collection and unservable specs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.operator.operator_helpers import EXAMPLE, Kube, OperatorProcess, example, printed_columns

pytestmark = pytest.mark.integration

CHILD_KINDS = ("deployment", "service", "configmap")
NAME = "breast-cancer"
MODEL_SHA256 = example()["spec"]["model"]["sha256"]


def children_present(kube: Kube, name: str) -> dict[str, dict[str, Any]] | None:
    found = {kind: kube.get(kind, name) for kind in CHILD_KINDS}
    return found if all(found.values()) else None  # type: ignore[return-value]


def env_value(deployment: dict[str, Any], var: str) -> str | None:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return next((e.get("value") for e in container["env"] if e["name"] == var), None)


def drift_json(kube: Kube, name: str) -> dict[str, Any]:
    cm = kube.get("configmap", name) or {"data": {"drift.json": "{}"}}
    return dict(json.loads(cm["data"]["drift.json"]))


def test_example_yields_owned_labelled_children(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    kube.kubectl("apply", "-f", str(EXAMPLE))
    children = wait_for("the children", lambda: children_present(kube, NAME), 15)
    ms = kube.get("modelservice", NAME)
    assert ms is not None
    for kind, child in children.items():
        meta = child["metadata"]
        (ref,) = meta["ownerReferences"]
        assert ref["uid"] == ms["metadata"]["uid"], kind
        assert ref["kind"] == "ModelService"
        assert ref["controller"] is True
        assert ref["blockOwnerDeletion"] is True
        labels = meta["labels"]
        assert labels["app.kubernetes.io/instance"] == NAME
        assert labels["app.kubernetes.io/managed-by"] == "aiops-operator"
        for key in ("name", "component", "part-of"):
            assert labels[f"app.kubernetes.io/{key}"], (kind, key)
    pod = children["deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert (
        env_value(children["deployment"], "DRIFT_CONFIG_FILE")
        == "/etc/aiops-quality/drift/drift.json"
    )


def test_ready_turns_true_and_get_shows_every_column(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    kube.kubectl("apply", "-f", str(EXAMPLE))
    wait_for("Ready=True", lambda: kube.ready(NAME), 30)
    ms = kube.get("modelservice", NAME)
    assert ms is not None
    status = ms["status"]
    assert status["observedGeneration"] == ms["metadata"]["generation"]
    assert status["readyReplicas"] == status["replicas"] == 1
    assert status["endpoint"] == f"http://{NAME}.{kube.namespace}.svc:8000"
    assert status["modelDigest"] == "sha256:" + ms["spec"]["model"]["sha256"]
    row = printed_columns(kube.kubectl("get", "msvc", NAME).stdout)
    assert row["READY"] == "True"
    assert row["REPLICAS"] == "1"
    assert row["THRESHOLD"] == "0.05"
    assert row["DRIFT"] == "Unknown"  # until the runtime's first check is read (issue 6)
    assert row["NAME"] == NAME
    assert row["AGE"]


def test_pods_are_admitted_under_pod_security_restricted(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    kube.apply(example(replicas=2))
    wait_for("Ready=True", lambda: kube.ready(NAME), 30)
    pods = kube.list("pods", f"app.kubernetes.io/instance={NAME}")
    assert len(pods) == 2
    labels = kube.cluster.kubectl("get", "namespace", kube.namespace, "-o", "json").stdout
    assert json.loads(labels)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )


def test_ready_is_false_while_the_deployment_cannot_become_available(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    # The claim does not exist, so the scheduler keeps the pod Pending.
    model = example()["spec"]["model"]
    model = {**model, "uri": "pvc://missing-claim/breast-cancer/model.skops"}
    kube.apply(example("stuck", model=model))
    cond = wait_for(
        "Ready=False with the Deployment's reason",
        lambda: kube.condition_where("stuck", "Ready", reason="ReplicasNotReady"),
        20,
    )
    assert cond["status"] == "False"
    assert cond["message"] == "0/1 replicas ready"
    assert kube.condition("stuck", "Progressing")["status"] == "True"  # type: ignore[index]
    # Nothing can answer GET /drift, so the drift loop does not try (no DNS lookups, no backoff).
    drift = wait_for(
        "DriftDetected=Unknown RuntimeNotReady",
        lambda: kube.condition_where("stuck", "DriftDetected", reason="RuntimeNotReady"),
        20,
    )
    assert drift["status"] == "Unknown"  # type: ignore[index]


def watch_events(kube: Kube, path: str, since: str) -> list[dict[str, Any]]:
    """Every change of a collection after resourceVersion `since` (a short watch)."""
    raw = kube.cluster.kubectl(
        "get", "--raw", f"{path}?watch=1&resourceVersion={since}&timeoutSeconds=2"
    ).stdout
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def test_no_finalizer_nor_kopf_annotation_is_ever_added_and_children_are_applied_once(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    # No handler needs one (no timer, no delete handler): the children go with the ModelService
    # through their ownerReferences, so deleting it never waits for the operator.
    ns = kube.namespace
    ms_path = f"/apis/aiops-quality.io/v1alpha1/namespaces/{ns}/modelservices"
    deploy_path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    since = json.loads(kube.cluster.kubectl("get", "--raw", ms_path).stdout)["metadata"][
        "resourceVersion"
    ]
    kube.kubectl("apply", "-f", str(EXAMPLE))
    wait_for("Ready=True", lambda: kube.ready(NAME), 30)
    events = watch_events(kube, ms_path, since)
    finalized = [e for e in events if e["object"]["metadata"].get("finalizers")]
    created = [e for e in watch_events(kube, deploy_path, since) if e["type"] == "ADDED"]
    assert len(events) > 1, "the operator wrote nothing to the ModelService"
    assert not finalized, f"a finalizer was added: {finalized[0]['object']['metadata']}"
    assert len(created) == 1
    # Kopf wrote nothing either (no copy of the spec, no marker: kopf_storage.py): every write
    # after the create was to the status.
    annotations = [e["object"]["metadata"].get("annotations") or {} for e in events]
    kopfs = [a for a in annotations if any(k.startswith("aiops-quality.io/") for k in a)]
    assert not kopfs, f"Kopf annotated the ModelService: {kopfs[0]}"
    generations = {e["object"]["metadata"].get("generation") for e in events}
    assert generations == {1}


def test_threshold_patch_reaches_configmap_and_status_within_5s_without_a_rollout(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    kube.kubectl("apply", "-f", str(EXAMPLE))
    wait_for("Ready=True", lambda: kube.ready(NAME), 30)
    template = (kube.get("deployment", NAME) or {})["spec"]["template"]
    patch = '{"spec":{"drift":{"pValueThreshold":0.5}}}'
    kube.kubectl("patch", "msvc", NAME, "--type", "merge", "-p", patch)

    def arrived() -> bool:
        ms = kube.get("modelservice", NAME) or {}
        return (
            drift_json(kube, NAME).get("pValueThreshold") == 0.5
            and ms.get("status", {}).get("drift", {}).get("pValueThreshold") == 0.5
        )

    wait_for("the new threshold in the ConfigMap and status", arrived, 5, 0.1)
    ready = kube.condition(NAME, "Ready")
    assert ready["status"] == "True", f"a threshold change turned Ready False: {ready}"
    assert (kube.get("deployment", NAME) or {})["spec"]["template"] == template
    ms = kube.get("modelservice", NAME)
    assert ms is not None
    assert ms["spec"]["drift"]["pValueThreshold"] == 0.5  # the operator never writes spec
    assert ms["status"]["observedGeneration"] == ms["metadata"]["generation"]


def test_hand_edited_or_deleted_children_are_restored(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    kube.kubectl("apply", "-f", str(EXAMPLE))
    wait_for("Ready=True", lambda: kube.ready(NAME), 30)
    service_uid = kube.get("service", NAME)["metadata"]["uid"]  # type: ignore[index]

    kube.kubectl("set", "env", f"deployment/{NAME}", f"MODEL_SHA256={'0' * 64}")
    kube.kubectl(
        "patch", "configmap", NAME, "--type", "merge", "-p", '{"data":{"drift.json":"{}"}}'
    )
    kube.kubectl("delete", "service", NAME)

    wait_for(
        "the Deployment's env restored",
        lambda: env_value(kube.get("deployment", NAME) or {}, "MODEL_SHA256") == MODEL_SHA256,
        10,
    )
    wait_for("drift.json restored", lambda: drift_json(kube, NAME).get("windowSize") == 100, 10)
    service = wait_for("the Service re-created", lambda: kube.get("service", NAME), 10)
    assert service["metadata"]["uid"] != service_uid


def test_deleting_the_modelservice_garbage_collects_its_children(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    kube.kubectl("apply", "-f", str(EXAMPLE))
    wait_for("the children", lambda: children_present(kube, NAME), 15)
    kube.kubectl("delete", "modelservice", NAME)

    def all_gone() -> bool:
        return all(not kube.list(kind) for kind in CHILD_KINDS)

    wait_for("every child garbage-collected", all_gone, 30)


def test_unservable_spec_is_degraded_once_and_others_keep_serving(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    # Admitted (the CRD cannot compare quantities) but the Deployment is rejected: request > limit.
    resources = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    kube.apply(example("greedy", resources=resources))
    degraded = wait_for(
        "Degraded=True",
        lambda: kube.condition_where("greedy", "Degraded", status="True"),
        15,
    )
    assert degraded["reason"] == "DeploymentRejected"
    assert "cpu limit" in degraded["message"]
    assert kube.condition("greedy", "Ready")["status"] == "False"  # type: ignore[index]

    kube.apply(example("healthy"))
    wait_for("the next ModelService Ready", lambda: kube.ready("healthy"), 30)
    events = kube.kubectl(
        "get", "events", "--field-selector", "involvedObject.name=greedy,reason=DeploymentRejected",
        "-o", "json",
    )  # fmt: skip
    (event,) = json.loads(events.stdout)["items"]
    assert event.get("count", 1) == 1, "the rejected spec was retried"


def test_autoscaling_renders_an_hpa_and_removing_it_deletes_the_hpa(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    doc = example("scaled", autoscaling={"minReplicas": 1, "maxReplicas": 3})
    del doc["spec"]["replicas"]
    kube.apply(doc)
    hpa = wait_for("the HPA", lambda: kube.get("hpa", "scaled"), 15)
    assert hpa["spec"]["maxReplicas"] == 3
    assert "replicas" not in kube.get("modelservice", "scaled")["spec"]  # type: ignore[index]

    kube.kubectl("patch", "msvc", "scaled", "--type", "json", "-p",
                 '[{"op":"remove","path":"/spec/autoscaling"}]')  # fmt: skip
    wait_for("the HPA deleted", lambda: kube.get("hpa", "scaled") is None, 15)


def test_a_joblib_model_is_refused_unless_the_platform_allows_it(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    model = {**example()["spec"]["model"], "uri": "file:///models/m.joblib", "format": "joblib"}
    kube.apply(example("pickled", model=model))
    degraded = wait_for(
        "Degraded=True", lambda: kube.condition_where("pickled", "Degraded", status="True"), 15
    )
    assert degraded["reason"] == "InvalidSpec"
    assert "allowJoblib" in degraded["message"]
    assert kube.get("deployment", "pickled") is None  # nothing of it runs
