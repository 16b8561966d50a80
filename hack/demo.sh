#!/usr/bin/env bash
# make demo: the whole ModelService loop on the local cluster, in real containers, step by step.
#   hack/demo.sh [--keep]     --keep leaves the cluster, the operator and the runtime running
# A cluster already running from the same state directory (make cluster-up) is used and left
# running; one the demo starts is torn down at the end (unless --keep).
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
wait_until() {  # wait_until <seconds> <description> <command...>
  local limit=$1 what=$2 end=$((SECONDS + $1)); shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then echo "demo: timed out after ${limit}s waiting for $what" >&2; return 1; fi
    sleep 0.5
  done
}
condition() {  # condition <type> <field>: a field of one of the ModelService's conditions
  kubectl -n "$ns" get msvc "${2:-$name}" \
    -o jsonpath="{.status.conditions[?(@.type==\"$1\")].${3:-status}}" 2>/dev/null
}
condition_is() { [ "$(condition "$1")" = "$2" ]; }
wait_ready() {  # Ready=True, or fail at once with the reason the ModelService gives
  local end=$((SECONDS + $1))
  until condition_is Ready True; do
    if [ $SECONDS -ge $end ]; then
      echo "demo: not Ready after $1s: $(condition Ready "$name" reason): $(condition Ready "$name" message)" >&2
      kubectl -n "$ns" get pods -o wide >&2 || true
      kubectl -n "$ns" logs "deployment/$name" --tail 5 >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

owned=false
pf_pid=""
cleanup() {
  local rc=$?
  [ -n "$pf_pid" ] && kill "$pf_pid" 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    echo "demo failed (exit $rc); logs: $state/logs/" >&2
    kubectl -n "$ns" get msvc "$name" -o jsonpath='{.status}' >&2 2>/dev/null || true
    echo >&2
  fi
  if [ "$keep" = true ] && [ $rc -eq 0 ]; then
    step "Left running (--keep): . $state/env; stop with make cluster-down"
    return
  fi
  if [ "$owned" = true ]; then
    PYTHONPATH=hack python3 -m aiops_harness.localcluster down --state-dir "$state" >/dev/null
    [ $rc -eq 0 ] && step "Torn down: the cluster, its real node, the operator and the runtime are stopped"
  else
    [ $rc -eq 0 ] && step "The cluster in $state was running before the demo: left running"
  fi
  return 0
}

started=$SECONDS
step "1. Build or reuse the pinned binaries and our images (first run on a machine: 20-30 min)"
hack/control-plane-build.sh | sed 's/^/   /'
hack/node-build.sh | sed 's/^/   /'
images=$(hack/images.sh)
echo "$images" | sed 's/^/   /'
runtime_image=$(echo "$images" | sed -n 's/^runtime=//p')
operator_image=$(echo "$images" | sed -n 's/^operator=//p')

step "2. The local cluster: control plane, a real node (containerd + runc, kubelet) and a KWOK node"
trap cleanup EXIT
if PYTHONPATH=hack python3 -m aiops_harness.localcluster status --state-dir "$state" >/dev/null 2>&1; then
  echo "   a cluster already runs from $state: the demo uses it and leaves it running"
  PYTHONPATH=hack python3 -m aiops_harness.localcluster status --state-dir "$state" --json | "$py" -c \
    'import json,sys; sys.exit(not any(n["real"] and n["ready"] for n in json.load(sys.stdin)["nodes"]))' \
    || { echo "demo: that cluster has no ready real node (started with CLUSTER_NODE=kwok?); make cluster-down first" >&2; exit 1; }
else
  owned=true
  PYTHONPATH=hack python3 -m aiops_harness.localcluster up --state-dir "$state" | sed 's/^/   /'
fi
# shellcheck source=/dev/null
. "$state/env"
mkdir -p "$work"
PYTHONPATH=hack python3 -m aiops_harness.localcluster import --state-dir "$state" \
  $(echo "$images" | sed -n 's/^\(runtime\|operator\)_archive=//p')
run kubectl get nodes -o wide

step "3. Install the operator with its Helm chart (a pod under its own ServiceAccount and RBAC)"
helm=$(hack/tools-build.sh helm | tail -n1)/helm
kubectl create namespace aiops-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace aiops-system pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
run "$helm" upgrade --install aiops-operator charts/aiops-operator -n aiops-system \
  --set "image.repository=${operator_image%:*}" --set "image.tag=${operator_image##*:}" \
  --set image.pullPolicy=Never --set settings.driftPollIntervalS=2 \
  --set settings.driftBackoffMaxS=4 --wait --timeout 120s >/dev/null
run kubectl -n aiops-system get pods -o wide

step "4. The example model: shipped in examples/models/breast-cancer, pinned by the example"
echo "   (trained by \`aiops-runtime train --seed 42\`; \`make example-model\` retrains it)"
run sha256sum examples/models/breast-cancer/model.skops examples/models/breast-cancer/reference.npy
run grep -E 'sha256:' examples/modelservice.yaml

step "5. Apply examples/modelservice.yaml into namespace $ns (Pod Security: restricted)"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
run kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted --overwrite
echo "   (spec.image set to the image built in step 1: $runtime_image)"
sed "s|^  image: .*|  image: $runtime_image|" examples/modelservice.yaml | run kubectl -n "$ns" apply -f -
wait_ready 120
run kubectl -n "$ns" get pods -o wide
run kubectl -n "$ns" get modelservices

step "6. Port-forward the Service and predict with the runbook's sample request"
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "\$ kubectl -n $ns port-forward svc/$name $port:8000 &"
kubectl -n "$ns" port-forward "svc/$name" "$port:8000" >"$work/port-forward.log" 2>&1 &
pf_pid=$!
url="http://127.0.0.1:$port"
wait_until 20 "the port-forward" curl -s "$url/healthz"
run "$py" -m aiops_harness.traffic "$url" sample
echo "\$ curl -s $url/metrics | grep model_predictions_total"
curl -s "$url/metrics" | grep model_predictions_total

step "7. In-distribution traffic (held-out rows): no drift"
run "$py" -m aiops_harness.traffic "$url" normal 200
curl -s "$url/drift" | "$py" -m json.tool | grep -E '"(drift|last_p_value|drift_events|checks)"'

step "8. Provoke drift with the runbook's out-of-range vector"
run "$py" -m aiops_harness.traffic "$url" drift-burst
wait_until 60 "DriftDetected=True" condition_is DriftDetected True
run kubectl -n "$ns" get modelservices
run kubectl -n "$ns" get events --field-selector reason=DriftDetected
echo "\$ kubectl -n $ns get msvc $name -o jsonpath='{.status.drift}'"
kubectl -n "$ns" get msvc "$name" -o jsonpath='{.status.drift}'; echo
echo "\$ kubectl -n $ns logs deployment/$name | grep 'Drift detection result' | tail -n 2"
kubectl -n "$ns" logs "deployment/$name" | grep '"Drift detection result"' | tail -n 2
echo "\$ curl -s $url/metrics | grep model_drift_events_total"
curl -s "$url/metrics" | grep model_drift_events_total

step "9. Change the drift threshold in the ModelService; it reaches the running container"
pod=$(kubectl -n "$ns" get pods -l "app.kubernetes.io/instance=$name" -o jsonpath='{.items[0].metadata.name}')
run kubectl -n "$ns" patch msvc "$name" --type merge -p '{"spec":{"drift":{"pValueThreshold":0.5}}}'
threshold_is() { curl -s "$url/drift" | "$py" -c "import json,sys; sys.exit(json.load(sys.stdin)['p_value_threshold'] != $1)"; }
echo "   (the kubelet projects the new ConfigMap into the pod; the runtime reloads it)"
wait_until 90 "the runtime's threshold 0.5" threshold_is 0.5
echo "\$ curl -s $url/drift   (p_value_threshold)"
curl -s "$url/drift" | "$py" -m json.tool | grep p_value_threshold
status_threshold_is() {
  [ "$(kubectl -n "$ns" get msvc "$name" -o jsonpath='{.status.drift.pValueThreshold}')" = "$1" ]
}
wait_until 30 "status to show the threshold in force" status_threshold_is 0.5
echo "   the same pod ($pod), no restart: only the ConfigMap changed"
run kubectl -n "$ns" get pods -o custom-columns=POD:.metadata.name,RESTARTS:.status.containerStatuses[0].restartCount
run kubectl -n "$ns" get modelservices

step "Done in $((SECONDS - started))s"
