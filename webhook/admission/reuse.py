"""Answers kept by request content, for the identical pods of one workload.

A Deployment scaled to 500 replicas sends 500 AdmissionReviews that differ only in their uid:
the ReplicaSet controller creates every pod from the same template, and the apiserver has not
named them yet (``generateName``). Admission is a pure function of the request's content, the
settings, the namespace's defaults and the cluster facts, so the first answer serves the rest
with its uid changed, skipping the engine and the patch encoding.

The key is the request as the server decoded it (webhook/admission/partial.py keeps exactly what admission
reads), without its uid, so two requests share an answer only when admission could not tell them
apart. Only pods that ask for something are looked up: an unannotated pod is answered faster
than its key is built. Failures (``onError``) are never kept.

Building a key costs as much as the request's decoded content, so a request with more items than
any real pod (``MAX_ITEMS``: annotations, containers, volumes, ports, mounts, owners) is neither
looked up nor kept, without a look at its items: a pod author cannot make every request pay
for a key on top of its admission.

A key is a seventh of the cost of a miss in process (7 to 10% of ``make bench``'s ``varied``
throughput), paid for nothing when no request repeats (a stream of Jobs, CI pods, a rollout of a
workload already answered). So after BYPASS_AFTER misses in a row (the whole cache replaced
without a hit) only about every PROBE_EVERY-th pod is looked up and kept; the first probe that hits,
the second probe of a scale-up, makes every request looked up again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import msgspec

from webhook.admission.decide import (
    OUTCOME_ERROR,
    Decision,
    NamespaceAnnotations,
    admit,
    namespace_of,
)
from webhook.admission.review import AdmissionReview
from webhook.engine.caches import BoundedCache
from webhook.engine.inject import ClusterFacts, requested_annotations
from webhook.engine.policy import labels_of
from webhook.engine.settings import Settings

MAX_KEY = 32 * 1024
"""A request whose decoded content is longer is not kept: the pruned decode makes even the
bench's 95 KB pod a 3 KB key, so only requests with long strings in what admission reads reach this."""

MAX_ITEMS = 2048
"""A request with more items than this in the lists and maps admission reads gets no key (the
bench's large pod has about 60; ``items`` counts them in a few ``len`` calls)."""

MAX_BYTES = 8 * 1024 * 1024
"""And at most this many bytes of keys and answers, whatever the entries hold."""

DEFAULT_SIZE = 128
"""Distinct requests kept: a burst is a few workloads at a time, and an answer with its key is
about 18 KiB for the bench's small pod (measured with tracemalloc), so about 2 MiB in all."""

BYPASS_AFTER = DEFAULT_SIZE
"""Misses in a row after which only probes are looked up: as many as the default cache holds."""

PROBE_EVERY = 8
"""While bypassing, PROBE_EVERY - 1 pods (annotated or not) are answered without a look after each
probe, and the next annotated pod is the next probe: a scale-up's identical pods meet in two
probes, whatever other pods come between them."""


