#!/usr/bin/env bash
# Prints the paths of third-party CRDs the delivery tests validate against, taken from pinned
# Go modules (downloaded once into the Go module cache; never hand-written):
#   application   Argo CD's Application CRD        (github.com/argoproj/argo-cd/v3, manifests/crds/)
#   prometheusrule, servicemonitor                  (github.com/prometheus-operator/prometheus-operator,
#                                                    example/prometheus-operator-crd/)
# Output: one "<name>=<path>" line each.
set -euo pipefail

# argo-cd v3.6.x needs Go >= 1.27 to be downloaded with GOTOOLCHAIN=local; v3.5.7 is the newest
# the Go 1.26 toolchain accepts.
ARGOCD_MODULE=github.com/argoproj/argo-cd/v3@v3.5.7
PROMETHEUS_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator@v0.85.0

command -v go >/dev/null || { echo "error: Go is needed to download the pinned CRDs" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

module_dir() {  # module_dir <path@version>
  local dir
  dir=$(cd "${TMPDIR:-/tmp}" && go mod download -json "$1" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { echo "error: go mod download $1 gave no directory" >&2; exit 1; }
  echo "$dir"
}

argocd=$(module_dir "$ARGOCD_MODULE")
promop=$(module_dir "$PROMETHEUS_OPERATOR_MODULE")
echo "application=$argocd/manifests/crds/application-crd.yaml"
echo "appproject=$argocd/manifests/crds/appproject-crd.yaml"
echo "prometheusrule=$promop/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
echo "servicemonitor=$promop/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
