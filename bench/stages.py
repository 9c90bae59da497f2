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


def raw_batch_gain(engine: OnnxEngine, searcher: Searcher, texts: list[str], k: int,
                   rerank_k: int | None, size: int = 32, rounds: int = 5,
                   max_pairs: int = 256, batches_per_round: int = 4) -> float:
    """How many times the queries per second of one at a time the raw path (encode + search,
    and the reranker over each query's first `rerank_k` hits when given) runs in batches of
    `size`: median over rounds that alternate which goes first. What the engine and index gain
    from batching on this machine with no service around them, and so about the most
    micro-batching can pass on: a cost the service adds to every request lowers the service's
    ratio, and only a cost it adds per batch raises it. Reranker pairs go in calls of
    `max_pairs`, as the service sends them."""

    def answer(chunk: list[str]) -> None:
        hits = searcher.search(engine.encode_texts(chunk), max(k, rerank_k or 0))
        if rerank_k:
            ids = [h.id for row in hits for h in row[:rerank_k]]
            pair_texts = [t for t, row in zip(chunk, hits, strict=True) for _ in row[:rerank_k]]
            tokens = searcher.tokens(ids)
            for at in range(0, len(ids), max_pairs):
                engine.score(tokens[at : at + max_pairs], pair_texts[at : at + max_pairs])

    ratios = []
    for r in range(rounds):
        start = r * size * batches_per_round
        chunks = [[texts[(start + b * size + i) % len(texts)] for i in range(size)]
                  for b in range(batches_per_round)]
        took = {}
        for batched in ((True, False) if r % 2 == 0 else (False, True)):
            t0 = time.perf_counter()
            for chunk in chunks:
                if batched:
                    answer(chunk)
                else:
                    for text in chunk:
                        answer([text])
            took[batched] = time.perf_counter() - t0
        ratios.append(took[False] / took[True])
    return round(statistics.median(ratios), 2)


def main(engine_dir: Path, index_dir: Path, queries: int) -> int:
    print(json.dumps(asdict(run(engine_dir, index_dir, queries)), indent=2))
    return 0