class AnswerCache:
    """``admit`` with the answers of recent identical requests reused; size 0 turns it off."""

    def __init__(self, size: int = DEFAULT_SIZE, max_bytes: int = MAX_BYTES, *, on_miss: Callable[..., Decision] = admit) -> None:
        self.size = size
        self.on_miss = on_miss
        """What decides a request no kept answer fits: ``decide.admit`` (the tests count its runs
        here; in the compiled build a module attribute patched over it would not be seen)."""
        self.kept: BoundedCache[Decision] = BoundedCache("answers", max_entries=size, max_bytes=max_bytes)
        self.misses = 0
        """Lookups in a row that found nothing; from BYPASS_AFTER on, only probes are looked up."""
        self.skips = 0
        """Pods to answer without a look before the next probe (set only while bypassing)."""

    @property
    def bypassing(self) -> bool:
        return self.misses >= BYPASS_AFTER

    @property
    def entries(self) -> dict[Hashable, tuple[Decision, int]]:
        """What is kept, by key (with each entry's size in bytes)."""
        return self.kept.entries

    def admit(
        self,
        review: AdmissionReview,
        settings: Settings,
        *,
        namespace_annotations: NamespaceAnnotations | None = None,
        cluster: ClusterFacts = ClusterFacts(),
    ) -> Decision:
        request = review["request"]
        inherited = None
        if namespace_annotations is not None:
            namespace = namespace_of(request)  # as admit() looks it up
            inherited = namespace_annotations(namespace) if namespace else None
        lookup = (lambda _: inherited) if inherited is not None else None
        key = self._key(request, settings, inherited, cluster)
        if key is None:
            return self.on_miss(review, settings, namespace_annotations=lookup, cluster=cluster)
        started = time.perf_counter()
        kept = self.kept.get(key)
        if kept is not None:
            self.misses = 0
            return _for_uid(kept, request["uid"], time.perf_counter() - started)
        self.misses += 1
        if self.misses >= BYPASS_AFTER:
            self.skips = PROBE_EVERY - 1
        decision = self.on_miss(review, settings, namespace_annotations=lookup, cluster=cluster)
        if decision.outcome != OUTCOME_ERROR:
            # The key's content, and the answer (its patch is the bulk of it) with its Decision.
            size = len(key[3]) + len(key[2]) + len(decision.review.get("response", {}).get("patch", "")) + 2048
            self.kept.put(key, decision, size)
        return decision

    def _key(
        self, request: Mapping[str, Any], settings: Settings, inherited: Mapping[str, str] | None, cluster: ClusterFacts
    ) -> tuple[Any, ...] | None:
        """None when the request is not worth keeping (nothing asked for) or has no usable key."""
        if self.size <= 0:
            return None
        pod = request.get("object")
        if not isinstance(pod, dict):
            return None
        metadata = pod.get("metadata")
        if isinstance(metadata, dict) and _length(metadata.get("annotations")) > MAX_ITEMS:
            return None  # before our keys are searched: that walks every key of a large map
        if self.skips:  # bypassing, and not yet a probe's turn: not even our keys are searched
            self.skips -= 1
            return None
        if not requested_annotations(pod, settings, inherited):
            return None
        if items(pod) > MAX_ITEMS:
            return None
        try:
            content = _encode({name: value for name, value in request.items() if name != "uid"})
            defaults = _encode(inherited) if inherited else b""
            if settings.policies:  # which policies apply depends on the namespace's labels
                defaults += _encode(labels_of(inherited))
        except (msgspec.EncodeError, TypeError, OverflowError):  # e.g. an integer beyond 64 bits
            return None
        if len(content) > MAX_KEY:
            return None
        # Settings hash by identity: a reloaded configuration never sees the old answers.
        return (settings, cluster, defaults, content)


_encode = msgspec.json.Encoder().encode
"""Encodes what ``partial.loads`` decodes, its markers for skipped arrays included."""


def items(pod: Mapping[str, Any]) -> int:
    """How many items the lists and maps of ``pod`` that admission reads hold, counting only
    as far as MAX_ITEMS (each container's lists are counted only when there are few containers)."""
    total = 0
    metadata = pod.get("metadata")
    if isinstance(metadata, dict):
        total += _length(metadata.get("annotations")) + _length(metadata.get("ownerReferences"))
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return total
    containers = []
    for section in ("containers", "initContainers", "ephemeralContainers", "volumes"):
        listed = spec.get(section)
        total += _length(listed)
        if section != "volumes" and isinstance(listed, list):
            containers.append(listed)
    if total > MAX_ITEMS:
        return total
    for listed in containers:
        for container in listed:
            if isinstance(container, dict):
                total += _length(container.get("ports")) + _length(container.get("volumeMounts"))
    return total


def _length(value: Any) -> int:
    return len(value) if isinstance(value, list | dict) else 0


def _for_uid(kept: Decision, uid: str, duration: float) -> Decision:
    review: AdmissionReview = {**kept.review, "response": {**kept.review["response"], "uid": uid}}
    return dataclasses.replace(kept, review=review, uid=uid, duration=duration, reused=True)
