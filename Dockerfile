# Entourage webhook image.
#
# Build stage: install the package and its dependencies into a plain directory (/opt/entourage)
# with pip --target. Run stage: distroless Python (Debian 12, Python 3.11, no shell, user nonroot)
# with that directory on PYTHONPATH.
#
# Why not a virtualenv: a venv's bin/python is a symlink to the build image's interpreter
# (/usr/local/bin/python3.11), which does not exist in distroless (/usr/bin/python3.11); and the
# `entourage` console script's shebang would point there too. So the image runs the package as a
# module: ENTRYPOINT ["python3", "-m", "webhook"] is the `entourage` command, and the Helm chart's
# Deployment sets only `args` (serve --tls-cert-file ...), never `command`.
#
# Both stages are Python 3.11 on Debian 12 (glibc 2.36), so the compiled wheels (orjson,
# cryptography, uvloop, pydantic-core) built/installed in the first stage run in the second.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# README.md* : pyproject.toml names README.md as the long description; the glob keeps the build
# working while it is absent.
COPY pyproject.toml README.md* ./
COPY webhook ./webhook
RUN python -m pip install --no-compile --target /opt/entourage . \
 && python -m compileall -q -j 0 /opt/entourage \
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
