"""Why a pod is injected or not, and where each setting comes from: what `entourage explain` says.

Pure: it runs ``inject_pod`` (the one injection core) and reads ``skip_reason`` (the one
definition of "asks for injection") rather than re-deciding anything, then says in words what
was decided, with the command that changes it. The apiserver's part (selectors, matchConditions,
endpoints) is found by ``webhook/cluster/explain.py`` and arrives here as ``Check`` rows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.engine.annotations import INJECT, STATUS, own_annotations, parse_annotations
from webhook.engine.inject import (
    ALREADY_INJECTED,
    DISABLED,
    INJECTED,
    NO_ANNOTATION,
    NOTHING_REQUESTED,
    ClusterFacts,
    inject_pod,
    requested_annotations,
)
from webhook.engine.request import InjectionRequest
from webhook.engine.settings import ANNOTATION_KINDS, Settings
from webhook.engine.workloads import Site
from webhook.errors import PodDenied

DENIED = "denied"
"""The reason when the webhook would refuse the pod (invalid annotations)."""


@dataclass(frozen=True)
class Setting:
    """One setting that shaped the injection, and where its value came from."""

    name: str
    value: str
    source: str


@dataclass(frozen=True)
class Component:
    """One container that would be injected."""

    name: str
    image: str
    section: str
    """``initContainers`` or ``containers``."""
    kind: str
    """The config kind: waitFor, ambassador, logging, adapter."""
    profile: str
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """One decision made before the webhook's own: ``ok`` None when it cannot be told offline."""

    group: str
    """Who decides: ``MutatingWebhookConfiguration entourage, webhook inject.entourage.dev``."""
    subject: str
    """What was checked: ``namespaceSelector``, ``matchCondition NAME``, ``Service NS/NAME``."""
    ok: bool | None
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Target:
    """The object a pod (template) belongs to, for commands that change it."""

    kind: str
    name: str
    namespace: str = ""
    path: tuple[str, ...] = ()
    item: int | None = None
    document: int | None = None

    @classmethod
    def of(cls, site: Site, *, namespace: str = "", document: int | None = None) -> Target:
        return cls(site.kind, site.name, namespace or site.namespace, site.path, site.item, document)

    @property
    def title(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        parts = [f"{self.kind} {where}"]
        if self.path:
            parts.append(f"({'.'.join(self.path)})")
        if self.document is not None:
            parts.append(f"[document {self.document}" + (f", item {self.item}]" if self.item is not None else "]"))
        return " ".join(parts)

    def annotate(self, key: str, value: str | None) -> str:
        """What sets (or, with None, removes) an annotation on the pods to come."""
        return self.change("annotations", key, value)

    def change(self, field: str, key: str, value: str | None) -> str:
        """The command that sets (None: removes) a label or annotation (``field``) of the pods to
        come: a merge patch of a workload's template; for a bare pod, its manifest, as a pod is
        injected only when it is created."""
        if not self.path:
            action = f'add {key}: "{value}" to' if value is not None else f"remove {key} from"
            return f"{action} the pod's metadata.{field} and create the pod again (a pod is injected only when it is created)"
        ns = f"-n {self.namespace} " if self.namespace else ""
        patch: Any = {"metadata": {field: {key: value}}}
        for step in reversed(self.path):
            patch = {step: patch}
        return f"kubectl {ns}patch {self.kind.lower()} {self.name} --type merge -p '{json.dumps(patch, separators=(',', ':'))}'"


@dataclass(frozen=True)
class Explanation:
    """Everything `explain` says about one pod or pod template."""

    target: Target
    reason: str
    """INJECTED, a skip reason of inject.py (no_annotation, already_injected, disabled,
    nothing_requested) or DENIED."""
    why: str
    fixes: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    volumes: tuple[str, ...] = ()
    settings: tuple[Setting, ...] = ()
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    """The apiserver's decisions (cluster mode only), in the order it makes them."""
    notes: tuple[str, ...] = ()
    """What the cluster says about an existing pod (its status annotation)."""
    existing: bool | None = None
    """For a pod that exists: whether it was injected (its status annotation); None otherwise."""

    @property
    def would_inject(self) -> bool:
        """A pod made now from this (template) would be injected: every check and the webhook agree."""
        return self.reason == INJECTED and all(check.ok is not False for check in self.checks)

    @property
    def injected(self) -> bool:
        return self.existing if self.existing is not None else self.would_inject

    @property
    def verdict(self) -> str:
        """``yes`` or ``no: <the first reason>``, for the block's first line."""
        if self.existing:
            return "yes, when this pod was created"
        if self.existing is not None:
            return f"no, not this pod; one created now: {'yes' if self.would_inject else 'no'}"
        if self.would_inject:
            return "yes"
        failed = next((check for check in self.checks if check.ok is False), None)
        if failed is not None:
            return f"no: {failed.subject} ({failed.group})"
        return f"no: {self.reason.replace('_', ' ')}"

    def with_cluster(self, checks: Sequence[Check], notes: Sequence[str] = (), existing: bool | None = None) -> Explanation:
        return dataclasses.replace(self, checks=tuple(checks), notes=tuple(notes), existing=existing)

    def as_dict(self) -> dict[str, Any]:
        return {
            "object": {"kind": self.target.kind, "name": self.target.name, "namespace": self.target.namespace or None,
                       "templatePath": ".".join(self.target.path) or None, "document": self.target.document, "item": self.target.item},
            "injected": self.injected,
            "wouldInject": self.would_inject,
            "reason": self.reason,
            "why": self.why,
            "fixes": list(self.fixes),
            "checks": [dataclasses.asdict(check) for check in self.checks],
            "containers": [dataclasses.asdict(component) for component in self.components],
            "volumes": list(self.volumes),
            "settings": [dataclasses.asdict(setting) for setting in self.settings],
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }  # fmt: skip


def explain_pod(
    pod: Mapping[str, Any],
    settings: Settings,
    target: Target,
    *,
    namespace_annotations: Mapping[str, str] | None = None,
    cluster: ClusterFacts = ClusterFacts(),
) -> Explanation:
    """What the webhook would do with this pod, in words, with provenance and fixes."""
    own = requested_annotations(pod, settings, namespace_annotations)
    try:
        injection = inject_pod(pod, settings, namespace_annotations=namespace_annotations, cluster=cluster)
    except PodDenied as denial:
        return Explanation(
            target, DENIED, f"the webhook would refuse the pod: {len(denial.problems)} problem(s)",
            fixes=("correct each key named above",), problems=tuple(denial.problems),
            settings=tuple(_sources(pod, settings, namespace_annotations, target)),
        )  # fmt: skip
    provenance = _sources(pod, settings, namespace_annotations, target)
    if injection.reason == INJECTED:
        request = parse_annotations(own, settings)
        provenance += _derived(own, request, settings, cluster)
        return Explanation(
            target, INJECTED, "the pod asks for injection and its annotations are valid",
            components=tuple(_components(injection.pod, injection.status, injection.kinds, request, settings)),
            volumes=tuple(injection.status.get("volumes", ())), settings=tuple(provenance), warnings=injection.warnings,
        )  # fmt: skip
    why, fixes = _why_not(injection.reason, pod, own, settings, namespace_annotations, target)
    return Explanation(target, injection.reason, why, tuple(fixes), settings=tuple(provenance), warnings=injection.warnings)


def _namespace_source(target: Target) -> str:
    if target.document is not None:  # offline: the annotations came from the command line
        return "namespace annotation (--namespace-annotations)"
    return f"namespace annotation (namespace {target.namespace})"


def _sources(pod: Mapping[str, Any], settings: Settings, namespace_annotations: Mapping[str, str] | None, target: Target) -> list[Setting]:
    """Each of our annotations in effect, from the pod or its namespace (the pod's win)."""
    found = pod.get("metadata")
    annotations = found.get("annotations") if isinstance(found, Mapping) else None
    pod_own = own_annotations(annotations, settings.annotation_prefix) if isinstance(annotations, Mapping) else {}
    inherited = own_annotations(namespace_annotations or {}, settings.annotation_prefix)
    inherited.pop(STATUS, None)
    rows = []
    for key in sorted({*pod_own, *inherited}):
        if key == STATUS:
            continue
        if key in pod_own:
            over = f" (over the namespace's {inherited[key]!r})" if key in inherited and inherited[key] != pod_own[key] else ""
            rows.append(Setting(f"{settings.annotation_prefix}/{key}", str(pod_own[key]), "pod annotation" + over))
        else:
            rows.append(Setting(f"{settings.annotation_prefix}/{key}", str(inherited[key]), _namespace_source(target)))
    return rows


def _native(configured: str, cluster: ClusterFacts) -> str:
    if configured != "auto":
        return configured
    if cluster.native_sidecars is None:
        return "auto: classic sidecars, the cluster's versions not known"
    if cluster.native_sidecars:
        return "auto: native, the apiserver and every kubelet are >= 1.29"
    return "auto: classic sidecars, the apiserver or a kubelet is older than 1.29"


def _derived(own: Mapping[str, Any], request: InjectionRequest, settings: Settings, cluster: ClusterFacts) -> list[Setting]:
    """The values no annotation set: configuration defaults and profile defaults."""
    rows: list[Setting] = []
    defaults = settings.defaults
    if request.logging:
        if own.get("logging") == "true":
            rows.append(Setting("logging profile", request.logging, "configuration default (defaults.logging)"))
        if "logging-paths" not in own:
            rows.append(Setting("logging paths", ",".join(defaults.logging_paths), "configuration default (defaults.loggingPaths)"))
    if request.routes:
        rows.append(Setting("ambassador profile", defaults.ambassador, "configuration default (defaults.ambassador)"))
    if request.wait_for:
        rows.append(Setting("wait-for profile", defaults.wait_for, "configuration default (defaults.waitFor)"))
        if "wait-for-timeout" not in own:
            rows.append(Setting("wait-for timeout", f"{defaults.wait_for_timeout}s", "configuration default (defaults.waitForTimeout)"))
    if "native-sidecars" not in own:
        rows.append(Setting("native sidecars", _native(settings.native_sidecars, cluster), "configuration (nativeSidecars)"))
    used = [("logging", request.logging)] if request.logging else []
    used += [("ambassador", defaults.ambassador)] if request.routes else []
    used += [("waitFor", defaults.wait_for)] if request.wait_for else []
    used += [("adapter", name) for name in request.adapters]
    for kind, name in used:
        profile = settings.profile(kind, name)
        set_by_pod = request.params.get((kind, name), {})
        for param_name, param in sorted((profile.params if profile else {}).items()):
            if param_name not in set_by_pod:
                key = f"{ANNOTATION_KINDS[kind]}.{name}.{param_name}"
                rows.append(Setting(f"{settings.annotation_prefix}/{key}", param.default, f"profile default ({kind} profile {name})"))
    return rows


def _components(
    pod: Mapping[str, Any], status: Mapping[str, list[str]], kinds: Sequence[str], request: InjectionRequest, settings: Settings
) -> list[Component]:
    spec = pod.get("spec") or {}
    by_name = {c["name"]: (section, c) for section in ("initContainers", "containers") for c in spec.get(section) or ()}
    adapters = iter(request.adapters)
    profiles = {"waitFor": settings.defaults.wait_for, "ambassador": settings.defaults.ambassador, "logging": request.logging or ""}
    names = [*status.get("initContainers", ()), *status.get("containers", ())]
    result = []
    for name, kind in zip(names, kinds, strict=True):
        section, container = by_name[name]
        profile = next(adapters) if kind == "adapter" else profiles[kind]
        ports = tuple(
            f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" + (f" ({p['name']})" if p.get("name") else "")
            for p in container.get("ports") or ()
        )
        if kind == "ambassador":
            ports += tuple(
                f"127.0.0.1:{route.local_port} -> {'tls://' if route.tls else ''}{route.upstream}"
                for route in request.routes
                if name.endswith(f"-{route.local_port}")
            )
        result.append(Component(name, str(container.get("image")), section, kind, profile, ports))
    return result


def _why_not(
    reason: str,
    pod: Mapping[str, Any],
    own: Mapping[str, Any],
    settings: Settings,
    namespace_annotations: Mapping[str, str] | None,
    target: Target,
) -> tuple[str, list[str]]:
    prefix = settings.annotation_prefix
    example = f"{prefix}/logging"
    namespace = target.namespace or "NAMESPACE"
    if reason == NO_ANNOTATION:
        where = (
            "nor its namespace"
            if namespace_annotations is not None
            else "and no namespace annotations were given (--namespace-annotations)"
        )
        return (
            f"no {prefix}/ annotation asks for anything: not the pod, {where}",
            [target.annotate(example, "true"), f"or for every pod of the namespace: kubectl annotate namespace {namespace} {example}=true"],
        )
    if reason == ALREADY_INJECTED:
        metadata = pod.get("metadata") or {}
        status = str((metadata.get("annotations") or {}).get(f"{prefix}/{STATUS}", ""))
        return f"it already carries {prefix}/{STATUS} ({_status_summary(status)}): a pod is injected once", []
    if reason == DISABLED:
        metadata = pod.get("metadata") or {}
        on_pod = f"{prefix}/{INJECT}" in ((metadata.get("annotations") or {}) if isinstance(metadata, Mapping) else {})
        if on_pod:
            return f'{prefix}/{INJECT}: "false" on the pod turns injection off', [target.annotate(f"{prefix}/{INJECT}", None)]
        return (
            f'{prefix}/{INJECT}: "false" on namespace {namespace} turns injection off for its pods',
            [f"kubectl annotate namespace {namespace} {prefix}/{INJECT}-"],
        )
    if reason == NOTHING_REQUESTED:
        keys = ", ".join(f"{prefix}/{key}={value}" for key, value in sorted(own.items()))
        return f"its annotations ask for no container ({keys})", [target.annotate(example, "true")]
    return reason, []  # pragma: no cover - every skip reason is listed above


def _status_summary(status: str) -> str:
    """``initContainers: a; containers: b, c; volumes: d`` from the status annotation's JSON."""
    try:
        decoded = json.loads(status)
    except ValueError:
        return "unreadable"
    if not isinstance(decoded, dict):
        return "unreadable"
    parts = [
        f"{section}: {', '.join(map(str, decoded[section]))}"
        for section in ("initContainers", "containers", "volumes")
        if decoded.get(section)
    ]
    return "; ".join(parts) or "nothing"


def status_note(pod: Mapping[str, Any], settings: Settings, asks: bool) -> str:
    """What an existing pod's status annotation says, for cluster mode."""
    metadata = pod.get("metadata") or {}
    created = metadata.get("creationTimestamp") or "an unknown time"
    status = (metadata.get("annotations") or {}).get(f"{settings.annotation_prefix}/{STATUS}")
    if status is not None:
        return f"pod {metadata.get('name')}: injected when it was created ({created}): {_status_summary(str(status))}"
    if asks:
        owners = [owner for owner in metadata.get("ownerReferences") or () if isinstance(owner, Mapping) and owner.get("controller")]
        again = (
            f"delete it and its {owners[0].get('kind')} {owners[0].get('name')} creates it again: kubectl -n {metadata.get('namespace')} delete pod {metadata.get('name')}"
            if owners
            else "create it again (it has no owner that would)"
        )
        return (
            f"pod {metadata.get('name')}: created {created} WITHOUT injection although it asks for it: the webhook was "
            f"not called or did not answer (see the checks above); {again}"
        )
    return f"pod {metadata.get('name')}: created {created}, not injected (it asks for nothing)"


# -- text ----------------------------------------------------------------------------------------


def render(explanations: Sequence[Explanation]) -> str:
    """The text `entourage explain` prints: one block per pod or pod template."""
    return "\n".join(_block(explanation) for explanation in explanations) if explanations else "no pod or pod template in the input\n"


def _block(explanation: Explanation) -> str:
    lines = [explanation.target.title, f"  injected: {explanation.verdict}"]
    group = None
    for check in explanation.checks:
        if check.group != group:
            group = check.group
            lines.append(f"  apiserver, {group}:")
        mark = {True: "ok", False: "NO", None: "??"}[check.ok]
        lines.append(f"    [{mark}] {check.subject}: {check.detail}")
        if check.fix:
            lines.append(f"         fix: {check.fix}")
    lines.append(
        f"  webhook, if called: {'injects' if explanation.reason == INJECTED else explanation.reason.replace('_', ' ')}: {explanation.why}"
    )
    lines += [f"    - {problem}" for problem in explanation.problems]
    lines += [f"    fix: {fix}" for fix in explanation.fixes]
    if explanation.components:
        lines.append("  containers:")
        width = max(len(c.name) for c in explanation.components)
        for c in explanation.components:
            ports = f"  ports: {', '.join(c.ports)}" if c.ports else ""
            lines.append(f"    {c.name.ljust(width)}  {c.section:<14}  {c.image}  ({c.kind} profile {c.profile}){ports}")
    if explanation.volumes:
        lines.append(f"  volumes: {', '.join(explanation.volumes)}")
    if explanation.settings:
        lines.append("  settings:")
        # Aligned on the rows of up to 48 characters: one long value does not push every row right.
        width = max((n for n in (len(f"{s.name}={s.value}") for s in explanation.settings) if n <= 48), default=0)
        lines += [f"    {f'{s.name}={s.value}'.ljust(width)}  from {s.source}" for s in explanation.settings]
    lines += [f"  warning: {warning}" for warning in explanation.warnings]
    lines += [f"  {note}" for note in explanation.notes]
    return "\n".join(lines) + "\n"


def as_json(explanations: Sequence[Explanation]) -> str:
    return json.dumps([explanation.as_dict() for explanation in explanations], indent=2) + "\n"
