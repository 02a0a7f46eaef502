"""Closed-loop HTTPS clients (asyncio + ssl, HTTP/1.1 keep-alive, like the apiserver) that check
every answer they get.

A request counts as **sent** once its bytes are written; every sent request ends as exactly one
of: **answered** (a complete HTTP response was read; then it is checked and may be **wrong**),
or **failed** (the connection broke or timed out before a complete response). Connection
attempts that fail are counted apart (``connect_errors``): whether they are acceptable is the
scenario's call (during a SIGTERM drain, connecting to a closed listener is expected).

Checked on every answer: HTTP 200, valid JSON, an AdmissionReview whose ``response.uid`` is the
uid sent, the hand-written expectation (inject with these containers / allow / deny naming the
key), equality with the engine's answer for that input, and the patch applied with jsonpatch to
the request's pod giving exactly the pod validated once by ``tests/podcheck.py``. Every
``validate_every``-th patched pod is also validated again, once the load is over (validation
takes ~10 ms a pod; inside the load it would stall the clients and inflate the latencies).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import orjson

from soak.mix import Case, judge

MAX_KEPT = 20
"""How many examples of each kind of problem a report keeps."""


@dataclass
class Stats:
    sent: int = 0
    answered: int = 0
    failed: int = 0
    wrong: int = 0
    status: Counter[int] = field(default_factory=Counter)
    cases: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    connect_errors: int = 0
    server_closes: int = 0
    validated: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wrongs: list[str] = field(default_factory=list)
    connect_failures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float = 0.0
    lost: dict[int, list[str]] = field(default_factory=dict)
    """Failures by client port, for scenarios that attribute them to a killed worker."""

    @property
    def errors(self) -> int:
        return self.failed + self.wrong + sum(n for code, n in self.status.items() if code != 200)

    def fivexx(self) -> int:
        return sum(n for code, n in self.status.items() if code >= 500)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def rate(self) -> float:
        return self.answered / max(1e-9, (self.ended or time.monotonic()) - self.started)

    def summary(self) -> str:
        return (
            f"{self.sent} sent, {self.answered} answered ({self.rate():.0f}/s), {self.failed} failed, "
            f"{self.fivexx()} 5xx, {self.wrong} wrong, statuses {dict(self.status)}; "
            f"p50 {self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms, max {max(self.latencies, default=0) * 1000:.1f} ms; "
            f"{self.connects} connections ({self.server_closes} closed by the server, {self.connect_errors} refused/failed)"
        )

    def merge(self, other: Stats) -> None:
        for name in ("sent", "answered", "failed", "wrong", "connects", "connect_errors", "server_closes", "validated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.status.update(other.status)
        self.cases.update(other.cases)
        self.latencies += other.latencies
        self.failures += other.failures[:MAX_KEPT]
        self.wrongs += other.wrongs[:MAX_KEPT]


class Checker:
    def __init__(self, validate_every: int = 500, max_samples: int = 400) -> None:
        self.validate_every, self.max_samples = validate_every, max_samples
        self._injected = 0
        self.samples: list[tuple[Case, Any]] = []
        """Patched pods kept for validation after the load (kubernetes-validate takes ~10 ms a pod:
        inside the load it would stall the other clients and inflate the latencies measured)."""

    def validate_samples(self, stats: Stats) -> None:
        from tests.podcheck import assert_valid_injected_pod

        for case, patched in self.samples:
            try:
                assert_valid_injected_pod(patched, list(case.containers))
            except Exception as error:  # noqa: BLE001
                stats.wrong += 1
                if len(stats.wrongs) < MAX_KEPT:
                    stats.wrongs.append(f"({case.name}): the patched pod is invalid: {error!r}")
            stats.validated += 1
        self.samples.clear()

    def check(self, case: Case, uid: str, status: int, body: bytes) -> str:
        """'' for a correct answer, else what is wrong."""
        if status != 200:
            return f"HTTP {status}: {body[:200]!r}"
        try:
            review = orjson.loads(body)
            response = dict(review["response"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            return f"not an AdmissionReview ({error!r}): {body[:200]!r}"
        if review.get("apiVersion") != "admission.k8s.io/v1" or review.get("kind") != "AdmissionReview":
            return f"wrong apiVersion/kind: {review.get('apiVersion')!r} {review.get('kind')!r}"
        if response.pop("uid", None) != uid:
            return f"uid not echoed: sent {uid}, got {review['response'].get('uid')!r}"
        problem = judge(case, response)
        if problem:
            return problem
        if response != case.answer:
            return f"differs from the engine's answer: {sorted(set(response) ^ set(case.answer)) or 'values'}"
        if "patch" in response:
            try:
                operations = orjson.loads(base64.b64decode(response["patch"], validate=True))
                pod = orjson.loads(orjson.dumps(case.review["request"]["object"]))  # a fresh copy, faster than deepcopy
                patched = jsonpatch.apply_patch(pod, operations, in_place=True)
            except Exception as error:  # noqa: BLE001 - any failure to apply is a wrong answer
                return f"the patch does not apply: {error!r}"
            if patched != case.patched:
                return "the patched pod differs from the validated one"
            self._injected += 1
            if self.validate_every and self._injected % self.validate_every == 1 and len(self.samples) < self.max_samples:
                self.samples.append((case, patched))
        return ""


@dataclass
class Target:
    host: str
    port: int
    context: ssl.SSLContext
    server_name: str = "localhost"


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(b":")
            headers[key.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunks.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(chunk[:-2] for chunk in chunks)
    else:
        body = await reader.read()
    return Response(status, headers, body)


def request_bytes(body: bytes, path: str = "/mutate", content_type: bytes = b"application/json") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (path.encode(), content_type, len(body))
    ) + body


_client_ids = itertools.count()


class Client:
    """One connection at a time, requests back to back, every answer checked."""

    def __init__(
        self,
        target: Target,
        cases: list[Case],
        stats: Stats,
        checker: Checker,
        *,
        fresh: bool = False,
        may_send: Callable[[], bool] = lambda: True,
        may_connect: Callable[[], bool] = lambda: True,
        timeout: float = 15.0,
        pause: float = 0.0,
    ) -> None:
        self.id = next(_client_ids)
        self.target, self.cases, self.stats, self.checker = target, cases, stats, checker
        self.fresh, self.may_send, self.may_connect, self.timeout, self.pause = fresh, may_send, may_connect, timeout, pause
        self.port = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> bool:
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.target.host, self.target.port, ssl=self.target.context, server_hostname=self.target.server_name
                ),
                self.timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as error:
            self.stats.connect_errors += 1
            if len(self.stats.connect_failures) < MAX_KEPT:
                self.stats.connect_failures.append(f"{time.monotonic() - self.stats.started:.2f}s: {error!r}")
            return False
        self.stats.connects += 1
        self.port = self.writer.get_extra_info("sockname")[1]
        return True

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def run(self, deadline: float) -> None:
        offset = self.id * 7
        sequence = 0
        try:
            while time.monotonic() < deadline and self.may_send():
                if self.writer is None:
                    if not self.may_connect():
                        return
                    if not await self._connect():
                        await asyncio.sleep(0.05)
                        continue
                case = self.cases[(offset + sequence) % len(self.cases)]
                uid = f"soak-{self.id:04d}-{sequence:09d}"
                sequence += 1
                await self.one(case, uid)
                if self.fresh:
                    self._close()
                if self.pause:
                    await asyncio.sleep(self.pause)
        finally:
            self._close()

    async def one(self, case: Case, uid: str) -> None:
        assert self.writer is not None
        assert self.reader is not None
        stats = self.stats
        started = time.perf_counter()
        try:
            self.writer.write(request_bytes(case.body(uid)))
            stats.sent += 1
            response = await asyncio.wait_for(read_response(self.reader), self.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ssl.SSLError, ValueError) as error:
            stats.failed += 1
            problem = f"{time.monotonic() - stats.started:.2f}s {uid} ({case.name}) on client port {self.port}: no answer: {error!r}"
            stats.lost.setdefault(self.port, []).append(problem)
            if len(stats.failures) < MAX_KEPT:
                stats.failures.append(problem)
            self._close()
            return
        stats.latencies.append(time.perf_counter() - started)
        stats.answered += 1
        stats.status[response.status] += 1
        stats.cases[case.name] += 1
        problem = self.checker.check(case, uid, response.status, response.body)
        if problem and response.status == 200:
            stats.wrong += 1
            if len(stats.wrongs) < MAX_KEPT:
                stats.wrongs.append(f"{uid} ({case.name}): {problem}")
        elif problem and len(stats.failures) < MAX_KEPT:
            stats.failures.append(f"{uid} ({case.name}): {problem}")
        if response.headers.get(b"connection", b"").lower() == b"close":
            stats.server_closes += 1
            self._close()


async def load(
    target: Target,
    cases: list[Case],
    *,
    concurrency: int,
    duration: float,
    stats: Stats | None = None,
    checker: Checker | None = None,
    **client_options: Any,
) -> Stats:
    """``concurrency`` clients for ``duration`` seconds (or until ``may_send`` says stop)."""
    stats = stats or Stats()
    checker = checker or Checker()
    deadline = time.monotonic() + duration
    clients = [Client(target, cases, stats, checker, **client_options) for _ in range(concurrency)]
    await asyncio.gather(*(client.run(deadline) for client in clients))
    stats.ended = time.monotonic()
    checker.validate_samples(stats)
    return stats


def context(*cas: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata="".join(ca.decode() for ca in cas))


def run(coroutine: Any) -> Any:
    """asyncio.run on uvloop when available (the clients must not be the bottleneck)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)
