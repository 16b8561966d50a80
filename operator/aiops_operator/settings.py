"""Every setting the operator reads, with its type, default and a one-line description.

Environment variables carry the prefix AIOPS_OPERATOR_ (e.g. AIOPS_OPERATOR_NAMESPACES). The
docs/operator.md's table is rendered by `settings_table()` (`aiops-operator settings-table`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "AIOPS_OPERATOR_"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class OperatorSettings(BaseSettings):
    """The operator's configuration, read from the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, case_sensitive=False, extra="ignore")

    namespaces: str = Field(
        default="",
        description="Comma-separated namespaces to serve, or globs such as op-* (Kopf's namespace"
        " patterns; they need the cluster-wide rights); empty serves all namespaces.",
    )
    liveness_endpoint: str = Field(
        default="http://0.0.0.0:8080/healthz",
        description="Kopf liveness probe URL the operator listens on; empty disables it.",
    )
    log_format: str = Field(default="json", description="Log format: json, plain or full.")
    verbose: bool = Field(default=False, description="Log at DEBUG level (Kopf's --verbose).")
    field_manager: str = Field(
        default="aiops-operator", description="Server-side apply field manager of every child."
    )
    runtime_port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="Container and Service port of the runtime (http).",
    )
    runtime_uid: int = Field(
        default=10001, ge=1, description="UID/GID the runtime runs as (non-root, as in its image)."
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=10,
        description="Deployment progressDeadlineSeconds; past it, Degraded is True.",
    )
    discovery_ttl_s: float = Field(
        default=60.0,
        gt=0,
        description="How long the ServiceMonitor CRD discovery result is cached, and how often"
        " the watch of a child kind not served (yet) asks for it again.",
    )
    worker_limit: int = Field(
        default=0,
        ge=0,
        description="Most ModelServices Kopf handles at once; a burst waits in the watch"
        " stream, not in memory (children's events need no worker: child_watch.py). 0: no limit.",
    )
    worker_idle_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds an object's event worker stays after its last event (Kopf's"
        " queueing idle timeout); with worker_limit, it holds a slot that long.",
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Timeout of one Kubernetes API request made by the operator.",
    )
    api_connections: int = Field(
        default=16,
        ge=1,
        description="Most pooled HTTP connections to the API server for requests, besides the"
        " watch streams (each TLS connection costs memory and a handshake); as many"
        " ModelServices have their children built and applied at once, a burst waits before.",
    )
    drift_poll_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between two reads of each runtime's GET /drift.",
    )
    drift_url_pattern: str = Field(
        default="http://{pod_ip}:{port}",
        description="Base URL of a runtime; {name}, {namespace}, {port}, {pod}, {pod_ip} are"
        " filled in. With {pod} or {pod_ip} each ready pod is read, else the URL once.",
    )
    drift_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Timeout of one GET /drift or retrain trigger request.",
    )
    drift_backoff_max_s: float = Field(
        default=300.0,
        gt=0,
        description="Longest wait between reads of a runtime that keeps failing.",
    )
    probe_not_ready_pods: bool = Field(
        default=True,
        description="While no runtime pod is ready, ask one (GET /readyz at its pod IP) why;"
        " turn it off when the operator runs outside the cluster's pod network.",
    )
    drift_reads_per_namespace: int = Field(
        default=4,
        ge=1,
        description="Most GET /drift reads in flight at once per namespace: one tenant's slow"
        " runtimes wait for each other, not for everyone.",
    )
    drift_reads_max: int = Field(
        default=64,
        ge=1,
        description="Most GET /drift reads in flight at once in the whole operator (one poller"
        " reads every ModelService, each every drift_poll_interval_s ±10 %).",
    )
    triggers_per_namespace: int = Field(
        default=1, ge=1, description="Most retrain triggers in flight at once per namespace."
    )
    retrain_url_prefixes: str = Field(
        default="",
        description="Comma-separated URL prefixes a retrain trigger URL must lie under (e.g."
        " https://gitlab.example.com/api/v4/projects/); empty turns the retrain action off.",
    )
    retrain_allow_http: bool = Field(
        default=False,
        description="Allow http:// trigger URLs and prefixes (the token then travels in clear).",
    )
    retrain_secret_name: str = Field(
        default="aiops-retrain-trigger",
        description="The one Secret name a retrain trigger is read from, in each ModelService's"
        " namespace; the chart's retrain-trigger ClusterRole grants get of this name only.",
    )
    allow_joblib: bool = Field(
        default=False,
        description="Serve ModelServices with model.format joblib (pickle: loading runs code"
        " from the file); off, they are Degraded with reason InvalidSpec.",
    )
    network_policies: bool = Field(
        default=True,
        description="Render a NetworkPolicy per ModelService (unless its spec turns it off);"
        " false renders none and deletes those rendered before.",
    )
    operator_namespace: str = Field(
        default="",
        description="Namespace the operator runs in, allowed to reach runtimes for GET /drift;"
        " empty reads the pod's own (service account mount), else none is allowed.",
    )
    monitoring_namespace: str = Field(
        default="monitoring",
        description="Namespace whose pods (Prometheus) may scrape the runtimes; empty: none.",
    )
    metrics_port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="Port of the operator's Prometheus /metrics; 0 disables it.",
    )

    leader_election: bool = Field(
        default=False,
        description="Act only while holding the leader Lease, so replicas run as one leader and"
        " standbys (the chart turns it on); off, the process acts at once (a local run).",
    )
    leader_election_lease_name: str = Field(
        default="aiops-operator",
        description="Name of the coordination.k8s.io Lease the replicas elect their leader on.",
    )
    leader_election_namespace: str = Field(
        default="",
        description="Namespace of that Lease; empty: the operator's own (operator_namespace).",
    )
    leader_election_lease_duration_s: float = Field(
        default=12.0,
        ge=1,
        description="Seconds a standby waits, after it last saw the Lease change, before it takes"
        " the Lease.",
    )
    leader_election_renew_deadline_s: float = Field(
        default=8.0,
        gt=0,
        description="Seconds the leader may fail to renew before it exits (less than the lease"
        " duration).",
    )
    leader_election_retry_period_s: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between two renewals by the leader, or two tries by a standby.",
    )

    def own_namespace(self) -> str:
        """operator_namespace, else the pod's namespace from its service account mount."""
        if self.operator_namespace:
            return self.operator_namespace
        try:
            return SA_NAMESPACE_FILE.read_text().strip()
        except OSError:
            return ""

    def namespace_list(self) -> list[str]:
        """The namespaces (or namespace globs) to serve, or [] for all of them."""
        return [ns.strip() for ns in self.namespaces.split(",") if ns.strip()]

    def namespace_globs(self) -> bool:
        """Whether a served namespace is a glob (Kopf then watches each matching namespace)."""
        return any(set(ns) & set("*?[!") for ns in self.namespace_list())


def settings_table() -> str:
    """A Markdown table of every setting: env var, default, description."""
    lines = ["| Environment variable | Default | Description |", "| --- | --- | --- |"]
    for name, field in OperatorSettings.model_fields.items():
        default = field.default
        shown = f"`{default}`" if default not in ("", None) else "(empty)"
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(lines) + "\n"
