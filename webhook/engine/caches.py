"""Every cache an admission passes through, bounded in entries AND bytes, and frozen values.

The pods of one workload are alike, so the engine memoises its expensive steps (annotation
parses, resource merges, built containers). A pod author chooses the keys, so each cache is
bounded by its number of entries and by the bytes its keys and values hold (the caller states an
entry's size, measured from what it is: string lengths or encoded JSON), oldest out first, and
an entry larger than a tenth of its cache is never kept. A cache may also forget entries past an
age (``max_age``: the Event recorder's rate limiter and owner lookups). ``CACHES`` lists the
engine's (the answer cache of ``admission/reuse.py`` and the Event recorder's are the same type),
with their bounds, for tests and docs.

Cached values are shared between pods, so they are frozen (webhook/engine/frozen.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """A first-in-first-out cache bounded by entries, by the bytes its entries declare and,
    with ``max_age``, by the seconds since each entry was stored."""

    def __init__(
        self,
        name: str,
        *,
        max_entries: int,
        max_bytes: int,
        on_evict: Callable[[V], None] | None = None,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.on_evict = on_evict
        self.max_age = max_age
        self.clock = clock
        self.entries: dict[Hashable, tuple[V, int]] = {}
        self.stored: dict[Hashable, float] = {}
        """key → when it was stored (only with ``max_age``), in the same order as ``entries``."""
        self.bytes = 0

    def get(self, key: Hashable) -> V | None:
        found = self.entries.get(key)
        if found is None:
            return None
        if self.max_age is not None and self.clock() - self.stored[key] >= self.max_age:
            self._drop(key)
            return None
        return found[0]

    def put(self, key: Hashable, value: V, size: int) -> V:
        """Keep ``value`` (``size`` bytes, key included) unless it is too large; returns it."""
        if key in self.entries:
            self._drop(key)  # stored again: counted once, and young again
        if size > self.max_bytes // 10 or self.max_entries <= 0:
            return value
        if self.max_age is not None:
            now = self.clock()
            # Insertion order is age order: stop at the first entry young enough.
            while self.stored and now - next(iter(self.stored.values())) >= self.max_age:
                self._drop(next(iter(self.stored)))
            self.stored[key] = now
        self.entries[key] = (value, size)
        self.bytes += size
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self.entries)))
        return value

    def _drop(self, key: Hashable) -> None:
        evicted, evicted_size = self.entries.pop(key)
        self.stored.pop(key, None)
        self.bytes -= evicted_size
        if self.on_evict is not None:
            self.on_evict(evicted)

    def clear(self) -> None:
        for value, _ in self.entries.values():
            if self.on_evict is not None:
                self.on_evict(value)
        self.entries.clear()
        self.stored.clear()
        self.bytes = 0


def key_size(key: Any) -> int:
    """Bytes a key of strings, numbers and tuples of them holds (objects count a pointer)."""
    if isinstance(key, str | bytes):
        return len(key) + 50
    if isinstance(key, tuple):
        return 56 + sum(key_size(item) for item in key)
    return 32


CACHES: dict[str, BoundedCache[Any]] = {}
"""name → cache, filled as each module creates its own with ``cache()``."""


def cache(name: str, *, max_entries: int, max_bytes: int, on_evict: Callable[[Any], None] | None = None) -> BoundedCache[Any]:
    created: BoundedCache[Any] = BoundedCache(name, max_entries=max_entries, max_bytes=max_bytes, on_evict=on_evict)
    CACHES[name] = created
    return created
