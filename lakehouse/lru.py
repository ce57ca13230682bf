"""A small per-process LRU map, safe across threads, for the lakehouse's immutable facts.

Everything kept in one is keyed by something that names its content for good (a metadata file
location, a snapshot id, a set of data file paths) or is a handle that may be rebuilt at any
time (a catalog), so an entry is never stale, only old: the least recently used go first once
the entries weigh more than the budget.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

_caches: weakref.WeakSet[LruCache[object]] = weakref.WeakSet()
_inherited: list[object] = []
"""What process-local caches held when this process was forked: referenced, never used."""


class LruCache(Generic[V]):
    """At most `budget` worth of entries (each weighs `weight(value)`, 1 unless told); the
    newest entry is always kept, however heavy. `on_evict` is called, outside the lock, with
    each value pushed out.

    A `process_local` cache holds handles bound to this process (catalogs and table objects
    with their connections): a forked child starts it empty, its parent's entries set aside,
    neither used nor closed (closing them is the parent's business).
    """

    def __init__(
        self,
        budget: int,
        weight: Callable[[V], int] | None = None,
        on_evict: Callable[[V], None] | None = None,
        *,
        process_local: bool = False,
    ) -> None:
        self._process_local = process_local
        self._budget = budget
        self._weigh = weight or (lambda _: 1)
        self._on_evict = on_evict
        self._weight = 0
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        _caches.add(self)  # type: ignore[arg-type]

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value kept under `key`, or else `make()`'s, kept from then on (if `make` raises,
        nothing is kept). Two threads missing at once may both make it: the last one is kept,
        which is harmless for values that only depend on their key."""
        found = self.get(key)
        if found is None:
            found = make()
            self.put(key, found)
        return found

    def put(self, key: Hashable, value: V) -> None:
        """Keep `value` under `key` (replacing any value kept there)."""
        weight = self._weigh(value)
        evicted: list[V] = []
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._weight -= old[1]
                if old[0] is not value:
                    evicted.append(old[0])
            self._items[key] = (value, weight)
            self._weight += weight
            while self._weight > self._budget and len(self._items) > 1:
                _, (dropped, dropped_weight) = self._items.popitem(last=False)
                self._weight -= dropped_weight
                evicted.append(dropped)
        if self._on_evict is not None:
            for dropped in evicted:
                self._on_evict(dropped)

    def discard(self, key: Hashable) -> None:
        """Forget the entry under `key`, if any (without calling `on_evict`)."""
        with self._lock:
            found = self._items.pop(key, None)
            if found is not None:
                self._weight -= found[1]

    def clear(self) -> None:
        """Forget every entry (without calling `on_evict`)."""
        with self._lock:
            self._items.clear()
            self._weight = 0

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._process_local:
            _inherited.append(self._items)
            self._items = OrderedDict()
            self._weight = 0


def _after_fork() -> None:
    """A forked child starts with fresh locks (another thread of the parent may have held one
    at the fork, and that thread did not survive it) and empty process-local caches."""
    for cache in _caches:
        cache._after_fork()


os.register_at_fork(after_in_child=_after_fork)
