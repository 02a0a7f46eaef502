"""The admission tally (webhook/metrics.py): counts added in bulk read exactly as counted one by one."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from webhook import metrics
from webhook.serving import runtime

BUCKETS = (0.0001, 0.00025, 0.001, 0.01, 1.0)


def _instruments(prefix: str, registry: CollectorRegistry) -> tuple[Counter, Counter, Histogram]:
    counter = Counter(f"{prefix}_admissions", "help", ["outcome"], registry=registry)
    plain = Counter(f"{prefix}_reused", "help", registry=registry)
    histogram = Histogram(f"{prefix}_seconds", "help", buckets=BUCKETS, registry=registry)
    return counter, plain, histogram


def test_a_flushed_tally_exposes_what_the_instruments_would_have_counted_one_by_one() -> None:
    direct_registry, tallied_registry = CollectorRegistry(), CollectorRegistry()
    direct, direct_plain, direct_histogram = _instruments("x", direct_registry)
    counter, plain, histogram = _instruments("x", tallied_registry)
    tally = metrics.Tally(histogram)
    # Every bucket, each bound exactly (le is inclusive), zero, and past the last bound (+Inf).
    values = [0.0, 0.00005, *BUCKETS, 0.0003, 0.002, 0.5, 1.5, 30.0, 0.00025, 0.00025]
    for index, value in enumerate(values):
        outcome = ("injected", "skipped")[index % 2]
        direct.labels(outcome).inc()
        direct_histogram.observe(value)
        tally.count(counter.labels(outcome))
        tally.observe(value)
    for _ in range(3):
        direct_plain.inc()
        tally.count(plain)
    assert tallied_registry.get_sample_value("x_seconds_count") == 0  # nothing reaches them before flush()
    tally.flush()
    assert generate_latest(tallied_registry) == generate_latest(direct_registry)
    assert tally.counts == {} and not any(tally.buckets) and tally.sum == 0.0
    tally.flush()  # nothing pending: nothing added
    assert generate_latest(tallied_registry) == generate_latest(direct_registry)


def test_the_exposition_adds_what_is_pending_first() -> None:
    before = metrics.ANSWERS_REUSED._value.get()
    metrics.ADMISSION_TALLY.count(metrics.ANSWERS_REUSED)
    text = metrics.exposition()[0].decode()
    line = next(line for line in text.splitlines() if line.startswith("entourage_answers_reused_total "))
    assert float(line.split()[1]) == before + 1


def test_a_serving_process_flushes_every_flush_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime's loop, as the server runs it (the workers test in test_serving_lifecycle.py
    shows the counts of two processes adding up through it)."""
    registry = CollectorRegistry()
    counter, _, histogram = _instruments("z", registry)
    tally = metrics.Tally(histogram)
    monkeypatch.setattr(metrics, "ADMISSION_TALLY", tally)
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 0.05)

    async def serve() -> list[float | None]:
        flushing = asyncio.create_task(runtime.flush_metrics())
        tally.count(counter.labels("injected"))
        tally.observe(0.0002)
        seen = [registry.get_sample_value("z_admissions_total", {"outcome": "injected"})]
        await asyncio.sleep(0.2)
        seen.append(registry.get_sample_value("z_admissions_total", {"outcome": "injected"}))
        flushing.cancel()
        return seen

    assert asyncio.run(serve()) == [0, 1]
    assert registry.get_sample_value("z_seconds_bucket", {"le": "0.00025"}) == 1
