"""Validating admission: workloads, Namespaces and pod updates judged by the injection engine's own rules.

A typo in a Deployment's pod template used to surface only as ``FailedCreate`` events on a
ReplicaSet nobody watches. ``POST /validate`` runs the same ``inject_pod`` on the template, with
the namespace's defaults, at the moment the workload is applied, and answers with the messages
the pod would get, located where the person applying it can find them. No rule lives here: every
verdict on annotations is the engine's; this module only decides where a message points and
whether it denies or warns (``validation`` in the configuration):

- workloads (apps/v1 Deployment, StatefulSet, DaemonSet, ReplicaSet; batch/v1 Job, CronJob):
  denied on CREATE, and on UPDATE when our template annotations changed; an UPDATE that leaves
  them as they were gets warnings instead, so an unrelated edit of an old workload is never
  blocked by what was already there;
- Namespaces: invalid annotations under our prefix are denied when they are set (CREATE, or an
  UPDATE that changes them);
- Pods, UPDATE: the containers, init containers and volumes the pod's status annotation lists
  belong to the platform; changing or removing one (``kubectl set image`` on the logging agent)
  is denied.

Pure, like ``decide``: dict in, ``Verdict`` out, no I/O. ``locate`` is shared with ``decide``,
which names the Namespace and the fix when a pod is denied for its namespace's annotations.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from webhook.admission.partial import check_annotation_size
from webhook.admission.review import AdmissionReview, answer, warnings
from webhook.engine.annotations import STATUS, own_annotations, parse_annotations, show_value
from webhook.engine.inject import ClusterFacts, inject_pod
from webhook.engine.settings import Settings
from webhook.errors import PodDenied, ReviewError

Outcome = Literal["allowed", "warned", "denied", "error"]
"""What became of a validation request (metrics label ``outcome``)."""

# Why (metrics label ``reason``; bounded values).
VALID, INVALID, UNCHANGED = "valid", "invalid", "invalid_unchanged"
INJECTED_CHANGED = "injected_changed"
NOT_VALIDATED, OFF, INTERNAL_ERROR = "not_validated", "off", "internal_error"

TEMPLATES: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}
"""Where each workload kind keeps the pod it makes."""

INJECTED_SECTIONS = ("initContainers", "containers", "volumes")
"""The status annotation's lists, which are also the pod spec lists they name entries of."""

MAX_LISTED = 64
"""Names read from one status annotation: injection writes a handful (it is capped by the
limits on routes, targets and adapters); a forged status cannot make the comparison long."""

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

_UNKNOWN = ClusterFacts()

NamespaceAnnotations = Callable[[str], "Mapping[str, str] | None"]


@dataclass
class Verdict:
    """An answer plus what logs and metrics need to know about it."""

    outcome: Outcome
    reason: str
    review: AdmissionReview
    uid: str
    kind: str = ""
    """The object's kind (a bounded set once validated; "" for anything else)."""
    namespace: str = ""
    duration: float = 0.0


def validate(
    review: AdmissionReview,
    settings: Settings,
    *,
    namespace_annotations: NamespaceAnnotations | None = None,
    cluster: ClusterFacts = _UNKNOWN,
) -> Verdict:
    """Decide on a decoded AdmissionReview (``review.decode``, the full decode: an UPDATE of a
    pod compares whole containers, which the partial decode of ``/mutate`` leaves out)."""
    started = time.perf_counter()
    request = review["request"]
    uid = request["uid"]
    namespace = request.get("namespace")
    namespace = namespace if isinstance(namespace, str) and len(namespace) <= 63 and _LABEL.fullmatch(namespace) else ""
    verdict = Verdict("allowed", NOT_VALIDATED, answer(uid, allowed=True), uid, namespace=namespace)
    kind = request.get("kind") or {}
    group_kind = (kind.get("group"), kind.get("kind")) if isinstance(kind, dict) else (None, None)
    operation = request.get("operation")
    target = _target(group_kind, operation)
    if target is None or request.get("subResource"):
        pass
    elif settings.validation == "off":
        verdict.reason = OFF
    else:
        new, old = request.get("object"), request.get("oldObject")
        if not isinstance(new, dict) or (operation == "UPDATE" and not isinstance(old, dict)):
            both = " and request.oldObject" if operation == "UPDATE" else ""
            raise ReviewError(
                f"request.object{both} must be the {target if target in ('Pod', 'Namespace') else 'workload'} of the {operation}"
            )
        verdict.kind = str(group_kind[1])
        old = old if operation == "UPDATE" else None
        if target == "Pod":
            assert old is not None  # an UPDATE (see _target)
            problems, changed, advice = _injected_changes(old, new, settings), True, tuple[str, ...]()
            reason, lead = INJECTED_CHANGED, "Entourage: "
        elif target == "Namespace":
            problems, changed, advice = _namespace(new, old, settings)
            reason, lead = INVALID, "Entourage: invalid annotations on this Namespace: "
        else:
            inherited = namespace_annotations(namespace) if namespace_annotations and namespace else None
            problems, changed, advice = _workload(new, old, target, settings, inherited, namespace, cluster)
            reason, lead = INVALID, f"Entourage would deny every pod of this {verdict.kind}: "
        _judge(verdict, settings, problems, changed, advice, reason, lead)
    verdict.duration = time.perf_counter() - started
    return verdict


