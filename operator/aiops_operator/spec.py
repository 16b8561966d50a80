"""The ModelService resource as pydantic models: the one source of the CRD schema.

The operator validates every spec with these models, and `aiops-operator generate-crd` turns the
same models into the CRD's OpenAPI schema (see crd.py). Field names are the Kubernetes (camelCase)
names; cross-field rules live twice on purpose: as CEL rules (rejected at admission) and as
pydantic validators (a spec admitted under an older schema still gets a clear Degraded reason).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

GROUP = "aiops-quality.io"
VERSION = "v1alpha1"
KIND = "ModelService"
PLURAL = "modelservices"
SINGULAR = "modelservice"
SHORT_NAMES = ["msvc"]

SHA256_PATTERN = r"^[a-f0-9]{64}$"
MODEL_URI_PATTERN = r"^(file:///|https?://|pvc://)[^\s]+$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
# Children are named after the ModelService; a Service name must be a DNS-1035 label.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX_LENGTH = 63

Detector = Literal["mmd", "ks"]
DriftTarget = Literal["inputs", "outputs", "both"]
# The runtime's (aiops_runtime.settings): about one false drift event a week at 100 req/s, and
# the smallest budget accepted.
DEFAULT_FALSE_ALARM_ROWS = 60_480_000
MIN_FALSE_ALARM_ROWS = 10_000
ModelFormat = Literal["skops", "joblib"]
DriftAction = Literal["none", "alert", "retrain"]
ScrapeMode = Literal["auto", "servicemonitor", "annotations", "none"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]

Sha256 = Annotated[
    str,
    StringConstraints(pattern=SHA256_PATTERN),
    Field(description="Lower-case hex sha256 digest (64 characters) of the artifact."),
]
ArtifactUri = Annotated[
    str,
    StringConstraints(pattern=MODEL_URI_PATTERN, max_length=2048),
    Field(
        description=(
            "Where the artifact lives: file:///path (baked into the image), http(s)://host/path,"
            " or pvc://claim/path (the claim is mounted read-only at /mnt/models/<claim>)."
        )
    ),
]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]
Quantity = Annotated[
    int | Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)],
    Field(description="A Kubernetes quantity, e.g. 500m, 1, 256Mi."),
]


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as 90s, 30m, 1h30m or 500ms (spec.drift.retrain.cooldown)."""
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m or 1h")
    return total


class _Model(BaseModel):
    """Shared config: camelCase names as in Kubernetes, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretKeyRef(_Model):
    """A key of a Secret in the ModelService's namespace."""

    name: str = Field(
        ..., min_length=1, max_length=253, description="Name of the Secret (same namespace)."
    )
    key: str = Field(..., min_length=1, max_length=253, description="Key inside the Secret.")


PVC_URI_PATTERN = r"^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/.+$"
PVC_URI_RULE = f"!self.uri.startsWith('pvc://') || self.uri.matches('{PVC_URI_PATTERN}')"
# A path inside a claim stays inside it: no `..` segment (RE2 has no lookahead: a rule of its own).
DOT_DOT_SEGMENT = r"/[.][.](/|$)"
PVC_DOT_DOT_RULE = f"!self.uri.startsWith('pvc://') || !self.uri.matches('{DOT_DOT_SEGMENT}')"
# user:password@ in an http(s) URI: credentials belong in a Secret (model.credentialsSecretRef).
USERINFO_PATTERN = r"^https?://[^/?#]*@"
USERINFO_MESSAGE = "uri: credentials in a URI leak into logs; use model.credentialsSecretRef"
# Least cooldown between two retrain triggers: a tenant cannot make the operator hammer CI.
COOLDOWN_FLOOR = "5m"


