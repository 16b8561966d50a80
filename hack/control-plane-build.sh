#!/usr/bin/env bash
# Builds the local control plane's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok) from the pinned wrapper modules under hack/ and caches them
# per user, keyed by version, so every clone and every CI run reuses them.
#
# Prints the directory holding the binaries on its last line.
# If KUBEBUILDER_ASSETS names a directory that already holds every binary, that one is used.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$here/versions.sh"

binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

has_all() {
  local dir=$1 b
  for b in "${binaries[@]}"; do
    [ -x "$dir/$b" ] || return 1
  done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && has_all "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

dest="$AIOPS_CACHE_DIR/control-plane/$CONTROL_PLANE_KEY/bin"
if has_all "$dest"; then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go >= 1.26 is needed to build the control plane" >&2; exit 1; }
mkdir -p "$dest"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
started=$(date +%s)

build() {  # build <module-dir> <output> <package> [ldflags]
  local mod=$1 out=$2 pkg=$3 ldflags=${4:-}
  [ -x "$dest/$out" ] && return 0
  echo ">> building $out ($pkg)" >&2
  (cd "$here/$mod" && go build -trimpath -ldflags "-s -w $ldflags" -o "$dest/$out.tmp" "$pkg")
  mv "$dest/$out.tmp" "$dest/$out"
}

k8s_ldflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=${K8S_VERSION%%.*}"
  k8s_ldflags+=" -X $p.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $p.gitTreeState=clean"
  k8s_ldflags+=" -X $p.buildDate=1970-01-01T00:00:00Z"
done

build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build k8s "$c" "k8s.io/kubernetes/cmd/$c" "$k8s_ldflags"
done

echo ">> control plane binaries built in $(( $(date +%s) - started ))s into $dest" >&2
echo "$dest"
