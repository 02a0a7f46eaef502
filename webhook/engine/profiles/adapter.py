"""Adapters: translate the app's output (status pages, StatsD) for the outside world."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.engine.profiles.common import build_container
from webhook.engine.settings import Profile, render_text


def values_for(profile: Profile, params: Mapping[str, str]) -> dict[str, str]:
    """Profile defaults overridden by the pod's ``adapter.PROFILE.PARAM`` annotations."""
    return profile.values(params)


def ports(profile: Profile, params: Mapping[str, str]) -> list[tuple[str, int]]:
    """(port name, port) the adapter will listen on, for collision checks before building."""
    values = values_for(profile, params)
    return [(name, int(render_text(port, values))) for name, port in profile.ports]


def build(
    profile: Profile,
    *,
    name: str,
    params: Mapping[str, str],
    resources: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    return build_container(profile, name=name, values=values_for(profile, params), resources=resources)
