"""``POST /mutate`` as a plain ASGI callable: the admission hot path, outside FastAPI's machinery.

FastAPI's per-request work (routing, dependency resolution, response models) costs more than
the whole injection, so the server hands ``/mutate`` straight to this callable; every other
route stays an ordinary FastAPI route. What happens per decision beyond answering it (metrics,
the log line) is the ``observe`` callback's business.

Written for the common case, measured by ``python -m bench``: one pass over the headers, the
body taken as is when it arrives in one message, the error answers encoded once at import.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import orjson

from webhook.admission import partial
from webhook.admission.decide import Decision, NamespaceAnnotations, failed
from webhook.admission.reuse import AnswerCache
from webhook.admission.review import bad_request, decode
from webhook.engine.inject import ClusterFacts
from webhook.engine.settings import Settings
from webhook.errors import ReviewError

MAX_BODY = 3 * 1024 * 1024 + 64 * 1024
"""The apiserver's own request limit is 3 MiB; the review wrapper adds a little."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AdmissionState(Protocol):
    """What the hot path reads on every request (the server may swap it on reload)."""

    settings: Settings | None
    """None: no valid configuration (``config_problem`` says why); answered with ``unconfigured``."""
    cluster: ClusterFacts
    namespace_annotations: NamespaceAnnotations | None
    config_problem: str | None


def unconfigured(state: AdmissionState) -> bytes:
    """The 503 ``Status`` of a process without a valid configuration (webhook/serving/reload.py):
    the API server counts it as a failed call and applies the webhook's ``failurePolicy``, with
    this message in the pod's rejection under ``Fail``."""
    message = f"Entourage cannot admit: no valid configuration ({state.config_problem}); see the webhook's logs"
    return orjson.dumps(bad_request(message, 503))


_CONTENT_TYPE = (b"content-type", b"application/json")
_NOT_POST = orjson.dumps(bad_request("use POST for /mutate", 405))
_TOO_LARGE = orjson.dumps(bad_request(f"the body is larger than {MAX_BODY} bytes", 413))
_UNREADABLE = orjson.dumps(bad_request("the AdmissionReview could not be read (an internal error; see the webhook's logs)"))

log = logging.getLogger("entourage.admission")


