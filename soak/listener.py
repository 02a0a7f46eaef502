"""Floods against the listener of a real ``entourage serve`` (default limits, TLS, 127.0.0.1).

Each flood is what the review of issue #15 did by hand, at a larger scale, while an established
keep-alive connection (the apiserver's) sends an admission every 100 ms and a fresh connection
tries one every second:

- ``huge-headers``: connections each writing a 10 MiB request header;
- ``unfinished-heads``: connections each sending 60 KB of a head, then nothing;
- ``idle``: thousands of TLS connections that never send a byte;
- ``trickle``: connections sending their head a byte a second;
- ``half-open-tls``: thousands of TCP connections that never finish (or start) a TLS handshake.

Per flood: connections held by the server (its open fds above idle) at the peak and when the
flood ends, the server's RSS before, at the peak and after, how long the last flood connection
stayed open, and the admissions answered meanwhile. ``problems`` is empty when every admission on
the established connection was answered, the peak RSS stayed under the chart's 256 MiB memory
limit, no 10 MiB header got through, and the server let go of every flood connection within its
deadlines (head 10 s, TLS handshake 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from soak import procs
from soak.client import read_response, request_bytes, run
from soak.runs import server
from tests import webhook_process
from webhook.serving.run import ServeOptions

MEMORY_LIMIT_MIB = 256
"""The chart's ``resources.limits.memory``."""
_DEFAULTS = ServeOptions(cert_file="", key_file="")
HEAD_TIMEOUT, HANDSHAKE_TIMEOUT, MAX_CONNECTIONS = _DEFAULTS.head_timeout, _DEFAULTS.handshake_timeout, _DEFAULTS.max_connections
SWEEP = 0.5
"""Slack allowed past a deadline (the server's timers are per connection; the flood client is busy)."""
"""The defaults of ``entourage serve``, which the floods run against."""


@dataclass
class Probe:
    """Admissions sent while a flood runs: on one established connection, and on fresh ones."""

    established_ok: int = 0
    established_failed: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    fresh_ok: int = 0
    fresh_refused: int = 0
    """Fresh connections that got no answer within 10 s (waiting for a place past --max-connections)."""

    def summary(self) -> str:
        ordered = sorted(self.latencies) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return (
            f"admissions on the established connection: {self.established_ok} answered, {len(self.established_failed)} failed, "
            f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms; on fresh connections (one a second): {self.fresh_ok} answered, {self.fresh_refused} not within 10 s"
        )


@dataclass
class FloodResult:
    name: str
    what: str
    attempted: int
    handshaken: int
    before: procs.Usage
    peak: procs.Usage
    after: procs.Usage
    held_peak: int
    drained: float
    longest_open: float
    probe: Probe
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [
            f"  [{'PASS' if not self.problems else 'FAIL'}] {self.name}: {self.what}",
            f"      connections held by the server at the peak: {self.held_peak}; {self.handshaken} of {self.attempted} got through a TLS handshake; "
            f"each closed at most {self.longest_open:.1f}s after it; all gone after {self.drained:.1f}s",
            f"      server RSS {self.before.rss_kib / 1024:.1f} MiB before, {self.peak.rss_kib / 1024:.1f} MiB at the peak, {self.after.rss_kib / 1024:.1f} MiB after; "
            f"fds {self.before.fds} before, {self.peak.fds} at the peak, {self.after.fds} after",
            f"      {self.probe.summary()}",
        ]
        lines += [f"      {note}" for note in self.notes]
        lines += [f"      PROBLEM: {problem}" for problem in self.problems]
        return "\n".join(lines)


class Target:
    def __init__(self, webhook: webhook_process.Webhook) -> None:
        self.host, self.port = "127.0.0.1", webhook.port
        self.context = webhook.context()
        self.pid = webhook.process.pid
        self.body = request_bytes(orjson.dumps(webhook_process.review({"entourage.dev/logging": "true"})))

        self.connecting = asyncio.Semaphore(200)
        """Handshakes the flood client runs at once (it shares the machine with the server)."""

    async def tls(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port, ssl=self.context, server_hostname="localhost"), 10)

    async def flood_tls(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with self.connecting:
            return await self.tls()

    async def tcp(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)

    def usage(self) -> procs.Usage:
        return procs.usage(self.pid)


async def _admit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
    writer.write(body)
    response = await asyncio.wait_for(read_response(reader), 5)
    if response.status != 200 or b'"allowed":true' not in response.body:
        raise RuntimeError(f"HTTP {response.status}: {response.body[:120]!r}")


async def _probe(target: Target, probe: Probe, stop: asyncio.Event) -> None:
    """The apiserver: one keep-alive connection, an admission every 100 ms (reconnecting only if
    it broke), and meanwhile a fresh connection every second."""
    fresh = asyncio.create_task(_probe_fresh(target, probe, stop))
    reader, writer = await target.tls()
    while not stop.is_set():
        started = time.monotonic()
        try:
            await _admit(reader, writer, target.body)
            probe.established_ok += 1
            probe.latencies.append(time.monotonic() - started)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, RuntimeError, ssl.SSLError) as error:
            probe.established_failed.append(repr(error)[:160])
            writer.close()
            reader, writer = await _reconnect(target, stop)
        await asyncio.sleep(0.1)
    writer.close()
    await fresh


