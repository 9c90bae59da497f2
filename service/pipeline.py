"""The query path: cache -> micro-batched encode + search -> micro-batched rerank, each stage
timed.

Every engine and index call goes through a `MicroBatcher`: concurrent requests share engine
calls, and a request alone in flight runs on the event loop. Built once per loaded runtime;
the routes call it and stay thin.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel

from encoders.errors import InputError
from index.errors import IndexBundleError
from index.metadata import Filter
from index.search import Hit
from service.batching import MicroBatcher
from service.cache import Cache, LRUCache, RedisCache
from service.config import Settings
from service.metrics import Metrics
from service.runtime import Runtime
from service.schemas import MAX_K


@dataclass(frozen=True)
class Lookup:
    """One query of a batch: what to search with, how many results, and where."""

    query: Any  # text, image or vector, by the batcher it goes to
    k: int
    where: Filter | None = None
    captions: bool = False  # search the caption index (image -> text) instead of images


@dataclass(frozen=True)
class Scoring:
    """One rerank of a batch: a text against stored images."""

    text: str
    ids: tuple[int, ...]


# Unfiltered searches up to this deep share one FAISS call at their largest k; a deeper one
# (clip-retrieval's front end asks for 1,000) searches alone rather than deepen all the others.
SHARED_MAX_K = MAX_K
Found = list[Hit] | Exception  # a lookup's hits, or the error that concerns it alone
Scored = np.ndarray | Exception  # a scoring's match probabilities, or its own error


def make_cache(settings: Settings, metrics: Metrics) -> Cache | None:
    """Redis when configured, else an in-process LRU; None when caching is off."""
    if settings.redis_url:
        return RedisCache(settings.redis_url, settings.cache_ttl_s, metrics.cache_errors.inc)
    if not settings.cache_entries:
        return None
    return LRUCache(settings.cache_entries, settings.cache_max_bytes)


def _key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class QueryPipeline:
    def __init__(self, runtime: Runtime, settings: Settings, metrics: Metrics,
                 cache: Cache | None) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.cache = cache  # None: off, and no keys are computed
        self._outcomes = {(kind, hit): metrics.cache.labels(kind, "hit" if hit else "miss")
                          for kind in ("embedding", "response") for hit in (True, False)}
        self._max_pairs = settings.rerank_max_pairs

        def batcher(fn: Callable[[Sequence[Any]], list[Any]], observe: Callable[[float], None],
                    name: str) -> MicroBatcher:
            return MicroBatcher(fn, settings.batch_max_size, settings.batch_max_wait_ms / 1000,
                                observe, inline_when=self._alone, name=f"batch-{name}")

        self._texts = batcher(self._find_texts, metrics.batch_size.observe, "texts")
        self._images = batcher(self._find_images, metrics.batch_size.observe, "images")
        self._vectors = batcher(self._find_vectors, metrics.batch_size.observe, "vectors")
        self._scorings = batcher(self._score, metrics.rerank_batch_size.observe, "rerank")
        self.active = 0  # requests holding this pipeline (see service.serving)
        self.retired = False

    def _alone(self) -> bool:
        """Only one request holds this pipeline: blocking work may run on the event loop."""
        return self.active <= 1

    @property
    def engine_id(self) -> str:
        return self.runtime.engine.engine_id

    @property
    def index_version(self) -> str:
        return self.runtime.searcher.version

    def _find_texts(self, lookups: Sequence[Lookup]) -> list[Found]:
        with self.metrics.stage("encode"):
            vectors = self.runtime.engine.encode_texts([lk.query for lk in lookups])
        if self.cache is not None:
            for lookup, vector in zip(lookups, vectors, strict=True):
                self.cache.set(_key("text-embedding", self.engine_id, lookup.query),
                               vector.astype(np.float32).tobytes())
        return self._search(vectors, lookups)

    def _find_images(self, lookups: Sequence[Lookup]) -> list[Found]:
        with self.metrics.stage("encode"):
            vectors = self.runtime.engine.encode_images([lk.query for lk in lookups])
        return self._search(vectors, lookups)

    def _find_vectors(self, lookups: Sequence[Lookup]) -> list[Found]:
        return self._search(np.stack([lk.query for lk in lookups]), lookups)

    def _search(self, vectors: np.ndarray, lookups: Sequence[Lookup]) -> list[Found]:
        """Search a batch of query vectors; unfiltered image searches share one FAISS call.

        A lookup refused on its own (no caption index) gets its error back as its result, so
        it fails only its own request; an unexpected failure is isolated by the batcher.
        """
        searcher = self.runtime.searcher
        found: list[Found] = [[] for _ in lookups]
        with self.metrics.stage("search"):
            shared = [i for i, lk in enumerate(lookups)
                      if lk.where is None and not lk.captions and lk.k <= SHARED_MAX_K]
            if shared:
                # the largest k serves all: exact and IVF results are prefixes of longer
                # ones, and a refine step only gets a longer candidate list
                k = max(lookups[i].k for i in shared)
                for i, hits in zip(shared, searcher.search(vectors[shared], k), strict=True):
                    found[i] = hits[: lookups[i].k]
            for i, lk in enumerate(lookups):
                try:
                    if lk.captions:
                        found[i] = searcher.search_captions(vectors[i : i + 1], lk.k)[0]
                    elif lk.where is not None or lk.k > SHARED_MAX_K:
                        found[i] = searcher.search(vectors[i : i + 1], lk.k, lk.where)[0]
                except (InputError, IndexBundleError) as exc:
                    found[i] = exc
        return found

    async def find(self, query: str | Image.Image | np.ndarray, k: int,
                   where: Filter | None = None, captions: bool = False) -> list[Hit]:
        """The k best items (or captions) for a text, an image or a query vector.

        Encoding and search run together, in one call per batch: concurrent queries share
        the engine call and the FAISS call, in the batcher's worker thread; a query alone in
        flight runs them on the event loop (see MicroBatcher).
        """
        batcher: MicroBatcher = self._vectors
        if isinstance(query, str):
            cached = None if self.cache is None else self._cached(
                "embedding", _key("text-embedding", self.engine_id, query))
            if cached is None:
                batcher = self._texts
            else:
                query = np.frombuffer(cached, np.float32)
        elif isinstance(query, Image.Image):
            batcher = self._images
        if batcher is self._vectors and query.shape != (self.runtime.engine.dim,):
            # checked here, in its own request: in a batch it would fail every query there
            raise InputError(f"a query vector has {self.runtime.engine.dim} numbers; this one "
                             f"has shape {query.shape}")
        result = await batcher.submit(Lookup(query, k, where, captions))
        if isinstance(result, Exception):
            raise result
        return result

    @property
    def can_rerank(self) -> bool:
        return self.runtime.engine.has_reranker and self.runtime.searcher.has_tokens

    async def match_probabilities(self, text: str, ids: Sequence[int]) -> np.ndarray:
        """The reranker's match probability of `text` with each stored image, in `ids` order.

        Raises KeyError for ids the index does not hold (or has deleted)."""
        result = await self._scorings.submit(Scoring(text, tuple(ids)))
        if isinstance(result, Exception):
            raise result
        return result

    async def caption_probabilities(self, image: Image.Image,
                                    captions: Sequence[str]) -> np.ndarray:
        """The reranker's match probability of a query image with each caption (image ->
        text search). The image's tokens are made once, for all its captions; rare enough
        to run in a thread of its own rather than through a batcher."""
        engine = self.runtime.engine

        def run() -> np.ndarray:
            with self.metrics.stage("rerank"):
                tokens = engine.encode_pixels(engine.pixels([image]))["image_tokens"]
                return engine.score(np.repeat(tokens, len(captions), axis=0), list(captions))

        return await asyncio.to_thread(run)

    def _score(self, scorings: Sequence[Scoring]) -> list[Scored]:
        """Every (text, stored image) pair of a batch through the reranker, `rerank_max_pairs`
        per engine call; a scoring with an unknown id gets its KeyError back, alone."""
        searcher, engine = self.runtime.searcher, self.runtime.engine
        with self.metrics.stage("rerank"):
            scored: list[Scored] = []
            for scoring in scorings:
                try:
                    scored.append(searcher.tokens(list(scoring.ids)))
                except KeyError as exc:
                    scored.append(exc)
            good = [i for i, s in enumerate(scored) if not isinstance(s, Exception)]
            if not good:
                return scored
            tokens = np.concatenate([scored[i] for i in good])
            texts = [scorings[i].text for i in good for _ in scorings[i].ids]
            probs = np.concatenate([engine.score(tokens[at : at + self._max_pairs],
                                                 texts[at : at + self._max_pairs])
                                    for at in range(0, len(texts), self._max_pairs)])
            ends = np.cumsum([len(scorings[i].ids) for i in good])
            for i, part in zip(good, np.split(probs, ends[:-1]), strict=True):
                scored[i] = part
        return scored

    def _cached(self, kind: str, key: str) -> bytes | None:
        if self.cache is None:
            return None
        cached = self.cache.get(key)
        self._outcomes[kind, cached is not None].inc()
        return cached

    def response_key(self, request: BaseModel) -> str | None:
        """The cache key of a whole response (engine, index version, request); None: no cache."""
        if self.cache is None:
            return None
        return _key("response", self.engine_id, self.index_version,
                    type(request).__name__, request.model_dump_json())

    def cached_response(self, key: str | None) -> bytes | None:
        return None if key is None else self._cached("response", key)

    def store_response(self, key: str | None, body: bytes) -> None:
        if key is not None and self.cache is not None:
            self.cache.set(key, body)

    async def close(self) -> None:
        for batcher in (self._texts, self._images, self._vectors, self._scorings):
            await batcher.close()
        self.runtime.close()
