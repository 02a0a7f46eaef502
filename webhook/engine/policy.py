"""Who may use what: per-namespace allowlists and enforced defaults, chosen by namespace labels.

An ambassador annotation opens a path from the pod to any host and a wait-for probes any target,
so a platform team scopes them: each policy of the configuration selects namespaces by a label
selector and may allow only some profiles, some ambassador upstreams and some wait-for targets,
and may enforce namespace defaults that a pod cannot override (a namespace that must always ship
its logs). Every policy that selects a namespace applies; a pod outside any of them is denied
with the rule that refused it. The labels come with the namespace's annotations (``Namespace``,
built by the namespace cache); where they are not known (``entourage inject`` without them, a
namespace the cache has not seen) only policies that select every namespace apply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.engine import grammar, matching
from webhook.engine.request import InjectionRequest, Route, WaitTarget
from webhook.errors import ConfigError

ENFORCEABLE = (
    "logging", "logging-paths", "logging-container", "ambassador", "wait-for", "wait-for-timeout",
    "adapter", "native-sidecars", "ambassadors-first",
)  # fmt: skip
"""Annotation keys whose namespace value a policy can make binding."""

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class Namespace(dict[str, str]):
    """A namespace's annotations (the mapping) that also carries its labels."""

    def __init__(self, annotations: Mapping[str, str], labels: Mapping[str, str]) -> None:
        super().__init__(annotations)
        self.labels: Mapping[str, str] = dict(labels)


def labels_of(namespace: Mapping[str, str] | None) -> Mapping[str, str]:
    return namespace.labels if isinstance(namespace, Namespace) else {}


@dataclass(frozen=True)
class Endpoint:
    """An allowed ``[scheme://]host[:port][path]``: ``*.example.com`` is any name below
    example.com, ``*`` any host or port, a path ending in ``*`` a prefix."""

    text: str
    schemes: tuple[str, ...]
    host: re.Pattern[str]
    port: int | None
    path: str | None

    def allows(self, scheme: str, host: str, port: int | None, path: str) -> bool:
        if scheme not in self.schemes or not self.host.fullmatch(host):
            return False
        if self.port is not None and port != self.port:
            return False
        if self.path is None:
            return True
        return path.startswith(self.path[:-1]) if self.path.endswith("*") else path == self.path


@dataclass(frozen=True)
class Policy:
    name: str
    selector: tuple[matching.Requirement, ...]
    """The namespaceSelector's terms, every one must hold; none selects every namespace."""
    profiles: Mapping[str, frozenset[str]]
    """Config kind → the profiles allowed; a kind not listed is not restricted."""
    upstreams: tuple[Endpoint, ...] | None
    """Allowed ambassador upstreams; None: any."""
    wait_for: tuple[Endpoint, ...] | None
    """Allowed wait-for targets; None: any."""
    enforced: tuple[str, ...]


def applying(policies: Iterable[Policy], namespace: Mapping[str, str] | None) -> list[Policy]:
    labels = labels_of(namespace)
    return [policy for policy in policies if all(term.holds(labels) for term in policy.selector)]


def enforced_problems(policies: list[Policy], own: Mapping[str, str], inherited: Mapping[str, str], prefix: str) -> list[str]:
    """The pod's annotations that differ from its namespace's on an enforced key."""
    problems = []
    for policy in policies:
        binding = [key for key in policy.enforced if key in inherited]
        if binding and own.get("inject") == "false":
            problems.append(
                f'{prefix}/inject: "false": policy {policy.name!r} enforces the namespace\'s {", ".join(binding)}; the pod cannot opt out'
            )
        problems += [
            f"{prefix}/{key}: {own[key]!r}: policy {policy.name!r} enforces the namespace's value {inherited[key]!r}"
            for key in binding
            if key in own and own[key] != inherited[key]
        ]
    return problems


