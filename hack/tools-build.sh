#!/usr/bin/env bash
# Builds the delivery tools (helm v3) from the pinned wrapper module hack/helm and caches them per
# user, keyed by version, so every clone and every CI run reuses them.
#
# Prints the directory holding the binaries on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$here/versions.sh"

# The pin lives in hack/helm/go.mod (one source of truth); versions.sh only names the cache dir.
helm_version=$(awk '$1 == "helm.sh/helm/v3" {print $2}' "$here/helm/go.mod")
[ -n "$helm_version" ] || { echo "error: helm.sh/helm/v3 is not pinned in hack/helm/go.mod" >&2; exit 1; }

dest="$AIOPS_CACHE_DIR/tools/helm-$helm_version/bin"
if [ -x "$dest/helm" ]; then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go >= 1.26 is needed to build helm" >&2; exit 1; }
mkdir -p "$dest"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
started=$(date +%s)

# The same ldflags as helm's own Makefile: version string and the Kubernetes version that
# `helm lint` and `helm template` assume (taken from the k8s.io/client-go helm was built with).
k8s_minor=$(cd "$here/helm" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
done

echo ">> building helm $helm_version" >&2
(cd "$here/helm" && go build -trimpath -ldflags "$ldflags" -o "$dest/helm.tmp" helm.sh/helm/v3/cmd/helm)
mv "$dest/helm.tmp" "$dest/helm"
echo ">> helm built in $(( $(date +%s) - started ))s into $dest" >&2
echo "$dest"