class ArtifactRef(_Model):
    """An artifact the runtime downloads (or reads) and verifies before it turns ready."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": PVC_URI_RULE,
                    "message": "uri: a pvc URI looks like pvc://<claim>/<path inside the claim>",
                    "fieldPath": ".uri",
                },
                {
                    "rule": PVC_DOT_DOT_RULE,
                    "message": "uri: a pvc path must not contain a '..' segment",
                    "fieldPath": ".uri",
                },
                {
                    "rule": f"!self.uri.matches('{USERINFO_PATTERN}')",
                    "message": USERINFO_MESSAGE,
                    "fieldPath": ".uri",
                },
            ]
        }
    )

    uri: ArtifactUri
    sha256: Sha256

    @field_validator("uri")
    @classmethod
    def _pvc_shape(cls, uri: str) -> str:
        if uri.startswith("pvc://") and not re.match(PVC_URI_PATTERN, uri):
            raise ValueError("a pvc URI looks like pvc://<claim>/<path inside the claim>")
        if uri.startswith("pvc://") and re.search(DOT_DOT_SEGMENT, uri):
            raise ValueError("a pvc path must not contain a '..' segment")
        if re.match(USERINFO_PATTERN, uri):
            raise ValueError(USERINFO_MESSAGE.removeprefix("uri: "))
        return uri


class ModelSpec(ArtifactRef):
    """The model the runtime serves, verified by digest before the runtime reports ready."""

    format: ModelFormat = Field(
        "skops",
        description=(
            "Serialisation format: skops (safe, default) or joblib (opt-in; executes code on load)."
        ),
    )
    version: str = Field(
        "",
        max_length=128,
        description="Free-text version label of the model, shown in logs and metrics.",
    )
    reference: ArtifactRef | None = Field(
        None,
        description=(
            "Reference sample (.npy, float64, rows x features) the drift detector compares"
            " live traffic against. Without it the runtime serves without drift detection."
        ),
    )
    calibration: ArtifactRef | None = Field(
        None,
        description=(
            "Drift calibration (calibration.json of `aiops-runtime train`): the null"
            " distribution of the check's p-value for this reference. Optional; without it the"
            " runtime runs uncalibrated and says so in /drift and status.drift."
        ),
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        None,
        alias="credentialsSecretRef",
        description=(
            "Secret key (same namespace) whose value the runtime sends as the Authorization"
            " header of its http(s) downloads, e.g. `Bearer <token>`. The kubelet reads it;"
            " the operator never does."
        ),
    )


class AutoscalingSpec(_Model):
    """Horizontal autoscaling on CPU (renders an autoscaling/v2 HorizontalPodAutoscaler)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "autoscaling.minReplicas must be <= autoscaling.maxReplicas",
                    "fieldPath": ".minReplicas",
                }
            ]
        }
    )

    min_replicas: int = Field(
        1, ge=1, le=100, alias="minReplicas", description="Fewest pods the autoscaler keeps."
    )
    max_replicas: int = Field(
        ..., ge=1, le=100, alias="maxReplicas", description="Most pods the autoscaler may run."
    )
    target_cpu_utilization_percentage: int = Field(
        80,
        ge=1,
        le=100,
        alias="targetCPUUtilizationPercentage",
        description="Average CPU use (percent of the CPU request) the autoscaler aims for.",
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.minReplicas must be <= autoscaling.maxReplicas")
        return self


class RetrainSpec(_Model):
    """How to trigger the retraining pipeline when drift is detected (action: retrain)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"duration(self.cooldown) >= duration('{COOLDOWN_FLOOR}')",
                    "message": f"retrain.cooldown must be at least {COOLDOWN_FLOOR}",
                    "fieldPath": ".cooldown",
                }
            ]
        }
    )

    trigger_secret_ref: SecretKeyRef = Field(
        ...,
        alias="triggerSecretRef",
        description="Secret key holding the CI pipeline trigger URL and token.",
    )
    cooldown: Duration = Field(
        "1h",
        description="Least time between two triggers (e.g. 30m, 1h; at least 5m); drift storms"
        " trigger once.",
    )

    @field_validator("cooldown")
    @classmethod
    def _cooldown_floor(cls, cooldown: str) -> str:
        if re.fullmatch(DURATION_PATTERN, cooldown) and (
            parse_duration(cooldown) < parse_duration(COOLDOWN_FLOOR)
        ):
            raise ValueError(f"retrain.cooldown must be at least {COOLDOWN_FLOOR}")
        return cooldown


class DriftSpec(_Model):
    """Drift detection in the runtime and the operator's reaction to detected drift."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.checkEvery <= self.windowSize",
                    "message": "drift.checkEvery must be <= drift.windowSize",
                    "fieldPath": ".checkEvery",
                },
                {
                    "rule": "self.action != 'retrain' || has(self.retrain)",
                    "message": "drift.retrain is required when drift.action is retrain",
                    "fieldPath": ".retrain",
                },
            ]
        }
    )

    target: DriftTarget = Field(
        "both",
        description=(
            "What each check tests: inputs (the request rows, with detector), outputs (the"
            " model's predicted class probabilities against the reference rows' predictions,"
            " per-class Kolmogorov-Smirnov) or both (Bonferroni over the two)."
        ),
    )
    detector: Detector = Field(
        "mmd",
        description=(
            "Statistical test on each window: mmd (windowed kernel two-sample test, default)"
            " or ks (per-feature Kolmogorov-Smirnov)."
        ),
    )
    p_value_threshold: float = Field(
        0.05,
        gt=0,
        lt=1,
        alias="pValueThreshold",
        description=(
            "Drift is flagged when a check's p-value is below this (0 < value < 1): the runtime's"
            " DRIFT_P_THRESHOLD. A change reaches running pods through the drift ConfigMap."
        ),
    )
    # Defaults are the runtime's, chosen by bench/drift_bench.py: disjoint windows of 100 rows
    # and 4 flagged checks in a row keep false events under one a day at 100 req/s.
    window_size: int = Field(
        100, ge=10, le=100_000, alias="windowSize", description="Rows in each tested window."
    )
    check_every: int = Field(
        100,
        ge=1,
        le=100_000,
        alias="checkEvery",
        description="New rows between two checks (at most windowSize).",
    )
    consecutive: int = Field(
        4,
        ge=1,
        le=100,
        description=(
            "Flagged checks in a row that raise one drift event, when the runtime runs"
            " uncalibrated (with a calibration covering the settings, falseAlarmRows decides)."
        ),
    )
    false_alarm_rows: int = Field(
        DEFAULT_FALSE_ALARM_ROWS,
        ge=MIN_FALSE_ALARM_ROWS,
        le=10**12,
        alias="falseAlarmRows",
        description=(
            "False-alarm budget: expected rows between two false drift events (60480000, the"
            " default, is about one a week at 100 req/s). With model.calibration covering the"
            " drift settings, the runtime flags on the calibrated p-value and picks the number"
            " of flagged checks in a row that meets it."
        ),
    )
    action: DriftAction = Field(
        "alert",
        description=(
            "What the operator does on a new drift event: none, alert (Event, status and"
            " metric), or retrain (alert and trigger the pipeline in retrain)."
        ),
    )
    retrain: RetrainSpec | None = Field(
        None, description="Pipeline trigger used when action is retrain."
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> DriftSpec:
        if self.check_every > self.window_size:
            raise ValueError("drift.checkEvery must be <= drift.windowSize")
        if self.action == "retrain" and self.retrain is None:
            raise ValueError("drift.retrain is required when drift.action is retrain")
        return self

    def runtime_config(self) -> dict[str, Any]:
        """The ConfigMap's drift.json: the runtime's live settings, camelCase keys."""
        return {
            "target": self.target,
            "detector": self.detector,
            "pValueThreshold": self.p_value_threshold,
            "windowSize": self.window_size,
            "checkEvery": self.check_every,
            "consecutive": self.consecutive,
            "falseAlarmRows": self.false_alarm_rows,
        }


class MonitoringSpec(_Model):
    """How Prometheus finds the runtime's /metrics."""

    scrape: ScrapeMode = Field(
        "auto",
        description=(
            "auto: a ServiceMonitor when the monitoring.coreos.com CRD exists, else"
            " prometheus.io/* pod annotations; servicemonitor or annotations force one;"
            " none renders neither."
        ),
    )
    interval: Duration = Field("15s", description="Scrape interval, e.g. 15s or 1m.")


NamespaceName = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN, max_length=63),
    Field(description="A namespace name."),
]


