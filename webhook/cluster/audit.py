"""Which pods need a restart: they missed injection, or run companions that are now outdated.

Missed: they ask for injection by annotation but carry no status annotation (created while the
webhook was unreachable under ``failurePolicy: Ignore``). Outdated: injected under a
configuration that would now render their companions differently (a new image, arguments,
resources). Either way their owners have to restart them. Pure: pods and namespace annotations
in, findings out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.engine import status
from webhook.engine.annotations import STATUS
from webhook.engine.inject import INJECTED, ClusterFacts, inject_pod, requested_annotations, skip_reason
from webhook.engine.quantity import parse_quantity
from webhook.engine.settings import Settings
from webhook.errors import PodDenied


@dataclass(frozen=True)
class Finding:
    namespace: str
    pod: str
    phase: str
    owners: tuple[str, ...]
    """``Kind/name`` of each owner reference (the controller first)."""
    requested: tuple[str, ...]
    """Our annotation keys the pod (or its namespace) sets."""
    controller: tuple[str, str] | None = None
    """The controller's (kind, name), for ``rollout.workloads``."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "pod": self.pod,
            "phase": self.phase,
            "owners": list(self.owners),
            "requested": list(self.requested),
        }


def missed(
    pods: Iterable[Mapping[str, Any]], settings: Settings, namespace_annotations: Callable[[str], Mapping[str, str] | None]
) -> list[Finding]:
    """Pods that would be injected if they were created now but never were. Finished pods are left out."""
    findings: list[Finding] = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        phase = str((pod.get("status") or {}).get("phase") or "")
        if phase in ("Succeeded", "Failed"):
            continue
        namespace = str(metadata.get("namespace") or "")
        requested = requested_annotations(pod, settings, namespace_annotations(namespace))
        if skip_reason(requested) is not None:
            continue
        owners = sorted(metadata.get("ownerReferences") or [], key=lambda owner: not owner.get("controller"))
        findings.append(
            Finding(
                namespace=namespace,
                pod=str(metadata.get("name") or ""),
                phase=phase,
                owners=tuple(f"{owner.get('kind')}/{owner.get('name')}" for owner in owners),
                requested=tuple(sorted(requested)),
                controller=_controller(metadata),
            )
        )
    return sorted(findings, key=lambda finding: (finding.namespace, finding.pod))


# ---------------------------------------------------------------------------------------------
# Outdated companions: injected under a configuration that would now render them differently

COMPARED = ("image", "command", "args", "env", "resources", "ports", "securityContext", "restartPolicy")
"""The container fields a change is reported for (any other difference shows as the fingerprint)."""


@dataclass(frozen=True)
class Change:
    """One difference between a running companion and what the configuration renders now."""

    component: str
    field: str
    """A container field (``image``, ``args``…), ``component`` for one added or removed, or
    ``pod`` when the pod would no longer be injected."""
    before: str
    after: str

    def as_dict(self) -> dict[str, str]:
        return {"component": self.component, "field": self.field, "before": self.before, "after": self.after}

    def __str__(self) -> str:
        return f"{self.component}: {self.field} {self.before} → {self.after}"


@dataclass(frozen=True)
class Outdated:
    namespace: str
    pod: str
    owner: tuple[str, str] | None
    """The pod's controller (kind, name); resolved to the workload by ``rollout.workloads``."""
    changes: tuple[Change, ...]
    entourage: str
    """The Entourage version that injected the pod ("" before status version 2)."""


def outdated(
    pods: Iterable[Mapping[str, Any]], settings: Settings, namespace_annotations: Callable[[str], Mapping[str, str] | None]
) -> list[Outdated]:
    """Injected pods whose companions differ from what ``settings`` would inject now.

    Each pod is put back as it was before injection (the status annotation names what was
    added) and injected again, in the same sidecar mode; the new status is compared with the
    recorded one by fingerprint, and the differing fields are read from the two containers."""
    found: list[Outdated] = []
    prefix = settings.annotation_prefix
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if str((pod.get("status") or {}).get("phase") or "") in ("Succeeded", "Failed"):
            continue
        recorded = status.read(str((metadata.get("annotations") or {}).get(f"{prefix}/{STATUS}") or ""))
        if recorded is None:
            continue
        namespace = str(metadata.get("namespace") or "")
        changes = _changes(pod, recorded, settings, namespace_annotations(namespace))
        if changes:
            found.append(Outdated(namespace, str(metadata.get("name") or ""), _controller(metadata), tuple(changes), recorded.entourage))
    return sorted(found, key=lambda item: (item.namespace, item.pod))


