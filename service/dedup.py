"""Near-duplicate results, found by their stored image vectors (clip-retrieval's
`deduplicate`)."""

from __future__ import annotations

import logging

import numpy as np

from index.errors import IndexBundleError
from index.search import Hit, Searcher

log = logging.getLogger(__name__)

# Cosine similarity of two results' image vectors at or above which they are near duplicates:
# clip-retrieval's threshold, for CLIP embeddings; XMODAL_DEDUP_THRESHOLD sets the served one
# (a small engine packs images closer: with the default model 0.94 keeps 119 of 1,000).
DEDUP_THRESHOLD = 0.94


def near_duplicates(vectors: np.ndarray, threshold: float = DEDUP_THRESHOLD) -> np.ndarray:
    """Which of these ranked results to drop as near duplicates, as a boolean mask.

    Results whose vectors have cosine similarity >= threshold are linked, and linked results
    form groups (a chain a~b~c is one group even when a and c are further apart); each group
    keeps only its best-ranked result. These are clip-retrieval's semantics; the similarity
    matrix is dense, so callers keep the results few (the clip-retrieval routes cap them at
    1,000: 4 MB).
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    close = unit @ unit.T >= threshold  # (n, n)
    drop = np.zeros(len(unit), bool)
    seen = np.zeros(len(unit), bool)
    # in rank order, so the first result met of each group is its best; a breadth-first walk
    # from it marks the rest of the group
    for first in np.flatnonzero(close.sum(axis=1) > 1):
        if seen[first]:
            continue
        seen[first] = True
        frontier = close[first] & ~seen
        while frontier.any():
            seen |= frontier
            drop |= frontier
            frontier = close[frontier].any(axis=0) & ~seen
    return drop


def deduplicate(searcher: Searcher, hits: list[Hit], threshold: float) -> list[Hit]:
    """`hits` without their near duplicates (see `near_duplicates`); all of them when the
    index stores no image vectors."""
    try:
        vectors = searcher.vectors([h.id for h in hits])
    except IndexBundleError:
        log.warning("index %s stores no image vectors: deduplicate has no effect",
                    searcher.version)
        return hits
    drop = near_duplicates(vectors, threshold)
    return [h for h, dropped in zip(hits, drop, strict=True) if not dropped]
