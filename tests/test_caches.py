"""Every cache is bounded in entries and bytes, and what the engine shares between pods is frozen."""

from __future__ import annotations

import copy
import gc
import tracemalloc

import orjson
import pytest

from tests.conftest import reference_pod
from webhook.admission.reuse import AnswerCache
from webhook.cluster.kube import RATE_LIMIT_ENTRIES, EventRecorder
from webhook.engine import caches
from webhook.engine.inject import inject_pod
from webhook.engine.settings import load_settings

SETTINGS = load_settings(None, environ={})


def test_a_bounded_cache_keeps_within_its_entries_and_bytes_oldest_out_first() -> None:
    evicted: list[str] = []
    cache: caches.BoundedCache[str] = caches.BoundedCache("t", max_entries=3, max_bytes=1000, on_evict=evicted.append)
    for index in range(5):
        cache.put(index, f"v{index}", 10)
    assert list(cache.entries) == [2, 3, 4] and evicted == ["v0", "v1"] and cache.bytes == 30
    cache.put("big", "b", 90)  # within a tenth of the bytes: kept, and 3 entries must go... by count
    assert list(cache.entries) == [3, 4, "big"]
    cache.put("huge", "h", 101)  # over a tenth: never kept
    assert "huge" not in cache.entries and cache.get("huge") is None
    for index in range(20):
        cache.put(("k", index), "x", 99)
    assert cache.bytes <= 1000 and len(cache.entries) <= 3


def _flood_pod(index: int) -> dict:
    pod = reference_pod()
    long_host = f"svc-{index}-" + "a" * 40 + ".example"
    pod["metadata"]["annotations"].update(
        {
            "entourage.dev/wait-for": f"tcp://{long_host}:{1000 + index % 60000},dns://{long_host}",
            "entourage.dev/ambassador": f"{1024 + index % 50000}=tls://{long_host}:443",
            "entourage.dev/logging": "true",
            "entourage.dev/logging-paths": f"/var/log/app-{index}",
            "entourage.dev/wait-for-cpu-limit": f"{100 + index % 400}m",
        }
    )
    return pod


def test_a_flood_of_different_pods_keeps_every_cache_within_its_bounds() -> None:
    for index in range(200):
        inject_pod(_flood_pod(index), SETTINGS)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(200, 1400):
        inject_pod(_flood_pod(index), SETTINGS)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    for name, cache in caches.CACHES.items():
        assert len(cache.entries) <= cache.max_entries, name
        assert cache.bytes <= cache.max_bytes, name
        assert cache.bytes == sum(size for _, size in cache.entries.values()), name
    assert {"containers", "annotation parses", "resource merges", "slugs"} <= set(caches.CACHES)
    # 1,200 different pods: the caches were full before, so memory may only have churned.
    assert grown < 24 * 1024 * 1024, f"grew by {grown / 2**20:.1f} MiB"


def test_the_answer_cache_is_bounded_in_bytes() -> None:
    cache = AnswerCache(size=1000, max_bytes=400_000)
    for index in range(300):
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": f"u{index}", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE", "namespace": "shop", "object": _flood_pod(index)}}
        cache.admit(review, SETTINGS)  # type: ignore[arg-type]
    assert cache.kept.bytes <= 400_000 and 0 < len(cache.entries) < 300


def test_shared_injected_containers_refuse_writes_and_copy_to_plain_objects() -> None:
    pod = reference_pod()
    pod["metadata"]["annotations"]["entourage.dev/logging"] = "true"
    agent = next(c for c in inject_pod(pod, SETTINGS).pod["spec"]["containers"] if c["name"] == "entourage-logging")
    with pytest.raises(TypeError, match="read-only"):
        agent["image"] = "evil:latest"
    with pytest.raises(TypeError, match="read-only"):
        agent["args"].append("--more")
    with pytest.raises(TypeError, match="read-only"):
        agent["securityContext"]["capabilities"]["drop"].clear()
    writable = copy.deepcopy(agent)
    writable["image"] = "mine:1"
    assert type(writable) is dict and type(writable["args"]) is list
    assert orjson.loads(orjson.dumps(agent)) == agent


def test_the_event_recorder_remembers_a_bounded_number_of_objects() -> None:
    recorder = EventRecorder(api=None, per_object_seconds=3600, capacity=1)  # type: ignore[arg-type]
    for index in range(RATE_LIMIT_ENTRIES + 500):
        recorder.record(namespace="shop", involved={"kind": "ReplicaSet", "name": f"web-{index}"}, reason="Injected", message="m", warning=False)
    assert len(recorder.last) <= RATE_LIMIT_ENTRIES
    assert ("shop", "ReplicaSet", f"web-{RATE_LIMIT_ENTRIES + 499}", "Injected") in recorder.last
