"""Every cache is bounded in entries and bytes, and what the engine shares between pods is frozen."""

from __future__ import annotations

import copy
import gc
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.conftest import reference_pod
from webhook.admission.reuse import AnswerCache
from webhook.cluster.kube import RATE_LIMIT_ENTRIES, EventRecorder
from webhook.engine import annotations, caches, inject, patch
from webhook.engine.inject import inject_pod
from webhook.engine.profiles import common
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
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": f"u{index}",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE",
                "namespace": "shop",
                "object": _flood_pod(index),
            },
        }
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
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"web-{index}", "uid": "3f0b6a4e"}
        recorder.record(namespace="shop", involved=owner, reason="Injected", message="m", warning=False)
    assert len(recorder.recent.entries) <= RATE_LIMIT_ENTRIES
    assert ("shop", "ReplicaSet", f"web-{RATE_LIMIT_ENTRIES + 499}", "3f0b6a4e", "Injected") in recorder.recent.entries
    # (tests/test_kube.py floods it with long names to its byte bound, and checks its age bound.)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_older_than_the_age_bound_are_misses_and_leave() -> None:
    clock = Clock()
    cache: caches.BoundedCache[int] = caches.BoundedCache("t", max_entries=100, max_bytes=10_000, max_age=60, clock=clock)
    cache.put("old", 1, 10)
    clock.now += 30
    cache.put("young", 2, 10)
    assert cache.get("old") == 1
    clock.now += 30
    assert cache.get("old") is None and list(cache.entries) == ["young"]
    clock.now += 29
    cache.put("new", 3, 10)
    assert (cache.get("young"), cache.get("new"), cache.bytes) == (2, 3, 20)
    clock.now += 1
    cache.put("newer", 4, 10)  # storing drops what expired on the way
    assert (list(cache.entries), cache.bytes) == (["new", "newer"], 20)


def test_storing_a_key_again_counts_it_once_and_hands_the_old_value_to_on_evict() -> None:
    left: list[str] = []
    cache: caches.BoundedCache[str] = caches.BoundedCache("t", max_entries=2, max_bytes=10_000, on_evict=left.append)
    cache.put("a", "a1", 10)
    cache.put("a", "a2", 20)
    assert (cache.get("a"), cache.bytes, left) == ("a2", 20, ["a1"])


# -- each cache, flooded on its own ----------------------------------------------------------------


@pytest.fixture
def empty_caches() -> Iterator[dict[str, caches.BoundedCache[Any]]]:
    for cache in caches.CACHES.values():
        cache.clear()
    yield caches.CACHES
    for cache in caches.CACHES.values():
        cache.clear()


def long_host(index: int, part: int) -> str:
    """A valid host name of about 250 characters."""
    return f"h{index}-{part}." + ".".join(f"{letter * 60}" for letter in "abc") + ".example"


def parse_flood(index: int) -> None:
    own = {
        "wait-for": ",".join(f"tcp://{long_host(index, part)}:5432" for part in range(8)),
        "logging": "true",
        "logging-paths": ",".join(f"/var/log/{index}/{part}-{'x' * 200}" for part in range(8)),
    }
    annotations.parse_annotations(own, SETTINGS)


def merge_flood(index: int) -> None:
    profile = SETTINGS.profile("ambassador", "socat")
    assert profile is not None
    overrides = ((("requests", "cpu"), f"{index + 1}m"), (("limits", "cpu"), f"{index + 2}m"), (("requests", "memory"), f"{index + 1}Mi"))
    inject._merged_resources(profile, overrides, "entourage.dev/ambassador")


def slug_flood(index: int) -> None:
    common.slug(f"/var/log/{index}/{'segment-' * 50}")


def shared_flood(index: int) -> None:
    pod = reference_pod()
    pod["metadata"]["annotations"]["entourage.dev/wait-for"] = f"tcp://{long_host(index, 0)}:5432"
    inject_pod(pod, SETTINGS)


FLOODS: dict[str, tuple[Callable[[int], None], int]] = {
    "annotation parses": (parse_flood, 1500),
    "resource merges": (merge_flood, 800),
    "slugs": (slug_flood, 3000),
    "containers": (shared_flood, 1500),
}
"""Each engine cache, with a flood of distinct entries long enough to reach one of its bounds."""


def kept_by(flood: Callable[[], object]) -> int:
    """Bytes still allocated after ``flood`` (tracemalloc), once its garbage is collected."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        flood()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


SLACK = 512 * 1024
"""What the interpreter keeps on its own during a flood (interned names, free lists, dict growth)."""


def test_every_cache_a_request_can_fill_has_a_flood_here() -> None:
    assert set(caches.CACHES) == set(FLOODS)


@pytest.mark.parametrize("name", list(FLOODS))
def test_a_flood_of_distinct_entries_stays_within_each_caches_bounds_and_its_estimates(
    name: str, empty_caches: dict[str, caches.BoundedCache[Any]]
) -> None:
    step, count = FLOODS[name]
    kept = kept_by(lambda: [step(index) for index in range(count)])
    cache = empty_caches[name]
    assert len(cache.entries) <= cache.max_entries and cache.bytes <= cache.max_bytes
    assert len(cache.entries) == cache.max_entries or cache.bytes > cache.max_bytes * 0.9, (
        f"the flood did not reach a bound: {len(cache.entries)} entries, {cache.bytes} bytes"
    )
    estimated = sum(each.bytes for each in empty_caches.values())
    assert kept <= estimated + SLACK, f"tracemalloc counted {kept} bytes kept, the caches' estimates {estimated}"
    assert len(patch._encoded) == len(empty_caches["containers"].entries), "a container's JSON leaves with it"
