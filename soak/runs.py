"""The soak and the burst against one real ``entourage serve`` (TLS, 127.0.0.1)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soak import mix, procs
from soak.client import Checker, Stats, Target, context, load, run
from tests import webhook_process
from webhook.engine.settings import load_settings


@contextmanager
def server(*args: str, config: str = "{}\n", **kwargs: Any) -> Iterator[webhook_process.Webhook]:
    """A real ``entourage serve`` on a free loopback port, in a temporary directory, at log level
    warning (one JSON line per admission would measure the log file, not the webhook)."""
    with tempfile.TemporaryDirectory(prefix="entourage-soak-") as directory:
        with webhook_process.running(Path(directory), "--log-level", "warning", *args, config=config, **kwargs) as webhook:
            try:
                yield webhook
            finally:
                keep = os.environ.get("SOAK_KEEP_LOGS")
                if keep:
                    Path(keep).mkdir(parents=True, exist_ok=True)
                    shutil.copy(webhook.log_path, Path(keep) / f"{time.strftime('%H%M%S')}-{webhook.log_path.name}")


def server_errors(webhook: webhook_process.Webhook, limit: int = 3) -> list[str]:
    """The first ERROR lines of the server's log, with their tracebacks' last line."""
    found = []
    for line in webhook.logs():
        if line.get("level") in ("ERROR", "CRITICAL", "error", "critical"):
            found.append(f"{line.get('msg')} {str(line.get('exc_info') or line.get('exception') or '')[-600:]}")
            if len(found) >= limit:
                break
    return found


def target(webhook: webhook_process.Webhook) -> Target:
    return Target("127.0.0.1", webhook.port, context(*webhook.trusted))


def standard_cases(config: str = "{}\n", *, validate: bool = True) -> list[mix.Case]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        file.write(config)
        file.flush()
        settings = load_settings(file.name, environ={})
    return mix.weighted(mix.prepare(mix.cases(), settings, validate=validate))


@dataclass
class SoakResult:
    stats: Stats
    idle_before: procs.Usage
    warm: procs.Usage
    end: procs.Usage
    idle_after: procs.Usage
    samples: list[tuple[float, procs.Usage]] = field(default_factory=list)

    def problems(self, *, rss_growth_mib: float = 16.0) -> list[str]:
        found = []
        stats = self.stats
        if stats.sent == 0 or stats.answered != stats.sent:
            found.append(f"{stats.sent} sent but {stats.answered} answered")
        if stats.errors or stats.connect_errors:
            found.append(
                f"{stats.errors} errors, {stats.connect_errors} connection failures: {stats.failures[:5]} {stats.wrongs[:5]} {stats.connect_failures[:5]}"
            )
        growth = (self.end.rss_kib - self.warm.rss_kib) / 1024
        if growth > rss_growth_mib:
            found.append(f"resident memory grew by {growth:.1f} MiB under steady load ({self.warm} -> {self.end})")
        if self.idle_after.fds > self.idle_before.fds:
            found.append(f"open fds grew from {self.idle_before.fds} to {self.idle_after.fds} once the clients left")
        return found

    def report(self) -> str:
        lines = [
            f"  requests: {self.stats.summary()}",
            f"  checked: {self.stats.answered} answers (uid, expectation, engine answer, patch applied); {self.stats.validated} patched pods re-validated with podcheck",
            f"  server idle before: {self.idle_before}; under load after warm-up: {self.warm}; under load at the end: {self.end}; idle after: {self.idle_after}",
        ]
        if self.samples:
            lines.append("  RSS under load (MiB): " + " ".join(f"{t:.0f}s={u.rss_kib / 1024:.1f}" for t, u in self.samples))
        return "\n".join(lines)


async def _soak(
    webhook: webhook_process.Webhook, cases: list[mix.Case], *, concurrency: int, duration: float, warmup: float, validate_every: int
) -> SoakResult:
    pid = webhook.process.pid
    idle_before = procs.usage(pid)
    stats = Stats()
    task = asyncio.create_task(
        load(target(webhook), cases, concurrency=concurrency, duration=duration, stats=stats, checker=Checker(validate_every))
    )
    started = time.monotonic()
    await asyncio.sleep(min(warmup, duration / 3))
    warm = procs.usage(pid)
    samples = [(time.monotonic() - started, warm)]
    step = max(1.0, duration / 12)
    while not task.done() and time.monotonic() - started < duration - 1.0:
        await asyncio.sleep(min(step, max(0.1, duration - 1.0 - (time.monotonic() - started))))
        samples.append((time.monotonic() - started, procs.usage(pid)))
    end = samples[-1][1]
    await task
    await asyncio.sleep(1.0)  # the server notices the closed connections
    return SoakResult(stats, idle_before, warm, end, procs.usage(pid), samples)


def soak(*, duration: float, concurrency: int, warmup: float = 10.0, validate_every: int = 500) -> SoakResult:
    cases = standard_cases()
    with server() as webhook:
        return run(_soak(webhook, cases, concurrency=concurrency, duration=duration, warmup=warmup, validate_every=validate_every))


@dataclass
class BurstResult:
    stats: Stats
    concurrency: int
    before: procs.Usage
    after: procs.Usage
    handshake_seconds: float

    def problems(self) -> list[str]:
        stats = self.stats
        found = []
        if stats.sent == 0 or stats.answered != stats.sent:
            found.append(f"{stats.sent} sent but {stats.answered} answered: {stats.failures[:5]}")
        if stats.errors or stats.connect_errors:
            found.append(
                f"{stats.errors} errors, {stats.connect_errors} connection failures: {stats.failures[:5]} {stats.wrongs[:5]} {stats.connect_failures[:5]}"
            )
        if stats.connects < self.concurrency:
            found.append(f"only {stats.connects} of {self.concurrency} clients connected")
        return found

    def report(self) -> str:
        return (
            f"  {self.concurrency} clients connecting at once: {self.stats.summary()}\n"
            f"  every sent request answered: {self.stats.sent} sent = {self.stats.answered} answered + {self.stats.failed} failed\n"
            f"  server before: {self.before}; idle after: {self.after}"
        )


def burst(*, seconds: float, concurrency: int) -> BurstResult:
    """All clients open their connection at the same moment (a Deployment scaled to hundreds of
    replicas at once), then keep sending for ``seconds``."""
    cases = standard_cases(validate=False)
    with server() as webhook:
        before = procs.usage(webhook.process.pid)
        started = time.monotonic()
        stats = run(load(target(webhook), cases, concurrency=concurrency, duration=seconds, checker=Checker(validate_every=0)))
        handshakes = time.monotonic() - started
        time.sleep(1.0)
        return BurstResult(stats, concurrency, before, procs.usage(webhook.process.pid), handshakes)
