"""The memory flood: resident memory after many adversarial requests (a million by default) stays
within 10% of what it was after the warm-up, and never far above idle.

One real ``entourage serve`` talks to the fake API server (tests/fake_apiserver.py), so Events are
recorded and their owners looked up. Every request differs from every other, so no cache can
answer twice and every one of them fills to its bound: the annotation parses (distinct wait-for
targets and routes), the resource merges (distinct limits), the slugs and shared containers
(distinct targets, log paths and adapter parameters), the answers (distinct pods, some with 4 KB
of notes), the Event rate limiter (a distinct valid owner name of about 240 characters for most
pods) and the owner lookups (at ``LOOKUPS_PER_SECOND``). Among them, denials with distinct bad
values and unknown keys, owners of unknown kinds, owner names longer than Kubernetes allows, and
every ``HUGE_EVERY``-th pod with a 2.4 MB owner name (what took the process from 75 to 305 MiB
before the recorder checked names and bounded its memory in bytes).

The warm-up runs the same mix until every cache is full (the owner lookups fill at their rate);
the flood then sends ``requests`` more over a few keep-alive TLS connections, within a deadline.
Every answer must be a 200 AdmissionReview for its uid; valid pods must be injected.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from soak import procs
from soak.client import Target, context, read_response, request_bytes, run
from tests import webhook_process
from tests.conftest import reference_review
from tests.fake_apiserver import FakeApiServer

HUGE_EVERY = 5000
"""One pod in this many has a 2.4 MB owner name (a million requests send 480 MB of them)."""
HUGE_OWNER = 2_400_000
OWNER_THAT_EXISTS, OWNER_UID = "checkout-7d9c6b5f4", "3f0b6a4e-8a51-4c8e-9d0e-5b1f2a7c9e11"
"""The one owner the fake API has: one pod in ``REAL_EVERY`` names it (its Events are written,
one a minute per reason); every other named owner is forged."""
REAL_EVERY = 100
LOOKUPS_PER_SECOND = 100
"""Owner lookups the server may make: enough to fill its lookup cache (4096) within its 60 s."""
RSS_GROWTH = 0.10
PEAK_ABOVE_IDLE_MIB = 64
"""The caches' byte bounds add up to 38 MiB (shared containers 16, annotation parses 8, answers 8,
resource merges 1, slugs 1, Event rate limiter 2, owner lookups 2) and their entry bounds keep
them far lower for pods of realistic size; with a 2.4 MB request in flight and the allocator's
slack, the process stays within this of its idle size, a quarter of the chart's 256 MiB limit.
(Entry bounds alone let 80 requests with 2.4 MB owner names add 230 MiB.)"""

_KINDS = ("wait-for", "ambassador", "logging", "adapter", "deny", "resources", "unknown-owner-kind", "long-owner-name")
"""What the ``index``-th request is, by ``index % 8``: the first four inject one container each,
built from a value no other request has; every request has a pod name of its own."""
_INJECTED = frozenset({"wait-for", "ambassador", "logging", "adapter", "resources"})
_COMMON = {"entourage.dev/wait-for": "tcp://db.data.svc:5432"}
"""What the last three kinds ask for: one container, shared by all of them."""


def _template() -> list[bytes]:
    """The reference review as JSON, split around ``"@@NAME@@"`` markers: literal parts at even
    indices, marker names at odd ones."""
    review = reference_review()
    review["request"]["uid"] = "@@uid@@"
    review["request"]["namespace"] = "plain"
    metadata = review["request"]["object"]["metadata"]
    metadata["namespace"] = "plain"
    metadata["generateName"] = "@@pod@@"
    metadata["annotations"] = "@@annotations@@"
    metadata["ownerReferences"][0].update(apiVersion="@@apiVersion@@", kind="@@kind@@", name="@@owner@@", uid=OWNER_UID)
    return re.split(rb'"@@(\w+)@@"', orjson.dumps(review))


TEMPLATE = _template()


def _annotations(kind: str, index: int) -> dict[str, str]:
    if kind == "wait-for":
        return {"entourage.dev/wait-for": f"tcp://db-{index}.data.svc:5432"}
    if kind == "ambassador":
        return {"entourage.dev/ambassador": f"{6000 + index % 1000}=cache-{index}.svc:6379"}
    if kind == "logging":
        return {"entourage.dev/logging": "true", "entourage.dev/logging-paths": f"/var/log/app-{index}"}
    if kind == "adapter":
        return {"entourage.dev/adapter": "nginx-prometheus", "entourage.dev/adapter.nginx-prometheus.status-path": f"/stub-{index}"}
    if kind == "deny":
        return {"entourage.dev/wait-for": f"tcp://db-{index}:not-a-port", f"entourage.dev/unknown-{index}": "x"}
    if kind == "resources":
        return {**_COMMON, "entourage.dev/wait-for-memory-limit": f"{32 + index % 2000}Mi"}
    return dict(_COMMON)


def body(index: int) -> tuple[bytes, str, str]:
    """The ``index``-th request of the mix: (body, uid, kind)."""
    kind = _KINDS[index % len(_KINDS)]
    uid = f"memory-{index:010d}"
    annotations = _annotations(kind, index)
    if index % 10 == 0:
        annotations["notes"] = f"{index}-" + "n" * 4000
    api_version, owner_kind, owner = "apps/v1", "ReplicaSet", f"rs-{index}-" + "r" * 230  # valid: at most 253
    if kind == "unknown-owner-kind":
        api_version, owner_kind = "example.com/v1", f"Kind{index % 1000}"
    elif kind == "long-owner-name":
        owner = f"rs-{index}-" + "l" * 300
    if index % REAL_EVERY == REAL_EVERY // 2:
        api_version, owner_kind, owner = "apps/v1", "ReplicaSet", OWNER_THAT_EXISTS
    if index % HUGE_EVERY == HUGE_EVERY - 1:
        owner = f"{index}" + "h" * HUGE_OWNER
    values = {
        b"uid": orjson.dumps(uid),
        b"pod": orjson.dumps(f"web-{index}-"),
        b"annotations": orjson.dumps(annotations),
        b"apiVersion": orjson.dumps(api_version),
        b"kind": orjson.dumps(owner_kind),
        b"owner": orjson.dumps(owner),
    }
    return b"".join(part if position % 2 == 0 else values[part] for position, part in enumerate(TEMPLATE)), uid, kind


@dataclass
class Flood:
    sent: int = 0
    answered: int = 0
    problems: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    """kind/allowed|denied → answers."""
    seconds: float = 0.0
    cut_short: bool = False

    def fail(self, problem: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(problem)

    def rate(self) -> float:
        return self.answered / max(self.seconds, 1e-9)


def _check(flood: Flood, uid: str, kind: str, status: int, data: bytes) -> None:
    if status != 200:
        flood.fail(f"{uid} ({kind}): HTTP {status}: {data[:200]!r}")
        return
    try:
        response = orjson.loads(data)["response"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        flood.fail(f"{uid} ({kind}): not an AdmissionReview: {data[:200]!r}")
        return
    if response.get("uid") != uid or not isinstance(response.get("allowed"), bool):
        flood.fail(f"{uid} ({kind}): wrong uid or no allowed: {data[:200]!r}")
        return
    if kind in _INJECTED and not (response["allowed"] and response.get("patch")):
        flood.fail(f"{uid} ({kind}): a valid pod was not injected: {data[:300]!r}")
    flood.outcomes[f"{kind}/{'allowed' if response['allowed'] else 'denied'}"] += 1


async def _connection(target: Target, flood: Flood, indices: range, deadline: float) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.port, ssl=target.context, server_hostname=target.server_name)
    try:
        for index in indices:
            if time.monotonic() > deadline:
                flood.cut_short = True
                return
            data, uid, kind = body(index)
            writer.write(request_bytes(data))
            flood.sent += 1
            try:
                response = await asyncio.wait_for(read_response(reader), 30)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
                flood.fail(f"{uid} ({kind}): no answer: {error!r}")
                return
            flood.answered += 1
            _check(flood, uid, kind, response.status, response.body)
    finally:
        writer.close()


async def _send(target: Target, *, first: int, count: int, concurrency: int, seconds: float) -> Flood:
    """``count`` requests from ``first`` on, spread over ``concurrency`` connections (connection
    ``n`` sends every ``concurrency``-th), until done or ``seconds`` have passed."""
    flood = Flood()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(_connection(target, flood, range(first + n, first + count, concurrency), deadline) for n in range(concurrency)))
    flood.seconds = time.monotonic() - started
    return flood


@dataclass
class MemoryResult:
    requests: int
    warmup: Flood
    flood: Flood
    idle: procs.Usage
    warm: procs.Usage
    after: procs.Usage
    peak_kib: int
    samples: list[tuple[float, int]]
    metrics: dict[str, float]

    def growth(self) -> float:
        return (self.after.rss_kib - self.warm.rss_kib) / self.warm.rss_kib

    def problems(self) -> list[str]:
        found = [f"warm-up: {problem}" for problem in self.warmup.problems] + [f"flood: {problem}" for problem in self.flood.problems]
        if self.flood.answered != self.flood.sent:
            found.append(f"{self.flood.sent} sent but {self.flood.answered} answered")
        if self.growth() > RSS_GROWTH:
            found.append(f"RSS grew by {self.growth():.1%} over the flood ({self.warm} -> {self.after}), more than {RSS_GROWTH:.0%}")
        if self.peak_kib - self.idle.rss_kib > PEAK_ABOVE_IDLE_MIB * 1024:
            found.append(
                f"RSS peaked during the flood at {self.peak_kib / 1024:.1f} MiB, more than {PEAK_ABOVE_IDLE_MIB} MiB above idle ({self.idle})"
            )
        return found

    def report(self) -> str:
        flood = self.flood
        huge = flood.answered // HUGE_EVERY
        events = {key.split('"')[1]: int(value) for key, value in self.metrics.items() if key.startswith("entourage_events_total{")}
        lines = [
            f"  warm-up: {self.warmup.answered} requests in {self.warmup.seconds:.0f}s ({self.warmup.rate():.0f}/s)",
            f"  flood: {flood.answered} of {self.requests} requests answered in {flood.seconds:.0f}s ({flood.rate():.0f}/s)"
            + (" - CUT SHORT by the deadline" if flood.cut_short else "")
            + f", {huge} of them with a 2.4 MB owner name; outcomes {dict(sorted(flood.outcomes.items()))}",
            f"  RSS: idle {self.idle.rss_kib / 1024:.1f} MiB, after warm-up {self.warm.rss_kib / 1024:.1f} MiB, after the flood "
            f"{self.after.rss_kib / 1024:.1f} MiB ({self.growth():+.1%}; at most {RSS_GROWTH:+.0%}), peak {self.peak_kib / 1024:.1f} MiB "
            f"(at most {PEAK_ABOVE_IDLE_MIB} MiB above idle)",
            "  RSS during the flood (MiB): " + " ".join(f"{t:.0f}s={kib / 1024:.1f}" for t, kib in self.samples),
            f"  Events: {events}",
        ]
        return "\n".join(lines)


async def _measure(
    webhook: webhook_process.Webhook, target: Target, *, requests: int, warmup_seconds: float, concurrency: int, max_seconds: float
) -> MemoryResult:
    pid = webhook.process.pid
    idle = procs.usage(pid)
    warmup = await _send(target, first=0, count=10**9, concurrency=concurrency, seconds=warmup_seconds)
    await asyncio.sleep(1.0)
    warm = procs.usage(pid)
    peak = warm.rss_kib
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    task = asyncio.create_task(_send(target, first=10**9, count=requests, concurrency=concurrency, seconds=max_seconds))
    every = max(10.0, requests / 20_000)  # about 50 samples for a million requests
    while not task.done():
        await asyncio.wait([task], timeout=1.0)
        rss = procs.usage(pid).rss_kib
        peak = max(peak, rss)
        if not samples or time.monotonic() - started - samples[-1][0] >= every:
            samples.append((time.monotonic() - started, rss))
    flood = await task
    await asyncio.sleep(1.0)
    after = procs.usage(pid)
    peak = max(peak, after.rss_kib)
    return MemoryResult(requests, warmup, flood, idle, warm, after, peak, samples, {})


def memory(*, requests: int = 1_000_000, warmup_seconds: float = 60.0, concurrency: int = 4, max_seconds: float = 1800.0) -> MemoryResult:
    """Run the flood against a fresh server and fake API; the figures and what went wrong."""
    api = FakeApiServer().start()
    api.put_namespace("plain")
    api.put_object("ReplicaSet", "plain", OWNER_THAT_EXISTS, uid=OWNER_UID)
    try:
        with tempfile.TemporaryDirectory(prefix="entourage-memory-") as directory:
            arguments = (
                "--kubeconfig",
                str(api.kubeconfig(Path(directory) / "kubeconfig")),
                "--event-lookups-per-second",
                str(LOOKUPS_PER_SECOND),
            )
            with webhook_process.running(Path(directory), "--log-level", "warning", *arguments) as webhook:
                target = Target("127.0.0.1", webhook.port, context(*webhook.trusted))
                result: MemoryResult = run(
                    _measure(
                        webhook, target, requests=requests, warmup_seconds=warmup_seconds, concurrency=concurrency, max_seconds=max_seconds
                    )
                )
                result.metrics = webhook.metrics()
                return result
    finally:
        api.stop()
