# Pinned versions of the local toolchain. Sourced by hack/*.sh; the Go wrapper modules under
# hack/{k8s,etcd,kwok} pin the same versions (a test checks they agree). Delivery tools (helm,
# promtool, ...) are pinned by their own wrapper modules, read by hack/tools-build.sh.
K8S_VERSION=1.35.4
ETCD_VERSION=3.6.16
KWOK_VERSION=0.8.0

AIOPS_CACHE_DIR=${AIOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aiops-quality}
CONTROL_PLANE_KEY="k8s-v${K8S_VERSION}_etcd-v${ETCD_VERSION}_kwok-v${KWOK_VERSION}"
