"""The ambassador proxy: 127.0.0.1:LOCAL_PORT in the pod, forwarded to an external upstream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.engine.profiles.common import build_container, render_args
from webhook.engine.request import Route
from webhook.engine.settings import Profile

PRIVILEGED_PORT_LIMIT = 1024


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
    if route.local_port < PRIVILEGED_PORT_LIMIT:
        # Binding below 1024 as non-root needs this one capability, which `restricted` allows.
        container["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    ready = {"exec": {"command": render_args(profile.ready_command, values)}}
    if native:
        # The kubelet starts the next container only once a native sidecar's startupProbe passes.
        container["startupProbe"] = {**ready, "periodSeconds": 1, "timeoutSeconds": 20, "failureThreshold": 30}
    else:
        # A postStart hook blocks the start of the following containers until it returns.
        container["lifecycle"] = {"postStart": ready}
    return container
