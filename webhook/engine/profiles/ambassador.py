"""The ambassador proxy: 127.0.0.1:LOCAL_PORT in the pod, forwarded to an external upstream.

A local port below 1024 is bound only where the pod's network namespace lets a non-root process
do so: ``NET_BIND_SERVICE`` added to a container cannot help, because Kubernetes puts added
capabilities in the bounding, permitted and effective sets, never the ambient set, and the
kernel clears them at ``execve`` by a non-root user; file capabilities on a profile's proxy
binary would be ignored too, under ``allowPrivilegeEscalation: false`` (measured: charts/entourage/README.md,
"Ambassador ports below 1024", and tests/test_privileged_ports.py). What works is the
``net.ipv4.ip_unprivileged_port_start`` sysctl, which the webhook cannot see when the runtime
sets it (containerd 2.x does, 1.x does not) and so asks the pod to set itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.engine.profiles.common import build_container, render_args
from webhook.engine.request import Route
from webhook.engine.settings import Profile

PRIVILEGED_PORT_LIMIT = 1024
"""The kernel's default ``net.ipv4.ip_unprivileged_port_start``: ports below need privilege."""
UNPRIVILEGED_PORT_START = "net.ipv4.ip_unprivileged_port_start"
_SYSCTL_NAMES = (UNPRIVILEGED_PORT_START, UNPRIVILEGED_PORT_START.replace(".", "/"))
"""Kubernetes accepts a sysctl name with dots or with slashes as separators."""


def bind_problem(local_port: int, spec: Mapping[str, Any]) -> str | None:
    """Why a non-root ambassador cannot bind ``local_port`` in this pod, or None when it can:
    a port of 1024 or more, or one the pod's own sysctl makes unprivileged."""
    if local_port >= PRIVILEGED_PORT_LIMIT:
        return None
    start = _unprivileged_port_start(spec)
    if isinstance(start, int) and start <= local_port:
        return None
    if start is None:
        found = "the pod's spec.securityContext.sysctls does not set it"
    elif isinstance(start, int):
        found = f"the pod's spec.securityContext.sysctls sets it to {start}"
    else:
        found = f"the pod's spec.securityContext.sysctls sets it to {start!r}, not an integer from 0 to 65535"
    return (
        f"local port {local_port} is below {PRIVILEGED_PORT_LIMIT}: the non-root ambassador binds it only where "
        f"{UNPRIVILEGED_PORT_START} is at most {local_port} (an added NET_BIND_SERVICE does not survive its execve), "
        f"and {found}; use a local port of {PRIVILEGED_PORT_LIMIT} or more, or set that sysctl in the pod's "
        f"spec.securityContext.sysctls to at most {local_port}"
    )


def _unprivileged_port_start(spec: Mapping[str, Any]) -> int | str | None:
    """The pod's own value of the sysctl: an int, the text of a malformed one, or None if unset."""
    context = spec.get("securityContext")
    sysctls = context.get("sysctls") if isinstance(context, Mapping) else None
    if not isinstance(sysctls, list):
        return None
    for sysctl in sysctls:
        if isinstance(sysctl, Mapping) and sysctl.get("name") in _SYSCTL_NAMES:
            value = sysctl.get("value")
            text = value if isinstance(value, str) else str(value)  # the API sends strings only
            if isinstance(value, str) and text.isascii() and text.isdecimal() and len(text) <= 5 and int(text) <= 65535:
                return int(text)
            return text[:64]
    return None


def build(
    profile: Profile,
    *,
    name: str,
    route: Route,
    params: Mapping[str, str],
    resources: Mapping[str, Mapping[str, str]],
    native: bool,
) -> dict[str, Any]:
    """One container per route; it must be listening before the app starts (probe or hook)."""
    values = {
        **profile.values(params),
        "local-port": str(route.local_port),
        "upstream-host": route.host,
        "upstream-port": str(route.port),
        "upstream": route.upstream,
    }
    container = build_container(
        profile, name=name, values=values, resources=resources, args=profile.tls_args if route.tls else profile.args
    )
    ready = {"exec": {"command": render_args(profile.ready_command, values)}}
    if native:
        # The kubelet starts the next container only once a native sidecar's startupProbe passes.
        container["startupProbe"] = {**ready, "periodSeconds": 1, "timeoutSeconds": 20, "failureThreshold": 30}
    else:
        # A postStart hook blocks the start of the following containers until it returns.
        container["lifecycle"] = {"postStart": ready}
    return container