async def _probe_fresh(target: Target, probe: Probe, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            reader, writer = await target.tls()
            await _admit(reader, writer, target.body)
            writer.close()
            probe.fresh_ok += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError, RuntimeError, ssl.SSLError):
            probe.fresh_refused += 1
        await asyncio.sleep(1.0)


async def _reconnect(target: Target, stop: asyncio.Event) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    while True:
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            return await target.tls()
        if stop.is_set():
            raise RuntimeError("could not reconnect")
        await asyncio.sleep(0.2)


@dataclass
class Tracker:
    """The flood's connections: when each got through its handshake and when the server closed it."""

    opened: dict[int, float] = field(default_factory=dict)
    closed: dict[int, float] = field(default_factory=dict)
    gave_up: int = 0
    """Connections that got no handshake within the client's 10 s (waiting past --max-connections)."""
    written: int = 0
    """The most bytes of a head any connection wrote before the server hung up."""

    async def tls(self, target: Target, index: int) -> asyncio.StreamReader | None:
        try:
            reader, writer = await target.flood_tls()
        except (OSError, TimeoutError, ssl.SSLError):
            self.gave_up += 1
            return None
        self.opened[index] = time.monotonic()
        self.writers[index] = writer
        return reader

    async def until_closed(self, reader: asyncio.StreamReader, index: int) -> None:
        """Read (and drop) whatever the server sends until it closes the connection."""
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            while await reader.read(65536):
                pass
        self.closed[index] = time.monotonic()
        self.writers.pop(index).close()

    def longest(self) -> float:
        """The longest any connection stayed open after its handshake (until now, for those still open)."""
        now = time.monotonic()
        return max((self.closed.get(index, now) - opened for index, opened in self.opened.items()), default=0.0)

    def __post_init__(self) -> None:
        self.writers: dict[int, asyncio.StreamWriter] = {}


Attack = Callable[[Target, Tracker, int], Awaitable[None]]
"""One flood connection."""


async def _flood(target: Target, flood: Flood) -> FloodResult:
    probe, stop, tracker = Probe(), asyncio.Event(), Tracker()
    probing = asyncio.create_task(_probe(target, probe, stop))
    await asyncio.sleep(0.5)
    before = target.usage()
    peak = before
    attacks = [asyncio.create_task(flood.attack(target, tracker, index)) for index in range(flood.connections)]
    started = time.monotonic()
    while not all(task.done() for task in attacks) and time.monotonic() - started < flood.seconds:
        await asyncio.sleep(0.2)
        usage = target.usage()
        peak = procs.Usage(max(peak.rss_kib, usage.rss_kib), max(peak.fds, usage.fds))
    drained = time.monotonic() - started
    longest = tracker.longest()
    unfinished = sum(not task.done() for task in attacks)
    for task in attacks:
        task.cancel()
    await asyncio.gather(*attacks, return_exceptions=True)
    stop.set()
    await probing
    await asyncio.sleep(1.5)
    after = target.usage()
    result = FloodResult(
        flood.name,
        flood.what,
        flood.connections,
        len(tracker.opened),
        before,
        peak,
        after,
        max(0, peak.fds - before.fds),
        drained,
        longest,
        probe,
    )
    if tracker.gave_up:
        result.notes.append(
            f"{tracker.gave_up} connections waited more than the client's 10 s for their handshake (the listener was full) and gave up"
        )
    if unfinished:
        result.problems.append(f"{unfinished} flood connections were still open after {flood.seconds:.0f}s")
    if flood.deadline is not None and longest > flood.deadline + 2 * SWEEP + 1.0:
        result.problems.append(f"a flood connection stayed open {longest:.1f}s after its handshake, past the {flood.deadline:g}s deadline")
    if result.held_peak > MAX_CONNECTIONS + 8:
        result.problems.append(f"the server held {result.held_peak} connections, more than --max-connections {MAX_CONNECTIONS}")
    if probe.established_failed:
        result.problems.append(
            f"{len(probe.established_failed)} admissions on the established connection failed: {probe.established_failed[:3]}"
        )
    if peak.rss_kib / 1024 > MEMORY_LIMIT_MIB:
        result.problems.append(f"peak RSS {peak.rss_kib / 1024:.0f} MiB is above the chart's {MEMORY_LIMIT_MIB} MiB limit")
    if flood.name == "huge-headers":
        result.notes.append(
            f"of a 10 MiB header, a connection wrote at most {tracker.written / 1024:.0f} KiB before the server hung up (the server reads 64 KiB and a read)"
        )
        if tracker.written >= 10 * 1024 * 1024:
            result.problems.append("a 10 MiB header was written whole: the server kept reading")
    return result


