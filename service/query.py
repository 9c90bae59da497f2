"""The query service: everything a route asks of the engine and index being served.

A route parses its request, calls one method here and answers with what it returns. This
owns the way a query travels: the response and embedding caches, micro-batched encode and
search (`service.batching` runs `service.batches`), the rerank with the one rule for whether a
request can be reranked, the shaping of results (`service.results`) and the lookups by id.

One is built per loaded index: `load` at start-up, `with_index` for every index served after
it; `service.leases` points requests at the current one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from encoders.codes import IMAGE_CODES, TEXT_CODES, pack
from encoders.engine import Engine, OnnxEngine
from encoders.errors import InputError
from index.errors import IndexBundleError
from index.metadata import Filter, Item
from index.search import Hit, Searcher
from service.batches import Found, Lookup, Scored, Scoring, score_batch, search_batch
from service.batching import MicroBatcher
from service.cache import Cache, make_cache
from service.config import Settings
from service.dedup import deduplicate
from service.errors import InvalidQuery, NoCaptionIndex, NotFound
from service.metrics import Metrics
from service.results import fetch_count, rank, search_body, to_filter
from service.schemas import (
    IndexInfo,
    Readiness,
    RerankResult,
    SearchMode,
    SearchOptions,
    Target,
)

log = logging.getLogger(__name__)

# what a rerank scores its text against; None: a request with no text (image -> image)
Against = Literal["stored images", "captions", "uploaded images"] | None


def _key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _codes_info(codes: dict[str, Any]) -> dict[str, Any]:
    """The index's codes for `GET /v1/index`: its settings and measured recall, no curve."""
    if not codes:
        return {}
    tuning = {k: v for k, v in codes.get("tuning", {}).items() if k != "curve"}
    return {**{k: v for k, v in codes.items() if k != "tuning"}, "tuning": tuning}


