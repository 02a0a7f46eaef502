"""Checks every pod the engine produces must pass: the Pod schema, the apiserver's rules that
injection could break, and Pod Security Standards `restricted` for the injected containers."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import kubernetes_validate

from webhook.engine.quantity import parse_quantity

KUBERNETES_VERSION = "1.33"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def validate_schema(pod: Mapping[str, Any]) -> None:
    """kubernetes-validate, strict: unknown fields and wrong types fail."""
    document = {"apiVersion": "v1", "kind": "Pod", **pod}
    document["metadata"] = {"name": "checked", **(pod.get("metadata") or {})}
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def apiserver_problems(pod: Mapping[str, Any]) -> list[str]:
    """The subset of the apiserver's Pod validation that adding containers and volumes can break."""
    problems: list[str] = []
    spec = pod["spec"]
    containers = spec.get("containers") or []
    init = spec.get("initContainers") or []
    names = [c["name"] for c in [*containers, *init, *(spec.get("ephemeralContainers") or [])]]
    problems += [f"duplicate container name {n}" for n, k in Counter(names).items() if k > 1]
    problems += [f"container name {n!r} is not a DNS-1123 label" for n in names if not DNS_LABEL.match(n)]
    volumes = [v["name"] for v in spec.get("volumes") or []]
    problems += [f"duplicate volume {n}" for n, k in Counter(volumes).items() if k > 1]
    problems += [f"volume name {n!r} is not a DNS-1123 label" for n in volumes if not DNS_LABEL.match(n)]
    for container in [*containers, *init]:
        mounts = container.get("volumeMounts") or []
        problems += [f"{container['name']}: mount of unknown volume {m['name']}" for m in mounts if m["name"] not in volumes]
        paths = Counter(m["mountPath"] for m in mounts)
        problems += [f"{container['name']}: mountPath {p} used twice" for p, k in paths.items() if k > 1]
        port_names = Counter(p["name"] for p in container.get("ports") or [] if "name" in p)
        problems += [f"{container['name']}: port name {p} used twice" for p, k in port_names.items() if k > 1]
        resources = container.get("resources") or {}
        for resource, request in (resources.get("requests") or {}).items():
            limit = (resources.get("limits") or {}).get(resource)
            if limit is not None and parse_quantity(str(request)) > parse_quantity(str(limit)):
                problems.append(f"{container['name']}: {resource} request {request} above limit {limit}")
    for container in containers:
        if "restartPolicy" in container:
            problems.append(f"{container['name']}: restartPolicy is only allowed on init containers")
    for container in init:
        if container.get("restartPolicy") not in (None, "Always"):
            problems.append(f"{container['name']}: init container restartPolicy must be Always or unset")
        if container.get("restartPolicy") != "Always":
            for field in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if field in container:
                    problems.append(f"{container['name']}: {field} is only allowed on native sidecars")
    listened = Counter(
        p["containerPort"] for c in [*containers, *(i for i in init if i.get("restartPolicy") == "Always")] for p in c.get("ports") or []
    )
    problems += [f"containerPort {p} declared twice" for p, k in listened.items() if k > 1]
    return problems


def restricted_problems(container: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> list[str]:
    """Pod Security Standards `restricted` (v1.33) for one container, with pod-level fallbacks."""
    problems = []
    context = container.get("securityContext") or {}
    pod_context = pod_spec.get("securityContext") or {}
    name = container["name"]
    if context.get("privileged"):
        problems.append(f"{name}: privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: allowPrivilegeEscalation must be false")
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append(f"{name}: capabilities must drop ALL")
    if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
        problems.append(f"{name}: only NET_BIND_SERVICE may be added")
    if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
        problems.append(f"{name}: runAsNonRoot must be true")
    if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
        problems.append(f"{name}: runAsUser must not be 0")
    seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
    for port in container.get("ports") or []:
        if port.get("hostPort"):
            problems.append(f"{name}: hostPort")
    return problems


def assert_valid_injected_pod(pod: Mapping[str, Any], injected_names: list[str]) -> None:
    """Everything above, plus requests and limits on every injected container."""
    validate_schema(pod)
    problems = apiserver_problems(pod)
    spec = pod["spec"]
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if container["name"] in injected_names:
            problems += restricted_problems(container, spec)
            resources = container.get("resources") or {}
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    amount = (resources.get(section) or {}).get(resource)
                    if amount is None or parse_quantity(str(amount)) <= Decimal(0):
                        problems.append(f"{container['name']}: no {section}.{resource}")
    for volume in spec.get("volumes") or []:
        for forbidden in ("hostPath",):
            if forbidden in volume and volume["name"].startswith("entourage-"):
                problems.append(f"{volume['name']}: injected volume uses {forbidden}")
    assert not problems, problems
