"""A small bounded cache with an age limit, owned by one app (:func:`~hopchain_airflow.ui.app.create_app`).

Storage, expiry and least-recently-used eviction are ``cachetools.TTLCache``; this adds the one call the
pages need (``get_or``) and a lock: the api-server serves requests from several threads. Two threads
missing the same key both compute it and the later one wins (the values are read-only views of the ledger).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import cachetools

V = TypeVar("V")


class TTLCache(Generic[V]):
    """At most ``max_items`` values, each kept ``ttl_s`` seconds; the least recently used goes first."""

    def __init__(self, max_items: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_items < 1 or ttl_s <= 0:
            raise ValueError("a cache holds at least one item for a positive time")
        self._items: cachetools.TTLCache[Hashable, V] = cachetools.TTLCache(max_items, ttl_s, timer=clock)
        self._lock = threading.Lock()

    def get_or(self, key: Hashable, make: Callable[[], V]) -> V:
        """The cached value of ``key`` while it is younger than ``ttl_s``; otherwise ``make()``, kept."""
        with self._lock:
            try:
                return self._items[key]
            except KeyError:
                pass
        value = make()
        with self._lock:
            self._items[key] = value
        return value

    def __len__(self) -> int:
        with self._lock:
            self._items.expire()
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
