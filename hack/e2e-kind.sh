#!/usr/bin/env bash
# End-to-end on kind, for machines with a container engine (Docker or Podman); not run in CI here.
#   create a kind cluster -> build and load both images -> helm install the operator chart ->
#   apply examples/modelservice.yaml (pointed at the local image and its baked model's digests) ->
#   wait Ready -> port-forward -> predict -> provoke drift -> check status -> tear down.
# Environment: KIND_CLUSTER (default aiops-e2e), KEEP_CLUSTER=1 keeps it for inspection.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cluster=${KIND_CLUSTER:-aiops-e2e}
namespace=aiops-quality
tag=e2e
KIND_VERSION=v0.30.0

refuse() {
  echo "e2e-kind: $*" >&2
  echo "e2e-kind: this target needs Docker or Podman; the tests here use the local control plane (make test)." >&2
  exit 2
}

engine=""
for candidate in docker podman; do
  if command -v "$candidate" >/dev/null 2>&1; then
    engine=$candidate
    break
  fi
done
[ -n "$engine" ] || refuse "no container engine found (neither docker nor podman is on PATH)"
"$engine" info >/dev/null 2>&1 || refuse "$engine is installed but not running or not reachable ('$engine info' failed)"
[ "$engine" = podman ] && export KIND_EXPERIMENTAL_PROVIDER=podman

# Tools: helm from the pinned module, kubectl from the control-plane build, kind from its module.
tools_bin=$("$here/tools-build.sh" helm | tail -n1)
k8s_bin=$("$here/control-plane-build.sh" | tail -n1)
export PATH="$tools_bin:$k8s_bin:$PATH"
if ! command -v kind >/dev/null 2>&1; then
  GOBIN="$tools_bin" GOTOOLCHAIN=local go install "sigs.k8s.io/kind@$KIND_VERSION"
fi

work=$(mktemp -d)
port_forward=""
cleanup() {
  if [ -n "$port_forward" ]; then kill "$port_forward" 2>/dev/null || true; fi
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { echo ">> $*"; }

step "kind cluster $cluster"
kind create cluster --name "$cluster" --wait 120s

step "build images with $engine"
"$engine" build -f "$root/Dockerfile.runtime" -t "aiops-quality-runtime:$tag" "$root"
"$engine" build -f "$root/Dockerfile.operator" -t "aiops-quality-operator:$tag" "$root"
for image in aiops-quality-runtime aiops-quality-operator; do
  "$engine" save -o "$work/$image.tar" "$image:$tag"
  kind load image-archive "$work/$image.tar" --name "$cluster"
done

step "helm install the operator"
helm install aiops-operator "$root/charts/aiops-operator" --namespace aiops-system --create-namespace \
  --set image.repository=aiops-quality-operator --set image.tag="$tag" --set image.pullPolicy=Never \
  --wait --timeout 180s

step "apply the example ModelService (image $tag, digests of the model baked into it)"
"$engine" run --rm --entrypoint cat "aiops-quality-runtime:$tag" /models/breast-cancer/manifest.json \
  > "$work/manifest.json"
cp "$root/examples/modelservice.yaml" "$work/modelservice.yaml"
python3 "$here/../.ci/retrain/bump-modelservice.py" --file "$work/modelservice.yaml" \
  --manifest "$work/manifest.json" --image "aiops-quality-runtime:$tag"
kubectl create namespace "$namespace"
kubectl -n "$namespace" apply -f "$work/modelservice.yaml"
kubectl -n "$namespace" wait --for=condition=Ready modelservice/breast-cancer --timeout=300s
kubectl -n "$namespace" get modelservices

step "port-forward and predict"
kubectl -n "$namespace" port-forward svc/breast-cancer 18000:8000 >"$work/port-forward.log" 2>&1 &
port_forward=$!
for _ in $(seq 1 30); do
  curl -fsS http://127.0.0.1:18000/readyz >/dev/null 2>&1 && break
  sleep 1
done
python3 - <<'PY'
import json, urllib.request
row = [13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766, 0.2699,
       0.7886, 2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01486, 0.01405, 0.002377, 15.11, 19.26,
       99.7, 711.2, 0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259]
req = urllib.request.Request("http://127.0.0.1:18000/predict", json.dumps({"features": row}).encode(),
                             {"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=10).read().decode())
PY

step "provoke drift (shifted rows) and check the ModelService status"
python3 - <<'PY'
import json, urllib.request
shifted = [[100, 150, 200, 300] + [0.9] * 6 + [1] * 4 + [0.5] * 6 + [100, 120, 140, 160] + [0.9] * 6]
for _ in range(40):
    body = json.dumps({"instances": shifted * 25}).encode()
    req = urllib.request.Request("http://127.0.0.1:18000/predict", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()
print(urllib.request.urlopen("http://127.0.0.1:18000/drift", timeout=10).read().decode())
PY
for _ in $(seq 1 60); do
  events=$(kubectl -n "$namespace" get modelservice breast-cancer -o jsonpath='{.status.drift.driftEvents}')
  [ "${events:-0}" -gt 0 ] && break
  sleep 2
done
kubectl -n "$namespace" get modelservice breast-cancer -o yaml
[ "${events:-0}" -gt 0 ] || { echo "e2e-kind: no drift event reached the ModelService status" >&2; exit 1; }
kubectl -n "$namespace" get events --field-selector involvedObject.kind=ModelService
step "e2e on kind passed"
