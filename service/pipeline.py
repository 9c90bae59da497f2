"""The query path: cache -> micro-batched encode -> search, each stage timed.

Built once per loaded runtime; the routes call it and stay thin.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from index.metadata import Filter
from index.search import Hit
from service.batching import MicroBatcher
from service.cache import Cache, LRUCache, NoCache, RedisCache
from service.config import Settings
from service.metrics import Metrics
from service.runtime import Runtime


def make_cache(settings: Settings, metrics: Metrics) -> Cache:
    if settings.redis_url:
        return RedisCache(settings.redis_url, settings.cache_ttl_s, metrics.cache_errors.inc)
    return LRUCache(settings.cache_entries) if settings.cache_entries else NoCache()


def _key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class QueryPipeline:
    def __init__(self, runtime: Runtime, settings: Settings, metrics: Metrics, cache: Cache) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.cache = cache
        wait = settings.batch_max_wait_ms / 1000
        observe = metrics.batch_size.observe
        self._texts = MicroBatcher(self._encode_texts, settings.batch_max_size, wait, observe)
        self._images = MicroBatcher(self._encode_images, settings.batch_max_size, wait, observe)
        self.active = 0  # requests holding this pipeline (see service.serving)
        self.retired = False

    @property
    def engine_id(self) -> str:
        return self.runtime.engine.engine_id

    @property
    def index_version(self) -> str:
        return self.runtime.searcher.version

    def _encode_texts(self, texts: Sequence[str]) -> list[np.ndarray]:
        with self.metrics.stage("encode"):
            return list(self.runtime.engine.encode_texts(texts))

    def _encode_images(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        with self.metrics.stage("encode"):
            return list(self.runtime.engine.encode_images(images))

    async def embed_text(self, text: str) -> np.ndarray:
        key = _key("text-embedding", self.engine_id, text)
        cached = self.cache.get(key)
        self.metrics.cache.labels("embedding", "hit" if cached else "miss").inc()
        if cached is not None:
            return np.frombuffer(cached, dtype=np.float32)
        vector = await self._texts.submit(text)
        self.cache.set(key, vector.astype(np.float32).tobytes())
        return vector

    async def embed_image(self, image: Image.Image) -> np.ndarray:
        return await self._images.submit(image)

    async def search(self, vector: np.ndarray, k: int, where: Filter | None = None) -> list[Hit]:
        def run() -> list[Hit]:
            with self.metrics.stage("search"):
                return self.runtime.searcher.search(vector[None, :], k, where)[0]

        return await asyncio.to_thread(run)

    async def search_captions(self, vector: np.ndarray, k: int) -> list[Hit]:
        def run() -> list[Hit]:
            with self.metrics.stage("search"):
                return self.runtime.searcher.search_captions(vector[None, :], k)[0]

        return await asyncio.to_thread(run)

    @property
    def can_rerank(self) -> bool:
        return self.runtime.engine.has_reranker and self.runtime.searcher.token_store is not None

    async def match_probabilities(self, text: str, ids: Sequence[int]) -> np.ndarray:
        """The reranker's match probability of `text` with each stored image, in `ids` order."""
        def run() -> np.ndarray:
            with self.metrics.stage("rerank"):
                tokens = self.runtime.searcher.tokens(list(ids))
                return self.runtime.engine.score(tokens, [text] * len(ids))

        return await asyncio.to_thread(run)

    def cached_response(self, request_key: str) -> bytes | None:
        cached = self.cache.get(self.response_key(request_key))
        self.metrics.cache.labels("response", "hit" if cached else "miss").inc()
        return cached

    def store_response(self, request_key: str, body: bytes) -> None:
        self.cache.set(self.response_key(request_key), body)

    def response_key(self, request_key: str) -> str:
        return _key("response", self.engine_id, self.index_version, request_key)

    async def close(self) -> None:
        await self._texts.close()
        await self._images.close()
        self.runtime.close()
