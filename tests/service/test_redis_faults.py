"""Redis killed under a stream of queries: no request fails; the cache returns with Redis."""

from __future__ import annotations

import re
import threading
import time

import httpx

from tests.service.live_server import live_server
from tests.service.redis_server import RedisServer
from xmodal.demo import DemoPaths

QUERIES = ["a red circle", "a blue square", "a green triangle", "a yellow diamond"]


def _stream(url: str, stop: threading.Event, statuses: list[int]) -> None:
    with httpx.Client(timeout=30) as client:
        i = 0
        while not stop.is_set():
            r = client.post(f"{url}/v1/search/text", json={"text": QUERIES[i % 4], "k": 3})
            statuses.append(r.status_code)
            i += 1


def _hits(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(r'xmodal_cache_total\{cache="response",outcome="hit"\} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def test_redis_killed_mid_stream_fails_no_request(demo: DemoPaths) -> None:
    redis = RedisServer().start()
    try:
        with live_server(demo.engine, demo.index, redis_url=redis.url) as url:
            stop, statuses = threading.Event(), []
            threads = [threading.Thread(target=_stream, args=(url, stop, statuses))
                       for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(1.5)
            redis.kill()
            time.sleep(2.0)
            hits_while_down = _hits(url)
            time.sleep(1.0)
            assert _hits(url) == hits_while_down  # no cache while Redis is down
            redis.start()  # same port: the service reconnects by itself
            time.sleep(3.0)
            stop.set()
            for t in threads:
                t.join()
            hits_after = _hits(url)
            errors = httpx.get(f"{url}/metrics").text
    finally:
        redis.kill()
    assert statuses and all(s == 200 for s in statuses), {s for s in statuses}
    assert hits_after > hits_while_down  # the cache came back with Redis
    assert re.search(r"xmodal_cache_errors_total [1-9]", errors)