class NetworkPolicySpec(_Model):
    """Who may reach the runtime's port (a NetworkPolicy the operator renders)."""

    enabled: bool = Field(
        True,
        description=(
            "Render the NetworkPolicy: ingress to the runtime's port only from this namespace,"
            " the operator's (drift reads), the monitoring namespace (scrapes) and"
            " allowNamespaces. False renders none (the operator setting can turn all off)."
        ),
    )
    allow_namespaces: list[NamespaceName] = Field(
        default_factory=list,
        alias="allowNamespaces",
        max_length=20,
        description="More namespaces whose pods may call the runtime (e.g. a gateway's).",
    )


class ResourceRequirements(_Model):
    """CPU and memory for the runtime container (plain corev1 ResourceRequirements)."""

    requests: dict[str, Quantity] | None = Field(
        None, description="Minimum resources the scheduler reserves, e.g. {cpu: 100m}."
    )
    limits: dict[str, Quantity] | None = Field(
        None, description="Maximum resources the container may use, e.g. {memory: 512Mi}."
    )


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_validate({}).model_dump(by_alias=True, exclude_none=True)


class ModelServiceSpec(_Model):
    """Desired state: which runtime image serves which model, how many pods, and drift policy."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.replicas) && has(self.autoscaling))",
                    "message": "set either replicas or autoscaling, not both",
                    "fieldPath": ".replicas",
                }
            ]
        }
    )

    image: str = Field(
        ...,
        min_length=1,
        max_length=512,
        pattern=r"^[^\s]+$",
        description="Container image of the inference runtime (aiops-runtime).",
    )
    image_pull_policy: PullPolicy = Field(
        "IfNotPresent", alias="imagePullPolicy", description="When the kubelet pulls the image."
    )
    replicas: int | None = Field(
        None,
        ge=0,
        le=100,
        description="Fixed number of pods (default 1). Mutually exclusive with autoscaling.",
    )
    autoscaling: AutoscalingSpec | None = Field(
        None, description="Scale on CPU between min and max replicas instead of a fixed count."
    )
    model: ModelSpec = Field(..., description="The model artifact to serve.")
    # A full default lets the API server fill in (and show) the nested values; CEL rules of
    # the object are checked against it, so `{}` would not do.
    drift: DriftSpec = Field(
        default_factory=lambda: DriftSpec.model_validate({}),
        description="Drift detection settings and reaction.",
        json_schema_extra={"default": _defaults(DriftSpec)},
    )
    monitoring: MonitoringSpec = Field(
        default_factory=lambda: MonitoringSpec.model_validate({}),
        description="Prometheus scrape configuration.",
        json_schema_extra={"default": _defaults(MonitoringSpec)},
    )
    resources: ResourceRequirements | None = Field(
        None, description="CPU/memory requests and limits of the runtime container."
    )
    network_policy: NetworkPolicySpec = Field(
        default_factory=lambda: NetworkPolicySpec.model_validate({}),
        alias="networkPolicy",
        description="Ingress to the runtime (a NetworkPolicy).",
        json_schema_extra={"default": _defaults(NetworkPolicySpec)},
    )

    @model_validator(mode="after")
    def _replicas_xor_autoscaling(self) -> ModelServiceSpec:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("set either replicas or autoscaling, not both")
        return self

    @property
    def desired_replicas(self) -> int:
        """Replica count for the Deployment when no autoscaler manages it."""
        return 1 if self.replicas is None else self.replicas


class Condition(_Model):
    """A metav1.Condition: the standard shape of a status condition."""

    type: str = Field(..., description="Condition type: Ready, Progressing, Degraded, ...")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    reason: str = Field(
        ...,
        description="CamelCase reason of the last transition.",
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field(
        ..., description="Human-readable detail of the last transition.", max_length=32768
    )
    last_transition_time: str = Field(
        ...,
        alias="lastTransitionTime",
        description="When status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int | None = Field(
        None,
        alias="observedGeneration",
        description="The .metadata.generation this condition was computed for.",
    )


class CalibrationStatus(BaseModel):
    """The runtime's event rule: calibrated for its reference, or not and why."""

    model_config = ConfigDict(extra="allow")

    status: str | None = Field(None, description="calibrated or uncalibrated.")
    reason: str | None = Field(
        None,
        max_length=1024,
        description="Why the runtime runs uncalibrated (empty if it does not).",
    )
    consecutive: int | None = Field(
        None, description="Flagged checks in a row that raise an event, as in force."
    )
    expected_false_alarm_rows: float | None = Field(
        None,
        alias="expectedFalseAlarmRows",
        description="Expected rows between false drift events the calibration achieves.",
    )


