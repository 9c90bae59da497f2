"""What one micro-batch does in the index and the reranker: the searches of a batch of query
vectors, and the scoring of a batch of (text, stored images) reranks.

An error that concerns one query alone (no caption index, an unknown id) is returned as that
query's result, so it fails only its own request; anything else fails the call, and the
batcher then runs its items one at a time (see service.batching).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from encoders.engine import Engine
from encoders.errors import InputError
from index.errors import IndexBundleError
from index.metadata import Filter
from index.search import Hit, Searcher
from service.hybrid import ranked_search
from service.schemas import MAX_K, SearchMode


@dataclass(frozen=True)
class Lookup:
    """One query of a batch: what to search with, how many results, and where."""

    query: Any  # text, image or vector, by the batcher it goes to
    k: int
    where: Filter | None = None
    captions: bool = False  # search the caption index (image -> text) instead of images
    code: np.ndarray | None = None  # a vector query's packed code (a cached text's), if any
    mode: SearchMode = SearchMode.vector  # keyword and hybrid: a text query's words too
    text: str = ""  # the query text, for keyword and hybrid modes


@dataclass(frozen=True)
class Scoring:
    """One rerank of a batch: a text against stored images."""

    text: str
    ids: tuple[int, ...]


# Unfiltered searches up to this deep share one FAISS call at their largest k; a deeper one
# (clip-retrieval's front end asks for 1,000) searches alone rather than deepen all the others.
SHARED_MAX_K = MAX_K
Found = list[Hit] | Exception  # a lookup's hits, or the error that concerns it alone
Scored = np.ndarray | Exception  # a scoring's match probabilities, or its own error


def search_batch(searcher: Searcher, vectors: np.ndarray, lookups: Sequence[Lookup],
                 codes: np.ndarray | None = None) -> list[Found]:
    """Search a batch of query vectors (with their packed `codes` where the index is searched
    by codes); unfiltered vector searches share one FAISS call."""
    def coded(rows: list[int] | slice) -> np.ndarray | None:
        return None if codes is None else codes[rows]

    found: list[Found] = [[] for _ in lookups]
    shared = [i for i, lk in enumerate(lookups) if lk.where is None and not lk.captions
              and lk.k <= SHARED_MAX_K and lk.mode is SearchMode.vector]
    if shared:
        # the largest k serves all: exact and IVF results are prefixes of longer ones, and a
        # refine step only gets a longer candidate list
        k = max(lookups[i].k for i in shared)
        for i, hits in zip(shared, searcher.search(vectors[shared], k, codes=coded(shared)),
                           strict=True):
            found[i] = hits[: lookups[i].k]
    for i, lk in enumerate(lookups):
        try:
            if lk.captions:
                found[i] = searcher.search_captions(vectors[i : i + 1], lk.k)[0]
            elif lk.mode is not SearchMode.vector:
                found[i] = ranked_search(searcher, vectors[i], lk.text, lk.mode, lk.k, lk.where)
            elif lk.where is not None or lk.k > SHARED_MAX_K:
                found[i] = searcher.search(vectors[i : i + 1], lk.k, lk.where,
                                           codes=coded(slice(i, i + 1)))[0]
        except (InputError, IndexBundleError) as exc:
            found[i] = exc
    return found


def score_batch(engine: Engine, searcher: Searcher, scorings: Sequence[Scoring],
                max_pairs: int) -> list[Scored]:
    """Every (text, stored image) pair of a batch through the reranker, `max_pairs` per engine
    call; a scoring with an unknown id gets its KeyError back, alone."""
    scored: list[Scored] = []
    for scoring in scorings:
        try:
            scored.append(searcher.tokens(list(scoring.ids)))
        except KeyError as exc:
            scored.append(exc)
    good = [i for i, s in enumerate(scored) if not isinstance(s, Exception)]
    if not good:
        return scored
    tokens = np.concatenate([scored[i] for i in good])
    texts = [scorings[i].text for i in good for _ in scorings[i].ids]
    probs = np.concatenate([engine.score(tokens[at : at + max_pairs], texts[at : at + max_pairs])
                            for at in range(0, len(texts), max_pairs)])
    ends = np.cumsum([len(scorings[i].ids) for i in good])
    for i, part in zip(good, np.split(probs, ends[:-1]), strict=True):
        scored[i] = part
    return scored
