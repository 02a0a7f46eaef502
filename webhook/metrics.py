"""Prometheus metrics: the instruments the serving process and its cluster loops update, and what ``GET /metrics`` serves.

A leaf module (no other part of Entourage is imported), so ``serving`` and ``cluster`` can both
report through it without depending on each other.

With ``--workers N`` each worker is a process of its own; ``entourage serve`` then points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start, and ``/metrics``
(answered by whichever worker the connection reaches) aggregates every live worker's values.
"""

from __future__ import annotations

import os
from bisect import bisect_left

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from webhook import __version__

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

disable_created_metrics()  # the *_created series double the output and nobody graphs them

ADMISSIONS = Counter(
    "entourage_admissions_total",
    "AdmissionReviews answered, by outcome (injected, skipped, denied, error) and reason code.",
    ["outcome", "reason"],
)
VALIDATIONS = Counter(
    "entourage_validations_total",
    "POST /validate answers, by object kind (Deployment, Namespace, Pod, ...; empty: not validated), outcome (allowed, warned, denied, error) and reason code.",
    ["kind", "outcome", "reason"],
)
INJECTED_COMPONENTS = Counter(
    "entourage_injected_components_total",
    "Containers injected, by kind (logging, ambassador, adapter, waitFor), profile and profile version "
    "(a digest of the profile's definition: a rollout of a changed profile shows as a new version).",
    ["component_kind", "profile", "profile_version"],
)
ADMISSION_DURATION = Histogram(
    "entourage_admission_duration_seconds",
    "Time to decide on one AdmissionReview (decode excluded), in seconds.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
ANSWERS_REUSED = Counter(
    "entourage_answers_reused_total",
    "Admissions answered from an identical earlier request (the pods of one ReplicaSet), without running the engine.",
)
CONFIG_RELOADS = Counter("entourage_config_reloads_total", "Configuration files loaded after a change.")
CONFIG_RELOAD_FAILURES = Counter(
    "entourage_config_reload_failures_total", "Changed configuration files refused (the previous configuration stays)."
)
CONFIG_VALID = Gauge(
    "entourage_config_file_valid",
    "1 when the configuration file was valid at the last look, 0 when not (the last valid configuration, or none, is served; the lowest across workers).",
    multiprocess_mode="livemin",
)
CERTIFICATE_RELOADS = Counter("entourage_certificate_reloads_total", "Serving certificates loaded after a change.")
CERTIFICATE_RELOAD_FAILURES = Counter(
    "entourage_certificate_reload_failures_total", "Changed certificate files refused (the previous certificate stays)."
)
CERTIFICATE_EXPIRY = Gauge(
    "entourage_certificate_expiry_timestamp_seconds",
    "notAfter of the serving certificate, as a Unix timestamp (the earliest across workers).",
    multiprocess_mode="livemin",
)
NAMESPACE_CACHE_SYNCED = Gauge(
    "entourage_namespace_cache_synced",
    "1 once the namespace defaults cache has listed every Namespace (the lowest across workers).",
    multiprocess_mode="livemin",
)
NATIVE_SIDECARS = Gauge(
    "entourage_native_sidecars",
    "What nativeSidecars: auto resolves to: 1 native, 0 classic, -1 not known yet.",
    multiprocess_mode="livemin",
)
CA_EXPIRY = Gauge(
    "entourage_ca_expiry_timestamp_seconds",
    "Self-managed certificates: notAfter of the CA that signs the serving certificate, as a Unix timestamp.",
    multiprocess_mode="livemin",
)
CERTIFICATE_ROTATIONS = Counter(
    "entourage_certificate_secret_updates_total",
    "Self-managed certificates: writes of the certificate Secret (renewals and CA rotation steps) by this replica.",
)
SELFTEST_SUCCESS = Gauge(
    "entourage_selftest_success",
    "1 when the last dry-run probe pod in the namespace came back injected through the apiserver, 0 when not (the lowest across workers).",
    ["namespace"],
    multiprocess_mode="livemin",
)
SELFTEST_LAST_RUN = Gauge(
    "entourage_selftest_last_run_timestamp_seconds",
    "When the self-test last probed, as a Unix timestamp (the latest across workers).",
    multiprocess_mode="livemax",
)
CONNECTIONS_OPEN = Gauge(
    "entourage_connections_open",
    "Client connections held (established or in their TLS handshake), summed over workers.",
    multiprocess_mode="livesum",
)
CONNECTIONS_CLOSED = Counter(
    "entourage_connections_closed_total",
    "Connections closed by a listener limit, by reason (tls_handshake: failed or too slow, header_too_large, head_timeout).",
    ["reason"],
)
ACCEPT_PAUSES = Counter(
    "entourage_accept_pauses_total",
    "Times the listener stopped accepting because --max-connections were held (established or in their TLS handshake).",
)
KUBE_ERRORS = Counter("entourage_kube_api_errors_total", "Failed Kubernetes API calls, by operation.", ["operation"])
EVENTS = Counter(
    "entourage_events_total",
    "Kubernetes Events, by result: sent, failed, dropped (queue full), rate_limited, invalid (a name Kubernetes would not accept), "
    "unverified (the owner is not in the API as named), lookup_limited (no owner lookup left this second).",
    ["result"],
)
BUILD_INFO = Gauge("entourage_build_info", "The running version.", ["version"], multiprocess_mode="max")
BUILD_INFO.labels(__version__).set(1)


class Tally:
    """Admission counts kept as plain numbers and added to their instruments in one go.

    prometheus_client takes a lock for every increment and walks a histogram's buckets for every
    observation: 7 µs of each admission, 5% of the server's CPU on varied pods (``bench.race``).
    Here a count is one dict update and an observation one ``bisect``; ``flush`` adds them to the
    instruments: the server's runtime calls it every FLUSH_SECONDS and at shutdown, and every
    exposition first. So this process's ``/metrics`` is exact, and with ``--workers`` another
    worker's counts reach it within FLUSH_SECONDS.
    """

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.counts: dict[Counter, int] = {}
        # prometheus_client has no bulk observe: the tally writes the histogram's own buckets and sum
        # (private attributes, held to observe()'s result by tests/test_metrics.py).
        self.bounds = list(histogram._upper_bounds)
        self.buckets = [0] * len(self.bounds)
        self.sum = 0.0

    def count(self, counter: Counter) -> None:
        """One more for ``counter`` (an unlabelled counter or a labelled child)."""
        self.counts[counter] = self.counts.get(counter, 0) + 1

    def observe(self, value: float) -> None:
        """What ``histogram.observe(value)`` records."""
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def flush(self) -> None:
        counts, self.counts = self.counts, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        if any(self.buckets):
            buckets, self.buckets = self.buckets, [0] * len(self.bounds)
            for bucket, amount in zip(self.histogram._buckets, buckets, strict=True):
                if amount:
                    bucket.inc(amount)
            self.histogram._sum.inc(self.sum)
            self.sum = 0.0


FLUSH_SECONDS = 1.0
"""How often a serving process adds its tally to the instruments (webhook/serving/runtime.py)."""
ADMISSION_TALLY = Tally(ADMISSION_DURATION)
"""Counts of admissions, reused answers and injected components, and admission durations."""


def exposition() -> tuple[bytes, str]:
    """The text format of every metric (of every live worker in multiprocess mode)."""
    ADMISSION_TALLY.flush()
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Drop a worker's live gauges (multiprocess mode only)."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(pid)
