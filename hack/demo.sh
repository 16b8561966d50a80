#!/usr/bin/env bash
# make demo: the main job. For now it brings the local control plane up and shows the node;
# the full ModelService loop is added by the drift-loop work.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Building or reusing the pinned control-plane binaries (first run: 15-25 min)"
hack/control-plane-build.sh >/dev/null

step "Starting the local Kubernetes control plane (no container engine: pods run on a KWOK node)"
python3 hack/localcluster.py up --state-dir .cluster
. .cluster/env

step "kubectl get nodes"
kubectl get nodes -o wide

if [ "${1:-}" != "--keep" ]; then
  step "Tearing down (pass --keep to keep the cluster running)"
  python3 hack/localcluster.py down --state-dir .cluster
fi
