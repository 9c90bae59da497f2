import time
from collections.abc import Iterator

import pytest

from service.cache import LRUCache, RedisCache
from tests.service.redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.kill()


def test_lru_evicts_the_least_recently_used() -> None:
    cache = LRUCache(2, max_bytes=1000)
    cache.set("a", b"1")
    cache.set("b", b"2")
    assert cache.get("a") == b"1"  # a is now the most recent
    cache.set("c", b"3")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"1", None, b"3")


def test_lru_holds_at_most_max_bytes() -> None:
    cache = LRUCache(100, max_bytes=10)
    cache.set("a", b"1234")
    cache.set("b", b"5678")
    cache.set("a", b"12")  # replacing an entry counts its new size only
    cache.set("c", b"abcd")  # 2 + 4 + 4 = 10: all fit
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"12", b"5678", b"abcd")
    cache.set("d", b"xyz")  # over by 3: the least recently used (a, then b) go
    assert (cache.get("a"), cache.get("b"), cache.get("c"), cache.get("d")) == (
        None, None, b"abcd", b"xyz")
    cache.set("huge", b"0" * 11)  # larger than the whole cache: not stored, nothing evicted
    assert (cache.get("huge"), cache.get("c")) == (None, b"abcd")


def test_redis_cache_survives_redis_going_away_and_comes_back(redis_server: RedisServer) -> None:
    errors: list[int] = []
    cache = RedisCache(redis_server.url, ttl_s=60, on_error=lambda: errors.append(1),
                       retry_after_s=0.2)
    cache.set("k", b"v")
    assert cache.get("k") == b"v"
    redis_server.kill()
    assert cache.get("k") is None  # no exception: the request goes on without the cache
    cache.set("k2", b"v2")
    assert len(errors) == 1  # backed off: the second call did not try the dead server
    redis_server.start()
    time.sleep(0.25)
    cache.set("k3", b"v3")
    assert cache.get("k3") == b"v3"
