#!/usr/bin/env bash
# Builds the real node's binaries (containerd, containerd-shim-runc-v2, ctr, kubelet, kube-proxy,
# coredns, and the CNI plugins bridge, host-local, loopback, portmap, ptp) from the pinned wrapper
# modules under hack/ and caches them per user, keyed by version, like
# hack/control-plane-build.sh. runc is not built: it is Debian's (`apt-get install runc`); crun
# does not work on hosts with hybrid cgroups.
#
# Prints two lines:  bin=<directory holding the binaries>  and  cni_bin=<the CNI plugins' one>.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$here/versions.sh"

binaries=(containerd containerd-shim-runc-v2 ctr kubelet kube-proxy coredns)
cni_plugins=(bridge host-local loopback portmap ptp)
# The versions, and what else decides the build: CoreDNS's plugin list and the module pins.
build_key=$(cat "$here/coredns/main.go" "$here"/{containerd,cni,coredns,k8s}/go.sum | sha256sum | cut -c1-8)
cache="$AIOPS_CACHE_DIR/node/$NODE_KEY-$build_key"
dest="$cache/bin"
cni_dest="$cache/cni/bin"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

has_all() {  # has_all <dir> <binary>...
  local dir=$1 b
  shift
  for b in "$@"; do
    [ -x "$dir/$b" ] || return 1
  done
}

if ! has_all "$dest" "${binaries[@]}" || ! has_all "$cni_dest" "${cni_plugins[@]}"; then
  command -v go >/dev/null || { echo "error: Go >= 1.26.8 is needed to build the node (hack/cni/go.mod)" >&2; exit 1; }
  mkdir -p "$dest" "$cni_dest"
  started=$(date +%s)

  build() {  # build <module-dir> <output-dir> <output> <package> [ldflags] [tags]
    local mod=$1 dir=$2 out=$3 pkg=$4 ldflags=${5:-} tags=${6:-}
    [ -x "$dir/$out" ] && return 0
    echo ">> building $out ($pkg)" >&2
    (cd "$here/$mod" && go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$dir/$out.tmp" "$pkg")
    mv "$dir/$out.tmp" "$dir/$out"
  }

  k8s_ldflags=$(k8s_ldflags)

  # containerd's Makefile stamps the version the same way; the tags leave out the snapshotters
  # that need btrfs, devmapper or zfs (overlayfs and native remain).
  ctr_ldflags="-X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD_VERSION"
  ctr_tags="no_btrfs no_devmapper no_zfs urfave_cli_no_docs"
  for c in containerd containerd-shim-runc-v2 ctr; do
    build containerd "$dest" "$c" "github.com/containerd/containerd/v2/cmd/$c" "$ctr_ldflags" "$ctr_tags"
  done
  for c in kubelet kube-proxy; do
    build k8s "$dest" "$c" "k8s.io/kubernetes/cmd/$c" "$k8s_ldflags"
  done
  build coredns "$dest" coredns aiops-quality.io/hack/coredns
  cni_ldflags="-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v$CNI_PLUGINS_VERSION"
  for c in main/bridge ipam/host-local main/loopback meta/portmap main/ptp; do
    build cni "$cni_dest" "${c#*/}" "github.com/containernetworking/plugins/plugins/$c" "$cni_ldflags"
  done
  echo ">> node binaries built in $(( $(date +%s) - started ))s into $cache" >&2
fi
command -v runc >/dev/null || echo "warning: runc is missing (apt-get install runc); containerd needs it" >&2
echo "bin=$dest"
echo "cni_bin=$cni_dest"
