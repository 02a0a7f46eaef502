"""The status annotation: what was injected, recorded precisely enough to compare it later.

Injection writes it once per pod (``entourage.dev/status``); it marks the pod as injected (so a
reinvocation changes nothing) and lets ``entourage audit --outdated`` tell, without guessing from
container fields the apiserver defaults, which pods run companions that the current
configuration would render differently. Per component it keeps the profile, the profile's
version (a digest of its definition: the same for every pod, so metrics can count by it), the
image and a fingerprint of the rendered container (a digest of its JSON).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from webhook import __version__
from webhook.engine import frozen
from webhook.engine.settings import Profile

VERSION = 2
"""1: names only (initContainers, containers, volumes); 2: adds ``components`` and ``entourage``."""


@dataclass(frozen=True)
class Component:
    """One injected container as the status annotation records it."""

    name: str
    kind: str
    """The configuration's kind: waitFor, ambassador, logging or adapter."""
    profile: str
    profile_version: str
    image: str
    fingerprint: str

    def as_status(self) -> dict[str, str]:
        return {
            "name": self.name,
            "kind": self.kind,
            "profile": self.profile,
            "profileVersion": self.profile_version,
            "image": self.image,
            "fingerprint": self.fingerprint,
        }

    @functools.cached_property
    def status_json(self) -> str:
        """``as_status`` as JSON, encoded once: a shared container's Component serves every pod.
        Kept as text: a bytes object from orjson keeps its 4 KiB buffer (tracemalloc)."""
        return orjson.dumps(self.as_status()).decode()


def memo_bytes(container: Mapping[str, Any]) -> int:
    """What ``component`` keeps on a shared container (its Component and JSON; 470 bytes measured
    with tracemalloc for a 57-character name and an 86-character image), for the cache's bound."""
    return 350 + len(str(container.get("name", ""))) + len(str(container.get("image", "")))


def component(container: Mapping[str, Any], profile: Profile) -> Component:
    """The Component of an injected container rendered from ``profile``; memoised on a shared
    (frozen) container, which is rendered from that one profile."""
    known = container.component if isinstance(container, frozen.FrozenDict) else None
    if known is None:
        known = Component(
            container["name"], profile.kind, profile.name, profile_version(profile), container["image"], fingerprint(container)
        )
        if isinstance(container, frozen.FrozenDict):
            container.component = known
    return known


def digest(data: bytes) -> str:
    """16 hex digits: enough to tell versions apart, short enough for an annotation and a label."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@functools.lru_cache(maxsize=256)
def profile_version(profile: Profile) -> str:
    """A digest of everything the profile defines (profiles hash by identity: one per load).
    Unset fields are left out, so that a new optional profile field in a later release does not
    change the version of every existing profile."""
    defined = {field.name: getattr(profile, field.name) for field in dataclasses.fields(profile)}
    return digest(
        orjson.dumps({name: value for name, value in defined.items() if value not in ((), {}, None, "")}, option=orjson.OPT_SORT_KEYS)
    )


def fingerprint(container: Mapping[str, Any]) -> str:
    """A digest of the rendered container; kept on a shared (frozen) container, which pods reuse."""
    known = container.digest if isinstance(container, frozen.FrozenDict) else None
    if known is None:
        known = digest(orjson.dumps(container, option=orjson.OPT_SORT_KEYS))
        if isinstance(container, frozen.FrozenDict):
            container.digest = known
    return known


_HEAD = orjson.dumps({"version": VERSION, "entourage": __version__}).decode()[:-1]


def encode(sections: Mapping[str, list[str]], components: tuple[Component, ...]) -> str:
    """The annotation's JSON: ``{"version", "entourage", **sections, "components"}``, written from
    pieces, each component's encoded once (``Component.status_json``)."""
    listed = ",".join([component.status_json for component in components])
    middle = orjson.dumps(sections).decode()[1:-1]
    return "".join((_HEAD, "," if middle else "", middle, ',"components":[', listed, "]}"))


@dataclass(frozen=True)
class Recorded:
    """A status annotation as read back from a pod (any version)."""

    version: int
    entourage: str
    init_containers: tuple[str, ...]
    containers: tuple[str, ...]
    volumes: tuple[str, ...]
    components: tuple[Component, ...]
    """Empty for version 1, which did not record them."""


def read(text: str) -> Recorded | None:
    """The status annotation's content, or None when it is not one we wrote."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("version"), int):
        return None

    def names(key: str) -> tuple[str, ...]:
        value = data.get(key)
        return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()

    components: list[Component] = []
    for item in data.get("components") or []:
        if not isinstance(item, dict):
            continue
        fields = [item.get(key) for key in ("name", "kind", "profile", "profileVersion", "image", "fingerprint")]
        strings = [value for value in fields if isinstance(value, str)]
        if len(strings) == len(fields):
            components.append(Component(*strings))
    return Recorded(
        version=data["version"],
        entourage=str(data.get("entourage") or ""),
        init_containers=names("initContainers"),
        containers=names("containers"),
        volumes=names("volumes"),
        components=tuple(components),
    )