def _changes(pod: Mapping[str, Any], recorded: status.Recorded, settings: Settings, inherited: Mapping[str, str] | None) -> list[Change]:
    spec = pod.get("spec") or {}
    running = {c.get("name"): c for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}
    native = any(running.get(name, {}).get("restartPolicy") == "Always" for name in recorded.init_containers)
    try:
        now = inject_pod(uninjected(pod, recorded, settings), settings, namespace_annotations=inherited, cluster=ClusterFacts(native))
    except PodDenied as denial:
        return [Change("pod", "pod", "injected", f"denied now: {denial}")]
    if now.reason != INJECTED:
        return [Change("pod", "pod", "injected", f"not injected now ({now.reason})")]
    rendered = {c.get("name"): c for c in [*(now.pod["spec"].get("initContainers") or []), *now.pod["spec"]["containers"]]}
    before = {c.name: c for c in recorded.components}
    changes: list[Change] = []
    for component in now.made:
        old = before.pop(component.name, None)
        if old is None and recorded.components:
            changes.append(Change(component.name, "component", "absent", f"{component.kind} {component.profile}"))
        elif old is None or old.fingerprint != component.fingerprint:
            # Version 1 recorded no fingerprints: compare the running container's fields.
            changes += _field_changes(component.name, running.get(component.name) or {}, rendered[component.name])
            if old is not None and old.profile != component.profile:
                changes.append(Change(component.name, "profile", old.profile, component.profile))
    changes += [Change(name, "component", f"{old.kind} {old.profile}", "absent") for name, old in before.items()]
    return changes


def _field_changes(name: str, running: Mapping[str, Any], rendered: Mapping[str, Any]) -> list[Change]:
    changes = []
    for key in COMPARED:
        old, new = running.get(key), rendered.get(key)
        if key == "resources":
            changes += _resource_changes(name, old or {}, new or {})
        elif key == "ports":
            if _ports(old) != _ports(new):
                changes.append(Change(name, key, _shown(old), _shown(new)))
        elif old != new and not (key == "securityContext" and _contains(old, new)):
            changes.append(Change(name, key, _shown(old), _shown(new)))
    return changes


def _resource_changes(name: str, running: Mapping[str, Any], rendered: Mapping[str, Any]) -> list[Change]:
    """One change per amount, compared as numbers: the apiserver writes ``0.1`` back as ``100m``."""
    changes = []
    for section in ("requests", "limits"):
        old, new = running.get(section) or {}, rendered.get(section) or {}
        changes += [
            Change(name, f"resources.{section}.{resource}", _shown(old.get(resource)), _shown(new.get(resource)))
            for resource in sorted(set(old) | set(new))
            if _amount(old.get(resource)) != _amount(new.get(resource))
        ]
    return changes


def uninjected(pod: Mapping[str, Any], recorded: status.Recorded, settings: Settings) -> dict[str, Any]:
    """The pod as it was before injection: the containers, init containers and volumes the
    status names removed, with the app containers' mounts of those volumes, and no status."""
    spec = dict(pod.get("spec") or {})
    ours = set(recorded.init_containers) | set(recorded.containers)
    volumes = set(recorded.volumes)

    def without_mounts(container: Mapping[str, Any]) -> Mapping[str, Any]:
        mounts = container.get("volumeMounts")
        if not mounts or not any(mount.get("name") in volumes for mount in mounts):
            return container
        kept = [mount for mount in mounts if mount.get("name") not in volumes]
        return {**container, "volumeMounts": kept} if kept else {k: v for k, v in container.items() if k != "volumeMounts"}

    for section in ("initContainers", "containers"):
        if section in spec:
            kept = [without_mounts(c) for c in spec[section] or [] if c.get("name") not in ours]
            if kept or section == "containers":
                spec[section] = kept
            else:
                del spec[section]
    if "volumes" in spec:
        spec["volumes"] = [volume for volume in spec["volumes"] or [] if volume.get("name") not in volumes]
    metadata = dict(pod.get("metadata") or {})
    metadata["annotations"] = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k != f"{settings.annotation_prefix}/{STATUS}"
    }
    return {**pod, "metadata": metadata, "spec": spec}


def _controller(metadata: Mapping[str, Any]) -> tuple[str, str] | None:
    for owner in metadata.get("ownerReferences") or []:
        if owner.get("controller") is True:
            return str(owner.get("kind") or ""), str(owner.get("name") or "")
    return None


def _amount(value: Any) -> Any:
    try:
        return parse_quantity(str(value)) if value is not None else None
    except ValueError:
        return value


def _ports(ports: Any) -> Any:
    """Ports without the protocol the apiserver fills in (TCP)."""
    if not isinstance(ports, list):
        return ports
    return [{k: v for k, v in port.items() if not (k == "protocol" and v == "TCP")} for port in ports if isinstance(port, Mapping)]


def _contains(running: Any, rendered: Any) -> bool:
    """Every field of ``rendered`` is in ``running`` with the same value (defaults may add more)."""
    if isinstance(rendered, Mapping):
        return isinstance(running, Mapping) and all(_contains(running.get(k), v) for k, v in rendered.items())
    return bool(running == rendered)


def _shown(value: Any) -> str:
    """A value as one short line: images and scalars as they are, structures as JSON cut at 120."""
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    text = json.dumps(value, default=str, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
