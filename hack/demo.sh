#!/usr/bin/env bash
# make demo: the whole ModelService loop on the local control plane, step by step.
#   hack/demo.sh [--keep]     --keep leaves the cluster, operator and runtime running at the end
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

keep=false
[ "${1:-}" = "--keep" ] && keep=true
state="${AIOPS_DEMO_STATE_DIR:-$root/.cluster}"
work="$state/demo"
ns=aiops-quality
name=breast-cancer
py="$root/.venv/bin/python"
export PATH="$root/.venv/bin:$PATH"

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
step() { printf '\n'; bold "==> $*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_until() {  # wait_until <seconds> <description> <command...>
  local limit=$1 what=$2 end=$((SECONDS + $1)); shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then echo "demo: timed out after ${limit}s waiting for $what" >&2; return 1; fi
    sleep 0.5
  done
}
wait_runtime_ready() {  # wait_runtime_ready <seconds>: fails at once on a final load failure
  local end=$((SECONDS + $1)) answer reason
  until answer=$(curl -s --max-time 2 "$runtime_url/readyz") && [[ $answer == *'"status":"ready"'* ]]; do
    reason=$("$py" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d.get("reason","")+": "+d.get("message",""))' "$answer" 2>/dev/null || true)
    if [ -n "$reason" ] && [[ $reason != loading:* ]]; then
      echo "demo: the runtime will not become ready: $reason" >&2; return 1
    fi
    if [ $SECONDS -ge $end ]; then
      echo "demo: the runtime was not ready within $1s; last /readyz: ${reason:-nothing answered}" >&2
      return 1
    fi
    sleep 0.5
  done
}
condition_is() {  # condition_is <type> <status>: does the ModelService have that condition?
  [ "$(kubectl -n "$ns" get msvc "$name" \
    -o jsonpath="{.status.conditions[?(@.type==\"$1\")].status}" 2>/dev/null)" = "$2" ]
}

pids=()
cleanup() {
  local rc=$?
  if [ "$keep" = true ] && [ $rc -eq 0 ]; then
    step "Left running (--keep): . .cluster/env; runtime at $runtime_url; stop with make cluster-down"
    return
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    echo "demo failed (exit $rc); logs: $work/*.log and $state/logs/" >&2
    kubectl -n "$ns" get msvc "$name" -o jsonpath='{.status}' >&2 2>/dev/null || true
    echo >&2
    tail -n 20 "$work"/operator.log 2>/dev/null >&2 || true
    echo "runtime log ($work/runtime.log):" >&2
    tail -n 5 "$work"/runtime.log 2>/dev/null >&2 || true
  fi
  python3 hack/localcluster.py down --state-dir "$state" >/dev/null
  [ $rc -eq 0 ] && step "Torn down: the local control plane, the operator and the runtime are stopped"
}

started=$SECONDS
step "1. Build or reuse the pinned Kubernetes binaries (first run on a machine: 15-25 min)"
hack/control-plane-build.sh | sed 's/^/   /'

step "2. Start the local control plane: etcd, kube-apiserver, controller-manager, scheduler, KWOK"
echo "   There is no container engine on this machine: pods run on a KWOK node (they are scheduled,"
echo "   become Running and Ready, but no container starts). The runtime runs as a local process."
python3 hack/localcluster.py down --state-dir "$state" >/dev/null
python3 hack/localcluster.py up --state-dir "$state" | sed 's/^/   /'
trap cleanup EXIT
# shellcheck source=/dev/null
. "$state/env"
mkdir -p "$work"
run kubectl get nodes

step "3. Install the ModelService CRD and the operator's identity (ServiceAccount + ClusterRole)"
run kubectl apply -f crds/
kubectl create namespace aiops-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
"$py" - <<'EOF' | kubectl apply -f -
import yaml
from aiops_operator.rbac import cluster_role
binding = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
    "metadata": {"name": "aiops-operator"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": "aiops-operator"},
    "subjects": [{"kind": "ServiceAccount", "name": "aiops-operator",
                  "namespace": "aiops-system"}],
}
print(yaml.safe_dump_all([cluster_role("aiops-operator"), binding]))
EOF
operator_kubeconfig=$("$py" -c "
import sys; sys.path.insert(0, 'hack')
from pathlib import Path
from localcluster import LocalCluster
c = LocalCluster(state_dir=Path('$state'), bin_dir=Path('$(dirname "$(command -v kubectl)")'))
c.status()
print(c.service_account_kubeconfig('aiops-system', 'aiops-operator'))")
echo "   the operator acts as system:serviceaccount:aiops-system:aiops-operator (no admin rights)"

step "4. The example model: shipped in examples/models/breast-cancer, pinned by the example"
model_dir="$root/examples/models/breast-cancer"
echo "   (trained by \`aiops-runtime train --seed 42\`; \`make example-model\` retrains it)"
run sha256sum "$model_dir/model.skops" "$model_dir/reference.npy"
run grep -E 'sha256:' examples/modelservice.yaml

step "5. Start the operator (Kopf), reading runtimes at the local runtime's address"
runtime_port=$(free_port)
runtime_url="http://127.0.0.1:$runtime_port"
liveness_port=$(free_port)
KUBECONFIG="$operator_kubeconfig" \
AIOPS_OPERATOR_LIVENESS_ENDPOINT="http://127.0.0.1:$liveness_port/healthz" \
AIOPS_OPERATOR_DRIFT_URL_PATTERN="$runtime_url" \
AIOPS_OPERATOR_DRIFT_POLL_INTERVAL_S=2 \
AIOPS_OPERATOR_DRIFT_BACKOFF_MAX_S=4 \
AIOPS_OPERATOR_METRICS_PORT="$(free_port)" \
AIOPS_OPERATOR_LOG_FORMAT=plain \
  aiops-operator run >"$work/operator.log" 2>&1 &
pids+=($!)
wait_until 60 "the operator's liveness endpoint" curl -sf "http://127.0.0.1:$liveness_port/healthz"
echo "   operator running (pid ${pids[-1]}), log: $work/operator.log"

step "6. Apply examples/modelservice.yaml into namespace $ns (Pod Security: restricted)"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
run kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted --overwrite
run kubectl -n "$ns" apply -f examples/modelservice.yaml
wait_until 60 "the Deployment" kubectl -n "$ns" get deployment "$name"
run kubectl -n "$ns" get deployment,service,configmap -l app.kubernetes.io/instance="$name"

step "7. Run the rendered runtime container locally (its command, env and ConfigMap, as rendered)"
python3 hack/localpod.py -n "$ns" --deployment "$name" --port "$runtime_port" \
  --map "/models/breast-cancer=$model_dir" --workdir "$work/pod" >"$work/runtime.log" 2>&1 &
pids+=($!)
wait_runtime_ready 90
run curl -s "$runtime_url/readyz"; echo
wait_until 60 "READY True" condition_is Ready True
run kubectl -n "$ns" get modelservices

step "8. Predict with the runbook's sample request"
run "$py" hack/demo_traffic.py "$runtime_url" sample
echo "\$ curl -s $runtime_url/metrics | grep model_predictions_total"
curl -s "$runtime_url/metrics" | grep model_predictions_total

step "9. In-distribution traffic (held-out rows): no drift"
run "$py" hack/demo_traffic.py "$runtime_url" normal 200
curl -s "$runtime_url/drift" | "$py" -m json.tool | grep -E '"(drift|last_p_value|drift_events|checks)"'

step "10. Provoke drift with the runbook's out-of-range vector"
run "$py" hack/demo_traffic.py "$runtime_url" drift-burst
wait_until 60 "DriftDetected=True" condition_is DriftDetected True
run kubectl -n "$ns" get modelservices
run kubectl -n "$ns" get events --field-selector reason=DriftDetected
echo "\$ kubectl -n $ns get msvc $name -o jsonpath='{.status.drift}'"
kubectl -n "$ns" get msvc "$name" -o jsonpath='{.status.drift}'; echo
echo "\$ grep 'Drift detection result' runtime log | tail -n 2"
grep '"Drift detection result"' "$work/runtime.log" | tail -n 2
echo "\$ curl -s $runtime_url/metrics | grep model_drift_events_total"
curl -s "$runtime_url/metrics" | grep model_drift_events_total

step "11. Change the drift threshold in the ModelService; it reaches the running runtime"
run kubectl -n "$ns" patch msvc "$name" --type merge -p '{"spec":{"drift":{"pValueThreshold":0.5}}}'
threshold_is() { curl -s "$runtime_url/drift" | "$py" -c "import json,sys; sys.exit(json.load(sys.stdin)['p_value_threshold'] != $1)"; }
wait_until 30 "the runtime's threshold 0.5" threshold_is 0.5
echo "\$ curl -s $runtime_url/drift   (p_value_threshold)"
curl -s "$runtime_url/drift" | "$py" -m json.tool | grep p_value_threshold
status_threshold_is() {
  [ "$(kubectl -n "$ns" get msvc "$name" -o jsonpath='{.status.drift.pValueThreshold}')" = "$1" ]
}
wait_until 30 "status to show the threshold in force" status_threshold_is 0.5
# Only the ConfigMap changed: the same pod keeps running, with its drift window.
run kubectl -n "$ns" get modelservices

step "Done in $((SECONDS - started))s"
