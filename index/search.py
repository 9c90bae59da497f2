"""Loading a published index for search: checksums and engine id checked before use.

Deleted ids and metadata filters are applied inside FAISS with an id selector on CPU. GPU
indexes do not take selectors, so there the search over-fetches and filters afterwards,
growing the fetch until k results survive or the whole index was scanned. A filter that
leaves few candidates is answered exactly over their stored embeddings instead: cheaper
than any approximate search, and never misses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from encoders.errors import InputError
from index import bundle
from index.choose import search_params_object, set_search_params
from index.errors import EngineMismatchError
from index.metadata import Filter, Item, MetadataStore
from index.sources import read_uri
from index.tokens import TOKENS_FILE, expand_tokens, open_tokens

log = logging.getLogger(__name__)

EXACT_BELOW = 20_000  # a filter matching fewer items than this is searched exactly


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    item: Item


class Searcher:
    """A loaded index version: FAISS index plus metadata and stores, for one engine.

    `mmap=True` memory-maps the FAISS file (large CPU indexes load instantly and share pages
    between processes); `gpu=None` moves the index to the GPU when FAISS sees one.
    """

    def __init__(self, path: str | Path, engine_id: str, mmap: bool = False,
                 gpu: bool | None = None) -> None:
        self.path = bundle.resolve(path)
        self.manifest = bundle.read_manifest(self.path)
        if self.manifest.engine_id != engine_id:
            raise EngineMismatchError(self.manifest.engine_id, engine_id, str(self.path))
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        self.index = faiss.read_index(str(self.path / bundle.FAISS_FILE), flags)
        self.on_gpu = bool(faiss.get_num_gpus() > 0 if gpu is None else gpu)
        if self.on_gpu:
            self.on_gpu = self._to_gpu()
        set_search_params(self.index, self.manifest.search_params)
        self.metadata = MetadataStore(self.path / bundle.METADATA_FILE)
        # Bundles from before format 1.1 have no ids file: positions are the ids.
        ids_file = self.path / bundle.IDS_FILE
        self.ids = np.load(ids_file) if ids_file.is_file() else np.arange(self.index.ntotal)
        deleted = self.path / bundle.DELETED_FILE
        self.deleted = np.load(deleted) if deleted.is_file() else np.zeros(0, np.int64)
        self._dead = frozenset(self.deleted.tolist())  # for lookups one id at a time
        emb = self.path / bundle.EMBEDDINGS_FILE
        self.embeddings = np.load(emb, mmap_mode="r") if emb.is_file() else None
        tok = self.path / TOKENS_FILE
        self.token_store = open_tokens(tok) if tok.is_file() else None
        self._captions = None
        if (self.path / bundle.CAPTIONS_FAISS).is_file():
            self._captions = faiss.read_index(str(self.path / bundle.CAPTIONS_FAISS))
            self._caption_ids = np.load(self.path / bundle.CAPTION_IDS_FILE)
        # GPU FAISS takes no id selectors: over-fetch and filter there (settable, so the
        # CPU test suite exercises that path too)
        self.use_selectors = not self.on_gpu

    def _to_gpu(self) -> bool:
        """Move the index to the GPU(s); False (staying on CPU) for types GPU FAISS lacks."""
        try:
            self.index = faiss.index_cpu_to_all_gpus(self.index)
        except RuntimeError as exc:  # e.g. fast-scan codes, refine steps, HNSW
            log.warning("index %s (%s) has no GPU implementation, searching on CPU: %s",
                        self.manifest.version, self.manifest.factory, exc)
            return False
        log.info("index %s moved to %d GPU(s)", self.manifest.version, faiss.get_num_gpus())
        return True

    @property
    def version(self) -> str:
        return self.manifest.version

    def search(self, queries: np.ndarray, k: int, where: Filter | None = None) -> list[list[Hit]]:
        """queries (n, dim) normalised -> for each, up to k hits, best first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dim:
            raise InputError(f"queries must have shape (n, {self.manifest.dim}), got {queries.shape}")
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        allowed = None if where is None else self._positions(self.metadata.matching(where))
        if allowed is not None and len(allowed) < EXACT_BELOW and self.embeddings is not None:
            scores, pos = self._exact(queries, k, allowed)
        elif allowed is None and not len(self.deleted):
            scores, pos = self.index.search(queries, k)
        else:
            scores, pos = self._restricted(queries, k, allowed)
            short = (pos >= 0).sum(axis=1).min() < min(k, len(allowed) if allowed is not None
                                                      else self.manifest.count)
            if short and allowed is not None and self.embeddings is not None:
                # a graph index can run out of candidates under a tight selector: answer
                # exactly rather than return fewer than k
                scores, pos = self._exact(queries, k, allowed)
        return self._hits(scores, pos)

    def tokens(self, ids: list[int], expand: bool = True) -> np.ndarray:
        """Stored reranker tokens (len(ids), tokens, width) as float32.

        Pooled stores are expanded back to the engine's token count (each pooled token over
        its group) with `expand`, since the reranker graph takes a fixed count.
        """
        if self.token_store is None:
            raise bundle.IndexBundleError(f"index {self.path} has no {TOKENS_FILE}")
        tokens = np.asarray(self.token_store[self._live_positions(ids)], np.float32)
        full = self.manifest.tokens.get("full_tokens", tokens.shape[1])
        return expand_tokens(tokens, full) if expand else tokens

    def vectors(self, ids: list[int]) -> np.ndarray:
        """Stored image embeddings (len(ids), dim) as float32."""
        if self.embeddings is None:
            raise bundle.IndexBundleError(f"index {self.path} has no {bundle.EMBEDDINGS_FILE}")
        return np.asarray(self.embeddings[self._live_positions(ids)], np.float32)

    def _live_positions(self, ids: list[int]) -> np.ndarray:
        """Positions of `ids`, in order; KeyError naming those unknown or deleted."""
        wanted = np.asarray(ids, np.int64)
        pos = np.searchsorted(self.ids, wanted)
        known = (pos < len(self.ids)) & (self.ids[np.minimum(pos, len(self.ids) - 1)] == wanted)
        missing = sorted(set(wanted[~known].tolist()) | (set(wanted.tolist()) & self._dead))
        if missing:
            raise KeyError(f"ids not in index {self.version}: {missing[:10]}")
        return pos

    def image(self, item_id: int) -> tuple[Item, bytes]:
        """A live item and its image's file bytes, wherever they are kept: the collection
        (folder or shard), or the index root for images added through the admin API.
        KeyError for an id unknown or deleted."""
        item = None if item_id in self._dead else self.metadata.get([item_id]).get(item_id)
        if item is None:
            raise KeyError(f"id {item_id} is not in index {self.version}")
        return item, read_uri(bundle.image_root(self.path, self.manifest.source, item.path),
                              item.path)

    def search_captions(self, image_queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Image -> text: for each image embedding, the k items whose caption matches best."""
        if self._captions is None:
            raise bundle.IndexBundleError(f"index {self.path} has no caption index (no captions)")
        over = min(self._captions.ntotal, k + len(self.deleted))
        scores, rows = self._captions.search(np.ascontiguousarray(image_queries, np.float32), over)
        dead = self._dead
        ids = np.where(rows >= 0, self._caption_ids[np.maximum(rows, 0)], -1)
        out = []
        for row_s, row_i in zip(scores, ids):
            keep = [(s, i) for s, i in zip(row_s, row_i) if i >= 0 and int(i) not in dead][:k]
            items = self.metadata.get([int(i) for _, i in keep])
            out.append([Hit(int(i), float(s), items[int(i)]) for s, i in keep])
        return out

    def close(self) -> None:
        self.metadata.close()

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Item ids -> FAISS positions (ids are ascending by position), deleted ones dropped."""
        return self._positions_all(np.setdiff1d(ids, self.deleted))

    def _exact(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ np.asarray(self.embeddings[allowed]).T  # (n, len(allowed))
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        pad = k - top.shape[1]
        s = np.take_along_axis(scores, top, axis=1)
        p = allowed[top]
        if pad > 0:
            s = np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf)
            p = np.pad(p, ((0, 0), (0, pad)), constant_values=-1)
        return s, p

    def _restricted(self, queries: np.ndarray, k: int,
                    allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        dead = self._positions_all(self.deleted)
        if self.use_selectors:
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(dead)) if allowed is None else \
                faiss.IDSelectorBatch(allowed)  # allowed already excludes deleted ids
            params = search_params_object(self.index, self.manifest.search_params, sel)
            return self.index.search(queries, k, params=params)
        # GPU: no selectors; over-fetch and filter, doubling until k survive per query
        keep = np.ones(self.index.ntotal, bool)
        keep[dead] = False
        if allowed is not None:
            mask = np.zeros_like(keep)
            mask[allowed] = True
            keep &= mask
        fetch = min(self.index.ntotal, 2 * k + len(dead))
        while True:
            scores, pos = self.index.search(queries, fetch)
            ok = (pos >= 0) & keep[np.maximum(pos, 0)]
            if ok.sum(axis=1).min() >= min(k, int(keep.sum())) or fetch >= self.index.ntotal:
                break
            fetch = min(self.index.ntotal, fetch * 4)
        out_s = np.full((len(queries), k), -np.inf, np.float32)
        out_p = np.full((len(queries), k), -1, np.int64)
        for row in range(len(queries)):
            good = np.flatnonzero(ok[row])[:k]
            out_s[row, : len(good)], out_p[row, : len(good)] = scores[row, good], pos[row, good]
        return out_s, out_p

    def _positions_all(self, ids: np.ndarray) -> np.ndarray:
        """Positions of those `ids` that are in this index (unknown ids are ignored)."""
        if not len(self.ids):
            return np.zeros(0, np.int64)
        pos = np.searchsorted(self.ids, ids)
        return pos[(pos < len(self.ids)) & (self.ids[np.minimum(pos, len(self.ids) - 1)] == ids)]

    def _hits(self, scores: np.ndarray, pos: np.ndarray) -> list[list[Hit]]:
        ids = np.where(pos >= 0, self.ids[np.maximum(pos, 0)], -1)
        items = self.metadata.get(np.unique(ids[ids >= 0]).tolist())
        # as Python numbers first: iterating numpy rows makes a numpy scalar per element
        return [[Hit(i, s, items[i]) for s, i in zip(row_s, row_i) if i >= 0]
                for row_s, row_i in zip(scores.tolist(), ids.tolist())]
