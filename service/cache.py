"""Caches for query embeddings and results: in-process LRU by default, Redis when configured.

A cache is an optimisation, never a dependency: every Redis failure is counted and the
request goes on without it. After a failure Redis is left alone for `retry_after_s`, so a
dead or slow server costs one timeout per interval instead of one per request, and the cache
comes back by itself when Redis does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from service.config import Settings
from service.metrics import Metrics

log = logging.getLogger(__name__)


class Cache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...


def make_cache(settings: Settings, metrics: Metrics) -> Cache | None:
    """Redis when configured, else an in-process LRU; None when caching is off."""
    if settings.redis_url:
        return RedisCache(settings.redis_url, settings.cache_ttl_s, metrics.cache_errors.inc)
    if not settings.cache_entries:
        return None
    return LRUCache(settings.cache_entries, settings.cache_max_bytes)


class LRUCache:
    """Thread-safe in-process cache, bounded in entries and in bytes (a cached response can
    be a hundred times the size of a cached embedding)."""

    def __init__(self, entries: int, max_bytes: int) -> None:
        self._entries = entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def set(self, key: str, value: bytes) -> None:
        if len(value) > self._max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            self._bytes += len(value) - (len(old) if old is not None else 0)
            self._data[key] = value
            while len(self._data) > self._entries or self._bytes > self._max_bytes:
                self._bytes -= len(self._data.popitem(last=False)[1])


class RedisCache:
    """Redis with short timeouts and a back-off after failures; errors are reported, not raised."""

    def __init__(self, url: str, ttl_s: int, on_error: Callable[[], None] = lambda: None,
                 timeout_s: float = 0.05, retry_after_s: float = 1.0, prefix: str = "xmodal:") -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                            socket_connect_timeout=timeout_s)
        self._errors = (redis.RedisError, OSError)
        self._ttl = ttl_s
        self._prefix = prefix
        self._on_error = on_error
        self._retry_after = retry_after_s
        self._down_until = 0.0

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        if self._available():
            log.warning("redis cache unavailable, serving without it: %s", exc)
        self._down_until = time.monotonic() + self._retry_after
        self._on_error()

    def get(self, key: str) -> bytes | None:
        if not self._available():
            return None
        try:
            return self._client.get(self._prefix + key)
        except self._errors as exc:
            self._failed(exc)
            return None

    def set(self, key: str, value: bytes) -> None:
        if not self._available():
            return
        try:
            self._client.set(self._prefix + key, value, ex=self._ttl)
        except self._errors as exc:
            self._failed(exc)
