#!/usr/bin/env bash
# make cluster-up|cluster-down|cluster-status: the local control plane in .cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  up|down|status) exec python3 hack/localcluster.py "$1" --state-dir .cluster ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
