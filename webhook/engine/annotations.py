"""The annotation contract: one table of keys, each with its documentation and its parser.

Keys live under ``<prefix>/`` (``entourage.dev/`` by default). ``KEYS`` maps every fixed key to a
``KeySpec`` that documents it (the README's table and ``explain`` read it) and parses it into the
``InjectionRequest`` field it fills; profile parameters (``<kind>.<profile>.<param>``) are parsed
by the types their profiles declare. ``parse_annotations`` raises ``PodDenied`` listing every
problem at once, each naming the key, the value and what was expected. Values reach container
commands only through these parsers, whose character sets exclude anything a shell would interpret.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from webhook.engine import caches, grammar
from webhook.engine.quantity import parse_quantity
from webhook.engine.request import InjectionRequest, Route, WaitKind, WaitTarget
from webhook.engine.settings import ANNOTATION_KINDS, Settings
from webhook.errors import PodDenied

MAX_VALUE_LENGTH = 4096
"""Longer values are refused before parsing: no legitimate annotation of ours comes close."""
MAX_SUGGESTIONS = 5
"""Unknown keys that get a "did you mean" (about 0.45 ms each); the rest are only counted."""
MAX_SUGGESTED_KEY = 100
"""Keys longer than this get no suggestion: every known key is far shorter."""

STATUS = "status"
INJECT = "inject"

RESOURCE_FIELDS = {
    "cpu-request": ("requests", "cpu"),
    "cpu-limit": ("limits", "cpu"),
    "memory-request": ("requests", "memory"),
    "memory-limit": ("limits", "memory"),
}
"""``<kind>-<field>`` annotation suffixes → (resources section, resource)."""

Parser = Callable[[str, Settings], Any]
"""Value → what the request holds for it; raises ValueError saying what was expected."""


@dataclass(frozen=True)
class KeySpec:
    """A documented annotation key: its grammar in words, an example, its effect, its parser."""

    grammar: str
    example: str
    effect: str
    parse: Parser | None = None
    """None: read before parsing (``inject``) or written by Entourage (``status``)."""
    field: str = ""
    """The InjectionRequest field the parsed value fills; empty for resource overrides and checks."""
    resource: tuple[str, str, str] | None = None
    """For ``<kind>-<field>`` keys: (annotation kind, resources section, resource)."""


def _show(value: str) -> str:
    """Quote a value for a message: repr() makes newlines and look-alike characters visible."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


show_value = _show
"""How messages quote a value, for those who locate them (``admission/validate.locate``)."""


class _Problems:
    """Collects every failure of one pod so the user sees them all at once."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.messages: list[str] = []

    def add(self, key: str, value: str | None, reason: str) -> None:
        shown_key = key if len(key) <= 80 else key[:77] + "..."
        shown_value = "" if value is None else f" {_show(value)}:"
        self.messages.append(f"{self.prefix}/{shown_key}:{shown_value} {reason}")


def _items(text: str, *, limit: int, what: str, parse: Callable[[str], Any] = str) -> list[Any]:
    """Split a list value and parse each item; an error names the item it is about."""
    items = grammar.split_list(text)
    if len(items) > limit:
        raise ValueError(f"at most {limit} {what} are allowed, got {len(items)}")
    if len(set(items)) != len(items):
        raise ValueError(f"the same {what[:-1]} is listed twice")
    parsed = []
    for item in items:
        try:
            parsed.append(parse(item))
        except ValueError as error:
            raise ValueError(f"{_show(item)}: {error}" if len(items) > 1 else str(error)) from None
    return parsed


def parse_route(item: str) -> Route:
    """``[LOCAL_PORT=]host:port`` or ``[LOCAL_PORT=]tls://host:port``."""
    local_text, sep, upstream = item.partition("=")
    if not sep:
        local_text, upstream = "", item
    tls = upstream.startswith("tls://")
    address = upstream[len("tls://") :] if tls else upstream
    if "://" in address:
        raise ValueError("the only upstream scheme is tls:// (plain TCP has none)")
    host, port = grammar.parse_host_port(address)
    local_port = grammar.parse_port(local_text) if sep else port
    return Route(local_port=local_port, host=host, port=port, tls=tls)


