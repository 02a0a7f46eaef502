"""The admission tally (webhook/metrics.py): counts added in bulk read exactly as counted one by one."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from webhook import metrics

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
    tally = metrics.Tally(histogram, flush_after=60)
    tally.scheduled = True  # as in a server between two flushes: everything waits for flush()
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
    assert tallied_registry.get_sample_value("x_seconds_count") == 0
    tally.flush()
    assert generate_latest(tallied_registry) == generate_latest(direct_registry)
    assert tally.counts == {} and not any(tally.buckets) and tally.sum == 0.0


def test_without_an_event_loop_each_count_is_added_at_once() -> None:
    registry = CollectorRegistry()
    counter, _, histogram = _instruments("y", registry)
    tally = metrics.Tally(histogram)
    tally.count(counter.labels("injected"))
    tally.observe(0.003)
    assert registry.get_sample_value("y_admissions_total", {"outcome": "injected"}) == 1
    assert registry.get_sample_value("y_seconds_count") == 1
    assert registry.get_sample_value("y_seconds_bucket", {"le": "0.01"}) == 1
    assert registry.get_sample_value("y_seconds_bucket", {"le": "0.001"}) == 0


def test_in_a_server_counts_are_added_after_flush_after_in_one_go() -> None:
    registry = CollectorRegistry()
    counter, plain, histogram = _instruments("z", registry)
    tally = metrics.Tally(histogram, flush_after=0.05)

    async def serve() -> list[float | None]:
        seen = []
        for _ in range(100):
            tally.count(plain)
            tally.observe(0.0002)
        seen.append(registry.get_sample_value("z_reused_total"))
        await asyncio.sleep(0.2)
        seen.append(registry.get_sample_value("z_reused_total"))
        tally.count(counter.labels("denied"))  # a later count schedules a new flush
        await asyncio.sleep(0.2)
        seen.append(registry.get_sample_value("z_admissions_total", {"outcome": "denied"}))
        return seen

    assert asyncio.run(serve()) == [0, 100, 1]
    assert registry.get_sample_value("z_seconds_bucket", {"le": "0.00025"}) == 100
    assert abs((registry.get_sample_value("z_seconds_sum") or 0) - 0.02) < 1e-12


def test_the_exposition_adds_what_is_pending_first() -> None:
    tally = metrics.ADMISSION_TALLY
    before = metrics.ANSWERS_REUSED._value.get()
    tally.scheduled = True  # as in a server between two flushes
    try:
        tally.count(metrics.ANSWERS_REUSED)
        text = metrics.exposition()[0].decode()
    finally:
        tally.flush()
    line = next(line for line in text.splitlines() if line.startswith("entourage_answers_reused_total "))
    assert float(line.split()[1]) == before + 1
