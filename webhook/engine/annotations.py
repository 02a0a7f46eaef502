"""The annotation contract: every key, its grammar, and one parser per key; all failures reported together.

Keys live under ``<prefix>/`` (``entourage.dev/`` by default). ``parse_annotations`` turns a pod's
annotations into an ``InjectionRequest`` or raises ``PodDenied`` listing every problem, each
naming the key, the value and what was expected. Values reach container commands only through
these parsers, whose character sets exclude anything a shell would interpret.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.engine import grammar
from webhook.engine.quantity import parse_quantity
from webhook.engine.settings import ANNOTATION_KINDS, Settings
from webhook.errors import PodDenied

MAX_VALUE_LENGTH = 4096
"""Longer values are refused before parsing: no legitimate annotation of ours comes close."""

STATUS = "status"
INJECT = "inject"

RESOURCE_FIELDS = {
    "cpu-request": ("requests", "cpu"),
    "cpu-limit": ("limits", "cpu"),
    "memory-request": ("requests", "memory"),
    "memory-limit": ("limits", "memory"),
}
"""``<kind>-<field>`` annotation suffixes → (resources section, resource)."""


@dataclass(frozen=True)
class Route:
    """One ambassador route: 127.0.0.1:local_port → host:port, in TLS when ``tls``."""

    local_port: int
    host: str
    port: int
    tls: bool

    @property
    def upstream(self) -> str:
        return grammar.format_host_port(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.local_port}={'tls://' if self.tls else ''}{self.upstream}"


@dataclass(frozen=True)
class WaitTarget:
    """One wait-for target; ``target`` is exactly what the script receives as its argument."""

    kind: str  # tcp | http | https | dns
    target: str
    host: str


@dataclass(frozen=True)
class InjectionRequest:
    """What a pod asked for, validated; the engine turns it into containers and volumes."""

    logging: str | None = None
    logging_paths: tuple[str, ...] = ()
    logging_container: str | None = None
    routes: tuple[Route, ...] = ()
    wait_for: tuple[WaitTarget, ...] = ()
    wait_for_timeout: int = 300
    adapters: tuple[str, ...] = ()
    native_sidecars: bool | None = None
    resources: Mapping[str, Mapping[tuple[str, str], str]] = field(default_factory=dict)
    """Annotation kind (``wait-for``) → {(section, resource): quantity}."""
    params: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    """(config kind, profile) → {param: validated value}."""
    warnings: tuple[str, ...] = ()

    @property
    def wants_anything(self) -> bool:
        return bool(self.logging or self.routes or self.wait_for or self.adapters)


@dataclass(frozen=True)
class KeySpec:
    """A documented annotation key: its grammar in words and an example value."""

    grammar: str
    example: str
    effect: str


KEYS: dict[str, KeySpec] = {
    INJECT: KeySpec('"false"', "false", "no injection for this pod at all, whatever else it carries"),
    "logging": KeySpec('"true", "false" or a logging profile name', "true", "a logging-agent sidecar that ships the app's log files"),
    "logging-paths": KeySpec("comma-separated absolute directories", "/var/log/app,/var/log/audit", "each is shared between the app and the agent (read-only in the agent)"),
    "logging-container": KeySpec("a container name", "app", "the app container whose files are shipped"),
    "ambassador": KeySpec("comma-separated [LOCAL_PORT=]UPSTREAM; UPSTREAM = host:port or tls://host:port", "6379=redis.cache:6379", "a proxy on 127.0.0.1:LOCAL_PORT forwarding to UPSTREAM"),
    "wait-for": KeySpec("comma-separated host:port, tcp://host:port, http(s)://host[:port][/path], dns://name", "tcp://db:5432,dns://my-db-service", "one init container per target, waiting until it answers"),
    "wait-for-timeout": KeySpec("a duration such as 90s, 5m, 1h30m; 0 = forever", "5m", "how long each wait-for container waits before failing"),
    "adapter": KeySpec("comma-separated adapter profile names", "nginx-prometheus", "adapter containers from the catalog"),
    "native-sidecars": KeySpec('"true" or "false"', "true", "sidecars become init containers with restartPolicy: Always (Kubernetes >= 1.29)"),
    STATUS: KeySpec("written by Entourage (JSON)", "", "what was injected; a pod that has it gets nothing more"),
}
for _kind in ANNOTATION_KINDS.values():
    for _suffix in RESOURCE_FIELDS:
        KEYS[f"{_kind}-{_suffix}"] = KeySpec("a Kubernetes quantity", "50m" if "cpu" in _suffix else "64Mi", f"overrides the {_kind} containers' {_suffix.replace('-', ' ')}")


def _show(value: str) -> str:
    """Quote a value for a message: repr() makes newlines and look-alike characters visible."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


