"""Binary codes in an index segment: a FAISS binary index searched by Hamming distance, and
the rescoring of its top candidates with the float vectors read from their memory map.

A segment built with codes (`xmodal index build --codes BITS`) holds `codes.npy` (packed
codes by FAISS position, what a merge reads) and `codes.faiss` (`IndexBinaryFlat` below
`IVF_FROM` rows, above that `IndexBinaryIVF` with about sqrt(n) lists), beside the float
index or instead of it (`--codes-only`). A code search asks the binary index for its `rescore`
nearest codes and ranks those by the exact inner product of the stored float vectors (rows
read from `embeddings.npy`, memory-mapped, so only the candidates' pages are touched); with
`rescore` 0 it ranks by Hamming distance alone, scored as the cosine of the +-1 codes.
`nprobe` and `rescore` are tuned at build to the recall target against exact float search.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from encoders.codes import hamming_to_score
from index.choose import RECALL_K, exact_topk, recall_at

log = logging.getLogger(__name__)

CODES_FILE = "codes.npy"  # (rows, bits / 8) uint8 packed codes by FAISS position
CODES_FAISS = "codes.faiss"
IVF_FROM = 100_000  # rows from which the binary index is partitioned
RESCORE_DEPTHS = (10, 20, 50, 100, 200, 500, 1000, 2000)
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
Scored = tuple[np.ndarray, np.ndarray]  # (n, k) scores and FAISS positions, -1 where none


@dataclass(frozen=True)
class CodeLayout:
    """How a segment stores and searches codes: `codes` in segment.json and the manifest."""

    bits: int
    float_index: bool = True  # False: codes only, no float FAISS index
    rescore: int | None = None  # candidates rescored with float vectors; None: tuned; 0: none

    def to_dict(self) -> dict[str, Any]:
        return {"bits": self.bits, "float_index": self.float_index, "rescore": self.rescore}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodeLayout | None:
        if not data:
            return None
        return cls(int(data["bits"]), bool(data.get("float_index", True)), data.get("rescore"))


def binary_factory(rows: int, bits: int) -> str:
    if rows < IVF_FROM:
        return "BFlat"
    return f"BIVF{int(math.sqrt(rows))}"


def make_binary_index(codes: np.ndarray, bits: int, seed: int = 0) -> tuple[faiss.IndexBinary, str]:
    """A binary index over packed `codes` (n, bits / 8), chosen by size; trained if IVF."""
    factory = binary_factory(len(codes), bits)
    index = faiss.index_binary_factory(bits, factory)
    codes = np.ascontiguousarray(codes, np.uint8)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        # FAISS trains binary lists by float k-means over the unpacked bits: its cost grows
        # with sample x lists x bits x iterations, so the sample and iterations are kept small
        sample = codes[np.sort(rng.choice(len(codes), min(len(codes), 64 * index.nlist),
                                          replace=False))]
        index.cp.niter = 10
        index.train(sample)
    index.add(codes)
    return index, factory


def set_code_params(index: faiss.IndexBinary, params: dict[str, Any]) -> None:
    if "nprobe" in params and hasattr(index, "nprobe"):
        index.nprobe = int(params["nprobe"])


def code_search(index: faiss.IndexBinary, codes: np.ndarray, k: int, rescore: int,
                embeddings: np.ndarray | None, queries: np.ndarray | None) -> Scored:
    """Top `k` positions for each packed query code; with `rescore` > 0 the `rescore`
    nearest codes are ranked by the inner product of `queries` with their `embeddings` rows."""
    bits = index.d
    fetch = min(max(k, rescore), index.ntotal)
    dist, pos = index.search(np.ascontiguousarray(codes, np.uint8), fetch)
    if not rescore or embeddings is None:
        return _pad(hamming_to_score(dist, bits), pos, k)
    return rescore_rows(queries, pos, embeddings, k)


def rescore_rows(queries: np.ndarray, pos: np.ndarray, embeddings: np.ndarray, k: int) -> Scored:
    """Candidates `pos` (n, m), -1 where none, ranked by exact inner product with their
    stored vectors, by FAISS in C (`knn_inner_products_by_idx`): it reads only the
    candidates' rows of the (memory-mapped) `embeddings`, 20 times faster here than a numpy
    gather and product."""
    if not isinstance(embeddings, np.ndarray) or embeddings.dtype != np.float32 \
            or not embeddings.flags.c_contiguous:
        embeddings = np.ascontiguousarray(embeddings, np.float32)
    queries = np.ascontiguousarray(queries, np.float32)
    pos = np.ascontiguousarray(pos, np.int64)
    n, m = pos.shape
    scores = np.empty((n, k), np.float32)
    found = np.empty((n, k), np.int64)
    faiss.knn_inner_products_by_idx(
        faiss.swig_ptr(queries), faiss.swig_ptr(embeddings), faiss.swig_ptr(pos),
        embeddings.shape[1], n, len(embeddings), m, k, faiss.swig_ptr(scores),
        faiss.swig_ptr(found), m)
    return np.where(found >= 0, scores, -np.inf).astype(np.float32), found


def _pad(scores: np.ndarray, pos: np.ndarray, k: int) -> Scored:
    scores, pos = scores[:, :k], pos[:, :k]
    if pos.shape[1] < k:
        pad = ((0, 0), (0, k - pos.shape[1]))
        scores = np.pad(scores, pad, constant_values=-np.inf)
        pos = np.pad(pos, pad, constant_values=-1)
    return np.where(pos >= 0, scores, -np.inf).astype(np.float32), pos


def tune_codes(index: faiss.IndexBinary, embeddings: np.ndarray, queries: np.ndarray,
               query_codes: np.ndarray, truth: np.ndarray, rescore: int | None, target: float,
               own: np.ndarray | None = None) -> dict[str, Any]:
    """The cheapest (nprobe, rescore) whose recall@10 against `truth` (exact float search)
    reaches `target`; cost counted as the bytes a query reads, codes scanned plus vectors
    rescored. A fixed `rescore` is kept and only nprobe tuned. `own`: each query's own row
    in the collection, left out of its results (queries drawn from the collection)."""
    depths = RESCORE_DEPTHS if rescore is None else (rescore,)
    nlist = getattr(index, "nlist", 0)
    probes = [p for p in NPROBES if p <= nlist] if nlist else [0]
    code_bytes, vec_bytes = index.code_size, embeddings.shape[1] * 4
    extra = 0 if own is None else 1
    best, tried = None, []
    for nprobe in probes:
        set_code_params(index, {"nprobe": nprobe} if nprobe else {})
        # one Hamming search at the deepest depth: shallower ones are its prefixes
        _, pos = index.search(np.ascontiguousarray(query_codes, np.uint8),
                                 min(index.ntotal, max(*depths, RECALL_K) + extra))
        for depth in depths:
            if depth:
                found = rescore_rows(queries, pos[:, :depth + extra], embeddings, RECALL_K + extra)[1]
            else:
                found = pos[:, :RECALL_K + extra]
            recall = recall_at(found if own is None else _leave_out(found, own), truth)
            params = {"rescore": depth} | ({"nprobe": nprobe} if nprobe else {})
            cost = index.ntotal * (nprobe / nlist if nprobe else 1.0) * code_bytes + depth * vec_bytes
            tried.append({**params, "recall_at_10": round(recall, 4), "bytes_read": int(cost)})
            if recall >= target:
                if best is None or cost < best[0]:
                    best = (cost, params, recall)
                break  # deeper rescoring costs more at this nprobe
    if best is None:  # nothing reached the target: the most accurate setting tried
        top = max(tried, key=lambda t: t["recall_at_10"])
        best = (top["bytes_read"], {k: v for k, v in top.items() if k in ("rescore", "nprobe")},
                top["recall_at_10"])
    set_code_params(index, best[1])
    log.info("codes tuned to recall@10 %.4f (target %.3f) with %s", best[2], target, best[1])
    return {"search_params": best[1], "recall_at_10": round(float(best[2]), 4),
            "recall_target": target, "queries": len(queries), "curve": tried}


def tune_in_collection(index: faiss.IndexBinary, codes: np.ndarray, embeddings: np.ndarray,
                       rows: np.ndarray, rescore: int | None, target: float) -> dict[str, Any]:
    """`tune_codes` with collection items as the queries, their own match left out (a
    segment at build has no query codes of its own)."""
    queries = np.asarray(embeddings[rows], np.float32)
    truth = _leave_out(exact_topk(embeddings, queries, RECALL_K + 1), rows)
    tuning = tune_codes(index, embeddings, queries, np.asarray(codes[rows]), truth, rescore,
                        target, own=rows)
    return {**tuning, "queries_from": "collection items' codes, self-match excluded"}


def _leave_out(found: np.ndarray, own: np.ndarray) -> np.ndarray:
    rows = [[i for i in row if i != me and i >= 0][:RECALL_K] for row, me in zip(found.tolist(), own)]
    return np.asarray([r + [-1] * (RECALL_K - len(r)) for r in rows], np.int64)
