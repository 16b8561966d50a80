#!/usr/bin/env bash
# make cluster-up|cluster-down|cluster-status: the local cluster in .cluster/.
# CLUSTER_NODE=kwok (make cluster-up CLUSTER_NODE=kwok) starts it without the real node.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  up|down|status) PYTHONPATH=hack exec python3 -m aiops_harness.localcluster "$1" --state-dir .cluster ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
