"""Serving-path benchmark: per-stage query latency (encode, search) and what batching buys.

Text encoding at batch 1 and batch 32 runs interleaved in the same process; the batched
embeddings are checked against the one-at-a-time ones before any figure is printed.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from encoders.engine import OnnxEngine
from index.search import Searcher
from training.synthetic import scenes


@dataclass(frozen=True)
class ServingReport:
    queries: int
    encode_ms_p50: float
    encode_ms_p99: float
    search_ms_p50: float
    search_ms_p99: float
    texts_per_s_batch1: float
    texts_per_s_batch32: float
    batch32_speedup: float


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def run(engine_dir: Path, index_dir: Path, queries: int = 256, k: int = 10) -> ServingReport:
    engine = OnnxEngine(engine_dir)
    searcher = Searcher(index_dir, engine.engine_id)
    texts = [s.caption for s in scenes(queries, seed=99)]
    encode_ms, search_ms = [], []
    for text in texts:
        t0 = time.perf_counter()
        query = engine.encode_texts([text])
        t1 = time.perf_counter()
        searcher.search(query, k)
        t2 = time.perf_counter()
        encode_ms.append(1000 * (t1 - t0))
        search_ms.append(1000 * (t2 - t1))
    single = np.concatenate([engine.encode_texts([t]) for t in texts[:32]])
    np.testing.assert_allclose(engine.encode_texts(texts[:32]), single, atol=1e-5)
    rounds = max(1, queries // 32)
    one_s, batch_s = [], []
    for r in range(rounds):  # interleaved so drift on a shared machine hits both alike
        chunk = texts[r * 32 : (r + 1) * 32]
        t0 = time.perf_counter()
        for text in chunk:
            engine.encode_texts([text])
        t1 = time.perf_counter()
        engine.encode_texts(chunk)
        t2 = time.perf_counter()
        one_s.append(t1 - t0)
        batch_s.append(t2 - t1)
    per_batch1 = 32 / statistics.median(one_s)
    per_batch32 = 32 / statistics.median(batch_s)
    return ServingReport(
        queries=queries,
        encode_ms_p50=round(_percentile(encode_ms, 50), 3),
        encode_ms_p99=round(_percentile(encode_ms, 99), 3),
        search_ms_p50=round(_percentile(search_ms, 50), 3),
        search_ms_p99=round(_percentile(search_ms, 99), 3),
        texts_per_s_batch1=round(per_batch1, 1),
        texts_per_s_batch32=round(per_batch32, 1),
        batch32_speedup=round(per_batch32 / per_batch1, 2),
    )


def main(engine_dir: Path, index_dir: Path, queries: int) -> int:
    print(json.dumps(asdict(run(engine_dir, index_dir, queries)), indent=2))
    return 0
