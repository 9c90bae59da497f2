"""bench.stages.raw_batch_gain: the raw path's own gain from batching, which `xmodal bench
serve` prints beside the service's on/off ratio. Checked for what it runs, not for timings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.stages import raw_batch_gain
from encoders.engine import OnnxEngine
from index.search import Searcher
from tests.service.conftest import RerankSetup
from training import synthetic


class CountingEngine:
    """The real engine, with the size of every text and reranker call written down."""

    def __init__(self, engine: OnnxEngine) -> None:
        self._engine = engine
        self.encoded: list[int] = []
        self.scored: list[int] = []

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded.append(len(texts))
        return self._engine.encode_texts(texts)

    def score(self, tokens: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        self.scored.append(len(texts))
        return self._engine.score(tokens, texts)


def test_batches_and_singles_answer_the_same_queries_through_the_reranker(
        rerank_setup: RerankSetup) -> None:
    engine = OnnxEngine(rerank_setup.engine)
    counting = CountingEngine(engine)
    searcher = Searcher(rerank_setup.index, engine.engine_id)
    texts = [s.caption for s in synthetic.scenes(40, seed=3)]
    try:
        ratio = raw_batch_gain(counting, searcher, texts, k=5, rerank_k=4,  # type: ignore[arg-type]
                               size=8, rounds=3, max_pairs=20, batches_per_round=2)
    finally:
        searcher.close()
    assert ratio > 0
    # per round: 2 batches of 8 and the same 16 queries one by one
    assert sorted(counting.encoded) == sorted([8] * 6 + [1] * 48)
    # a batch's 32 pairs go in calls of at most 20; a single query's 4 in one call
    assert sorted(counting.scored) == sorted([20, 12] * 6 + [4] * 48)


def test_without_rerank_k_the_reranker_is_not_run(rerank_setup: RerankSetup) -> None:
    counting = CountingEngine(OnnxEngine(rerank_setup.engine))
    searcher = Searcher(rerank_setup.index, counting._engine.engine_id)
    try:
        raw_batch_gain(counting, searcher, ["a red circle"] * 4, k=3, rerank_k=None,  # type: ignore[arg-type]
                       size=4, rounds=1, batches_per_round=1)
    finally:
        searcher.close()
    assert counting.encoded == [4, 1, 1, 1, 1] and counting.scored == []
