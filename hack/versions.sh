# Pinned versions of the local toolchain. Sourced by hack/*.sh; the Go wrapper modules under
# hack/{k8s,etcd,kwok,containerd,cni,coredns} pin the same versions (tests check they agree).
# Delivery tools (helm, promtool, ...) are pinned by their own wrapper modules, read by
# hack/tools-build.sh.
K8S_VERSION=1.35.4
ETCD_VERSION=3.6.16
KWOK_VERSION=0.8.0
# The real node (hack/node-build.sh): kubelet and kube-proxy are K8S_VERSION, from hack/k8s;
# CoreDNS is the 1.13 line kubeadm v1.35 deploys; runc is Debian's.
CONTAINERD_VERSION=2.4.2
CNI_PLUGINS_VERSION=1.10.0
COREDNS_VERSION=1.13.2

AIOPS_CACHE_DIR=${AIOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aiops-quality}
CONTROL_PLANE_KEY="k8s-v${K8S_VERSION}_etcd-v${ETCD_VERSION}_kwok-v${KWOK_VERSION}"
NODE_KEY="k8s-v${K8S_VERSION}_containerd-v${CONTAINERD_VERSION}_cni-v${CNI_PLUGINS_VERSION}_coredns-v${COREDNS_VERSION}"

# The version stamps of Kubernetes binaries (as its Makefile sets them), for `go build -ldflags`.
k8s_ldflags() {
  local p flags=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=${K8S_VERSION%%.*}"
    flags+=" -X $p.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $p.gitTreeState=clean"
    flags+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

# Argo CD (hack/argocd-build.sh): one binary serves every component. Its go.mod replaces the
# gitops-engine module with ./gitops-engine, which module zips never hold, and pins a
# pseudo-version the proxy refuses: the build fills ./gitops-engine from this one instead.
# The h1: sums are Go's module hashes (`go mod download -json`), checked before building.
ARGOCD_VERSION=3.5.7
ARGOCD_SUM=h1:Xm1BF+I5OgDKUG3SDK49vn2/Y5AMyaNVko+/JT08gj0=
ARGOCD_GITOPS_ENGINE_VERSION=v0.0.0-20260914071520-c9c369efcc5b
ARGOCD_GITOPS_ENGINE_SUM=h1:0tKOg3Fxd5cqVemntg63MqCjk7wqVV32vbVGWOGyhR8=
