#!/usr/bin/env bash
# Fetches the assets of the runtime's /docs (Swagger UI) and /redoc (ReDoc) pages from the npm
# registry at pinned versions into runtime/aiops_runtime/static/ and checks them against the
# committed SHA256SUMS there. The assets are committed, so installing the runtime stays offline;
# this script is for bumping them (make docs-assets).
#   hack/docs-assets.sh            re-fetch and check (fails when a byte differs)
#   hack/docs-assets.sh --update   re-fetch and rewrite SHA256SUMS (after changing a version)
set -euo pipefail
SWAGGER_UI_VERSION=5.35.0   # npm swagger-ui-dist (Apache-2.0)
REDOC_VERSION=2.5.4         # npm redoc (MIT)

root=$(cd "$(dirname "$0")/.." && pwd)
static=$root/runtime/aiops_runtime/static
update=false
[ "${1:-}" = --update ] && update=true
command -v npm >/dev/null || { echo "error: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/docs-assets.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI_VERSION" "redoc@$REDOC_VERSION" >/dev/null)
mkdir -p "$work/swagger-ui" "$work/redoc"
tar -xzf "$work/swagger-ui-dist-$SWAGGER_UI_VERSION.tgz" -C "$work/swagger-ui" --strip-components=1
tar -xzf "$work/redoc-$REDOC_VERSION.tgz" -C "$work/redoc" --strip-components=1

mkdir -p "$static/swagger-ui" "$static/redoc"
for file in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE; do
  cp "$work/swagger-ui/$file" "$static/swagger-ui/$file"
done
cp "$work/redoc/bundles/redoc.standalone.js" "$work/redoc/bundles/redoc.standalone.js.LICENSE.txt" \
  "$work/redoc/LICENSE" "$static/redoc/"

cd "$static"
if $update; then
  find swagger-ui redoc -type f | LC_ALL=C sort | xargs sha256sum > SHA256SUMS
  echo ">> docs assets: swagger-ui-dist $SWAGGER_UI_VERSION, redoc $REDOC_VERSION; SHA256SUMS rewritten"
else
  sha256sum --quiet -c SHA256SUMS
  echo ">> docs assets: swagger-ui-dist $SWAGGER_UI_VERSION, redoc $REDOC_VERSION match SHA256SUMS"
fi
