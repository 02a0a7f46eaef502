# Entourage webhook image.
#
# Build stage: install the package and its dependencies into a plain directory (/opt/entourage)
# with pip --target, and the hot path compiled with mypyc next to it (webhook/_compiled, which
# webhook/compiled.py uses only while it matches the sources beside it; the full python image has
# the C compiler). Run stage: distroless Python (Debian 12, Python 3.11, no shell, user nonroot)
# with that directory on PYTHONPATH. If the compiled build ever failed to load there (it is built
# against the build stage's CPython 3.11, the run stage has Debian's 3.11), the server would run
# the same code interpreted and log why in its "serving" line (field "code").
#
# Why not a virtualenv: a venv's bin/python is a symlink to the build image's interpreter
# (/usr/local/bin/python3.11), which does not exist in distroless (/usr/bin/python3.11); and the
# `entourage` console script's shebang would point there too. So the image runs the package as a
# module: ENTRYPOINT ["python3", "-m", "webhook"] is the `entourage` command, and the Helm chart's
# Deployment sets only `args` (serve --tls-cert-file ...), never `command`.
#
# Both stages are Python 3.11 on Debian 12 (glibc 2.36), so the compiled wheels (orjson,
# cryptography, uvloop, pydantic-core) built/installed in the first stage run in the second.

# Reproducible: every Python file in the image is named, by version and sha256, in
# requirements/image.lock (the [project] dependencies) or requirements/build.lock (setuptools, to
# build our own wheel), both written by `make lock` and checked by tests/test_dockerfile.py. pip
# installs them with --require-hashes --no-deps --only-binary=:all: (nothing resolved, nothing
# compiled, a changed file is an error), then the package itself with --no-deps --no-index
# --no-build-isolation (nothing fetched). The .pyc files use unchecked hashes, not mtimes.
#
# Base images: pinned by tag here, because no digest could be verified where this file was
# written (no registry access). To pin them, resolve each tag's multi-arch index digest and
# append it to the tag on its FROM line (`NAME:TAG@sha256:...`; the tag stays for readers):
#   crane digest python:3.11-bookworm
#   crane digest gcr.io/distroless/python3-debian12:nonroot
# (or `docker buildx imagetools inspect NAME:TAG`, the "Digest:" line). tests/test_dockerfile.py
# accepts either form.

FROM python:3.11-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The dependencies first (their layer is reused while the locks do not change): the image's into
# /opt/entourage; the build backend and mypyc, with the image's dependencies again (mypyc
# type-checks the code against them), into this stage's own Python.
COPY requirements/image.lock requirements/build.lock ./requirements/
RUN python -m pip install --require-hashes --no-deps --only-binary=:all: --no-compile \
      --target /opt/entourage -r requirements/image.lock \
 && python -m pip install --require-hashes --no-deps --only-binary=:all: -r requirements/image.lock -r requirements/build.lock \
 && rm -rf /opt/entourage/bin
# README.md* : pyproject.toml names README.md as the long description; the glob keeps the build
# working while it is absent.
COPY pyproject.toml README.md* ./
COPY webhook ./webhook
COPY scripts/compile.py ./scripts/compile.py
RUN python scripts/compile.py \
 && python -m pip install --no-deps --no-index --no-build-isolation --no-compile --target /opt/entourage . \
 && cp -r webhook/_compiled /opt/entourage/webhook/_compiled \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/entourage \
 && rm -rf /opt/entourage/bin

FROM gcr.io/distroless/python3-debian12:nonroot
LABEL org.opencontainers.image.title="entourage" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that injects logging agents, ambassadors, adapters and wait-for init containers" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build --chown=0:0 /opt/entourage /opt/entourage
# The root filesystem is mounted read-only in the cluster: never try to write .pyc files
# (they were compiled in the build stage).
ENV PYTHONPATH=/opt/entourage \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# distroless' "nonroot" user; the chart's securityContext uses the same UID/GID.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["python3", "-m", "webhook"]
CMD ["serve"]
