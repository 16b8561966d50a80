"""The children built from a spec are wired, labelled, owned and secured as the issue demands."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aiops_operator import manifests
from aiops_operator.manifests import Owner, RenderOptions, build_children, is_subset
from aiops_operator.spec import ModelServiceSpec

OWNER = Owner(name="breast-cancer", namespace="ml", uid="uid-1", generation=3)
DIGEST = "a" * 64


def spec(**overrides: Any) -> ModelServiceSpec:
    doc: dict[str, Any] = {
        "image": "registry.example/aiops-quality-runtime:0.1.0",
        "model": {
            "uri": "file:///models/breast-cancer/model.skops",
            "sha256": DIGEST,
            "reference": {"uri": "file:///models/breast-cancer/reference.npy", "sha256": "b" * 64},
        },
        "drift": {"pValueThreshold": 0.01},
        "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}},
    }
    doc.update(overrides)
    return ModelServiceSpec.model_validate(doc)


def children(s: ModelServiceSpec, **options: Any) -> dict[str, dict[str, Any]]:
    built = build_children(OWNER, s, RenderOptions(**options))
    return {m["kind"]: m for m in built.apply}


def container(s: ModelServiceSpec, **options: Any) -> dict[str, Any]:
    return children(s, **options)["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def env(s: ModelServiceSpec) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(s)["env"] if "value" in e}


def test_default_children_are_deployment_service_configmap_and_network_policy() -> None:
    built = build_children(OWNER, spec(), RenderOptions())
    kinds = sorted(m["kind"] for m in built.apply)
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "Service"]
    assert ("autoscaling/v2", "HorizontalPodAutoscaler") in built.absent


def test_the_network_policy_lets_in_only_the_namespace_operator_monitoring_and_allowed() -> None:
    s = spec(networkPolicy={"allowNamespaces": ["gateway", "ml", "gateway"]})
    options = {"operator_namespace": "aiops-system", "monitoring_namespace": "monitoring"}
    policy = children(s, **options)["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == manifests.selector_labels("breast-cancer")
    assert policy["policyTypes"] == ["Ingress"]  # egress stays open: artifact downloads
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    names = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
             for p in rule["from"] if "namespaceSelector" in p]  # fmt: skip
    assert names == ["aiops-system", "monitoring", "gateway"]  # own namespace via podSelector
    assert {"podSelector": {}} in rule["from"]


@pytest.mark.parametrize(("spec_enabled", "setting"), [(False, True), (True, False)])
def test_the_network_policy_can_be_turned_off_and_is_then_deleted(
    spec_enabled: bool, setting: bool
) -> None:
    s = spec(networkPolicy={"enabled": spec_enabled})
    built = build_children(OWNER, s, RenderOptions(network_policies=setting))
    assert "NetworkPolicy" not in [m["kind"] for m in built.apply]
    assert manifests.NETWORKPOLICY in built.absent


def test_download_credentials_come_from_the_secret_through_the_kubelet() -> None:
    ref = {"name": "model-store", "key": "authorization"}
    model = {"uri": "https://store.example/m.skops", "sha256": DIGEST, "credentialsSecretRef": ref}
    (auth,) = [e for e in container(spec(model=model))["env"] if e["name"] == "MODEL_AUTHORIZATION"]
    assert auth == {"name": "MODEL_AUTHORIZATION", "valueFrom": {"secretKeyRef": ref}}


def test_credentials_in_the_uri_are_refused() -> None:
    with pytest.raises(ValueError, match="credentialsSecretRef"):
        spec(model={"uri": "https://u:p@store.example/m.skops", "sha256": DIGEST})


def test_every_child_is_labelled_and_owned_by_the_modelservice() -> None:
    for manifest in children(spec(), servicemonitor_available=True).values():
        meta = manifest["metadata"]
        assert meta["name"] == "breast-cancer"
        assert meta["namespace"] == "ml"
        assert set(meta["labels"]) == {
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/part-of",
        }
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "aiops-operator"
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "aiops-quality.io/v1alpha1",
            "kind": "ModelService",
            "name": "breast-cancer",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_runtime_env_carries_the_model_and_leaves_drift_settings_to_the_configmap() -> None:
    values = env(spec())
    # A drift setting in the pod template would roll every pod when it changes.
    assert not {k for k in values if k.startswith("DRIFT_")} - {
        "DRIFT_ENABLED",
        "DRIFT_CONFIG_FILE",
    }
    assert values["MODEL_NAME"] == "breast-cancer"
    assert values["MODEL_URI"] == "file:///models/breast-cancer/model.skops"
    assert values["MODEL_SHA256"] == DIGEST
    assert values["REFERENCE_SHA256"] == "b" * 64
    assert values["DRIFT_CONFIG_FILE"] == "/etc/aiops-quality/drift/drift.json"
    assert "MODEL_ALLOW_PICKLE" not in values


def test_configmap_holds_the_drift_settings_with_camelcase_keys() -> None:
    data = children(spec())["ConfigMap"]["data"]
    assert json.loads(data["drift.json"]) == {
        "target": "both",
        "detector": "mmd",
        "pValueThreshold": 0.01,
        "windowSize": 100,
        "checkEvery": 100,
        "consecutive": 4,
        "falseAlarmRows": 60_480_000,
    }


def test_pod_is_restricted_and_gets_no_service_account_token() -> None:
    pod = children(spec())["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = pod["containers"][0]["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"] == {"drop": ["ALL"]}


def test_probes_resources_and_tmp_volume() -> None:
    c = container(spec())
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["command"] == ["aiops-runtime", "serve"]
    assert c["ports"][0]["name"] == "http"


def test_pvc_model_is_mounted_read_only_and_given_as_file_uri() -> None:
    s = spec(model={"uri": "pvc://models/bc/model.skops", "sha256": DIGEST})
    deployment = children(s)["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert {
        "name": "models-0",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    } in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "models-0", "mountPath": "/mnt/models/models", "readOnly": True} in mounts
    assert env(s)["MODEL_URI"] == "file:///mnt/models/models/bc/model.skops"
    assert env(s)["DRIFT_ENABLED"] == "false"


def test_joblib_format_is_the_pickle_opt_in() -> None:
    s = spec(model={"uri": "file:///m.joblib", "sha256": DIGEST, "format": "joblib"})
    assert env(s)["MODEL_ALLOW_PICKLE"] == "true"


def test_autoscaling_renders_an_hpa_and_leaves_replicas_to_it() -> None:
    s = spec(autoscaling={"minReplicas": 2, "maxReplicas": 5})
    kids = children(s)
    hpa = kids["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    assert hpa["scaleTargetRef"]["name"] == "breast-cancer"
    assert "replicas" not in kids["Deployment"]["spec"]


def test_fixed_replicas_are_set_on_the_deployment() -> None:
    assert children(spec(replicas=3))["Deployment"]["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("mode", "available", "monitor", "annotations"),
    [
        ("auto", True, True, False),
        ("auto", False, False, True),
        ("annotations", True, False, True),
        ("none", True, False, False),
    ],
)
def test_scrape_configuration_follows_discovery(
    mode: str, available: bool, monitor: bool, annotations: bool
) -> None:
    kids = children(spec(monitoring={"scrape": mode}), servicemonitor_available=available)
    assert ("ServiceMonitor" in kids) is monitor
    pod_meta = kids["Deployment"]["spec"]["template"]["metadata"]
    assert ("prometheus.io/scrape" in pod_meta.get("annotations", {})) is annotations


def test_deployment_records_the_inputs_it_is_rendered_from_not_the_generation() -> None:
    meta = children(spec())["Deployment"]["metadata"]
    # An annotation holding the generation would bump the Deployment's own generation on
    # every spec change, even one that only touches the ConfigMap.
    assert meta["annotations"] == {manifests.INPUTS_ANNOTATION: manifests.deployment_inputs(spec())}


def dig(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def test_threshold_change_changes_only_the_configmap_never_the_pod_template() -> None:
    before, after = children(spec()), children(spec(drift={"pValueThreshold": 0.5}))
    assert json.loads(after["ConfigMap"]["data"]["drift.json"])["pValueThreshold"] == 0.5
    template = ("spec", "template")
    assert dig(before["Deployment"], template) == dig(after["Deployment"], template)
    inputs = ("metadata", "annotations", manifests.INPUTS_ANNOTATION)
    assert dig(before["Deployment"], inputs) == dig(after["Deployment"], inputs)
    image_change = children(spec(image="registry.example/runtime:2"))["Deployment"]
    assert dig(image_change, inputs) != dig(before["Deployment"], inputs)
    assert before["Service"] == after["Service"]


def test_is_subset_ignores_server_defaults_but_not_edits() -> None:
    desired = children(spec())["Deployment"]
    live = json.loads(json.dumps(desired))
    live["metadata"]["uid"] = "x"
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/x"
    assert is_subset(desired, live)
    live["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "edited"
    assert not is_subset(desired, live)
    live = json.loads(json.dumps(desired))
    live["spec"]["template"]["spec"]["containers"][0]["env"].pop()
    assert not is_subset(desired, live)


def test_a_calibration_reaches_the_runtime_as_uri_and_digest() -> None:
    model = {
        "uri": "file:///models/breast-cancer/model.skops",
        "sha256": DIGEST,
        "reference": {"uri": "file:///models/breast-cancer/reference.npy", "sha256": "b" * 64},
        "calibration": {"uri": "pvc://models/calibration.json", "sha256": "c" * 64},
    }
    values = env(spec(model=model))
    assert values["CALIBRATION_URI"].endswith("/models/calibration.json")
    assert values["CALIBRATION_URI"].startswith("file://")
    assert values["CALIBRATION_SHA256"] == "c" * 64
    assert "CALIBRATION_URI" not in env(spec())
