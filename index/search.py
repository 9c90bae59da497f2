"""Loading a published index for search: checksums and engine id checked before use.

A version is a list of segments plus a deletion set. A search asks every segment (one FAISS
call per segment per batch of queries, deleted and filtered-out positions excluded inside
it, `index.segment_search`) and merges their top k by score. Every segment is memory-mapped
where it can be, so loading a version costs what its FAISS indexes cost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from encoders.errors import InputError
from index import bundle
from index.errors import EngineMismatchError
from index.keywords import VersionKeywords
from index.metadata import Filter, Item
from index.segment import version_segments
from index.segment_search import LoadedSegment, Scored
from index.sources import read_uri
from index.tokens import TOKENS_FILE, expand_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    item: Item


class Metadata:
    """The items of a version's segments, deleted ones left out: what callers look up."""

    def __init__(self, segments: list[LoadedSegment], deleted: np.ndarray) -> None:
        self._segments, self._deleted = segments, deleted  # deleted: sorted ids
        self.dead = frozenset(deleted.tolist())  # for lookups one id at a time

    def get(self, ids: Sequence[int]) -> dict[int, Item]:
        """The live items of those `ids` that exist, by id."""
        wanted = [int(i) for i in ids if int(i) not in self.dead]
        found: dict[int, Item] = {}
        for seg in self._segments:
            mine = seg.present(np.asarray(wanted, np.int64))
            if len(mine):
                found.update(seg.metadata.get(seg.ids[mine].tolist()))
        return found

    def matching(self, where: Filter) -> list[np.ndarray]:
        """Per segment, the positions of live items whose fields satisfy `where`."""
        out = []
        for seg in self._segments:
            ids = seg.metadata.matching(where)
            if len(self._deleted):
                ids = ids[~np.isin(ids, self._deleted)]
            out.append(seg.present(ids))
        return out

    def close(self) -> None:
        for seg in self._segments:
            seg.close()


