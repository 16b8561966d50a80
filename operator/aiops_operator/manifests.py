"""Pure builders: a validated ModelService spec in, the children's manifests (plain dicts) out.

Nothing here talks to Kubernetes. Each child is named after the ModelService, labelled with the
app.kubernetes.io/* set and owned by the ModelService (controller ownerReference), so deleting the
ModelService garbage-collects them and the names make duplicates impossible.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from aiops_operator.spec import GROUP, KIND, VERSION, ArtifactRef, ModelServiceSpec

MANAGED_BY = "aiops-operator"
PART_OF = "aiops-quality"
APP_NAME = "aiops-runtime"
COMPONENT = "model-server"
# The digest of the spec fields the Deployment is rendered from (all but spec.drift, which only
# the ConfigMap carries): status compares it with the spec's to know the Deployment is current.
# Not the ModelService's generation: any annotation change bumps a Deployment's generation, so
# a threshold change would make the Deployment look unobserved and Ready flicker.
INPUTS_ANNOTATION = f"{GROUP}/deployment-inputs"
CONTAINER_NAME = "runtime"
DRIFT_CONFIG_DIR = "/etc/aiops-quality/drift"
DRIFT_CONFIG_KEY = "drift.json"
MODEL_MOUNT_ROOT = "/mnt/models"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

# apiVersion/kind of every child kind, and their REST plural (used by the client layer).
DEPLOYMENT = ("apps/v1", "Deployment")
SERVICE = ("v1", "Service")
CONFIGMAP = ("v1", "ConfigMap")
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
SERVICEMONITOR = ("monitoring.coreos.com/v1", "ServiceMonitor")
NETWORKPOLICY = ("networking.k8s.io/v1", "NetworkPolicy")
CHILD_KINDS = (DEPLOYMENT, SERVICE, CONFIGMAP, HPA, SERVICEMONITOR, NETWORKPOLICY)
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace


@dataclass(frozen=True)
class Owner:
    """The ModelService the children belong to."""

    name: str
    namespace: str
    uid: str
    generation: int


@dataclass(frozen=True)
class RenderOptions:
    """Operator-level knobs that shape the children (from settings and discovery)."""

    port: int = 8000
    uid: int = 10001
    progress_deadline_seconds: int = 600
    servicemonitor_available: bool = False
    network_policies: bool = True
    operator_namespace: str = ""  # "" when unknown (outside a cluster): no operator peer
    monitoring_namespace: str = "monitoring"


@dataclass(frozen=True)
class Children:
    """What should exist (`apply`) and which optional kinds should not (`absent`)."""

    apply: list[dict[str, Any]]
    absent: list[tuple[str, str]]

    def wanted(self, kind: str) -> dict[str, Any] | None:
        """The manifest of the child of this kind, if one is wanted."""
        return next((m for m in self.apply if m["kind"] == kind), None)

    def unwanted(self, kind: str) -> bool:
        """Whether a child of this kind should not exist."""
        return any(k == kind for _, k in self.absent)


def labels(owner_name: str) -> dict[str, str]:
    """The app.kubernetes.io/* labels every child carries."""
    return {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: owner_name,
        LABEL_COMPONENT: COMPONENT,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: PART_OF,
    }


def selector_labels(owner_name: str) -> dict[str, str]:
    """The stable subset used by the Deployment's and Service's selectors."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: owner_name}


def owner_reference(owner: Owner) -> dict[str, Any]:
    """The controller ownerReference pointing at the ModelService."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(owner: Owner, extra_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": owner.name,
        "namespace": owner.namespace,
        "labels": labels(owner.name),
        "ownerReferences": [owner_reference(owner)],
    }
    if extra_annotations:
        meta["annotations"] = extra_annotations
    return meta


def pvc_location(uri: str) -> tuple[str, str] | None:
    """(claim, path inside the claim) of a pvc:// URI, else None."""
    if not uri.startswith("pvc://"):
        return None
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, path


def runtime_uri(uri: str) -> str:
    """The URI handed to the runtime: pvc://claim/path becomes a file:// URI on the mount."""
    location = pvc_location(uri)
    if location is None:
        return uri
    claim, path = location
    return f"file://{MODEL_MOUNT_ROOT}/{claim}/{path}"


def _claims(spec: ModelServiceSpec) -> list[str]:
    artifacts: list[ArtifactRef] = [spec.model]
    if spec.model.reference is not None:
        artifacts.append(spec.model.reference)
    if spec.model.calibration is not None:
        artifacts.append(spec.model.calibration)
    claims = {loc[0] for a in artifacts if (loc := pvc_location(a.uri)) is not None}
    return sorted(claims)


def scrape_mode(spec: ModelServiceSpec, options: RenderOptions) -> str:
    """servicemonitor, annotations or none, after resolving `auto` by discovery."""
    mode = spec.monitoring.scrape
    if mode == "auto":
        return "servicemonitor" if options.servicemonitor_available else "annotations"
    return mode


def runtime_env(name: str, spec: ModelServiceSpec) -> list[dict[str, Any]]:
    """The runtime container's environment (names fixed by the runtime's settings.py)."""
    model = spec.model
    env = {
        "MODEL_NAME": name,
        "MODEL_VERSION": model.version,
        "MODEL_URI": runtime_uri(model.uri),
        "MODEL_SHA256": model.sha256,
        "MODEL_FORMAT": model.format,
    }
    if model.format == "joblib":
        # Choosing joblib in the ModelService is the explicit opt-in the runtime asks for.
        env["MODEL_ALLOW_PICKLE"] = "true"
    if model.reference is not None:
        env["REFERENCE_URI"] = runtime_uri(model.reference.uri)
        env["REFERENCE_SHA256"] = model.reference.sha256
    if model.calibration is not None:
        env["CALIBRATION_URI"] = runtime_uri(model.calibration.uri)
        env["CALIBRATION_SHA256"] = model.calibration.sha256
    # The drift settings (threshold, window, ...) live only in the ConfigMap, which the runtime
    # reads at start and on change: a threshold change never rolls the pods or resets windows.
    env.update(
        {
            "DRIFT_ENABLED": "true" if model.reference is not None else "false",
            "DRIFT_CONFIG_FILE": f"{DRIFT_CONFIG_DIR}/{DRIFT_CONFIG_KEY}",
        }
    )
    rendered: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    credentials = model.credentials_secret_ref
    if credentials is not None:  # the kubelet reads the Secret; the operator never does
        rendered.append(
            {
                "name": "MODEL_AUTHORIZATION",
                "valueFrom": {"secretKeyRef": {"name": credentials.name, "key": credentials.key}},
            }
        )
    return rendered


def _volumes(owner: Owner, spec: ModelServiceSpec) -> tuple[list[dict], list[dict]]:
    volumes: list[dict[str, Any]] = [
        {"name": "drift-config", "configMap": {"name": owner.name}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "drift-config", "mountPath": DRIFT_CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    for index, claim in enumerate(_claims(spec)):
        volume = f"models-{index}"
        volumes.append(
            {"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append(
            {"name": volume, "mountPath": f"{MODEL_MOUNT_ROOT}/{claim}", "readOnly": True}
        )
    return volumes, mounts


def _container(owner: Owner, spec: ModelServiceSpec, options: RenderOptions, mounts: list) -> dict:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["aiops-runtime", "serve"],
        "ports": [{"name": "http", "containerPort": options.port, "protocol": "TCP"}],
        "env": runtime_env(owner.name, spec),
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    if spec.resources is not None:
        resources = spec.resources.model_dump(exclude_none=True)
        if resources:
            container["resources"] = resources
    return container


def build_deployment(owner: Owner, spec: ModelServiceSpec, options: RenderOptions) -> dict:
    """The runtime Deployment: restricted pod security, probes, drift config and model volumes."""
    volumes, mounts = _volumes(owner, spec)
    pod_annotations = {}
    if scrape_mode(spec, options) == "annotations":
        pod_annotations = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(options.port),
            "prometheus.io/path": "/metrics",
        }
    template_meta: dict[str, Any] = {"labels": labels(owner.name)}
    if pod_annotations:
        template_meta["annotations"] = pod_annotations
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner.name)},
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": options.progress_deadline_seconds,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
        },
        "template": {
            "metadata": template_meta,
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": options.uid,
                    "runAsGroup": options.uid,
                    "fsGroup": options.uid,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [_container(owner, spec, options, mounts)],
                "volumes": volumes,
            },
        },
    }
    if spec.autoscaling is None:
        # With an HPA the replica count is the autoscaler's: leaving it out avoids a tug of war.
        deployment_spec["replicas"] = spec.desired_replicas
    api_version, kind = DEPLOYMENT
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _metadata(owner, {INPUTS_ANNOTATION: deployment_inputs(spec)}),
        "spec": deployment_spec,
    }


def deployment_inputs(spec: ModelServiceSpec) -> str:
    """A short digest of the spec fields the Deployment depends on."""
    shaping = spec.model_dump(mode="json", by_alias=True, exclude={"drift"})
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def build_service(owner: Owner, options: RenderOptions) -> dict:
    """ClusterIP Service in front of the runtime's http port."""
    api_version, kind = SERVICE
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _metadata(owner),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner.name),
            "ports": [
                {"name": "http", "port": options.port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def drift_config_json(spec: ModelServiceSpec) -> str:
    """The ConfigMap's drift.json text (stable key order, so unchanged specs apply as no-ops)."""
    return json.dumps(spec.drift.runtime_config(), sort_keys=True)


def build_configmap(owner: Owner, spec: ModelServiceSpec) -> dict:
    """The runtime's live drift settings, mounted at DRIFT_CONFIG_DIR and hot-reloaded."""
    api_version, kind = CONFIGMAP
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _metadata(owner),
        "data": {DRIFT_CONFIG_KEY: drift_config_json(spec)},
    }


def build_hpa(owner: Owner, spec: ModelServiceSpec) -> dict | None:
    """autoscaling/v2 HPA on CPU when spec.autoscaling is set, else None."""
    scaling = spec.autoscaling
    if scaling is None:
        return None
    api_version, kind = HPA
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _metadata(owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def build_service_monitor(owner: Owner, spec: ModelServiceSpec) -> dict:
    """A Prometheus Operator ServiceMonitor for the runtime's /metrics."""
    api_version, kind = SERVICEMONITOR
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _metadata(owner),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner.name)},
            "endpoints": [
                {"port": "http", "path": "/metrics", "interval": spec.monitoring.interval}
            ],
        },
    }


def build_network_policy(owner: Owner, spec: ModelServiceSpec, options: RenderOptions) -> dict:
    """Ingress to the runtime's port only from its own namespace, the operator's (GET /drift),
    the monitoring namespace (scrapes) and spec.networkPolicy.allowNamespaces. Egress is left
    open: the runtime downloads its artifacts. Kubelet probes come from the node, which
    NetworkPolicy implementations let through."""
    api_version, kind = NETWORKPOLICY
    namespaces = [options.operator_namespace, options.monitoring_namespace]
    namespaces += spec.network_policy.allow_namespaces
    peers: list[dict[str, Any]] = [{"podSelector": {}}]  # every pod of this namespace
    peers += [
        {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: ns}}}
        for ns in dict.fromkeys(namespaces)  # ordered, without repeats
        if ns and ns != owner.namespace
    ]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _metadata(owner),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(owner.name)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"port": "http", "protocol": "TCP"}]}],
        },
    }


def build_children(owner: Owner, spec: ModelServiceSpec, options: RenderOptions) -> Children:
    """Every child the ModelService should have, and the optional kinds it should not have."""
    apply = [
        build_configmap(owner, spec),
        build_service(owner, options),
        build_deployment(owner, spec, options),
    ]
    absent: list[tuple[str, str]] = []
    hpa = build_hpa(owner, spec)
    if hpa is None:
        absent.append(HPA)
    else:
        apply.append(hpa)
    if scrape_mode(spec, options) == "servicemonitor":
        apply.append(build_service_monitor(owner, spec))
    else:
        absent.append(SERVICEMONITOR)
    if options.network_policies and spec.network_policy.enabled:
        apply.append(build_network_policy(owner, spec, options))
    else:
        absent.append(NETWORKPOLICY)
    return Children(apply=apply, absent=absent)


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field we set still has our value in the live object (defaults ignored).

    Lists must match element-wise (same length): an extra container or env var is drift too.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
    return bool(desired == live or str(desired) == str(live))
