"""The AdmissionReview wire format (admission.k8s.io/v1): its shape as TypedDicts, decoding, answers.

Modelled on kopf's ``reviews.py``: the types say which fields exist and which are optional, so
the code that reads a request and the code that writes a response are checked against the same
model. ``decode`` is the request-error channel: anything that is not a usable AdmissionReview
raises ReviewError, which the HTTP layer answers with a 400 and a ``metav1.Status``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NotRequired, TypedDict

import msgspec
import orjson

from webhook.errors import ReviewError

API_VERSION = "admission.k8s.io/v1"
MAX_WARNING = 120
"""The apiserver shows warnings to kubectl users; longer ones are truncated by us, not by it."""


class AdmissionRequest(TypedDict):
    """What the apiserver sends. ``decode`` checks ``uid`` alone; every other member is typed as
    what a client may send (``Any``: a forged review holds anything), and its reader checks it
    (the apiserver's values: ``kind`` a GroupVersionKind, ``operation`` CREATE, UPDATE, DELETE or
    CONNECT, ``dryRun`` a bool, ``object`` and ``oldObject`` the objects or null). The compiled
    build (webhook/compiled.py) enforces declared types at run time, so they must not promise more."""

    uid: str
    kind: NotRequired[Any]
    namespace: NotRequired[Any]
    operation: NotRequired[Any]
    subResource: NotRequired[Any]
    dryRun: NotRequired[Any]
    object: NotRequired[Any]
    oldObject: NotRequired[Any]


class Status(TypedDict):
    """``metav1.Status``: the body of every 4xx, and the reason of a denial."""

    code: int
    message: str
    reason: NotRequired[str]
    kind: NotRequired[Literal["Status"]]
    apiVersion: NotRequired[Literal["v1"]]
    status: NotRequired[Literal["Failure"]]


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    """Base64 of the JSONPatch."""
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]


class AdmissionReview(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    request: NotRequired[AdmissionRequest]
    response: NotRequired[AdmissionResponse]


def decode(body: bytes, *, loads: Callable[[bytes], Any] = orjson.loads) -> AdmissionReview:
    """Parse and shape-check a request body; ReviewError says what is wrong with it.

    ``loads`` may leave out what admission does not read (the server uses ``partial.loads``)."""
    try:
        review = loads(body)
    except (orjson.JSONDecodeError, msgspec.DecodeError, UnicodeDecodeError) as error:
        raise ReviewError(f"the body is not JSON: {error}") from None
    except RecursionError:
        raise ReviewError("the body is not JSON this server reads: it nests deeper than any AdmissionReview") from None
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
    return review  # type: ignore[return-value]  # shape-checked above, as far as admission relies on it


def answer(uid: str, *, allowed: bool, **fields: Any) -> AdmissionReview:
    """A response review: ``fields`` are the optional AdmissionResponse members."""
    response: AdmissionResponse = {"uid": uid, "allowed": allowed, **fields}  # type: ignore[typeddict-item]
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def warnings(messages: Sequence[str]) -> dict[str, list[str]]:
    """The ``warnings`` member for ``answer``, each cut to what kubectl shows well; empty: none."""
    return {"warnings": [w if len(w) <= MAX_WARNING else w[: MAX_WARNING - 3] + "..." for w in messages]} if messages else {}


_REASONS = {
    400: "BadRequest",
    405: "MethodNotAllowed",
    408: "Timeout",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    431: "RequestHeaderFieldsTooLarge",
    503: "ServiceUnavailable",
}


def bad_request(message: str, code: int = 400) -> Status:
    """Body of an HTTP 4xx (or 503) answer: a metav1.Status, which is what Kubernetes clients expect."""
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": _REASONS[code], "message": message}