def parse_wait_target(item: str) -> WaitTarget:
    """``host:port``, ``tcp://host:port``, ``http(s)://host[:port][/path]`` or ``dns://name``."""
    scheme, sep, rest = item.partition("://")
    if not sep:
        scheme, rest = "tcp", item
    if scheme == "tcp":
        host, port = grammar.parse_host_port(rest)
        return WaitTarget("tcp", grammar.format_host_port(host, port), host)
    if scheme == "dns":
        return WaitTarget("dns", grammar.parse_host(rest), rest.lower())
    if scheme in ("http", "https"):
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        authority, path = rest[:cut], rest[cut:]
        if "@" in authority:
            raise ValueError("credentials in URLs are not allowed")
        if path.startswith("?"):
            path = "/" + path
        path = grammar.parse_url_path(path) if path else "/"
        if authority.startswith("[") and authority.endswith("]"):
            host = grammar.parse_bracketed_ipv6(authority)
            hostport = f"[{host}]"
        elif authority.startswith("[") or authority.count(":") == 1:
            host, port = grammar.parse_host_port(authority)
            hostport = grammar.format_host_port(host, port)
        else:
            host = hostport = grammar.parse_host(authority)
        kind: WaitKind = "https" if scheme == "https" else "http"
        return WaitTarget(kind, f"{kind}://{hostport}{path}", host)
    raise ValueError("expected tcp://, http://, https:// or dns:// (or host:port)")


def _inject(text: str, settings: Settings) -> None:
    if text not in ("true", "false"):
        raise ValueError('expected "false" (or "true", which changes nothing)')


def _logging(text: str, settings: Settings) -> str | None:
    if text == "true":
        return settings.defaults.logging
    if text == "false":
        return None
    if settings.profile("logging", text) is None:
        raise ValueError(f'expected "true", "false" or a logging profile: {", ".join(sorted(settings.profiles["logging"]))}')
    return text


def _logging_paths(text: str, settings: Settings) -> tuple[str, ...]:
    paths = _items(text, limit=settings.limits.max_logging_paths, what="paths", parse=grammar.parse_log_directory)
    if len(set(paths)) != len(paths):
        raise ValueError("the same path is listed twice")
    for outer in paths:
        for inner in paths:
            if inner.startswith(outer + "/"):
                raise ValueError(f"{inner} is inside {outer}; list only one of them")
    return tuple(paths)


def _routes(text: str, settings: Settings) -> tuple[Route, ...]:
    return tuple(_items(text, limit=settings.limits.max_ambassador_routes, what="routes", parse=parse_route))


def _wait_targets(text: str, settings: Settings) -> tuple[WaitTarget, ...]:
    targets = _items(text, limit=settings.limits.max_wait_for_targets, what="targets", parse=parse_wait_target)
    if len({target.target for target in targets}) != len(targets):
        raise ValueError("the same target is listed twice")
    return tuple(targets)


def _adapters(text: str, settings: Settings) -> tuple[str, ...]:
    if text == "false":
        return ()
    names = _items(text, limit=settings.limits.max_adapters, what="adapters")
    known = settings.profiles.get("adapter", {})
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"no adapter profile {unknown[0]!r}; known: {', '.join(sorted(known)) or 'none'}")
    return tuple(names)


def _quantity(resource: str) -> Parser:
    def parse(text: str, settings: Settings) -> str:
        amount: Decimal = parse_quantity(text)
        limits = settings.limits
        maximum, maximum_text = (limits.max_cpu, limits.max_cpu_text) if resource == "cpu" else (limits.max_memory, limits.max_memory_text)
        if amount > maximum:
            raise ValueError(f"above the maximum of {maximum_text} set in the configuration")
        if amount == 0:
            raise ValueError("must be above zero")
        return text

    return parse


def _grammar(parse: Callable[[str], Any]) -> Parser:
    return lambda text, settings: parse(text)


