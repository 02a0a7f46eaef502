"""AdmissionReview in, AdmissionReview out: the one place where outcomes become responses.

Two error channels, never mixed: a body that is not a usable AdmissionReview raises ReviewError
(the HTTP layer answers 400); a pod that cannot be admitted gets ``allowed: false`` with a
message. An unexpected failure escapes ``admit``; the endpoint (its one catch-all) answers it with
``failed``, which follows ``onError`` and never becomes a 5xx.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook.admission import validate
from webhook.admission.partial import check_annotation_size
from webhook.admission.review import AdmissionReview, answer, warnings
from webhook.engine import patch
from webhook.engine.inject import INJECTED, ClusterFacts, inject_pod
from webhook.engine.settings import Settings
from webhook.engine.status import Component
from webhook.errors import PodDenied, ReviewError

log = logging.getLogger("entourage.admission")

Outcome = Literal["injected", "skipped", "denied", "error"]
"""What became of a request (metrics label ``outcome``)."""
OUTCOME_INJECTED: Outcome = "injected"
OUTCOME_SKIPPED: Outcome = "skipped"
OUTCOME_DENIED: Outcome = "denied"
OUTCOME_ERROR: Outcome = "error"

# The reasons (metrics label ``reason``) that admission adds to the engine's (webhook/engine/inject.py).
NOT_A_POD, NOT_CREATE = "not_a_pod", "not_create"
INVALID, INTERNAL_ERROR = "invalid", "internal_error"

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_GENERATE_NAME = re.compile(r"[a-z0-9][-a-z0-9.]*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_OWNER_FIELDS = {
    "apiVersion": re.compile(r"([a-z0-9.-]+/)?v[0-9a-z]+"),
    "kind": re.compile(r"[A-Za-z][A-Za-z0-9]*"),
    "name": _SUBDOMAIN,
    "uid": re.compile(r"[0-9A-Za-z-]+"),
}
"""What an owner reference must look like before its fields reach logs, metrics or Events."""

NamespaceAnnotations = Callable[[str], "Mapping[str, str] | None"]


@dataclass
class Decision:
    """An answer plus what logs and metrics need to know about it."""

    outcome: Outcome
    reason: str
    review: AdmissionReview
    uid: str
    namespace: str = ""
    pod_name: str = ""
    components: list[str] = field(default_factory=list)
    made: tuple[Component, ...] = ()
    """Kind, profile and profile version of each of ``components`` (bounded values, for metrics labels)."""
    duration: float = 0.0
    owner_references: Any = None
    """The pod's ``metadata.ownerReferences`` as decoded (only when something was injected,
    denied or failed), read by ``owner`` when an Event needs it."""
    dry_run: bool = False
    """The apiserver will not persist the pod: answer, but leave no trace (no Event)."""
    reused: bool = False
    """Answered from an identical earlier request (webhook/admission/reuse.py)."""
    namespace_keys: tuple[str, ...] = ()
    """Denied for these annotations of the Namespace (not the pod's): the Event goes there too."""

    @functools.cached_property
    def owner(self) -> dict[str, str] | None:
        """The pod's controller (apiVersion, kind, name, uid), for Events about it: validated on
        first use, since only Events read it (without a cluster, nothing does)."""
        return _controller(self.owner_references)


def admit(
    review: AdmissionReview,
    settings: Settings,
    *,
    namespace_annotations: NamespaceAnnotations | None = None,
    cluster: ClusterFacts = ClusterFacts(),
) -> Decision:
    """Decide on a decoded AdmissionReview (see ``decode``)."""
    started = time.perf_counter()
    request = review["request"]
    uid = request["uid"]
    namespace = namespace_of(request)
    pod = request.get("object")
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    pod_name = ""
    if isinstance(metadata, dict):
        pod_name = _valid(metadata.get("name"), _SUBDOMAIN) or _valid(metadata.get("generateName"), _GENERATE_NAME)
    decision = Decision(OUTCOME_SKIPPED, "", answer(uid, allowed=True), uid, namespace, pod_name, dry_run=request.get("dryRun") is True)

    kind = request.get("kind") or {}
    if not isinstance(kind, dict) or (kind.get("group"), kind.get("kind")) != ("", "Pod") or request.get("subResource"):
        decision.reason = NOT_A_POD
    elif request.get("operation") != "CREATE":
        decision.reason = NOT_CREATE
    elif not isinstance(pod, dict):
        raise ReviewError("request.object must be the Pod being created")
    else:
        _decide(decision, pod, settings, namespace_annotations, cluster)
        if decision.outcome != OUTCOME_SKIPPED and isinstance(metadata, dict):
            owners = metadata.get("ownerReferences")
            decision.owner_references = owners[:MAX_OWNERS] if isinstance(owners, list) else None
    decision.duration = time.perf_counter() - started
    return decision


def failed(review: AdmissionReview, settings: Settings, error: BaseException, *, duration: float = 0.0) -> Decision:
    """The answer when deciding raised something unexpected: per ``onError``, always an
    AdmissionReview for the request's uid (the apiserver rejects any other answer)."""
    request = review["request"]
    uid = request["uid"]
    decision = Decision(OUTCOME_ERROR, INTERNAL_ERROR, answer(uid, allowed=False), uid, namespace_of(request), duration=duration)
    if settings.on_error == "allow":
        decision.review = answer(uid, allowed=True, warnings=["Entourage failed and admitted the pod unchanged (onError: allow)"])
    else:
        message = f"Entourage failed to inject this pod (internal error: {type(error).__name__}); see the webhook's logs"
        decision.review = answer(uid, allowed=False, status={"code": 500, "reason": "InternalError", "message": message})
    return decision


def namespace_of(request: Mapping[str, Any]) -> str:
    """The request's namespace when it is a valid one (a DNS label), else "": only valid names are
    looked up, logged or counted."""
    return _valid(request.get("namespace"), _LABEL, 63)


def _valid(value: Any, pattern: re.Pattern[str], longest: int = 253) -> str:
    """``value`` when it is a string of at most ``longest`` characters matching ``pattern``, else "".

    Names reach answers, logs, metrics and Events: an invalid one (a 2 MB owner name, a newline)
    is dropped here rather than stored or shown."""
    return value if isinstance(value, str) and len(value) <= longest and pattern.fullmatch(value) else ""


MAX_OWNERS = 16
"""Owner references looked through for the controller. A pod has one (its ReplicaSet, Job...);
the apiserver sets no limit, and a pod author's 500,000 empty ones cost 25 ms to walk."""


def _controller(owners: Any) -> dict[str, str] | None:
    """The controller reference (among the first MAX_OWNERS) when every field of it is valid; an
    invalid one is dropped."""
    if not isinstance(owners, list):
        return None
    for owner in owners[:MAX_OWNERS]:
        if isinstance(owner, dict) and owner.get("controller") is True:
            fields = {key: _valid(owner.get(key), pattern) for key, pattern in _OWNER_FIELDS.items()}
            return fields if all(fields.values()) else None
    return None


def _decide(
    decision: Decision,
    pod: dict[str, Any],
    settings: Settings,
    namespace_annotations: NamespaceAnnotations | None,
    cluster: ClusterFacts,
) -> None:
    uid = decision.uid
    try:
        inherited = namespace_annotations(decision.namespace) if namespace_annotations and decision.namespace else None
        check_annotation_size(pod)
        injection = inject_pod(pod, settings, namespace_annotations=inherited, cluster=cluster)
    except PodDenied as denial:
        decision.outcome, decision.reason = OUTCOME_DENIED, INVALID
        problems = denial.problems
        if inherited:
            # A key only the namespace sets: name the Namespace and the command that fixes it.
            metadata = pod.get("metadata")
            own = metadata.get("annotations") if isinstance(metadata, dict) else None
            own = own if isinstance(own, dict) else {}
            keys = [validate.namespace_key(p, settings, own=own, inherited=inherited) for p in problems]
            problems = [
                validate.locate(p, settings, own=own, inherited=inherited, at="", namespace=decision.namespace) if k else p
                for p, k in zip(problems, keys, strict=True)
            ]
            decision.namespace_keys = tuple(dict.fromkeys(k for k in keys if k))
        message = f"Entourage cannot inject this pod: {'; '.join(problems)}"
        decision.review = answer(uid, allowed=False, status={"code": 400, "reason": "BadRequest", "message": message})
        return
    decision.reason = injection.reason
    if injection.reason != INJECTED:
        decision.review = answer(uid, allowed=True, **warnings(injection.warnings))
        return
    components = injection.components  # a property that builds a list
    decision.outcome, decision.components, decision.made = OUTCOME_INJECTED, components, injection.made
    decision.review = answer(
        uid,
        allowed=True,
        patchType="JSONPatch",
        patch=patch.encode(injection.patch),
        auditAnnotations={"injected": ",".join(components)},
        **warnings(injection.warnings),
    )