class QueryService:
    """One engine and one loaded index version, and every question a route asks of them."""

    def __init__(self, engine: Engine, searcher: Searcher, index_dir: Path | None,
                 settings: Settings, metrics: Metrics, cache: Cache | None) -> None:
        self.engine = engine
        self.searcher = searcher
        # what the searcher was loaded from: an index root (changes publish into it) or a
        # version folder (pinned: no changes); None: not known, no changes
        self.index_dir = index_dir
        self.settings = settings
        self.metrics = metrics
        self.cache = cache  # None: off, and no keys are computed
        self._outcomes = {(kind, hit): metrics.cache.labels(kind, "hit" if hit else "miss")
                          for kind in ("embedding", "response") for hit in (True, False)}
        self._texts = self._batcher(self._find_texts, metrics.batch_size.observe, "texts")
        self._images = self._batcher(self._find_images, metrics.batch_size.observe, "images")
        self._vectors = self._batcher(self._find_vectors, metrics.batch_size.observe, "vectors")
        self._scorings = self._batcher(self._score, metrics.rerank_batch_size.observe, "rerank")
        self.active = 0  # requests holding this service (see service.leases)
        self.retired = False

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics, engine: Engine | None = None,
             ) -> QueryService:
        """The configured index, served with `engine` (default: the configured bundle, run by
        ONNX Runtime); raises if the index was built by another engine."""
        engine = engine or OnnxEngine(settings.engine_dir, threads=settings.threads,
                                      spin_us=settings.spin_us)
        searcher = Searcher(settings.index_dir, engine.engine_id)
        log.info("serving index %s (%d images) with engine %s",
                 searcher.version, searcher.manifest.count, engine.engine_id)
        return cls(engine, searcher, settings.index_dir, settings, metrics,
                   make_cache(settings, metrics))

    def with_index(self, index_dir: Path, version: str | None = None) -> QueryService:
        """The same engine, settings and caches over another index, checked against the engine
        as at start-up; `version`: that version of the root `index_dir` rather than the one
        its CURRENT names. Every index served after the first is loaded here."""
        searcher = Searcher(index_dir / version if version else index_dir, self.engine.engine_id)
        log.info("loaded index %s (%d images)", searcher.version, searcher.manifest.count)
        return QueryService(self.engine, searcher, index_dir, self.settings, self.metrics,
                            self.cache)

    def _batcher(self, fn: Callable[[Sequence[Any]], list[Any]],
                 observe: Callable[[float], None], name: str) -> MicroBatcher:
        return MicroBatcher(fn, self.settings.batch_max_size,
                            self.settings.batch_max_wait_ms / 1000, observe,
                            inline_when=self._alone, name=f"batch-{name}")

    def _alone(self) -> bool:
        """Only one request holds this service: blocking work may run on the event loop."""
        return self.active <= 1

    @property
    def engine_id(self) -> str:
        return self.engine.engine_id

    @property
    def index_version(self) -> str:
        return self.searcher.version

    @property
    def count(self) -> int:
        return self.searcher.manifest.count

    @property
    def dim(self) -> int:
        return self.engine.dim

    async def search(self, query: str | Image.Image, options: SearchOptions,
                     target: Target = Target.image,
                     mode: SearchMode = SearchMode.vector) -> bytes:
        """The `SearchResponse` body for a text (-> images) or an image (-> images, or with
        target text -> the items whose captions match it best): found, reranked when asked,
        cut off and shaped. Text responses are cached whole. `mode`: how a text finds its
        images (service.hybrid); an image query is vector search only."""
        key = self._response_key(query, options)
        cached = self._cached("response", key)
        if cached is not None:
            return cached
        captions = target is Target.text
        if captions and options.filter is not None:
            raise InvalidQuery("filter applies to image results, not to caption search")
        hits = await self.find(query, fetch_count(options), to_filter(options.filter), captions,
                               mode=mode)
        probabilities = None
        if options.rerank:
            head = hits[: options.rerank_k]
            probabilities = await self._rerank_head(query, head, captions) if head else []
        body = search_body(self.engine_id, self.index_version, rank(hits, options, probabilities))
        if key is not None and self.cache is not None:
            self.cache.set(key, body)
        return body

    async def find(self, query: str | Image.Image | np.ndarray, k: int,
                   where: Filter | None = None, captions: bool = False,
                   dedup: float | None = None,
                   mode: SearchMode = SearchMode.vector) -> list[Hit]:
        """The k best items (or captions) for a text, an image or a query vector; `dedup`:
        drop near duplicates, results whose image vectors are at least this similar; `mode`:
        for a text, vector, keyword or hybrid search (service.hybrid).

        Encoding and search run together, in one call per batch: concurrent queries share
        the engine call and the FAISS call, in the batcher's worker thread; a query alone in
        flight runs them on the event loop (see MicroBatcher).
        """
        batcher: MicroBatcher = self._vectors
        code = None
        if mode is not SearchMode.vector and not isinstance(query, str):
            raise InvalidQuery(f"{mode.value} search needs a query text")
        text = query if isinstance(query, str) else ""
        if isinstance(query, str):
            cached = self._cached("embedding", self._embedding_key(query))
            if cached is None:
                batcher = self._texts
            else:
                query, code = self._from_cache(cached)
        elif isinstance(query, Image.Image):
            batcher = self._images
        if batcher is self._vectors and query.shape != (self.dim,):
            # checked here, in its own request: in a batch it would fail every query there
            raise InputError(f"a query vector has {self.dim} numbers; this one has shape "
                             f"{query.shape}")
        hits = await batcher.submit(Lookup(query, k, where, captions,
                                           code if batcher is self._vectors else None, mode, text))
        if isinstance(hits, IndexBundleError) and captions:
            raise NoCaptionIndex(f"image -> text search is not available: {hits}") from hits
        if isinstance(hits, IndexBundleError) and mode is not SearchMode.vector:
            raise InvalidQuery(f"{mode.value} search is not available: {hits}") from hits
        if isinstance(hits, Exception):
            raise hits
        if dedup is not None and len(hits) > 1:  # up to k^2 similarities: off the event loop
            hits = await asyncio.to_thread(deduplicate, self.searcher, hits, dedup)
        return hits

    def _refusal(self, against: Against) -> str | None:
        """Why a rerank against `against` cannot run here; None: it can. The one rule: a text
        on one side, a fusion reranker in the engine, and for stored images their tokens in
        the index."""
        if against is None:
            return ("rerank needs a text on one side: text -> image or image -> text (target: "
                    "text) search, not image -> image")
        if not self.engine.has_reranker:
            return f"rerank needs a fusion reranker, and engine {self.engine_id} has no reranker"
        if against == "stored images" and not self.searcher.has_tokens:
            return ("rerank of stored images needs an index with stored image tokens; index "
                    f"{self.index_version} has none")
        return None

    def _require_rerank(self, against: Against) -> None:
        refusal = self._refusal(against)
        if refusal is not None:
            raise InvalidQuery(refusal)

    @property
    def can_rerank(self) -> bool:
        """Whether a text search can be reranked."""
        return self._refusal("stored images") is None

    async def _rerank_head(self, query: str | Image.Image, head: list[Hit],
                           captions: bool) -> np.ndarray:
        """The reranker's match probabilities of the head: a text against the stored images
        hit, or an image against the captions hit (image -> text)."""
        if isinstance(query, str):
            self._require_rerank("stored images")
            return await self.match_probabilities(query, [h.id for h in head])
        self._require_rerank("captions" if captions else None)
        return await self._caption_probabilities(query, [h.item.caption or "" for h in head])

    async def rerank_ids(self, text: str, ids: Sequence[int]) -> list[RerankResult]:
        """Stored images, by id, scored against `text` by the reranker, best first."""
        self._require_rerank("stored images")
        items = self.searcher.metadata.get(ids)
        unknown = [i for i in ids if i not in items]
        if unknown:
            raise InvalidQuery(f"unknown image ids: {unknown[:10]}")
        try:
            probs = await self.match_probabilities(text, ids)
        except KeyError as exc:  # known to the metadata but deleted from the index
            raise InvalidQuery(str(exc.args[0])) from exc
        ranked = sorted(zip(ids, probs, strict=True), key=lambda pair: -pair[1])
        return [RerankResult(id=i, match_probability=float(p), path=items[i].path,
                             caption=items[i].caption, thumbnail_url=f"/v1/images/{i}")
                for i, p in ranked]

    async def rerank_images(self, text: str,
                            images: Sequence[Callable[[], Image.Image]]) -> np.ndarray:
        """Images that are not in the index scored against `text`, in order.

        Each of `images` decodes its image when called, in a worker thread (decoding would
        stall the event loop), and that image is cut down to the model's input and dropped
        before the next is decoded: a request of small PNGs that each decode to hundreds of
        megabytes holds one such image at a time (and, in one thread, reuses its memory)."""
        self._require_rerank("uploaded images")

        def run() -> np.ndarray:
            pixels = np.stack([self.engine.pixels([decode()])[0] for decode in images])
            with self.metrics.stage("rerank"):
                tokens = self.engine.encode_pixels(pixels)["image_tokens"]
                return self.engine.score(tokens, [text] * len(pixels))

        return await asyncio.to_thread(run)

    async def match_probabilities(self, text: str, ids: Sequence[int]) -> np.ndarray:
        """The reranker's match probability of `text` with each stored image, in `ids` order,
        batched with concurrent reranks. Raises KeyError for ids the index does not hold (or
        has deleted)."""
        result = await self._scorings.submit(Scoring(text, tuple(ids)))
        if isinstance(result, Exception):
            raise result
        return result

    async def _caption_probabilities(self, image: Image.Image,
                                     captions: Sequence[str]) -> np.ndarray:
        """The reranker's match probability of a query image with each caption. The image's
        tokens are made once, for all its captions; rare enough to run in a thread of its own
        rather than through a batcher."""
        def run() -> np.ndarray:
            with self.metrics.stage("rerank"):
                tokens = self.engine.encode_pixels(self.engine.pixels([image]))["image_tokens"]
                return self.engine.score(np.repeat(tokens, len(captions), axis=0), list(captions))

        return await asyncio.to_thread(run)

    async def image(self, item_id: int) -> tuple[Item, bytes]:
        """A live item and its image file's bytes; NotFound when there is none."""
        try:
            return await asyncio.to_thread(self.searcher.image, item_id)
        except KeyError as exc:
            raise NotFound(f"no image with id {item_id}") from exc
        except OSError as exc:
            raise NotFound(f"image {item_id} is not available") from exc

    def items(self, ids: Sequence[int]) -> dict[int, Item]:
        """The live items of those `ids` that exist, by id."""
        return self.searcher.metadata.get(ids)

    def vector(self, item_id: int) -> np.ndarray:
        """A stored image's vector, what image -> image search with it searches by."""
        try:
            return self.searcher.vectors([item_id])[0]
        except KeyError as exc:
            raise NotFound(f"no image with id {item_id}") from exc
        except IndexBundleError as exc:
            raise InvalidQuery(f"this index stores no image vectors ({exc})") from exc

    def info(self) -> IndexInfo:
        manifest, engine = self.searcher.manifest, self.engine.manifest
        return IndexInfo(
            engine_id=engine.engine_id, family=engine.family, precision=engine.precision,
            rerank=self.can_rerank, version=manifest.version, parent=manifest.parent,
            created=manifest.created, count=manifest.count, deleted=manifest.deleted,
            dim=manifest.dim, factory=manifest.factory, search_params=manifest.search_params,
            tuning=manifest.tuning, tokens=manifest.tokens, captions=manifest.captions,
            keywords=self.searcher.has_keywords, codes=_codes_info(manifest.codes),
        )

    def readiness(self) -> Readiness:
        return Readiness(status="ready", engine_id=self.engine_id,
                         index_version=self.index_version, count=self.count,
                         rerank=self.can_rerank)

    @property
    def _by_codes(self) -> bool:
        """Whether queries are searched by their binary codes (the index holds them)."""
        return bool(self.searcher.code_bits)

    def _find_texts(self, lookups: Sequence[Lookup]) -> list[Found]:
        with self.metrics.stage("encode"):
            if self._by_codes:
                out = self.engine.encode_text_outputs([lk.query for lk in lookups])
                vectors, codes = out["text_embeds"], pack(out[TEXT_CODES])
            else:
                vectors, codes = self.engine.encode_texts([lk.query for lk in lookups]), None
        if self.cache is not None:
            for i, lookup in enumerate(lookups):
                # the code travels with the vector: a cached text is searched as a fresh one
                value = vectors[i].astype(np.float32).tobytes()
                self.cache.set(self._embedding_key(lookup.query),
                               value + (codes[i].tobytes() if codes is not None else b""))
        return self._search(vectors, lookups, codes)

    def _from_cache(self, cached: bytes) -> tuple[np.ndarray, np.ndarray | None]:
        """A cached text embedding and, after it, its packed code where it was stored."""
        width = 4 * self.dim
        code = np.frombuffer(cached[width:], np.uint8)[None, :] if len(cached) > width else None
        return np.frombuffer(cached[:width], np.float32), code

    def _find_images(self, lookups: Sequence[Lookup]) -> list[Found]:
        with self.metrics.stage("encode"):
            if self._by_codes:
                out = self.engine.encode_pixels(self.engine.pixels([lk.query for lk in lookups]))
                vectors, codes = out["image_embeds"], pack(out[IMAGE_CODES])
            else:
                vectors, codes = self.engine.encode_images([lk.query for lk in lookups]), None
        return self._search(vectors, lookups, codes)

    def _find_vectors(self, lookups: Sequence[Lookup]) -> list[Found]:
        codes = None
        if self._by_codes and all(lk.code is not None for lk in lookups):
            codes = np.concatenate([lk.code for lk in lookups])
        # a batch with a vector of no code (a stored image's, an embedding_input) is searched
        # by float vectors, which every index can do
        return self._search(np.stack([lk.query for lk in lookups]), lookups, codes)

    def _search(self, vectors: np.ndarray, lookups: Sequence[Lookup],
                codes: np.ndarray | None = None) -> list[Found]:
        with self.metrics.stage("search"):
            return search_batch(self.searcher, vectors, lookups, codes)

    def _score(self, scorings: Sequence[Scoring]) -> list[Scored]:
        with self.metrics.stage("rerank"):
            return score_batch(self.engine, self.searcher, scorings,
                               self.settings.rerank_max_pairs)

    def _embedding_key(self, text: str) -> str | None:
        return None if self.cache is None else _key("text-embedding", self.engine_id, text)

    def _response_key(self, query: str | Image.Image, options: SearchOptions) -> str | None:
        """The cache key of a text search's whole response (engine, index version, request);
        None: not cached (an image query, or no cache)."""
        if self.cache is None or not isinstance(query, str):
            return None
        return _key("response", self.engine_id, self.index_version, query,
                    type(options).__name__, options.model_dump_json())

    def _cached(self, kind: str, key: str | None) -> bytes | None:
        if key is None or self.cache is None:
            return None
        cached = self.cache.get(key)
        self._outcomes[kind, cached is not None].inc()
        return cached

    async def close(self) -> None:
        for batcher in (self._texts, self._images, self._vectors, self._scorings):
            await batcher.close()
        self.searcher.close()