# -- the attacks --------------------------------------------------------------------------------


async def _huge_header(target: Target, tracker: Tracker, index: int) -> None:
    reader = await tracker.tls(target, index)
    if reader is None:
        return
    writer = tracker.writers[index]
    writer.write(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Filler: ")
    written = 0
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        while written < 10 * 1024 * 1024:
            writer.write(b"a" * 65536)
            await asyncio.wait_for(writer.drain(), 5)
            written += 65536
    tracker.written = max(tracker.written, written)
    await tracker.until_closed(reader, index)


async def _unfinished_head(target: Target, tracker: Tracker, index: int) -> None:
    reader = await tracker.tls(target, index)
    if reader is not None:
        tracker.writers[index].write(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Filler: " + b"a" * 60_000)
        await tracker.until_closed(reader, index)


async def _idle(target: Target, tracker: Tracker, index: int) -> None:
    reader = await tracker.tls(target, index)
    if reader is not None:
        await tracker.until_closed(reader, index)


async def _trickle(target: Target, tracker: Tracker, index: int) -> None:
    reader = await tracker.tls(target, index)
    if reader is None:
        return
    closed = asyncio.create_task(tracker.until_closed(reader, index))
    for byte in b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100:
        if closed.done():
            break
        with contextlib.suppress(OSError, ssl.SSLError, KeyError):
            tracker.writers[index].write(bytes([byte]))
        await asyncio.sleep(1.0)
    await closed


async def _half_open_tls(target: Target, tracker: Tracker, index: int) -> None:
    """The start of a ClientHello, never finished. The client cannot tell how long the kernel kept
    the connection in the listen backlog, so the server's side is judged by its fds and RSS."""
    try:
        reader, writer = await target.tcp()
    except (OSError, TimeoutError):
        tracker.gave_up += 1
        return
    writer.write(bytes.fromhex("16030100f4010000f00303"))
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while await reader.read(65536):
            pass
    writer.close()


@dataclass(frozen=True)
class Flood:
    name: str
    what: str
    attack: Attack
    connections: int
    seconds: float
    """How long the flood may take before what is left counts as a problem."""
    deadline: float | None
    """The server's deadline for each of its connections, after the handshake (None: not measurable)."""


FLOODS = [
    Flood("huge-headers", "50 connections each writing a 10 MiB request header", _huge_header, 50, 30.0, HEAD_TIMEOUT),
    Flood(
        "unfinished-heads",
        "600 connections each sending 60 KB of a head, then nothing",
        _unfinished_head,
        600,
        3 * HEAD_TIMEOUT + 10,
        HEAD_TIMEOUT,
    ),
    Flood("idle", "2,000 TLS connections that never send a byte", _idle, 2000, 4 * HEAD_TIMEOUT + 10, HEAD_TIMEOUT),
    Flood("trickle", "500 connections sending their head a byte a second", _trickle, 500, 2 * HEAD_TIMEOUT + 10, HEAD_TIMEOUT),
    Flood(
        "half-open-tls", "2,000 TCP connections that never finish a TLS handshake", _half_open_tls, 2000, 6 * HANDSHAKE_TIMEOUT + 10, None
    ),
]


async def _floods(webhook: webhook_process.Webhook, only: list[str]) -> list[FloodResult]:
    target = Target(webhook)
    results = []
    for flood in FLOODS:
        if flood.name in only:
            result = await _flood(target, flood)
            results.append(result)
            print(result.report(), flush=True)
    return results


def floods(only: list[str] | None = None) -> list[FloodResult]:
    """Every flood (or those named) against one server, one after the other."""
    with server() as webhook:
        return run(_floods(webhook, only or [flood.name for flood in FLOODS]))