def request_problems(policies: list[Policy], request: InjectionRequest, chosen: Mapping[str, Iterable[str]], prefix: str) -> list[str]:
    """What the request asks for that a policy does not allow. ``chosen``: config kind → the
    profiles the injection will use."""
    problems = []
    for policy in policies:
        for kind, names in chosen.items():
            allowed = policy.profiles.get(kind)
            problems += [
                f"{prefix}/{_KEYS[kind]}: profile {name!r}: policy {policy.name!r} allows {kind} profiles {', '.join(sorted(allowed)) or 'none'}"
                for name in names
                if allowed is not None and name not in allowed
            ]
        if policy.upstreams is not None:
            problems += [
                f"{prefix}/ambassador: {str(route)!r}: policy {policy.name!r} allows upstreams {_listed(policy.upstreams)}"
                for route in request.routes
                if not any(_route_allowed(endpoint, route) for endpoint in policy.upstreams)
            ]
        if policy.wait_for is not None:
            problems += [
                f"{prefix}/wait-for: {_shown(target)!r}: policy {policy.name!r} allows targets {_listed(policy.wait_for)}"
                for target in request.wait_for
                if not any(_target_allowed(endpoint, target) for endpoint in policy.wait_for)
            ]
    return problems


_KEYS = {"logging": "logging", "ambassador": "ambassador", "adapter": "adapter", "waitFor": "wait-for"}


def _listed(endpoints: tuple[Endpoint, ...]) -> str:
    return ", ".join(endpoint.text for endpoint in endpoints) or "none"


def _route_allowed(endpoint: Endpoint, route: Route) -> bool:
    return endpoint.allows("tls" if route.tls else "tcp", route.host, route.port, "")


def _shown(target: WaitTarget) -> str:
    """The target with its scheme (tcp and dns targets are kept without one)."""
    return target.target if "://" in target.target else f"{target.kind}://{target.target}"


def _target_allowed(endpoint: Endpoint, target: WaitTarget) -> bool:
    rest = _shown(target).partition("://")[2]
    hostport, slash, path = rest.partition("/")
    port = None
    if target.kind != "dns":
        _, colon, port_text = hostport.rpartition(":")
        if colon and not port_text.endswith("]"):
            port = int(port_text)
    return endpoint.allows(target.kind, target.host, port, slash + path)


# ---------------------------------------------------------------------------------------------
# Loading (called by settings.build_settings)