async def _answer(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    headers = [_CONTENT_TYPE, (b"content-length", b"%d" % len(body))]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MutateEndpoint:
    """The ASGI app for ``POST /mutate``."""

    def __init__(
        self,
        state: Callable[[], AdmissionState],
        observe: Callable[[Decision], None] | None = None,
        *,
        body_timeout: float | None = None,
        answers: AnswerCache | None = None,
    ) -> None:
        self.state = state
        self.observe = observe
        self.answers = answers or AnswerCache(0)
        self.body_timeout = body_timeout
        """Seconds a client may take to send its body (a slow client gets 408); None: no limit."""
        self._deadlines = _Deadlines(body_timeout) if body_timeout is not None else None
        self._loads: tuple[Settings | None, Callable[[bytes], Any]] = (None, partial.loads)

    def _decoder(self, settings: Settings) -> Callable[[bytes], Any]:
        """``partial.loads`` with the settings' limits, made once per configuration."""
        if self._loads[0] is not settings:
            self._loads = (settings, functools.partial(partial.loads, limits=settings.limits))
        return self._loads[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _answer(send, 405, _NOT_POST)
            return
        content_type: bytes | None = None
        declared: bytes | None = None
        for key, value in scope["headers"]:  # the first of each, in one pass
            if key == b"content-type":
                if content_type is None:
                    content_type = bytes(value)
            elif key == b"content-length" and declared is None:
                declared = bytes(value)
        if content_type != b"application/json":  # the apiserver sends exactly this
            content_type = (content_type or b"").split(b";")[0].strip().lower()
            if content_type != b"application/json":
                message = f"expected Content-Type application/json, got {content_type[:64].decode('latin-1')!r}"
                await _answer(send, 415, orjson.dumps(bad_request(message, 415)))
                return
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            await _answer(send, 413, _TOO_LARGE)
            return
        body = await read_body(receive, send, self._deadlines, self.body_timeout)
        if body is None:
            return
        status, answer, decision = self.respond(body)
        await _answer(send, status, answer)
        if decision is not None and self.observe is not None:
            try:
                self.observe(decision)
            except Exception:  # the answer is sent; a metrics or log failure must not surface
                log.exception("recording an admission failed")

    def respond(self, body: bytes) -> tuple[int, bytes, Decision | None]:
        """Decode, admit and encode one body: the HTTP status, the answer, and the decision when
        there is one. Run with the cyclic garbage collector paused (see ``_Uncollected``)."""
        with _uncollected:
            return self._respond(body)

    def _respond(self, body: bytes) -> tuple[int, bytes, Decision | None]:
        state = self.state()
        if state.settings is None:
            return 503, unconfigured(state), None
        try:
            review = decode(body, loads=self._decoder(state.settings))
        except ReviewError as error:
            return 400, orjson.dumps(bad_request(str(error))), None
        except Exception:  # a bug in decoding: still a 4xx Status, never a 500
            log.exception("reading an AdmissionReview failed unexpectedly")
            return 400, _UNREADABLE, None
        try:
            decision = self.answers.admit(review, state.settings, namespace_annotations=state.namespace_annotations, cluster=state.cluster)
        except ReviewError as error:  # e.g. a CREATE of a Pod without the pod
            return 400, orjson.dumps(bad_request(str(error))), None
        except Exception as failure:  # THE catch-all: whatever escapes admission is answered per onError
            log.exception("admission failed unexpectedly (uid %s)", review["request"]["uid"])
            decision = failed(review, state.settings, failure)
        return 200, orjson.dumps(decision.review), decision


class _Uncollected:
    """``with _uncollected:`` pauses the cyclic garbage collector while a request is decoded and admitted.

    A body of many small objects makes the decoder allocate as many containers, and every 700
    allocations start a collection that walks the young ones; the lists among them (each
    container's ports) are tracked and walked again and again. Everything decoding and admission
    allocate is freed by reference counting when ``respond`` returns (the request holds no
    cycles), so the collector would find nothing: pausing it took a 1.5 MB body of 24,000
    containers with ports from 16 to 10 ms (dicts of strings and the decoder's markers are not
    tracked, so bodies of empty objects gain nothing). No await happens inside, so no other
    request runs while it is paused, and one instance serves every request (a class, not a
    generator: 0.4 µs a request where the generator-based context manager took 2.0)."""

    paused = False

    def __enter__(self) -> None:
        # Paused by someone else (a test, a profiler): theirs to resume.
        self.paused = gc.isenabled()
        if self.paused:
            gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.paused:
            gc.enable()


_uncollected = _Uncollected()


class _Deadlines:
    """Body-read deadlines, enforced by one periodic sweep instead of a timer per request.

    ``asyncio.timeout`` arms and cancels a loop timer for every request, a tenth of the cost of
    answering an unannotated pod; here a request only records its deadline, and a sweep that runs
    while any read is in progress cancels the reads past theirs (so a read may overrun its
    deadline by up to a quarter of the timeout, at most a second).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.interval = min(1.0, timeout / 4)
        self.reading: dict[asyncio.Task[Any], float] = {}
        self.cancelled: set[asyncio.Task[Any]] = set()
        self.sweeping = False

    def start(self) -> asyncio.Task[Any]:
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        self.reading[task] = loop.time() + self.timeout
        if not self.sweeping:
            self.sweeping = True
            loop.call_later(self.interval, self._sweep, loop)
        return task

    def stop(self, task: asyncio.Task[Any]) -> None:
        self.reading.pop(task, None)
        self.cancelled.discard(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """True when the sweep cancelled this read (then the task is no longer being cancelled)."""
        if task in self.cancelled:
            task.uncancel()
            return True
        return False

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in list(self.reading.items()):
            if deadline <= now and task not in self.cancelled:
                self.cancelled.add(task)
                task.cancel()
        self.sweeping = bool(self.reading)
        if self.sweeping:
            loop.call_later(self.interval, self._sweep, loop)


async def read_body(receive: Receive, send: Send, deadlines: _Deadlines | None, timeout: float | None) -> bytes | None:
    """The whole body, or None once an error answer was sent: 408 past the deadline, 413 too large.
    ``/mutate`` and ``/validate`` both read through here."""
    if deadlines is None:
        body = await _read(receive)
    else:
        task = deadlines.start()
        try:
            body = await _read(receive)
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise
            message = f"the request body did not arrive within {timeout:g} seconds"
            await _answer(send, 408, orjson.dumps(bad_request(message, 408)), close=True)
            return None
        finally:
            deadlines.stop(task)
    if body is None:
        await _answer(send, 413, _TOO_LARGE)
    return body


async def _read(receive: Receive) -> bytes | None:
    """The whole request body, or None past MAX_BODY; a disconnect yields what arrived (decode()
    then reports the truncated body as a 400)."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):  # the usual case: one message, no copy
        return body if len(body) <= MAX_BODY else None
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