class DriftReplicasStatus(BaseModel):
    """How many ready replicas the last poll read, and what they said."""

    model_config = ConfigDict(extra="allow")

    read: int | None = Field(None, description="Ready replicas whose GET /drift answered.")
    drifting: int | None = Field(
        None, description="Of those, replicas reporting an active drift event."
    )
    unreadable: int | None = Field(
        None, description="Ready replicas that did not answer (named in DriftDetected)."
    )


class DriftStatus(BaseModel):
    """Drift state: the threshold in force (operator) and the runtime's last check results."""

    model_config = ConfigDict(extra="allow")

    p_value_threshold: float | None = Field(
        None, alias="pValueThreshold", description="Threshold in force in the runtime config."
    )
    last_p_value: float | None = Field(
        None, alias="lastPValue", description="p-value of the runtime's last drift check."
    )
    last_check_time: str | None = Field(
        None, alias="lastCheckTime", description="When the runtime last checked (RFC 3339)."
    )
    drift_events: int | None = Field(
        None, alias="driftEvents", description="Drift events the operator has seen."
    )
    last_drift_time: str | None = Field(
        None, alias="lastDriftTime", description="When the last drift event was raised."
    )
    checks: int | None = Field(None, description="Drift checks the runtime has run.")
    runtime_drift_events: int | None = Field(
        None,
        alias="runtimeDriftEvents",
        description="The replicas' own drift event counters at the last read, summed (each"
        " restarts with its pod).",
    )
    calibration: CalibrationStatus | None = Field(
        None, description="The event rule in force: calibrated for the reference, or why not."
    )
    replicas: DriftReplicasStatus | None = Field(
        None, description="The ready replicas read in the last poll; drift when any drifts."
    )
    last_retrain_time: str | None = Field(
        None, alias="lastRetrainTime", description="When the operator last triggered a retrain."
    )
    last_retrain_outcome: str | None = Field(
        None,
        alias="lastRetrainOutcome",
        description="Outcome of the last retrain trigger: Triggered or Failed.",
    )
    last_retrain_message: str | None = Field(
        None,
        alias="lastRetrainMessage",
        max_length=1024,
        description="Detail of the last retrain trigger (pipeline created, or why it failed).",
    )


class ModelServiceStatus(BaseModel):
    """Observed state, written only by the operator."""

    model_config = ConfigDict(extra="allow")

    observed_generation: int | None = Field(
        None,
        alias="observedGeneration",
        description="The .metadata.generation the operator last reconciled.",
    )
    conditions: list[Condition] | None = Field(
        None, description="Ready, Progressing, Degraded and DriftDetected conditions."
    )
    replicas: int | None = Field(None, description="Pods of the Deployment.")
    ready_replicas: int | None = Field(None, alias="readyReplicas", description="Ready pods.")
    endpoint: str | None = Field(None, description="In-cluster URL of the runtime's Service.")
    model_digest: str | None = Field(
        None, alias="modelDigest", description="Digest of the model served (sha256:<hex>)."
    )
    drift: DriftStatus | None = Field(None, description="Drift threshold and last results.")


def validation_message(exc: Exception) -> str:
    """One line naming each invalid field, for a Degraded condition's message."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for err in errors():
        where = "spec." + ".".join(str(p) for p in err["loc"]) if err["loc"] else "spec"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
