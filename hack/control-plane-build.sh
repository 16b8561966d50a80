#!/usr/bin/env bash
# Builds the local control plane's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok) from the pinned wrapper modules under hack/ and caches them
# per user, keyed by version, so every clone and every CI run reuses them.
#
# Prints two lines:  bin=<directory holding the binaries>  and  kwok_stages=<KWOK stage file>.
# If KUBEBUILDER_ASSETS names a directory that already holds every binary, that one is used.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$here/versions.sh"

binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
cache="$AIOPS_CACHE_DIR/control-plane/$CONTROL_PLANE_KEY"
stages="$cache/kwok-stages.yaml"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

has_all() {
  local dir=$1 b
  for b in "${binaries[@]}"; do
    [ -x "$dir/$b" ] || return 1
  done
}

need_go() {
  command -v go >/dev/null || { echo "error: Go >= 1.26 is needed to build the control plane" >&2; exit 1; }
}

# KWOK's binary carries no stages: take node-initialize, the lease heartbeat and the pod life
# cycle from the pinned module's sources and hand them to `kwok --config`.
write_stages() {
  [ -s "$stages" ] && return 0
  need_go
  mkdir -p "$cache"
  local src f
  src=$(cd "$here/kwok" && go mod download sigs.k8s.io/kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
           pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    echo "---"
    cat "$src/kustomize/stage/$f.yaml"
  done > "$stages.tmp"
  mv "$stages.tmp" "$stages"
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && has_all "$KUBEBUILDER_ASSETS"; then
  write_stages
  echo "bin=$KUBEBUILDER_ASSETS"
  echo "kwok_stages=$stages"
  exit 0
fi

dest="$cache/bin"
if ! has_all "$dest"; then
  need_go
  mkdir -p "$dest"
  started=$(date +%s)

  build() {  # build <module-dir> <output> <package> [ldflags]
    local mod=$1 out=$2 pkg=$3 ldflags=${4:-}
    [ -x "$dest/$out" ] && return 0
    echo ">> building $out ($pkg)" >&2
    (cd "$here/$mod" && go build -trimpath -ldflags "-s -w $ldflags" -o "$dest/$out.tmp" "$pkg")
    mv "$dest/$out.tmp" "$dest/$out"
  }

  k8s_ldflags=$(k8s_ldflags)

  build etcd etcd go.etcd.io/etcd/server/v3
  build kwok kwok sigs.k8s.io/kwok/cmd/kwok
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    build k8s "$c" "k8s.io/kubernetes/cmd/$c" "$k8s_ldflags"
  done
  echo ">> control plane binaries built in $(( $(date +%s) - started ))s into $dest" >&2
fi
write_stages
echo "bin=$dest"
echo "kwok_stages=$stages"