KEYS: dict[str, KeySpec] = {
    INJECT: KeySpec('"false"', "false", "no injection for this pod at all, whatever else it carries", _inject),
    "logging": KeySpec(
        '"true", "false" or a logging profile name', "true", "a logging-agent sidecar that ships the app's log files", _logging, "logging"
    ),
    "logging-paths": KeySpec(
        "comma-separated absolute directories, not system ones (/usr, /etc, /var/run, …)",
        "/var/log/app,/var/log/audit",
        "each is shared between the app and the agent (read-only in the agent)",
        _logging_paths,
        "logging_paths",
    ),
    "logging-container": KeySpec(
        "a container name", "app", "the app container whose files are shipped", _grammar(grammar.parse_dns_label), "logging_container"
    ),
    "ambassador": KeySpec(
        "comma-separated [LOCAL_PORT=]UPSTREAM; UPSTREAM = host:port or tls://host:port",
        "6379=redis.cache:6379",
        "a proxy on 127.0.0.1:LOCAL_PORT forwarding to UPSTREAM",
        _routes,
        "routes",
    ),
    "wait-for": KeySpec(
        "comma-separated host:port, tcp://host:port, http(s)://host[:port][/path], dns://name",
        "tcp://db:5432,dns://my-db-service",
        "one init container per target, waiting until it answers",
        _wait_targets,
        "wait_for",
    ),
    "wait-for-timeout": KeySpec(
        "a duration such as 90s, 5m, 1h30m; 0 = forever",
        "5m",
        "how long each wait-for container waits before failing",
        _grammar(grammar.parse_duration),
        "wait_for_timeout",
    ),
    "adapter": KeySpec(
        "comma-separated adapter profile names", "nginx-prometheus", "adapter containers from the catalog", _adapters, "adapters"
    ),
    "native-sidecars": KeySpec(
        '"true" or "false"',
        "true",
        "sidecars become init containers with restartPolicy: Always (Kubernetes >= 1.29)",
        _grammar(grammar.parse_bool),
        "native_sidecars",
    ),
    "ambassadors-first": KeySpec(
        '"true" or "false"',
        "false",
        "native sidecars: ambassadors start before the pod's own init containers, which can use them (default true)",
        _grammar(grammar.parse_bool),
        "ambassadors_first",
    ),
    STATUS: KeySpec("written by Entourage (JSON)", "", "what was injected; a pod that has it gets nothing more"),
}
for _kind in ANNOTATION_KINDS.values():
    for _suffix, (_section, _resource) in RESOURCE_FIELDS.items():
        KEYS[f"{_kind}-{_suffix}"] = KeySpec(
            "a Kubernetes quantity",
            "50m" if _resource == "cpu" else "64Mi",
            f"overrides the {_kind} containers' {_suffix.replace('-', ' ')}",
            _quantity(_resource),
            resource=(_kind, _section, _resource),
        )


# Keyed by the Settings object (one per loaded configuration), never by a request.
@functools.lru_cache(maxsize=8)
def _known_keys(settings: Settings) -> list[str]:
    keys = set(KEYS)
    for kind, profiles in settings.profiles.items():
        for name, profile in profiles.items():
            keys.update(f"{ANNOTATION_KINDS[kind]}.{name}.{param}" for param in profile.params)
    return sorted(keys)


def suggest_key(key: str, settings: Settings) -> str:
    close = difflib.get_close_matches(key, _known_keys(settings), n=1, cutoff=0.7) if len(key) <= MAX_SUGGESTED_KEY else []
    return f"did you mean {settings.annotation_prefix}/{close[0]}?" if close else "not a key Entourage knows"


def check_key_count(own: Mapping[str, Any], settings: Settings) -> None:
    """Deny a pod with more keys under our prefix than the limit, before any per-key work."""
    limit = settings.limits.max_annotation_keys
    if len(own) > limit:
        raise PodDenied(
            [
                f"{len(own)} annotations under {settings.annotation_prefix}/ (the pod's and its namespace's); at most {limit} are allowed (limits.maxAnnotationKeys)"
            ]
        )