class _Problems:
    """Collects every failure of one pod so the user sees them all at once."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.messages: list[str] = []
        self.warnings: list[str] = []

    def add(self, key: str, value: str, reason: str) -> None:
        self.messages.append(f"{self.prefix}/{key}: {_show(value)}: {reason}")

    def warn(self, message: str) -> None:
        self.warnings.append(message)


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
        return WaitTarget(scheme, f"{scheme}://{hostport}{path}", host)
    raise ValueError("expected tcp://, http://, https:// or dns:// (or host:port)")


def _known_keys(settings: Settings) -> set[str]:
    keys = set(KEYS)
    for kind, profiles in settings.profiles.items():
        for name, profile in profiles.items():
            keys.update(f"{ANNOTATION_KINDS[kind]}.{name}.{param}" for param in profile.params)
    return keys


def suggest_key(key: str, settings: Settings) -> str:
    close = difflib.get_close_matches(key, sorted(_known_keys(settings)), n=1, cutoff=0.7)
    return f"did you mean {settings.annotation_prefix}/{close[0]}?" if close else "not a key Entourage knows"


def own_annotations(annotations: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """Our keys without the prefix; the fast path asks only whether this is empty."""
    head = prefix + "/"
    return {key[len(head) :]: value for key, value in annotations.items() if key.startswith(head)}


def parse_annotations(own: Mapping[str, Any], settings: Settings) -> InjectionRequest:
    """Validate our annotations (prefix removed) into an InjectionRequest, or raise PodDenied.

    The pods of one workload carry the same annotations (a Deployment scaled to 500 replicas is
    500 identical sets), so valid results are memoised by settings object and exact keys and
    values. InjectionRequest is frozen and only read, so sharing one between pods is safe.
    """
    if not all(type(value) is str for value in own.values()):
        return _parse_annotations(own, settings)
    return _parse_cached(tuple(own.items()), settings)


@functools.lru_cache(maxsize=256)
def _parse_cached(own: tuple[tuple[str, str], ...], settings: Settings) -> InjectionRequest:
    return _parse_annotations(dict(own), settings)


def _parse_annotations(own: Mapping[str, Any], settings: Settings) -> InjectionRequest:
    problems = _Problems(settings.annotation_prefix)
    values: dict[str, str] = {}
    for key, value in own.items():
        if not isinstance(value, str):
            problems.add(key, str(value), "annotation values are strings")
        elif len(value) > MAX_VALUE_LENGTH:
            problems.add(key, value, f"longer than {MAX_VALUE_LENGTH} characters")
        else:
            values[key] = value

    result: dict[str, Any] = {}
    resources: dict[str, dict[tuple[str, str], str]] = {}
    params: dict[tuple[str, str], dict[str, str]] = {}
    limits = settings.limits

    def attempt(key: str, parse: Callable[[str], Any]) -> Any:
        try:
            return parse(values[key])
        except ValueError as error:
            problems.add(key, values[key], str(error))
            return None

    for key in values:
        if key in (STATUS, INJECT) or key in KEYS:
            continue
        kind_name, _, rest = key.partition(".")
        config_kind = next((k for k, v in ANNOTATION_KINDS.items() if v == kind_name), None)
        profile_name, _, param_name = rest.partition(".")
        profile = settings.profile(config_kind, profile_name) if config_kind else None
        if profile is not None and param_name in profile.params:
            value = attempt(key, profile.params[param_name].parse)
            if value is not None:
                params.setdefault((config_kind, profile_name), {})[param_name] = value  # type: ignore[index]
            continue
        problems.add(key, values[key], f"unknown annotation; {suggest_key(key, settings)}")

    if INJECT in values and values[INJECT] not in ("true", "false"):
        problems.add(INJECT, values[INJECT], 'expected "false" (or "true", which changes nothing)')

    if "logging" in values:
        value = values["logging"]
        if value == "true":
            result["logging"] = settings.defaults.logging
        elif value != "false":
            if settings.profile("logging", value) is None:
                problems.add("logging", value, f'expected "true", "false" or a logging profile: {", ".join(sorted(settings.profiles["logging"]))}')
            else:
                result["logging"] = value
    if "logging-paths" in values:
        paths = attempt("logging-paths", lambda text: _items(text, limit=limits.max_logging_paths, what="paths", parse=grammar.parse_directory))
        if paths is not None:
            for a in paths:
                for b in paths:
                    if a != b and b.startswith(a + "/"):
                        problems.add("logging-paths", values["logging-paths"], f"{b} is inside {a}; list only one of them")
            result["logging_paths"] = tuple(paths)
    if "logging-container" in values:
        result["logging_container"] = attempt("logging-container", grammar.parse_dns_label)
    if "ambassador" in values:
        routes = attempt("ambassador", lambda text: _items(text, limit=limits.max_ambassador_routes, what="routes", parse=parse_route))
        if routes is not None:
            result["routes"] = tuple(routes)
    if "wait-for" in values:
        targets = attempt("wait-for", lambda text: _items(text, limit=limits.max_wait_for_targets, what="targets", parse=parse_wait_target))
        if targets is not None:
            if len({t.target for t in targets}) != len(targets):
                problems.add("wait-for", values["wait-for"], "the same target is listed twice")
            result["wait_for"] = tuple(targets)
    result["wait_for_timeout"] = settings.defaults.wait_for_timeout
    if "wait-for-timeout" in values:
        timeout = attempt("wait-for-timeout", grammar.parse_duration)
        if timeout is not None:
            result["wait_for_timeout"] = timeout
    if "adapter" in values and values["adapter"] != "false":
        names = attempt("adapter", lambda text: _items(text, limit=limits.max_adapters, what="adapters"))
        known = settings.profiles.get("adapter", {})
        for name in names or []:
            if name not in known:
                problems.add("adapter", values["adapter"], f"no adapter profile {name!r}; known: {', '.join(sorted(known)) or 'none'}")
        result["adapters"] = tuple(names or ())
    if "native-sidecars" in values:
        result["native_sidecars"] = attempt("native-sidecars", grammar.parse_bool)

    for kind in ANNOTATION_KINDS.values():
        for suffix, (section, resource) in RESOURCE_FIELDS.items():
            key = f"{kind}-{suffix}"
            if key not in values:
                continue
            amount = attempt(key, parse_quantity)
            if amount is None:
                continue
            maximum, maximum_text = (limits.max_cpu, limits.max_cpu_text) if resource == "cpu" else (limits.max_memory, limits.max_memory_text)
            if amount > maximum:
                problems.add(key, values[key], f"above the maximum of {maximum_text} set in the configuration")
            elif amount == 0:
                problems.add(key, values[key], "must be above zero")
            else:
                resources.setdefault(kind, {})[(section, resource)] = values[key]

    if problems.messages:
        raise PodDenied(problems.messages)
    request = InjectionRequest(resources=resources, params=params, **{k: v for k, v in result.items() if v is not None})
    _warn_about_unused(request, values, problems, settings)
    return InjectionRequest(**{**request.__dict__, "warnings": tuple(problems.warnings)})


def _warn_about_unused(request: InjectionRequest, values: Mapping[str, str], problems: _Problems, settings: Settings) -> None:
    """Keys that are valid but have no effect get a warning (shown by kubectl), not a denial."""
    prefix = settings.annotation_prefix
    if not request.logging:
        for key in ("logging-paths", "logging-container"):
            if key in values:
                problems.warn(f"{prefix}/{key} has no effect without {prefix}/logging")
    if not request.wait_for and "wait-for-timeout" in values:
        problems.warn(f"{prefix}/wait-for-timeout has no effect without {prefix}/wait-for")
    used = {"logging": bool(request.logging), "ambassador": bool(request.routes), "adapter": bool(request.adapters), "wait-for": bool(request.wait_for)}
    for kind in request.resources:
        if not used[kind]:
            problems.warn(f"{prefix}/{kind}-* resources have no effect: no {kind} container is injected")
    selected = {("logging", request.logging), ("ambassador", settings.defaults.ambassador if request.routes else None)}
    selected |= {("adapter", name) for name in request.adapters}
    for config_kind, profile in request.params:
        if (config_kind, profile) not in selected:
            problems.warn(f"{prefix}/{ANNOTATION_KINDS[config_kind]}.{profile}.* has no effect: that profile is not used")
