#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use, only when something is missing.
#   prometheus, promtool  - real Prometheus for scrape/PromQL tests and `promtool test rules`
#   lua5.1                - runs Argo CD's health script for ModelService
#   wrk                   - the load generator of `make bench-runtime`
#   openssl               - certificates of the local control plane
#   git, rsync, npm       - gitlab-ci-local runs the retrain-model job against a local remote
#                           (npm installs it with its own pinned Node 20: Debian 12's is 18)
#   curl                  - the demo's HTTP calls
#   runc, nft, ip         - the real node: runc for containerd (crun fails on hybrid cgroups),
#                           nftables for kube-proxy, iproute2 for its veth
#   buildah, debootstrap, gcc + libc6-dev
#                         - `make images`: the Debian base, both Dockerfiles, the static pause
#   redis-server          - the cache of Argo CD's repo-server and controller (`make gitops-up`)
set -euo pipefail

declare -A package_of=(
  [prometheus]=prometheus
  [promtool]=prometheus
  [lua5.1]=lua5.1
  [wrk]=wrk
  [openssl]=openssl
  [git]=git
  [rsync]=rsync
  [npm]=npm
  [curl]=curl
  [runc]=runc
  [nft]=nftables
  [ip]=iproute2
  [buildah]=buildah
  [debootstrap]=debootstrap
  [gcc]=gcc
  [redis-server]=redis-server
)

missing=()
for cmd in "${!package_of[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${package_of[$cmd]}")
done
# The static pause binary links libc.a (no command to look for).
[ -e "/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)/libc.a" ] || missing+=(libc6-dev)
[ ${#missing[@]} -eq 0 ] && exit 0

mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo ">> installing Debian packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Packages with a daemon (prometheus, redis-server) must not start it: the tests start their own
# on free ports. Where no policy-rc.d says so already, one does for the install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
# --no-install-recommends keeps the Prometheus package from pulling in a web UI toolchain.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
