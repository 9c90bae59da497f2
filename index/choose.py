"""FAISS index choice and tuning: which factory for a collection, and the search parameter
(nprobe / efSearch) that reaches a requested recall@10 against exact search.

Numpy in, FAISS index out. The rule, from the FAISS wiki's "guidelines to choose an index":
- small collections (< FLAT_BELOW vectors): exact `Flat`; brute force is fast enough and
  recall is 1 by definition;
- mid-size collections that fit in memory with graph links: `HNSW32,Flat` (best speed at
  high recall, but slow to build and no removal, so only below HNSW_BELOW);
- large collections: an inverted file with nlist ~ 4 sqrt(n) lists (a power of two; from
  HNSW_QUANTIZER_FROM vectors the centroids are searched by HNSW: `IVF{nlist}_HNSW32`) whose
  lists hold 4-bit product codes scanned with SIMD ("fast-scan", `PQ{d/4}x4fs`, d/8 bytes per
  vector), followed by an exact re-ranking of the k_factor x k best candidates against the
  stored vectors (`RFlat`). Scanning codes instead of floats is what makes probing many lists
  cheap, and the refine step gives exact scores, so recall is bounded by the candidate list
  only. When the float vectors do not fit in the memory budget the refine step keeps fp16
  (`Refine(SQfp16)`) or 8-bit (`Refine(SQ8)`) vectors, and below that `IVF{nlist},PQ{m}`
  alone (m bytes per vector).

Tuning walks nprobe (or efSearch) up to the recall target; with a refine step it does so for
each k_factor and keeps the fastest pair measured on the tuning queries.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from encoders.errors import InputError

log = logging.getLogger(__name__)

FLAT_BELOW = 20_000
HNSW_BELOW = 100_000
HNSW_M = 32
RECALL_K = 10
# k-means is trained on a sample: FAISS wants >= 39 points per centroid, more buys little.
TRAIN_POINTS_PER_LIST = 40
KMEANS_ITERATIONS = 10  # FAISS's default 25 costs 2.5x the time for a barely better partition
HNSW_QUANTIZER_FROM = 500_000  # above this, an HNSW coarse quantizer makes adding (and probing) cheap
K_FACTORS = (8, 16, 32, 64)  # candidates re-ranked exactly, per result wanted
# with fewer candidates a larger nprobe is needed; looking further than this is never faster
NPROBE_SPAN = 4
NPROBE_STEPS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048)
EF_STEPS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)


@dataclass(frozen=True)
class Tuning:
    """What the build measured: the parameter chosen and the recall it gave."""

    search_params: dict[str, Any]
    recall_at_10: float
    target: float
    queries: int
    curve: list[dict[str, Any]] = field(default_factory=list)  # every setting tried


def flat_bytes(n: int, dim: int) -> int:
    return n * dim * 4


def choose_factory(n: int, dim: int, memory_budget: int | None = None, gpu: bool = False) -> str:
    """The FAISS factory string for `n` vectors of `dim` under `memory_budget` bytes.

    `gpu`: the index will be searched on a GPU, so only types GPU FAISS implements (IVF over
    Flat / SQ8 / PQ codes with a flat quantizer): brute-force scanning of the probed lists is
    what a GPU does best, and fast-scan codes, refine steps and HNSW have no GPU version.
    """
    if n <= 0 or dim <= 0:
        raise InputError(f"cannot choose an index for {n} vectors of dimension {dim}")
    budget = memory_budget if memory_budget is not None else 1 << 62
    if n < FLAT_BELOW and flat_bytes(n, dim) <= budget:
        return "Flat"
    hnsw_bytes = flat_bytes(n, dim) + n * HNSW_M * 2 * 4  # vectors + ~2M int32 links per node
    if n < HNSW_BELOW and hnsw_bytes <= budget and not gpu:
        return f"HNSW{HNSW_M},Flat"
    nlist = nlist_for(n)
    ivf = f"IVF{nlist}_HNSW32" if n >= HNSW_QUANTIZER_FROM and not gpu else f"IVF{nlist}"
    if dim % 4 == 0 and not gpu:
        codes = f"{ivf},PQ{dim // 4}x4fs"
        scan_bytes = n * dim // 8
        for refine, per_dim in (("RFlat", 4), ("Refine(SQfp16)", 2), ("Refine(SQ8)", 1)):
            if (scan_bytes + n * dim * per_dim) * 1.1 <= budget:
                return f"{codes},{refine}"
    if flat_bytes(n, dim) * 1.1 <= budget:
        return f"{ivf},Flat"
    if n * dim * 1.1 <= budget:
        return f"{ivf},SQ8"
    # PQ: the largest code size (bytes per vector) that fits; m must divide dim.
    per_vector = budget / (1.1 * n)
    for m in (64, 48, 32, 16, 8, 4):
        if m <= per_vector and dim % m == 0:
            return f"{ivf},PQ{m}"
    raise InputError(f"{n} vectors of dimension {dim} do not fit in {budget} bytes even as "
                     f"4-byte product codes; raise the memory budget")


def nlist_for(n: int) -> int:
    """~4 sqrt(n) inverted lists as a power of two, with at least ~39 points per list."""
    nlist = 2 ** round(math.log2(max(4 * math.sqrt(n), 1)))
    return int(max(1, min(nlist, n // 39)))


def make_index(factory: str, data: np.ndarray, seed: int = 0) -> faiss.Index:
    """Create, train (on a sample, for IVF) and fill an inner-product index over `data`."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    try:
        index = faiss.index_factory(data.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(f"bad FAISS factory string {factory!r}: {exc}") from exc
    if not index.is_trained:
        ivf = faiss.try_extract_index_ivf(index)
        points = TRAIN_POINTS_PER_LIST * (ivf.nlist if ivf is not None else 256)
        sample = data
        if len(data) > points:
            # a fixed seed keeps rebuilds (and resumed builds) bit-identical
            rows = np.sort(np.random.default_rng(seed).choice(len(data), points, replace=False))
            sample = data[rows]
        if ivf is not None:
            ivf.cp.seed = seed
            ivf.cp.niter = KMEANS_ITERATIONS
        started = time.perf_counter()
        if faiss.get_num_gpus() > 0 and ivf is not None and _gpu_supports(factory):
            # k-means and the assignment of every vector are the build's heavy part: do them
            # on the GPU, then bring the filled index back so it is written as a CPU index
            gpu = faiss.index_cpu_to_all_gpus(index)
            gpu.train(sample)
            gpu.add(data)
            log.info("trained and filled %s on %d GPU(s)", factory, faiss.get_num_gpus())
            return faiss.index_gpu_to_cpu(gpu)
        index.train(sample)
        log.info("trained %s on %d vectors in %.1fs", factory, len(sample),
                 time.perf_counter() - started)
    index.add(data)
    return index


def _gpu_supports(factory: str) -> bool:
    # GPU FAISS has IVF Flat / SQ / PQ but no HNSW (quantizer included), fast-scan or refine
    return not any(part in factory for part in ("HNSW", "fs", "Refine", "RFlat"))


def set_search_params(index: faiss.Index, params: dict[str, Any]) -> None:
    """Apply manifest search parameters to a loaded index (CPU or GPU)."""
    if not params:
        return
    ps = faiss.GpuParameterSpace() if _is_gpu(index) else faiss.ParameterSpace()
    for name, value in params.items():
        ps.set_index_parameter(index, name, value)


def search_params_object(index: faiss.Index, params: dict[str, Any],
                         selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
    """Per-call FAISS SearchParameters carrying the tuned value and an optional id selector."""
    if selector is None and not params:
        return None
    refine = _refine(index)
    if refine is not None:
        sp = faiss.IndexRefineSearchParameters()
        sp.k_factor = float(params.get("k_factor_rf", refine.k_factor))
        base = search_params_object(refine.base_index, params, selector)
        if base is not None:
            sp.base_index_params = base
            sp.base_params_ref = base  # SWIG keeps no reference of its own
        return sp
    if faiss.try_extract_index_ivf(index) is not None:
        sp = faiss.SearchParametersIVF()
        sp.nprobe = int(params.get("nprobe", faiss.try_extract_index_ivf(index).nprobe))
    elif "efSearch" in params or _hnsw(index) is not None:
        sp = faiss.SearchParametersHNSW()
        hnsw = _hnsw(index)
        sp.efSearch = int(params.get("efSearch", hnsw.hnsw.efSearch if hnsw else 16))
    else:
        sp = faiss.SearchParameters()
    if selector is not None:
        sp.sel = selector
    return sp


def _refine(index: faiss.Index) -> Any:
    """The IndexRefine (exact re-ranking of candidates) around the index, or None."""
    index = faiss.downcast_index(index)
    return index if isinstance(index, faiss.IndexRefine) else None


def _hnsw(index: faiss.Index) -> Any:
    """The HNSW index itself, or None (downcast gives the concrete SWIG class)."""
    index = faiss.downcast_index(index)
    return index if isinstance(index, faiss.IndexHNSW) else None


def _is_gpu(index: faiss.Index) -> bool:
    return "Gpu" in type(faiss.downcast_index(index)).__name__


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ground truth ids by brute force (FAISS Flat), (n_queries, k)."""
    flat = faiss.IndexFlatIP(data.shape[1])
    flat.add(np.ascontiguousarray(data, dtype=np.float32))
    return flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = RECALL_K) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k."""
    hits = sum(len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth))
    return hits / (len(truth) * k)


def tune(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, target: float,
         searcher: Any = None) -> Tuning:
    """The fastest search parameters whose recall@10 on `queries` reaches `target`.

    Walks nprobe / efSearch up from the smallest value; with a refine step, once per
    k_factor (largest first: it needs the fewest lists) and keeps the pair that searched the
    queries fastest. `searcher` (default: the index) answers `search(queries, k)` while
    parameters are set on `index`; a wrapper can post-process results, e.g. drop each
    query's self match.

    When no setting reaches it, the most accurate one tried is kept and a warning logged;
    the manifest records the recall measured either way.
    """
    if not 0 < target <= 1:
        raise InputError(f"recall target must be in (0, 1], got {target}")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    searcher = searcher if searcher is not None else index
    name, steps = _ladder(index)
    if name is None:
        found = searcher.search(queries, RECALL_K)[1]
        return Tuning({}, recall_at(found, truth), target, len(queries))
    ps = faiss.ParameterSpace()
    curve: list[dict[str, Any]] = []
    reached: list[dict[str, Any]] = []
    factors = sorted(K_FACTORS, reverse=True) if _refine(index) is not None else [None]
    for k_factor in factors:
        fixed = {} if k_factor is None else {"k_factor_rf": k_factor}
        # a smaller k_factor never needs fewer lists than the last one did
        ladder = [v for v in steps if not reached or
                  reached[-1][name] <= v <= NPROBE_SPAN * reached[-1][name]]
        point = _climb(ps, index, searcher, queries, truth, target, name, ladder, fixed, curve)
        if point is None:
            break
        reached.append(point)
    if reached:
        best = min(reached, key=lambda c: c["ms_per_query"])
    else:
        best = max(curve, key=lambda c: c["recall_at_10"])
        log.warning("no %s reaches recall@10 %.3f; best is %s", name, target, best)
    params = {key: best[key] for key in (name, "k_factor_rf") if key in best}
    for key, value in params.items():
        ps.set_index_parameter(index, key, value)
    return Tuning(params, best["recall_at_10"], target, len(queries), curve)


def _ladder(index: faiss.Index) -> tuple[str | None, list[int]]:
    """The parameter that trades speed for recall, and the values to try, small to large."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        steps = [s for s in NPROBE_STEPS if s < ivf.nlist]
        return "nprobe", steps + [ivf.nlist]
    if _hnsw(index) is not None:
        return "efSearch", list(EF_STEPS)
    return None, []


def _climb(ps: faiss.ParameterSpace, index: faiss.Index, searcher: Any, queries: np.ndarray,
           truth: np.ndarray, target: float, name: str, ladder: list[int],
           fixed: dict[str, Any], curve: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Walk `name` up `ladder` (other parameters `fixed`); the first point reaching `target`."""
    for key, value in fixed.items():
        ps.set_index_parameter(index, key, value)
    for value in ladder:
        ps.set_index_parameter(index, name, value)
        started = time.perf_counter()
        found = searcher.search(queries, RECALL_K)[1]
        ms = 1000 * (time.perf_counter() - started) / len(queries)
        point = {name: value, **fixed, "recall_at_10": round(recall_at(found, truth), 4),
                 "ms_per_query": round(ms, 4)}
        curve.append(point)
        if point["recall_at_10"] >= target:
            return point
    return None