def load(where: str, value: Any, profiles: Mapping[str, Iterable[str]]) -> tuple[Policy, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of policies")
    loaded: list[Policy] = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        data = _mapping(here, item)
        _known(here, data, ("name", "namespaceSelector", "profiles", "ambassadorUpstreams", "waitForTargets", "enforced"))
        name = data.get("name")
        if not isinstance(name, str) or not grammar.DNS_LABEL.fullmatch(name):
            raise ConfigError(f"{here}.name: expected a DNS label naming the policy in messages, got {name!r}")
        if any(policy.name == name for policy in loaded):
            raise ConfigError(f"{here}.name: {name!r} is used twice")
        if "namespaceSelector" not in data:
            raise ConfigError(f"{here}.namespaceSelector: required ({{}} selects every namespace)")
        loaded.append(
            Policy(
                name=name,
                selector=_selector(f"{here}.namespaceSelector", data["namespaceSelector"]),
                profiles=_profiles(f"{here}.profiles", data.get("profiles"), profiles),
                upstreams=_endpoints(f"{here}.ambassadorUpstreams", data, "ambassadorUpstreams", ("tcp", "tls")),
                wait_for=_endpoints(f"{here}.waitForTargets", data, "waitForTargets", ("tcp", "http", "https", "dns")),
                enforced=_enforced(f"{here}.enforced", data.get("enforced")),
            )
        )
    return tuple(loaded)


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    return value


def _known(where: str, data: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    for key in data:
        if key not in keys:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(keys)}")


def _strings(where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return value


def _selector(where: str, value: Any) -> tuple[matching.Requirement, ...]:
    """The selector validated, then read as ``entourage explain`` reads the webhooks' own."""
    data = _mapping(where, value)
    _known(where, data, ("matchLabels", "matchExpressions"))
    labels = _mapping(f"{where}.matchLabels", data.get("matchLabels"))
    for index, item in enumerate(data.get("matchExpressions") or []):
        here = f"{where}.matchExpressions[{index}]"
        expression = _mapping(here, item)
        _known(here, expression, ("key", "operator", "values"))
        operator, values = expression.get("operator"), expression.get("values") or []
        if operator not in OPERATORS:
            raise ConfigError(f"{here}.operator: expected one of {', '.join(OPERATORS)}, got {operator!r}")
        if not isinstance(expression.get("key"), str):
            raise ConfigError(f"{here}.key: expected a label key")
        values = _strings(f"{here}.values", values)
        if (operator in ("In", "NotIn")) != bool(values):
            raise ConfigError(f"{here}.values: In and NotIn need values, Exists and DoesNotExist take none")
    return tuple(matching.requirements({"matchLabels": labels, "matchExpressions": data.get("matchExpressions") or []}))


def _profiles(where: str, value: Any, known: Mapping[str, Iterable[str]]) -> Mapping[str, frozenset[str]]:
    allowed: dict[str, frozenset[str]] = {}
    for kind, names in _mapping(where, value).items():
        if kind not in known:
            raise ConfigError(f"{where}: unknown kind {kind!r}; kinds: {', '.join(known)}")
        listed = _strings(f"{where}.{kind}", names)
        missing = sorted(set(listed) - set(known[kind]))
        if missing:
            raise ConfigError(f"{where}.{kind}: no {kind} profile {missing[0]!r}; known: {', '.join(sorted(known[kind]))}")
        allowed[kind] = frozenset(listed)
    return allowed


_ENDPOINT = re.compile(r"(?:(?P<scheme>[a-z*]+)://)?(?P<host>\[[0-9a-fA-F:.]+\]|[a-z0-9*.-]+)(?::(?P<port>\*|[0-9]{1,5}))?(?P<path>/\S*)?")


def _endpoints(where: str, data: Mapping[str, Any], key: str, schemes: tuple[str, ...]) -> tuple[Endpoint, ...] | None:
    if key not in data:
        return None
    endpoints = []
    for text in _strings(where, data[key]):
        match = _ENDPOINT.fullmatch(text)
        scheme = match["scheme"] if match else None
        if match is None or (scheme is not None and scheme not in (*schemes, "*")):
            raise ConfigError(f"{where}: {text!r}: expected [SCHEME://]HOST[:PORT][/PATH] with SCHEME one of {', '.join(schemes)} or *")
        host = match["host"]
        if "*" in host and not (host == "*" or (host.startswith("*.") and "*" not in host[2:])):
            raise ConfigError(f"{where}: {text!r}: a host is a name, *, or *.domain (any name below the domain)")
        if match["path"] and scheme not in ("http", "https"):
            raise ConfigError(f"{where}: {text!r}: only http:// and https:// targets have a path")
        port = match["port"]
        if port not in (None, "*") and not 1 <= int(port) <= 65535:
            raise ConfigError(f"{where}: {text!r}: a port is 1-65535 or *")
        if host == "*":
            pattern = r"\S+"
        elif host.startswith("*."):
            pattern = r"[a-z0-9-]+(\.[a-z0-9-]+)*" + re.escape(host[1:])
        else:
            pattern = re.escape(host.strip("[]"))
        endpoints.append(
            Endpoint(
                text=text,
                schemes=schemes if scheme in (None, "*") else (scheme,),
                host=re.compile(pattern),
                port=None if port in (None, "*") else int(port),
                path=match["path"],
            )
        )
    return tuple(endpoints)


def _enforced(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    keys = _strings(where, value)
    for key in keys:
        if key not in ENFORCEABLE:
            raise ConfigError(f"{where}: {key!r}: expected annotation keys among {', '.join(ENFORCEABLE)}")
    return tuple(keys)
