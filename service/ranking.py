"""Turning hits into results: filters, the optional rerank of the head, cut-offs, shaping."""

from __future__ import annotations

from index.metadata import Filter
from index.search import Hit
from service.errors import InvalidQuery
from service.pipeline import QueryPipeline
from service.schemas import FilterSpec, SearchOptions, SearchResult


def to_filter(spec: FilterSpec | None) -> Filter | None:
    if spec is None or not (spec.equals or spec.ranges):
        return None
    return Filter(equals=dict(spec.equals), ranges={k: tuple(v) for k, v in spec.ranges.items()})


def result(hit: Hit, probability: float | None = None) -> SearchResult:
    # built from the index's own typed records, so not validated again: validation was an
    # eighth of the event loop's time per search
    return SearchResult.model_construct(
        id=hit.id, score=hit.score, match_probability=probability, path=hit.item.path,
        caption=hit.item.caption, fields=hit.item.fields, thumbnail_url=f"/v1/images/{hit.id}")


def fetch_count(options: SearchOptions) -> int:
    return max(options.k, options.rerank_k) if options.rerank else options.k


async def rank(pipeline: QueryPipeline, hits: list[Hit], options: SearchOptions,
               text: str | None) -> list[SearchResult]:
    """Rerank the head when asked (ALBEF's rule: the match probability orders the reranked
    head; the rest keep their order below it), then apply the cut-offs and keep k."""
    if not options.rerank:
        ranked = [result(h) for h in hits]
    else:
        if text is None:
            raise InvalidQuery("rerank applies to text queries: the reranker scores a text "
                               "against images")
        if not pipeline.can_rerank:
            raise InvalidQuery("rerank needs an engine with a reranker and an index with stored "
                               "image tokens; this one has "
                               f"{'no reranker' if not pipeline.runtime.engine.has_reranker else 'no token store'}")
        head, tail = hits[: options.rerank_k], hits[options.rerank_k :]
        probs = await pipeline.match_probabilities(text, [h.id for h in head]) if head else []
        order = sorted(zip(head, probs), key=lambda pair: -pair[1])
        ranked = [result(h, float(p)) for h, p in order] + [result(h) for h in tail]
    if options.min_score is not None:
        ranked = [r for r in ranked if r.score >= options.min_score]
    if options.rerank and options.min_match_probability is not None:
        ranked = [r for r in ranked if (r.match_probability or 0.0) >= options.min_match_probability]
    return ranked[: options.k]
