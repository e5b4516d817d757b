"""A small in-process cache of JSON answers, each kept with the validator (row count, latest computed_at) it
was built under and served only while the database still reports that validator and for at most `ttl_s`.

Historical KPI rows rarely change, so a repeated query costs one cheap aggregate instead of rebuilding the JSON.
Bounded by total bytes (least recently used out first); answers larger than `max_entry_bytes` are not kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class ResponseCache:
    """LRU of key -> (validator, body, stored at)."""

    def __init__(self, max_bytes: int, max_entry_bytes: int = 8_000_000, ttl_s: float = 300.0) -> None:
        self.max_bytes, self.max_entry_bytes, self.ttl_s = max_bytes, max_entry_bytes, ttl_s
        self._items: OrderedDict[Hashable, tuple[Any, bytes, float]] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def get(self, key: Hashable, validator: Any) -> bytes | None:
        """The body stored under key when its validator matches and it is younger than ttl_s, else None."""
        item = self._items.get(key)
        if item is None or item[0] != validator or time.monotonic() - item[2] > self.ttl_s:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[1]

    def put(self, key: Hashable, validator: Any, body: bytes) -> None:
        """Keep body (unless caching is off or it is too large), evicting the least recently used."""
        if self.max_bytes <= 0 or len(body) > min(self.max_entry_bytes, self.max_bytes):
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        self._items[key] = (validator, body, time.monotonic())
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, (_, dropped, _) = self._items.popitem(last=False)
            self._bytes -= len(dropped)
