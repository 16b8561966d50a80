#!/usr/bin/env bash
# make cluster-up|cluster-down|cluster-status: the local cluster in .cluster/.
# CLUSTER_NODE=kwok (make cluster-up CLUSTER_NODE=kwok) starts it without the real node.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  up|down|status) exec python3 hack/localcluster.py "$1" --state-dir .cluster ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
