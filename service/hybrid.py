"""Keyword and hybrid search: the keyword index's ranking, and its fusion with the vector
search's by reciprocal rank fusion, before any rerank.

RRF (Cormack, Clarke & Buettcher 2009, "Reciprocal Rank Fusion outperforms Condorcet and
individual Rank Learning Methods") scores an item sum over lists of 1 / (RRF_K + rank), rank
from 1: it needs no score calibration between BM25 and cosine similarity, which are on
unrelated scales. RRF_K = 60 is the paper's constant, chosen there on TREC data and used as
the default since (Elasticsearch, OpenSearch, Weaviate). Both lists are searched to
`FUSION_DEPTH`, so an item ranked moderately in both can pass one ranked first in one only.

Results of every mode carry the dual encoder's cosine similarity as their score (read from
the stored image vectors for keyword hits), so `min_score` and the rerank mean one thing in
all three; the mode decides only the order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from index.metadata import Filter
from index.search import Hit, Searcher
from service.schemas import MAX_K, SearchMode

RRF_K = 60
FUSION_DEPTH = MAX_K  # each list's depth: as deep as any request may ask


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[int]:
    """Ids ordered by sum over `rankings` of 1 / (k + rank); ties go to the lower id."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused, key=lambda item: (-fused[item], item))


def ranked_search(searcher: Searcher, vector: np.ndarray, text: str, mode: SearchMode, k: int,
                  where: Filter | None) -> list[Hit]:
    """The k best hits for a text query in keyword or hybrid `mode`, filtered by `where`,
    each scored by the dual encoder."""
    depth = k if mode is SearchMode.keyword else max(k, FUSION_DEPTH)
    keyword = searcher.search_keywords(text, depth, where)
    if mode is SearchMode.keyword:
        return _cosine(searcher, vector, keyword)
    by_vector = searcher.search(vector[None], depth, where)[0]
    order = reciprocal_rank_fusion([[h.id for h in by_vector], [h.id for h in keyword]])[:k]
    known = {h.id: h for h in [*keyword, *by_vector]}
    return _cosine(searcher, vector, [known[i] for i in order])


def _cosine(searcher: Searcher, vector: np.ndarray, hits: list[Hit]) -> list[Hit]:
    if not hits:
        return []
    scores = searcher.vectors([h.id for h in hits]) @ vector
    return [Hit(h.id, float(s), h.item) for h, s in zip(hits, scores.tolist(), strict=True)]