class Searcher:
    """A loaded index version: its segments and deletion set, for one engine.

    `mmap=True` memory-maps the FAISS files (large CPU indexes load instantly and share pages
    between processes); `gpu=None` moves the indexes to the GPU when FAISS sees one.
    """

    def __init__(self, path: str | Path, engine_id: str, mmap: bool = False,
                 gpu: bool | None = None) -> None:
        self.path = bundle.resolve(path)
        self.manifest = bundle.read_manifest(self.path)
        if self.manifest.engine_id != engine_id:
            raise EngineMismatchError(self.manifest.engine_id, engine_id, str(self.path))
        on_gpu = bool(faiss.get_num_gpus() > 0 if gpu is None else gpu)
        self.segments = [LoadedSegment(folder, info, mmap, on_gpu)
                         for folder, info in version_segments(self.path, self.manifest)]
        deleted = self.path / bundle.DELETED_FILE
        self.deleted = np.load(deleted) if deleted.is_file() else np.zeros(0, np.int64)
        self._dead_positions = [seg.present(self.deleted) for seg in self.segments]
        self.metadata = Metadata(self.segments, self.deleted)
        self.keywords = VersionKeywords([(seg.folder, len(dead)) for seg, dead in
                                         zip(self.segments, self._dead_positions, strict=True)],
                                        self.deleted, bundle.METADATA_FILE)
        self._dead = self.metadata.dead
        self.on_gpu = any(seg.on_gpu for seg in self.segments)
        # GPU FAISS takes no id selectors: over-fetch and filter there (settable, so the
        # CPU test suite exercises that path too)
        self.use_selectors = not self.on_gpu

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def ids(self) -> np.ndarray:
        """Every live item id, ascending."""
        stored = [seg.ids for seg in self.segments]
        return np.setdiff1d(np.concatenate(stored), self.deleted) if stored else np.zeros(0, np.int64)

    @property
    def has_tokens(self) -> bool:
        """Whether every segment stores reranker tokens."""
        return all(seg.tokens is not None for seg in self.segments)

    @property
    def has_keywords(self) -> bool:
        """Whether every segment has a keyword index (`mode` keyword and hybrid can answer)."""
        return self.keywords.available

    @property
    def code_bits(self) -> int:
        """Bits of the binary codes every segment holds (index.codes); 0: searched by float."""
        bits = {int(seg.info.codes.get("bits", 0)) for seg in self.segments}
        return bits.pop() if len(bits) == 1 else 0

    def search(self, queries: np.ndarray, k: int, where: Filter | None = None,
               codes: np.ndarray | None = None) -> list[list[Hit]]:
        """queries (n, dim) normalised -> for each, up to k hits, best first; `codes` (n,
        bits / 8) packed: the queries' codes, searched by Hamming distance where the index
        holds codes (rescored with the float vectors per its search parameters)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if codes is not None and codes.shape != (len(queries), self.code_bits // 8):
            raise InputError(f"query codes must have shape ({len(queries)}, "
                             f"{self.code_bits // 8}) for this index, got {codes.shape}")
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dim:
            raise InputError(f"queries must have shape (n, {self.manifest.dim}), got {queries.shape}")
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        allowed = [None] * len(self.segments) if where is None else self.metadata.matching(where)
        parts = []
        for seg, dead, mine in zip(self.segments, self._dead_positions, allowed, strict=True):
            if seg.rows and (mine is None or len(mine)):
                scores, pos = seg.search(queries, k, mine, dead, self.use_selectors, codes)
                parts.append((scores, np.where(pos >= 0, seg.ids[np.maximum(pos, 0)], -1)))
        return self._hits(_merge(parts, len(queries), k))

    def search_keywords(self, text: str, k: int, where: Filter | None = None) -> list[Hit]:
        """The k items whose caption and string fields best match the words of `text` (BM25,
        `index.keywords`), best first; their scores are BM25's."""
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        return self._hits(self.keywords.search(text, k, where))[0]

    def search_captions(self, image_queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Image -> text: for each image embedding, the k items whose caption matches best."""
        if not any(seg.captions is not None for seg in self.segments):
            raise bundle.IndexBundleError(f"index {self.path} has no caption index (no captions)")
        queries = np.ascontiguousarray(image_queries, np.float32)
        parts = [seg.search_captions(queries, k, self.deleted) for seg in self.segments]
        return self._hits(_merge(parts, len(queries), k))

    def tokens(self, ids: list[int], expand: bool = True) -> np.ndarray:
        """Stored reranker tokens (len(ids), tokens, width) as float32.

        Pooled stores are expanded back to the engine's token count (each pooled token over
        its group) with `expand`, since the reranker graph takes a fixed count.
        """
        if not self.has_tokens:
            raise bundle.IndexBundleError(f"index {self.path} has no {TOKENS_FILE}")
        tokens = self._rows(ids, lambda seg: seg.tokens)
        full = self.manifest.tokens.get("full_tokens", tokens.shape[1])
        return expand_tokens(tokens, full) if expand else tokens

    def vectors(self, ids: list[int]) -> np.ndarray:
        """Stored image embeddings (len(ids), dim) as float32."""
        return self._rows(ids, lambda seg: seg.embeddings)

    def _rows(self, ids: list[int], store) -> np.ndarray:
        """Rows of `ids` from each segment's `store(seg)`, in order; KeyError naming those
        unknown or deleted."""
        wanted = np.asarray(ids, np.int64)
        missing = set(wanted.tolist()) & self._dead
        out: list[np.ndarray | None] = [None] * len(wanted)
        remaining = np.ones(len(wanted), bool)
        for seg in self.segments:
            pos, found = seg.positions(wanted)
            found &= remaining
            for i, row in zip(np.flatnonzero(found), np.asarray(store(seg)[pos[found]], np.float32)):
                out[i] = row
            remaining &= ~found
        missing |= set(wanted[remaining].tolist())
        if missing:
            raise KeyError(f"ids not in index {self.version}: {sorted(missing)[:10]}")
        return np.stack(out) if out else np.zeros((0,), np.float32)

    def image(self, item_id: int) -> tuple[Item, bytes]:
        """A live item and its image's file bytes, wherever they are kept: the collection
        (folder or shard), or the index root for images added through the admin API.
        KeyError for an id unknown or deleted."""
        item = self.metadata.get([item_id]).get(item_id)
        if item is None:
            raise KeyError(f"id {item_id} is not in index {self.version}")
        return item, read_uri(bundle.image_root(self.path, self.manifest.source, item.path),
                              item.path)

    def close(self) -> None:
        self.metadata.close()
        self.keywords.close()

    def _hits(self, scored: Scored) -> list[list[Hit]]:
        scores, ids = scored
        items = self.metadata.get(np.unique(ids[ids >= 0]).tolist())
        # as Python numbers first: iterating numpy rows makes a numpy scalar per element
        return [[Hit(i, s, items[i]) for s, i in zip(row_s, row_i) if i >= 0 and i in items]
                for row_s, row_i in zip(scores.tolist(), ids.tolist())]


def _merge(parts: list[Scored], n: int, k: int) -> Scored:
    """Each segment's (scores, ids) -> the best k per query over all of them."""
    if not parts:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    if len(parts) == 1:
        scores, ids = parts[0]
        return scores[:, :k], ids[:, :k]
    scores = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    scores = np.where(ids >= 0, scores, -np.inf)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), np.take_along_axis(ids, top, axis=1)
