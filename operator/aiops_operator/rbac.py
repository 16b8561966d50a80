"""The operator's RBAC rules as data: exactly the verbs it uses, each with its reason.

`make crds` writes them to charts/aiops-operator/files/rbac-rules.yaml, in two lists:
- `namespaced`: rules on the resources of the namespaces it serves. Serving every namespace, the
  chart grants them in the ClusterRole; serving listed namespaces (`settings.namespaces`), in a
  Role and RoleBinding per namespace, so it has no rights anywhere else;
- `cluster`: the cluster-scoped reads Kopf needs in both modes (CRDs, namespaces).
No rule grants Secrets. A trigger Secret is read only where a namespace opted in: the chart's
ClusterRole `<release>-retrain-trigger` allows `get` of one fixed name (`trigger_reader_rules`),
and a RoleBinding to it in a namespace, made by that namespace's admin or by the chart
(`rbac.retrainNamespaces`), lets the operator read that one Secret there. Tenants keep their
own tokens; nobody's token is readable by an operator that serves them without their consent.
The integration tests run the operator under exactly these rules, so a missing verb fails them.
"""

from __future__ import annotations

from typing import Any

import yaml

from aiops_operator.spec import GROUP, PLURAL

# (apiGroups, resources, verbs, why) - `why` goes into the generated file as a comment.
_RULES: list[tuple[list[str], list[str], list[str], str]] = [
    (
        [GROUP],
        [PLURAL],
        ["list", "watch", "patch"],
        "Kopf watches ModelServices and patches the progress annotations of a retried handler",
    ),
    ([GROUP], [f"{PLURAL}/status"], ["patch"], "status (conditions, replicas, drift threshold)"),
    (
        ["apps"],
        ["deployments"],
        ["list", "watch", "create", "patch"],
        "runtime Deployments: server-side apply (create on first apply) and watch for status",
    ),
    (
        [""],
        ["services", "configmaps"],
        ["list", "watch", "create", "patch"],
        "runtime Service and drift ConfigMap: server-side apply, watch to restore hand edits",
    ),
    (
        ["autoscaling"],
        ["horizontalpodautoscalers"],
        ["list", "watch", "create", "patch", "delete"],
        "HPA when spec.autoscaling is set; deleted when it is removed",
    ),
    (
        ["monitoring.coreos.com"],
        ["servicemonitors"],
        ["list", "watch", "create", "patch", "delete"],
        "ServiceMonitor when the Prometheus Operator CRD exists",
    ),
    (
        ["networking.k8s.io"],
        ["networkpolicies"],
        ["list", "watch", "create", "patch", "delete"],
        "the runtime's NetworkPolicy (ingress from its namespace, the operator's, monitoring);"
        " deleted when spec.networkPolicy.enabled or the setting turns it off",
    ),
    ([""], ["events"], ["create"], "Kubernetes Events about ModelServices (Kopf posting)"),
    (
        [""],
        ["pods"],
        ["list"],
        "the runtime's ready pods, each read (GET /drift) by the drift loop; while none is"
        " ready, one to ask (GET /readyz) why, e.g. a digest mismatch",
    ),
    (
        [""],
        ["namespaces"],
        ["list", "watch"],
        "namespaced mode (AIOPS_OPERATOR_NAMESPACES): Kopf lists/watches namespaces even for exact"
        " names; without it Kopf retries the 403 for ~1 minute before serving anything",
    ),
    (
        ["apiextensions.k8s.io"],
        ["customresourcedefinitions"],
        ["list", "watch"],
        "Kopf notices CRDs (ModelService, ServiceMonitor) appearing or going",
    ),
]


CLUSTER_SCOPED = frozenset({"namespaces", "customresourcedefinitions"})


def _scoped(cluster: bool) -> list[tuple[list[str], list[str], list[str], str]]:
    return [r for r in _RULES if bool(set(r[1]) & CLUSTER_SCOPED) == cluster]


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def namespaced_rules() -> list[dict[str, Any]]:
    """Rules on namespaced resources: the ClusterRole's (all namespaces) or each Role's."""
    return [_rule(g, r, v) for g, r, v, _ in _scoped(cluster=False)]


def cluster_rules() -> list[dict[str, Any]]:
    """Rules on cluster-scoped resources, needed in every mode."""
    return [_rule(g, r, v) for g, r, v, _ in _scoped(cluster=True)]


def rules() -> list[dict[str, Any]]:
    """Every rule: the ClusterRole of an operator serving all namespaces."""
    return namespaced_rules() + cluster_rules()


def trigger_reader_rules(secret_name: str) -> list[dict[str, Any]]:
    """`get` of the one Secret name a retrain trigger is read from (settings.retrainSecretName)."""
    return [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
         "resourceNames": [secret_name]}
    ]  # fmt: skip


def lease_rules(lease_name: str) -> list[dict[str, Any]]:
    """Leader election (settings.leaderElection): `get`/`update` of the one Lease by name, and
    `create` of Leases (the API server cannot check a name a create has not sent yet). A Role in
    the operator's own namespace grants them: no other namespace, no other Lease to update."""
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"],
         "resourceNames": [lease_name]},
    ]  # fmt: skip


def lease_role(name: str, namespace: str, lease_name: str) -> dict[str, Any]:
    """The Role of lease_rules in `namespace` (used by tests; the chart renders its own)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": lease_rules(lease_name),
    }


def render_rules() -> str:
    """Both lists as YAML, one commented rule after another (charts/.../rbac-rules.yaml)."""
    out = [
        "# Generated by `make crds` (aiops-operator generate-rbac) from"
        " operator/aiops_operator/rbac.py.",
        "# namespaced: the ClusterRole's rules when serving every namespace, else each served",
        "# namespace's Role. cluster: the ClusterRole's rules in both modes. No rule grants",
        "# Secrets: see the ClusterRole <release>-retrain-trigger and rbac.retrainNamespaces.",
    ]
    for key, cluster in (("namespaced", False), ("cluster", True)):
        out.append(f"{key}:")
        for groups, resources, verbs, why in _scoped(cluster):
            out.append(f"  # {why}")
            dumped = yaml.safe_dump(
                [_rule(groups, resources, verbs)], sort_keys=False, default_flow_style=None
            )
            out.extend(f"  {line}" for line in dumped.rstrip().splitlines())
    return "\n".join(out) + "\n"


def cluster_role(name: str = "aiops-operator") -> dict[str, Any]:
    """A complete ClusterRole object with these rules (used by tests and the benchmark)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules(),
    }


def trigger_reader_role(name: str, secret_name: str) -> dict[str, Any]:
    """The ClusterRole a namespace binds (RoleBinding) to let the operator read its trigger."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": trigger_reader_rules(secret_name),
    }


def role_binding(
    role: str, service_account: str, sa_namespace: str, namespace: str
) -> dict[str, Any]:
    """A RoleBinding in `namespace` of ClusterRole `role` to ServiceAccount `sa_namespace/...`."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": role, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [
            {"kind": "ServiceAccount", "name": service_account, "namespace": sa_namespace}
        ],
    }


def cluster_role_binding(
    role: str, service_account: str, namespace: str, name: str | None = None
) -> dict[str, Any]:
    """A ClusterRoleBinding of ClusterRole `role` to ServiceAccount `namespace/service_account`."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name or role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