def failed(review: AdmissionReview, error: BaseException) -> Verdict:
    """The answer when validating raised something unexpected: admitted, with a warning. The
    mutating webhook still decides at pod creation, so a validation bug must block nobody."""
    uid = review["request"]["uid"]
    message = f"Entourage could not validate this object (internal error: {type(error).__name__}); see the webhook's logs"
    return Verdict("error", INTERNAL_ERROR, answer(uid, allowed=True, warnings=[message[:120]]), uid)


def _target(group_kind: tuple[Any, Any], operation: Any) -> str | None:
    """What this request is, when it is one /validate judges: "Pod", "Namespace", or the
    workload template's path (as a dotted string); None for everything else."""
    if operation not in ("CREATE", "UPDATE"):
        return None
    if group_kind == ("", "Pod"):
        return "Pod" if operation == "UPDATE" else None
    if group_kind == ("", "Namespace"):
        return "Namespace"
    path = TEMPLATES.get(group_kind)
    return ".".join(path) if path else None


def _judge(
    verdict: Verdict, settings: Settings, problems: list[str], changed: bool, advice: tuple[str, ...], reason: str, lead: str
) -> None:
    """Problems deny when the mode is ``deny`` and the request set them; otherwise they warn."""
    uid = verdict.uid
    if not problems:
        verdict.outcome, verdict.reason = ("warned" if advice else "allowed"), VALID
        verdict.review = answer(uid, allowed=True, **warnings(advice))
    elif settings.validation == "deny" and changed:
        verdict.outcome, verdict.reason = "denied", reason
        message = lead + "; ".join(problems)
        verdict.review = answer(uid, allowed=False, status={"code": 400, "reason": "BadRequest", "message": message}, **warnings(advice))
    else:
        verdict.outcome, verdict.reason = "warned", reason if settings.validation == "warn" else UNCHANGED
        verdict.review = answer(uid, allowed=True, **warnings([*problems, *advice]))


def _annotations(obj: Any) -> Mapping[str, Any]:
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return annotations if isinstance(annotations, Mapping) else {}


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


def _workload(
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    at: str,
    settings: Settings,
    inherited: Mapping[str, str] | None,
    namespace: str,
    cluster: ClusterFacts,
) -> tuple[list[str], bool, tuple[str, ...]]:
    """The engine on the pod template, as the pod will meet it; (problems, changed, warnings)."""
    path = tuple(at.split("."))
    template = _dig(new, path)
    if not isinstance(template, Mapping):
        return [], False, ()  # the apiserver's own validation names a missing template
    prefix = settings.annotation_prefix
    try:
        check_annotation_size(template)
    except PodDenied as denial:  # set by this request: Kubernetes never stored such a template
        return [locate(p, settings, own={}, inherited={}, at=at, namespace=namespace) for p in denial.problems], True, ()
    changed = old is None or _own(_dig(old, path), prefix) != _own(template, prefix)
    try:
        injection = inject_pod(template, settings, namespace_annotations=inherited, cluster=cluster)
    except PodDenied as denial:
        own = _annotations(template)
        return [locate(p, settings, own=own, inherited=inherited or {}, at=at, namespace=namespace) for p in denial.problems], changed, ()
    return [], changed, injection.warnings


def _own(obj: Any, prefix: str) -> dict[str, Any]:
    return own_annotations(_annotations(obj), prefix)


