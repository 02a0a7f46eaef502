"""AdmissionReview in, AdmissionReview out: the one place where outcomes become responses.

Two error channels, never mixed: a body that is not a usable AdmissionReview raises ReviewError
(the HTTP layer answers 400); a pod that cannot be admitted gets ``allowed: false`` with a
message. An unexpected failure inside injection follows ``onError`` and never becomes a 5xx.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from webhook.engine import patch
from webhook.engine.inject import INJECTED, ClusterFacts, inject_pod
from webhook.engine.settings import Settings
from webhook.errors import PodDenied, ReviewError

API_VERSION = "admission.k8s.io/v1"
MAX_WARNING = 120
"""The apiserver shows warnings to kubectl users; longer ones are truncated by us, not by it."""

log = logging.getLogger("entourage.admission")

# Outcomes (metrics label `outcome`) and the reasons that are not produced by the engine.
OUTCOME_INJECTED, OUTCOME_SKIPPED, OUTCOME_DENIED, OUTCOME_ERROR = "injected", "skipped", "denied", "error"
NOT_A_POD, NOT_CREATE = "not_a_pod", "not_create"
INVALID, INTERNAL_ERROR = "invalid", "internal_error"

NamespaceAnnotations = Callable[[str], "Mapping[str, str] | None"]


@dataclass
class Decision:
    """An answer plus what logs and metrics need to know about it."""

    outcome: str
    reason: str
    review: dict[str, Any]
    uid: str
    namespace: str = ""
    pod_name: str = ""
    components: list[str] = field(default_factory=list)
    duration: float = 0.0
    owner: dict[str, str] | None = None
    """The pod's controller (apiVersion, kind, name, uid), for Events about it (so only when
    something was injected, denied or failed)."""
    dry_run: bool = False
    """The apiserver will not persist the pod: answer, but leave no trace (no Event)."""
    reused: bool = False
    """Answered from an identical earlier request (webhook/admission/reuse.py)."""


def decode(body: bytes, *, loads: Callable[[bytes], Any] = orjson.loads) -> dict[str, Any]:
    """Parse and shape-check a request body; ReviewError says what is wrong with it.

    ``loads`` may leave out what admission does not read (the server uses ``pruned.loads``)."""
    try:
        review = loads(body)
    except orjson.JSONDecodeError as error:
        raise ReviewError(f"the body is not JSON: {error}") from None
    if not isinstance(review, dict):
        raise ReviewError("expected an AdmissionReview object, got a JSON " + type(review).__name__)
    if review.get("apiVersion") != API_VERSION or review.get("kind") != "AdmissionReview":
        raise ReviewError(
            f"expected apiVersion {API_VERSION} and kind AdmissionReview, got "
            f"{str(review.get('apiVersion'))[:64]!r} and {str(review.get('kind'))[:64]!r}"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError("the AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > 128:
        raise ReviewError("request.uid must be a non-empty string")
    return review


def _response(uid: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": {"uid": uid, **fields}}


def _warnings(warnings: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return {"warnings": [w if len(w) <= MAX_WARNING else w[: MAX_WARNING - 3] + "..." for w in warnings]} if warnings else {}


def admit(
    review: Mapping[str, Any],
    settings: Settings,
    *,
    namespace_annotations: NamespaceAnnotations | None = None,
    cluster: ClusterFacts = ClusterFacts(),
) -> Decision:
    """Decide on a decoded AdmissionReview (see ``decode``)."""
    started = time.perf_counter()
    request = review["request"]
    uid = request["uid"]
    namespace = request.get("namespace") or ""
    pod = request.get("object")
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    pod_name = ""
    if isinstance(metadata, dict):
        pod_name = str(metadata.get("name") or metadata.get("generateName") or "")[:253]
    decision = Decision(OUTCOME_SKIPPED, "", {}, uid, str(namespace)[:253], pod_name, dry_run=request.get("dryRun") is True)

    kind = request.get("kind") or {}
    if not isinstance(kind, dict) or (kind.get("group"), kind.get("kind")) != ("", "Pod") or request.get("subResource"):
        decision.reason, decision.review = NOT_A_POD, _response(uid, allowed=True)
    elif request.get("operation") != "CREATE":
        decision.reason, decision.review = NOT_CREATE, _response(uid, allowed=True)
    elif not isinstance(pod, dict):
        raise ReviewError("request.object must be the Pod being created")
    else:
        _decide(decision, pod, settings, namespace_annotations, cluster)
        if decision.outcome != OUTCOME_SKIPPED:
            decision.owner = _controller(metadata)
    decision.duration = time.perf_counter() - started
    return decision


def _controller(metadata: Any) -> dict[str, str] | None:
    if not isinstance(metadata, dict):
        return None
    owners = metadata.get("ownerReferences")
    if not isinstance(owners, list):
        return None
    for owner in owners:
        if isinstance(owner, dict) and owner.get("controller") is True and isinstance(owner.get("name"), str):
            return {key: owner[key] for key in ("apiVersion", "kind", "name", "uid") if isinstance(owner.get(key), str)}
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
        injection = inject_pod(pod, settings, namespace_annotations=inherited, cluster=cluster)
    except PodDenied as denial:
        decision.outcome, decision.reason = OUTCOME_DENIED, INVALID
        message = f"Entourage cannot inject this pod: {denial}"
        decision.review = _response(uid, allowed=False, status={"code": 400, "reason": "BadRequest", "message": message})
        return
    except Exception as error:  # noqa: BLE001 - the catch-all that keeps every answer a 200
        log.exception("injection failed unexpectedly (uid %s)", uid)
        decision.outcome, decision.reason = OUTCOME_ERROR, INTERNAL_ERROR
        if settings.on_error == "allow":
            decision.review = _response(
                uid, allowed=True, warnings=["Entourage failed and admitted the pod unchanged (onError: allow)"]
            )
        else:
            message = f"Entourage failed to inject this pod (internal error: {type(error).__name__}); see the webhook's logs"
            decision.review = _response(uid, allowed=False, status={"code": 500, "reason": "InternalError", "message": message})
        return
    decision.reason = injection.reason
    if injection.reason != INJECTED:
        decision.review = _response(uid, allowed=True, **_warnings(injection.warnings))
        return
    decision.outcome, decision.components = OUTCOME_INJECTED, injection.components
    decision.review = _response(
        uid,
        allowed=True,
        patchType="JSONPatch",
        patch=patch.encode(injection.patch),
        auditAnnotations={"injected": ",".join(injection.components)},
        **_warnings(injection.warnings),
    )


_REASONS = {400: "BadRequest", 405: "MethodNotAllowed", 408: "Timeout", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType"}


def bad_request(message: str, code: int = 400) -> dict[str, Any]:
    """Body of an HTTP 4xx answer: a metav1.Status, which is what Kubernetes clients expect."""
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": _REASONS[code], "message": message}
