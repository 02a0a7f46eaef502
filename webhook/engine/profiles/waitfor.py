"""Wait-for init containers: hold the pod until a TCP port, an HTTP URL or a DNS name answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.engine.profiles.common import build_container
from webhook.engine.request import WaitTarget
from webhook.engine.settings import Profile


def build(
    profile: Profile,
    *,
    name: str,
    target: WaitTarget,
    timeout: int,
    params: Mapping[str, str],
    resources: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    """The target reaches the script as a positional argument, never as script text."""
    values = {
        **profile.values(params),
        "kind": target.kind,
        "target": target.target,
        "timeout-seconds": str(timeout),
    }
    return build_container(profile, name=name, values=values, resources=resources)
