#!/usr/bin/env bash
# Builds Argo CD v$ARGOCD_VERSION (hack/versions.sh) from the Go module proxy into the per-user
# cache, once: one binary that serves every component (chosen by its name: the symlinks
# argocd-repo-server and argocd-application-controller), plus the git-verify-wrapper.sh and
# gpg-wrapper.sh the repo-server runs (without them on PATH every manifest generation fails with
# a misleading "permission denied"). About 5.5 minutes cold; prints the directory on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$here/versions.sh"

dest="$AIOPS_CACHE_DIR/tools/argocd-v$ARGOCD_VERSION/bin"
if [ ! -x "$dest/argocd" ]; then
  command -v go >/dev/null || { echo "error: Go >= 1.26 is needed to build Argo CD" >&2; exit 1; }
  export CGO_ENABLED=0 GOTOOLCHAIN=local
  work=$(mktemp -d "${TMPDIR:-/tmp}/argocd-build.XXXXXX")
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

  module_dir() {  # module_dir module@version expected-h1-sum
    local info dir sum
    info=$(cd "$work" && go mod download -json "$1")
    dir=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    sum=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p')
    [ -d "$dir" ] || { echo "error: go mod download $1 failed: $info" >&2; exit 1; }
    [ "$sum" = "$2" ] || { echo "error: $1 has hash $sum, pinned $2" >&2; exit 1; }
    echo "$dir"
  }
  started=$(date +%s)
  src=$(module_dir "github.com/argoproj/argo-cd/v3@v$ARGOCD_VERSION" "$ARGOCD_SUM")
  engine=$(module_dir "github.com/argoproj/argo-cd/gitops-engine@$ARGOCD_GITOPS_ENGINE_VERSION" \
    "$ARGOCD_GITOPS_ENGINE_SUM")
  cp -r "$src/." "$work/src"
  chmod -R u+w "$work/src"
  rm -rf "$work/src/gitops-engine"
  cp -r "$engine/." "$work/src/gitops-engine"
  chmod -R u+w "$work/src/gitops-engine"
  mkdir -p "$dest"
  echo ">> building Argo CD $ARGOCD_VERSION (gitops-engine $ARGOCD_GITOPS_ENGINE_VERSION)" >&2
  (cd "$work/src" && go build -trimpath \
    -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=$ARGOCD_VERSION" \
    -o "$dest/argocd.tmp" ./cmd)
  install -m 0755 "$work/src/hack/git-verify-wrapper.sh" "$work/src/hack/gpg-wrapper.sh" "$dest/"
  ln -sfn argocd "$dest/argocd-repo-server"
  ln -sfn argocd "$dest/argocd-application-controller"
  mv "$dest/argocd.tmp" "$dest/argocd"
  echo ">> Argo CD built in $(( $(date +%s) - started ))s into $dest" >&2
fi
echo "$dest"
