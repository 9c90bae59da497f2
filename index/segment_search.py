"""Searching one segment: its FAISS index with the deleted and filtered-out positions excluded.

Deleted ids and metadata filters are applied inside FAISS with an id selector on CPU. GPU
indexes do not take selectors, so there the search over-fetches and filters afterwards,
growing the fetch until k results survive, up to GPU FAISS's limit of `GPU_MAX_K` results a
call; past it the segment is answered exactly over its stored vectors. A filter that leaves
few candidates is answered exactly over their stored embeddings too: cheaper than any
approximate search, and never misses.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from encoders.codes import hamming_to_score
from index import bundle
from index.choose import search_params_object, set_search_params
from index.codes import CODES_FAISS, rescore_rows, set_code_params
from index.metadata import MetadataStore
from index.segment import SegmentInfo
from index.tokens import TOKENS_FILE, open_tokens

log = logging.getLogger(__name__)

EXACT_BELOW = 20_000  # a filter matching fewer items than this is searched exactly
GPU_MAX_K = 2048  # GPU FAISS returns at most this many results per query and call
Scored = tuple[np.ndarray, np.ndarray]  # (n, k) scores and FAISS positions, -1 where none


class LoadedSegment:
    """One segment opened for search: FAISS index, ids, memory-mapped stores, metadata."""

    def __init__(self, folder: Path, info: SegmentInfo, mmap: bool, gpu: bool) -> None:
        self.folder, self.info = folder, info
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        # a codes-only segment has no float index: its float vectors are only rescored
        self.index = None
        if (folder / bundle.FAISS_FILE).is_file():
            self.index = faiss.read_index(str(folder / bundle.FAISS_FILE), flags)
        self.on_gpu = self.index is not None and gpu and self._to_gpu()
        if self.index is not None:
            set_search_params(self.index, info.search_params)
        self.binary, self.rescore = None, 0
        if info.codes:
            self.binary = faiss.read_index_binary(str(folder / CODES_FAISS), flags)
            set_code_params(self.binary, info.codes["search_params"])
            self.rescore = int(info.codes["search_params"].get("rescore", 0))
        self.ids = np.load(folder / bundle.IDS_FILE)  # position -> item id, ascending
        self.embeddings = np.load(folder / bundle.EMBEDDINGS_FILE, mmap_mode="r")
        tokens = folder / TOKENS_FILE
        self.tokens = open_tokens(tokens) if tokens.is_file() else None
        self.metadata = MetadataStore(folder / bundle.METADATA_FILE)
        self.captions = None
        if (folder / bundle.CAPTIONS_FAISS).is_file():
            self.captions = faiss.read_index(str(folder / bundle.CAPTIONS_FAISS))
            self.caption_ids = np.load(folder / bundle.CAPTION_IDS_FILE)

    def _to_gpu(self) -> bool:
        """Move the index to the GPU(s); False (staying on CPU) for types GPU FAISS lacks."""
        try:
            self.index = faiss.index_cpu_to_all_gpus(self.index)
        except RuntimeError as exc:  # e.g. fast-scan codes, refine steps, HNSW
            log.warning("segment %s (%s) has no GPU implementation, searching on CPU: %s",
                        self.folder.name, self.info.factory, exc)
            return False
        return True

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found mask) of `ids` in this segment."""
        ids = np.asarray(ids, np.int64)
        if not len(self.ids):
            return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
        pos = np.searchsorted(self.ids, ids)
        found = (pos < len(self.ids)) & (self.ids[np.minimum(pos, len(self.ids) - 1)] == ids)
        return pos, found

    def present(self, ids: np.ndarray) -> np.ndarray:
        pos, found = self.positions(ids)
        return pos[found]

    @property
    def rows(self) -> int:
        return len(self.ids)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None, dead: np.ndarray,
               use_selectors: bool, codes: np.ndarray | None = None) -> Scored:
        """Top `k` positions for each query among `allowed` (None: all) less `dead`; with
        packed query `codes`, by the segment's binary index where it has one."""
        k = min(k, self.rows)
        if allowed is not None and len(allowed) < EXACT_BELOW:
            return self._exact(queries, k, allowed)
        if self.binary is not None and codes is not None:
            return self._by_codes(queries, codes, k, allowed, dead)
        if self.index is None:  # codes only, and a query with no code (a stored vector)
            keep = np.setdiff1d(np.arange(self.rows), dead) if allowed is None else allowed
            return self._exact(queries, k, keep)
        if allowed is None and not len(dead):
            return self.index.search(queries, k)
        scores, pos = self._restricted(queries, k, allowed, dead, use_selectors)
        wanted = min(k, len(allowed) if allowed is not None else self.index.ntotal - len(dead))
        if (pos >= 0).sum(axis=1).min() < wanted and allowed is not None:
            # a graph index can run out of candidates under a tight selector: answer
            # exactly rather than return fewer than k
            return self._exact(queries, k, allowed)
        return scores, pos

    def _by_codes(self, queries: np.ndarray, codes: np.ndarray, k: int,
                  allowed: np.ndarray | None, dead: np.ndarray) -> Scored:
        """Hamming search (then float rescoring, `self.rescore` candidates) with deleted and
        filtered-out positions dropped from the candidates; the fetch grows until enough
        survive, or the segment ends."""
        keep = None
        if allowed is not None or len(dead):
            keep = np.zeros(self.rows, bool) if allowed is not None else np.ones(self.rows, bool)
            if allowed is not None:
                keep[allowed] = True
            keep[dead] = False
        depth = max(k, self.rescore)
        wanted = min(depth, self.rows if keep is None else int(keep.sum()))
        fetch = depth + (0 if keep is None else self.rows - int(keep.sum()))
        while True:
            fetch = min(fetch, self.rows)
            dist, pos = self.binary.search(np.ascontiguousarray(codes, np.uint8), fetch)
            if keep is not None:
                pos = np.where((pos >= 0) & keep[np.maximum(pos, 0)], pos, -1)
            if (pos >= 0).sum(axis=1).min() >= wanted or fetch >= self.rows:
                break
            fetch *= 4
        # the surviving candidates of each row, in Hamming order, first `depth` of them
        cand = np.full((len(pos), depth), -1, np.int64)
        scores = np.full((len(pos), depth), -np.inf, np.float32)
        for i, (d, p) in enumerate(zip(dist, pos, strict=True)):
            ok = np.flatnonzero(p >= 0)[:depth]
            cand[i, : len(ok)] = p[ok]
            scores[i, : len(ok)] = hamming_to_score(d[ok], self.binary.d)
        if self.rescore:
            return rescore_rows(queries, cand, self.embeddings, k)
        return scores[:, :k], cand[:, :k]

    def _exact(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> Scored:
        scores = queries @ np.asarray(self.embeddings[allowed]).T  # (n, len(allowed))
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        pad = k - top.shape[1]
        s, p = np.take_along_axis(scores, top, axis=1), allowed[top]
        if pad > 0:
            s = np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf)
            p = np.pad(p, ((0, 0), (0, pad)), constant_values=-1)
        return s.astype(np.float32), p

    def _restricted(self, queries: np.ndarray, k: int, allowed: np.ndarray | None,
                    dead: np.ndarray, use_selectors: bool) -> Scored:
        if use_selectors:
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(dead)) if allowed is None else \
                faiss.IDSelectorBatch(allowed)  # allowed already excludes deleted ids
            params = search_params_object(self.index, self.info.search_params, sel)
            return self.index.search(queries, k, params=params)
        keep = np.ones(self.index.ntotal, bool)
        keep[dead] = False
        if allowed is not None:
            mask = np.zeros_like(keep)
            mask[allowed] = True
            keep &= mask
        return self._over_fetch(queries, k, keep)

    def _over_fetch(self, queries: np.ndarray, k: int, keep: np.ndarray) -> Scored:
        """GPU: no selectors; fetch more and filter, growing the fetch until k survive per
        query; at GPU FAISS's cap, the exact answer over the stored vectors instead."""
        total = self.index.ntotal
        wanted = min(k, int(keep.sum()))
        fetch = min(total, 2 * k + int((~keep).sum()), GPU_MAX_K)
        while True:
            scores, pos = self.index.search(queries, fetch)
            ok = (pos >= 0) & keep[np.maximum(pos, 0)]
            if ok.sum(axis=1).min() >= wanted or fetch >= total:
                break
            if fetch >= GPU_MAX_K:
                return self._exact(queries, k, np.flatnonzero(keep))
            fetch = min(total, fetch * 4, GPU_MAX_K)
        out_s = np.full((len(queries), k), -np.inf, np.float32)
        out_p = np.full((len(queries), k), -1, np.int64)
        for row in range(len(queries)):
            good = np.flatnonzero(ok[row])[:k]
            out_s[row, : len(good)], out_p[row, : len(good)] = scores[row, good], pos[row, good]
        return out_s, out_p

    def search_captions(self, queries: np.ndarray, k: int, dead: np.ndarray) -> Scored:
        """Image -> text over this segment's captions: (scores, item ids), -1 where none."""
        if self.captions is None or not self.captions.ntotal:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        over = min(self.captions.ntotal, k + len(dead))
        scores, rows = self.captions.search(np.ascontiguousarray(queries, np.float32), over)
        ids = np.where(rows >= 0, self.caption_ids[np.maximum(rows, 0)], -1)
        if len(dead):
            gone = np.isin(ids, dead)
            ids = np.where(gone, -1, ids)
            scores = np.where(gone, -np.inf, scores)
        return scores, ids

    def close(self) -> None:
        self.metadata.close()
