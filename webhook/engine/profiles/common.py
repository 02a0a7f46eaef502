"""What every injected container shares: rendering a profile into a container, resources, names."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from webhook.engine import caches, frozen, patch, status
from webhook.engine.quantity import parse_quantity
from webhook.engine.settings import Profile, render_text

MAX_NAME = 63
SHARED_LIMIT = 512
"""Distinct built containers kept for reuse (each a few KB)."""
SHARED_BYTES = 16 * 1024 * 1024
"""And at most this much of them (their JSON, its base64 and their keys): a container with a
4 KB script is about 12 KB, so the entry bound is the one that normally applies."""

Values = Mapping[str, "str | Sequence[str]"]


def render_args(templates: Iterable[str], values: Values) -> list[str]:
    """Fill placeholders; an argument that is exactly ``{list}`` expands into one argument per item."""
    rendered: list[str] = []
    scalars = {name: value for name, value in values.items() if isinstance(value, str)}
    for template in templates:
        whole = template[1:-1] if template.startswith("{") and template.endswith("}") else None
        if whole is not None and not isinstance(values.get(whole, ""), str):
            rendered.extend(values[whole])
        else:
            rendered.append(render_text(template, scalars))
    return rendered


def merge_resources(
    profile: Profile, overrides: Mapping[tuple[str, str], str], *, key_prefix: str
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The profile's resources with annotation overrides; problems if a request ends above its limit."""
    resources = {section: dict(amounts) for section, amounts in profile.resources.items()}
    for (section, resource), amount in overrides.items():
        resources.setdefault(section, {})[resource] = amount
    problems = []
    for resource, request in resources.get("requests", {}).items():
        limit = resources.get("limits", {}).get(resource)
        if limit is not None and parse_quantity(request) > parse_quantity(limit):
            problems.append(
                f"{key_prefix}-{resource}-request: {request!r}: above the {resource} limit {limit} "
                f"(set {key_prefix}-{resource}-limit as well)"
            )
    return resources, problems


def build_container(
    profile: Profile,
    *,
    name: str,
    values: Values,
    resources: Mapping[str, Mapping[str, str]],
    args: Sequence[str] | None = None,
    env: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A container from a profile: pinned image, rendered command, restricted securityContext.
    ``env`` comes before the profile's own, which may refer to it as ``$(NAME)``."""
    container: dict[str, Any] = {
        "name": name,
        "image": profile.image,
        "imagePullPolicy": profile.image_pull_policy,
        "command": list(profile.command),
    }
    rendered_args = render_args(profile.args if args is None else args, values)
    if rendered_args:
        container["args"] = rendered_args
    if env or profile.env:
        own = [{"name": env_name, "value": render_text(value, _scalars(values))} for env_name, value in profile.env]
        container["env"] = [*env, *own]
    if profile.ports:
        container["ports"] = [
            {"name": port_name, "containerPort": int(render_text(port, _scalars(values))), "protocol": "TCP"}
            for port_name, port in profile.ports
        ]
    container["resources"] = {section: dict(amounts) for section, amounts in resources.items()}
    container["securityContext"] = orjson.loads(_security_context_json(profile))
    # The message a failing container leaves (e.g. "timed out waiting for db:5432") shows in
    # `kubectl describe pod` without digging into logs.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


_shared = caches.cache("containers", max_entries=SHARED_LIMIT, max_bytes=SHARED_BYTES, on_evict=patch.forget)


def shared(key: Hashable, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The container built for ``key`` (everything it depends on), built once and then shared.

    The pods of one workload ask for the same containers, and building one (rendering scripts,
    copying resources and securityContext) cost more than the rest of an injection. The result
    is frozen (``frozen.freeze``): a caller that changed it would change every later pod's
    container while the patches already encoded carry the old one.
    """
    container = _shared.get(key)
    if container is None:
        container = frozen.freeze(build())
        size = patch.remember(container)  # and its JSON, for every patch that will carry it
        _shared.put(key, container, size + status.memo_bytes(container) + caches.key_size(key))
        if key not in _shared.entries:  # too large to keep: its encoding goes too
            patch.forget(container)
    return container  # type: ignore[no-any-return]


def _scalars(values: Values) -> dict[str, str]:
    return {name: value for name, value in values.items() if isinstance(value, str)}


# Keyed by a profile of the loaded configuration, never by anything a request holds: not in
# caches.CACHES, and 64 entries of a few hundred bytes need no byte bound.
@functools.lru_cache(maxsize=64)
def _security_context_json(profile: Profile) -> bytes:
    """Each container gets its own copy (builders may add a capability); decoding this is the
    cheapest deep copy of the nested dicts."""
    return orjson.dumps(profile.security_context)


class NameAllocator:
    """Hands out DNS-1123 names that collide with nothing the pod already has or we added."""

    def __init__(self, taken: Iterable[str]) -> None:
        self.taken = set(taken)
        self.counters: dict[str, int] = {}
        """The last suffix tried per base: a pod holding base-2 … base-N is searched once, not per claim."""

    def claim(self, base: str) -> str:
        base = slug(base)
        candidate, counter = base, self.counters.get(base, 1)
        if counter > 1:
            candidate = self._suffixed(base, counter)
        while candidate in self.taken:
            counter += 1
            candidate = self._suffixed(base, counter)
        self.counters[base] = counter
        self.taken.add(candidate)
        return candidate

    @staticmethod
    def _suffixed(base: str, counter: int) -> str:
        suffix = f"-{counter}"
        return base[: MAX_NAME - len(suffix)].rstrip("-") + suffix


_slugs = caches.cache("slugs", max_entries=1024, max_bytes=1024 * 1024)


def slug(text: str) -> str:
    """Lower-case DNS label from arbitrary validated text (``db.prod:5432`` → ``db-prod-5432``)."""
    found = _slugs.get(text)
    if found is None:
        label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
        found = _slugs.put(text, label[:MAX_NAME].rstrip("-") or "x", 2 * caches.key_size(text))
    return found  # type: ignore[no-any-return]