def own_annotations(annotations: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """Our keys without the prefix; the fast path asks only whether this is empty.

    Every pod passes through here, and a pod may carry 80,000 foreign keys (within Kubernetes'
    256 KiB): the keys are joined and searched in C, a fifth of the time of a loop over them."""
    head, marker = prefix + "/", "\0" + prefix + "/"
    keys = "\0" + "\0".join(annotations) + "\0"
    if keys.count("\0") != len(annotations) + 1 or 8 * keys.count(marker) > len(annotations):
        # A key holds a NUL (only a loop reads it right), or many are ours (a loop is as fast).
        return {key[len(head) :]: value for key, value in annotations.items() if key.startswith(head)}
    own = {}
    start = keys.find(marker)
    while start >= 0:
        end = keys.index("\0", start + 1)
        name = keys[start + len(marker) : end]
        own[name] = annotations[head + name]
        start = keys.find(marker, end)
    return own


def parse_annotations(own: Mapping[str, Any], settings: Settings) -> InjectionRequest:
    """Validate our annotations (prefix removed) into an InjectionRequest, or raise PodDenied.

    The pods of one workload carry the same annotations (a Deployment scaled to 500 replicas is
    500 identical sets), so valid results are memoised by settings object and exact keys and
    values. InjectionRequest is frozen and only read, so sharing one between pods is safe.
    """
    check_key_count(own, settings)
    if not all(type(value) is str for value in own.values()):
        return _parse_annotations(own, settings)
    items = tuple(own.items())
    key = (items, settings)
    request = _parses.get(key)
    if request is None:
        request = _parse_annotations(own, settings)
        # The request holds what its values hold, a few times over at most (parsed routes, targets).
        _parses.put(key, request, 3 * caches.key_size(items))
    return request


_parses = caches.cache("annotation parses", max_entries=256, max_bytes=8 * 1024 * 1024)
"""Valid parses by (annotations, settings object); a denial raises and is not kept."""


def _param_key(key: str, settings: Settings) -> tuple[str, str, str] | None:
    """``<kind>.<profile>.<param>`` → (config kind, profile, param) when that profile declares it."""
    kind_name, _, rest = key.partition(".")
    config_kind = next((kind for kind, name in ANNOTATION_KINDS.items() if name == kind_name), None)
    profile_name, _, param_name = rest.partition(".")
    profile = settings.profile(config_kind, profile_name) if config_kind else None
    if config_kind is None or profile is None or param_name not in profile.params:
        return None
    return config_kind, profile_name, param_name


def _parse_annotations(own: Mapping[str, Any], settings: Settings) -> InjectionRequest:
    problems = _Problems(settings.annotation_prefix)
    fields: dict[str, Any] = {"wait_for_timeout": settings.defaults.wait_for_timeout}
    resources: dict[str, dict[tuple[str, str], str]] = {}
    params: dict[tuple[str, str], dict[str, str]] = {}
    values: dict[str, str] = {}
    unknown = 0
    for key, value in own.items():
        if not isinstance(value, str):
            problems.add(key, None, f"annotation values are strings, got {json_type(value)}")
            continue
        if len(value) > MAX_VALUE_LENGTH:
            problems.add(key, value, f"longer than {MAX_VALUE_LENGTH} characters")
            continue
        values[key] = value
        spec = KEYS.get(key)
        try:
            if spec is None:
                param = _param_key(key, settings)
                if param is None:
                    unknown += 1
                    if unknown <= MAX_SUGGESTIONS:
                        problems.add(key, value, f"unknown annotation; {suggest_key(key, settings)}")
                    continue
                kind, profile, name = param
                params.setdefault((kind, profile), {})[name] = settings.profiles[kind][profile].params[name].parse(value)
            elif spec.parse is None:
                continue
            elif spec.resource is not None:
                kind, section, resource = spec.resource
                resources.setdefault(kind, {})[(section, resource)] = spec.parse(value, settings)
            else:
                parsed = spec.parse(value, settings)
                if spec.field:
                    fields[spec.field] = parsed
        except ValueError as error:
            problems.add(key, value, str(error))
    if unknown > MAX_SUGGESTIONS:
        problems.messages.append(f"and {unknown - MAX_SUGGESTIONS} more unknown keys under {settings.annotation_prefix}/")
    if problems.messages:
        raise PodDenied(problems.messages)
    request = InjectionRequest(resources=resources, params=params, **fields)
    return dataclasses.replace(request, warnings=tuple(_unused(request, values, settings)))


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages (never the value: it may be huge)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return "null" if value is None else type(value).__name__


def _unused(request: InjectionRequest, values: Mapping[str, str], settings: Settings) -> list[str]:
    """Keys that are valid but have no effect get a warning (shown by kubectl), not a denial."""
    warnings: list[str] = []
    prefix = settings.annotation_prefix
    if not request.logging:
        for key in ("logging-paths", "logging-container"):
            if key in values:
                warnings.append(f"{prefix}/{key} has no effect without {prefix}/logging")
    if not request.wait_for and "wait-for-timeout" in values:
        warnings.append(f"{prefix}/wait-for-timeout has no effect without {prefix}/wait-for")
    used = {
        "logging": bool(request.logging),
        "ambassador": bool(request.routes),
        "adapter": bool(request.adapters),
        "wait-for": bool(request.wait_for),
    }
    for kind in request.resources:
        if not used[kind]:
            warnings.append(f"{prefix}/{kind}-* resources have no effect: no {kind} container is injected")
    selected = {("logging", request.logging), ("ambassador", settings.defaults.ambassador if request.routes else None)}
    selected.add(("waitFor", settings.defaults.wait_for if request.wait_for else None))
    selected |= {("adapter", name) for name in request.adapters}
    for config_kind, profile in request.params:
        if (config_kind, profile) not in selected:
            warnings.append(f"{prefix}/{ANNOTATION_KINDS[config_kind]}.{profile}.* has no effect: that profile is not used")
    return warnings