def _namespace(new: Mapping[str, Any], old: Mapping[str, Any] | None, settings: Settings) -> tuple[list[str], bool, tuple[str, ...]]:
    """Our annotations on a Namespace, parsed as every pod in it will parse them."""
    prefix = settings.annotation_prefix
    own = _own(new, prefix)
    own.pop(STATUS, None)  # pods ignore a namespace's status annotation (inject.requested_annotations)
    changed = old is None or _own(old, prefix) != _own(new, prefix)
    if not own:
        return [], changed, ()
    try:
        request = parse_annotations(own, settings)
    except PodDenied as denial:
        annotations = _annotations(new)
        return [locate(p, settings, own=annotations, inherited={}, at="", namespace="") for p in denial.problems], changed, ()
    return [], changed, request.warnings


def _injected_changes(old: Mapping[str, Any], new: Mapping[str, Any], settings: Settings) -> list[str]:
    """What a pod UPDATE does to the entries its status annotation lists: each change or removal."""
    status = _annotations(old).get(f"{settings.annotation_prefix}/{STATUS}")
    try:
        listed = orjson.loads(status) if isinstance(status, str) and len(status) <= 16384 else None
    except orjson.JSONDecodeError:
        return []  # not ours to judge: injection never writes a status it cannot read
    if not isinstance(listed, dict):
        return []
    problems: list[str] = []
    old_spec, new_spec = old.get("spec"), new.get("spec")
    for section in INJECTED_SECTIONS:
        names = listed.get(section)
        if not isinstance(names, list) or not names:
            continue
        before, after = _by_name(_dig(old_spec, (section,))), _by_name(_dig(new_spec, (section,)))
        for name in names[:MAX_LISTED]:
            if not isinstance(name, str) or name not in before:
                continue
            what = "volume" if section == "volumes" else "init container" if section == "initContainers" else "container"
            if name not in after:
                problems.append(f"spec.{section}: the {what} {name} was injected by Entourage and cannot be removed")
            elif after[name] != before[name]:
                fields = sorted(k for k in {*before[name], *after[name]} if before[name].get(k) != after[name].get(k))
                problems.append(
                    f"spec.{section}[{name}]: the {what} {name} was injected by Entourage and cannot be changed"
                    f" ({', '.join(fields[:8])} changed); change the Entourage annotations or the configuration and recreate the pod"
                )
    return problems


def _by_name(items: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {item["name"]: item for item in items if isinstance(item, Mapping) and isinstance(item.get("name"), str)}


def namespace_key(problem: str, settings: Settings, *, own: Mapping[str, Any], inherited: Mapping[str, Any]) -> str | None:
    """The annotation key an engine message is about, when the namespace sets it and the object
    does not (the object's own value wins, so then the object is the place to fix it)."""
    if not problem.startswith(settings.annotation_prefix + "/"):
        return None
    key = problem.partition(": ")[0]
    return key if key not in own and key in inherited else None


def locate(problem: str, settings: Settings, *, own: Mapping[str, Any], inherited: Mapping[str, Any], at: str, namespace: str) -> str:
    """An engine message, pointed at the place to fix it.

    The engine's messages start with what they are about: ``<prefix>/<key>: ['value':] reason``
    for an annotation (``_Problems.add``), ``metadata.…`` or ``spec.…`` for a field of the pod.
    ``own`` are the annotations of the object at ``at`` (a pod: ""; a workload:
    ``spec.template``), ``inherited`` those of its namespace. A key that only the namespace sets
    names the Namespace and the command that removes it; any other annotation is located in the
    object, its value left out (it is right there). Messages about neither keep their text."""
    dot = f"{at}." if at else ""
    if problem.startswith(settings.annotation_prefix + "/"):
        key, _, reason = problem.partition(": ")
        from_namespace = namespace_key(problem, settings, own=own, inherited=inherited) is not None
        value = (inherited if from_namespace else own).get(key)
        if isinstance(value, str) and reason.startswith(show_value(value) + ": "):
            reason = reason[len(show_value(value)) + 2 :]
        if from_namespace and namespace:
            return f'Namespace {namespace} annotations["{key}"]: {reason} (set on the Namespace for all its pods; fix the value, or remove it: kubectl annotate namespace {namespace} {key}-)'
        return f'{dot}metadata.annotations["{key}"]: {reason}'
    if problem.startswith(("metadata.", "spec.")):
        return dot + problem
    return f"{at}: {problem}" if at else problem
