"""A small bounded cache with an age limit, owned by one app (:func:`~hopchain_airflow.ui.app.create_app`).

The api-server serves requests from several threads: reads and writes take a lock; two threads missing
the same key both compute it and the later one wins (the values are read-only views of the ledger).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """At most ``max_items`` values, each kept ``ttl_s`` seconds; the least recently used goes first."""

    def __init__(self, max_items: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_items < 1 or ttl_s <= 0:
            raise ValueError("a cache holds at least one item for a positive time")
        self.max_items, self.ttl_s, self._clock = max_items, ttl_s, clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or(self, key: Hashable, make: Callable[[], V]) -> V:
        """The cached value of ``key`` while it is younger than ``ttl_s``; otherwise ``make()``, kept."""
        now = self._clock()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and now - hit[0] < self.ttl_s:
                self._items.move_to_end(key)
                return hit[1]
        value = make()
        with self._lock:
            self._items[key] = (self._clock(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
