"""The logging-agent sidecar: shares the app's log directories and ships their files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webhook.engine.profiles.common import build_container
from webhook.engine.settings import Profile


def build(
    profile: Profile,
    *,
    name: str,
    mounts: Sequence[tuple[str, str]],
    params: Mapping[str, str],
    resources: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    """``mounts`` are (volume name, directory) pairs, mounted read-only at the app's own paths."""
    paths = [path for _, path in mounts]
    values: dict[str, Any] = {
        **profile.values(params),
        "paths": paths,
        "path-globs": ",".join(f"{path}/*" for path in paths),
    }
    container = build_container(profile, name=name, values=values, resources=resources)
    container["volumeMounts"] = [{"name": volume, "mountPath": path, "readOnly": True} for volume, path in mounts]
    return container
