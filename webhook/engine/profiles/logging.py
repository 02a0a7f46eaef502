"""The logging-agent sidecar: shares the app's log directories and ships their files.

The agent mounts each shared volume under its own directory, ``AGENT_LOG_ROOT`` followed by the
app's path (``/var/log/app`` → ``/var/run/entourage/logs/var/log/app``), never at the app's path
itself: a pod author chooses that path, and a volume mounted over ``/usr/local/bin`` in the agent
would put the author's programs in place of its own. Only volumes that can hold the app's logs
are shared; configuration and credential volumes never are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from webhook.engine import grammar
from webhook.engine.profiles.common import build_container
from webhook.engine.settings import Profile

AGENT_LOG_ROOT = "/var/run/entourage/logs"
"""Where the agent mounts the shared directories: a directory of no image's own."""

NEVER_SHARED = ("secret", "configMap", "projected", "downwardAPI")
"""Volume types the agent never mounts: they hold credentials or configuration, are read-only to
the app (so they hold no logs), and a service-account token is a ``projected`` volume."""


class LogShare(NamedTuple):
    """One shared directory: the volume, its path in the app, and the part of the volume the app
    mounts there (the agent mounts the same part). A tuple: part of the shared container's key."""

    volume: str
    path: str
    sub_path: tuple[tuple[str, str], ...] = ()
    """``(("subPath", …),)`` or ``(("subPathExpr", …),)`` from the app's own mount, or empty."""

    @property
    def agent_path(self) -> str:
        return AGENT_LOG_ROOT + self.path


def mounts_by_path(mounts: Sequence[Any]) -> dict[str, Mapping[str, Any]]:
    """The app container's mounts by normalised path (the first one wins, as it is the one shown)."""
    found: dict[str, Mapping[str, Any]] = {}
    for mount in mounts:  # objects: inject checks volumeMounts before building
        path = mount.get("mountPath")
        if type(path) is str and type(mount.get("name")) is str:
            found.setdefault(grammar.normalise_path(path), mount)
    return found


def share_existing(mount: Mapping[str, Any], volume: Mapping[str, Any] | None, path: str) -> LogShare | str:
    """The app's own mount at ``path`` as a LogShare, or why it cannot be shared (a sentence)."""
    name = mount["name"]
    kind = next((kind for kind in NEVER_SHARED if volume is not None and volume.get(kind) is not None), None)
    if kind is not None:
        return (
            f"the app mounts volume {name!r} ({kind}) there; {', '.join(NEVER_SHARED)} volumes are never "
            "shared with the logging agent: write logs to a directory of their own"
        )
    sub_path = tuple((key, mount[key]) for key in ("subPath", "subPathExpr") if isinstance(mount.get(key), str) and mount[key])
    if any("$(" in value for _, value in sub_path):
        # The kubelet expands it with the app container's environment, which the agent has not.
        return (
            f"the app mounts volume {name!r} there with subPathExpr {sub_path[0][1]!r}, which depends on its own "
            "environment; the logging agent cannot mount the same directory: use subPath or another directory"
        )
    return LogShare(name, path, sub_path)


def identity_env(container_name: str) -> list[dict[str, Any]]:
    """The pod's identity in the agent's environment, for records that say where they come from."""
    return [
        {"name": "ENTOURAGE_POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        {"name": "ENTOURAGE_POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {"name": "ENTOURAGE_CONTAINER_NAME", "value": container_name},
    ]


def build(
    profile: Profile,
    *,
    name: str,
    shares: Sequence[LogShare],
    app_container: str,
    params: Mapping[str, str],
    resources: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    """The agent, reading each shared directory read-only under AGENT_LOG_ROOT."""
    values: dict[str, Any] = {
        **profile.values(params),
        "paths": [share.agent_path for share in shares],
        "path-globs": ",".join(f"{share.agent_path}/*" for share in shares),
        "path-map": [f"{share.agent_path}={share.path}" for share in shares],
    }
    container = build_container(profile, name=name, values=values, resources=resources, env=identity_env(app_container))
    container["volumeMounts"] = [
        {"name": share.volume, "mountPath": share.agent_path, "readOnly": True, **dict(share.sub_path)} for share in shares
    ]
    return container
