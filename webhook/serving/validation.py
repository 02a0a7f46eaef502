"""``POST /validate`` as a plain ASGI callable: the validating webhook, beside ``/mutate``.

Same server, same TLS, same limits as ``/mutate`` (``endpoint.py``): POST only, JSON only, the
apiserver's 3 MiB, a body deadline, a 400 ``Status`` for anything that is not an
AdmissionReview, and one catch-all so nothing becomes a 5xx (a process without a valid
configuration answers 503, as ``/mutate`` does: ``reload.py``). Two differences, both deliberate:
a body gets its own decode (``partial.loads_for_validation``: a workload's annotations and pod
template as ``/mutate`` decodes a pod, a Pod UPDATE whole, since it compares the injected
containers field by field), and an unexpected failure
admits with a warning (``validate.failed``): the mutating webhook still decides at pod creation.
Validation is not on the hot path of every pod, so answers are not kept for reuse.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import orjson

from webhook.admission import partial
from webhook.admission.review import bad_request, decode
from webhook.admission.validate import Verdict, failed, validate
from webhook.errors import ReviewError
from webhook.serving.endpoint import (
    _UNREADABLE,
    MAX_BODY,
    AdmissionState,
    Receive,
    Scope,
    Send,
    _answer,
    _Deadlines,
    _uncollected,
    read_body,
    unconfigured,
)

log = logging.getLogger("entourage.admission")

_NOT_POST = orjson.dumps(bad_request("use POST for /validate", 405))
_TOO_LARGE = orjson.dumps(bad_request(f"the body is larger than {MAX_BODY} bytes", 413))


class ValidateEndpoint:
    """The ASGI app for ``POST /validate``."""

    def __init__(
        self, state: Callable[[], AdmissionState], observe: Callable[[Verdict], None] | None = None, *, body_timeout: float | None = None
    ) -> None:
        self.state = state
        self.observe = observe
        self.body_timeout = body_timeout
        self._deadlines = _Deadlines(body_timeout) if body_timeout is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = _refusal(scope)
        if refused is not None:
            await _answer(send, refused[0], refused[1])
            return
        body = await read_body(receive, send, self._deadlines, self.body_timeout)
        if body is None:
            return
        code, answer, verdict = self.respond(body)
        await _answer(send, code, answer)
        if verdict is not None and self.observe is not None:
            try:
                self.observe(verdict)
            except Exception:  # the answer is sent; a metrics or log failure must not surface
                log.exception("recording a validation failed")

    def respond(self, body: bytes) -> tuple[int, bytes, Verdict | None]:
        """Decode and validate one body: the HTTP status, the answer, and the verdict when there
        is one. With the garbage collector paused, as ``/mutate`` runs (``endpoint._Uncollected``)."""
        with _uncollected:
            return self._respond(body)

    def _respond(self, body: bytes) -> tuple[int, bytes, Verdict | None]:
        state = self.state()
        if state.settings is None:
            return 503, unconfigured(state), None
        try:
            review = decode(body, loads=functools.partial(partial.loads_for_validation, limits=state.settings.limits))
        except ReviewError as error:
            return 400, orjson.dumps(bad_request(str(error))), None
        except Exception:  # a bug in decoding: still a 4xx Status, never a 500 (as /mutate)
            log.exception("reading an AdmissionReview failed unexpectedly")
            return 400, _UNREADABLE, None
        try:
            verdict = validate(review, state.settings, namespace_annotations=state.namespace_annotations, cluster=state.cluster)
        except ReviewError as error:  # e.g. an UPDATE without its oldObject
            return 400, orjson.dumps(bad_request(str(error))), None
        except Exception as error:  # THE catch-all: admitted with a warning, never a 500
            log.exception("validation failed unexpectedly (uid %s)", review["request"]["uid"])
            verdict = failed(review, error)
        return 200, orjson.dumps(verdict.review), verdict


def _refusal(scope: Scope) -> tuple[int, bytes] | None:
    """The 405, 415 or 413 a request gets before its body is read, or None."""
    if scope["method"] != "POST":
        return 405, _NOT_POST
    headers: dict[bytes, bytes] = {}
    for key, value in scope["headers"]:
        headers.setdefault(bytes(key), bytes(value))  # the first of each
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        message = f"expected Content-Type application/json, got {content_type[:64].decode('latin-1')!r}"
        return 415, orjson.dumps(bad_request(message, 415))
    declared = headers.get(b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return 413, _TOO_LARGE
    return None
