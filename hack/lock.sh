#!/usr/bin/env bash
# Regenerate the images' hash-locked requirements (make lock): runtime/requirements.lock,
# operator/requirements.lock and hack/build-requirements.lock (setuptools, to build our own two
# packages without an unpinned download). Resolved for CPython 3.11 on x86_64 Linux, the images'
# Python; every file of each pinned version is hashed. uv (pinned below, from PyPI) resolves.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/versions.sh
UV_VERSION=0.13.9
tool="$AIOPS_CACHE_DIR/tools/uv-$UV_VERSION"
if [[ ! -x "$tool/bin/uv" ]]; then
  python3 -m venv "$tool.tmp"
  "$tool.tmp/bin/pip" install --quiet "uv==$UV_VERSION"
  rm -rf "$tool" && mv "$tool.tmp" "$tool"
  # The venv's scripts name their interpreter by absolute path: fix them after the move.
  sed -i "1s|$tool.tmp|$tool|" "$tool"/bin/uv "$tool"/bin/pip* 2>/dev/null || true
fi
compile() {
  "$tool/bin/uv" pip compile "$@" --generate-hashes --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --no-header --quiet
}
compile runtime/pyproject.toml -o runtime/requirements.lock
compile operator/pyproject.toml -o operator/requirements.lock
echo "setuptools>=69" | compile - -o hack/build-requirements.lock
echo "lock: runtime/requirements.lock operator/requirements.lock hack/build-requirements.lock"
