"""The query service: queries batched together share the engine and FAISS calls, reranks
share reranker calls, and a query that fails on its own fails alone."""

from __future__ import annotations

import asyncio
import sqlite3

import numpy as np
import pytest

from encoders.errors import InputError
from index.metadata import Filter
from service.config import Settings
from service.metrics import Metrics
from service.query import QueryService
from tests.service.conftest import RerankSetup


@pytest.fixture()
def query(demo) -> QueryService:
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index, cache_entries=0,
                        batch_max_wait_ms=200)  # long enough that the queries share one batch
    metrics = Metrics()
    query = QueryService.load(settings, metrics)
    query.active = 3  # three requests hold it, as their leases would: none runs inline
    return query


def test_batched_queries_get_what_each_would_get_alone(query) -> None:
    texts = ["a red circle", "a blue square", "a green triangle"]

    async def scenario() -> tuple[list, list]:
        together = await asyncio.gather(*(query.find(t, k) for t, k in zip(texts, (3, 5, 1))))
        alone = [await query.find(t, k) for t, k in zip(texts, (3, 5, 1))]
        await query.close()
        return together, alone

    together, alone = asyncio.run(scenario())
    assert [len(h) for h in together] == [3, 5, 1]
    assert [[h.id for h in hits] for hits in together] == [[h.id for h in hits] for hits in alone]


def test_a_query_alone_runs_on_the_event_loop_and_gets_the_same_hits(query) -> None:
    async def scenario() -> tuple[list, list]:
        threaded = await query.find("a red circle", 5)
        query.active = 1
        inline = await query.find("a red circle", 5)
        await query.close()
        return threaded, inline

    threaded, inline = asyncio.run(scenario())
    assert [h.id for h in inline] == [h.id for h in threaded] and len(inline) == 5


def test_a_deep_search_does_not_deepen_the_searches_batched_with_it(query, monkeypatch) -> None:
    searcher = query.searcher
    real, calls = searcher.search, []

    def search(queries, k, where=None, codes=None):
        calls.append((len(queries), k))
        return real(queries, k, where, codes=codes)

    monkeypatch.setattr(searcher, "search", search)

    async def scenario() -> list:
        results = await asyncio.gather(query.find("a red circle", 3),
                                       query.find("a blue square", 5),
                                       query.find("a green triangle", 1000))
        await query.close()
        return results

    shallow, other, deep = asyncio.run(scenario())
    assert sorted(calls) == [(1, 1000), (2, 5)]
    assert (len(shallow), len(other), len(deep)) == (3, 5, searcher.manifest.count)


def test_a_query_the_store_fails_on_fails_alone(query, monkeypatch) -> None:
    """An unexpected store error on one query's filter fails that query, not its batch."""
    store = query.searcher.metadata
    real = store.matching

    def matching(where: Filter):
        if where.equals.get("tag") == "breaks the store":
            raise sqlite3.OperationalError("Expression tree is too large")
        return real(where)

    monkeypatch.setattr(store, "matching", matching)

    async def scenario() -> list:
        results = await asyncio.gather(
            query.find("a red circle", 3),
            query.find("a blue square", 3, Filter(equals={"tag": "breaks the store"})),
            query.find("a green triangle", 2, Filter(equals={"tag": "no such tag"})),
            return_exceptions=True)
        await query.close()
        return results

    good, bad, empty = asyncio.run(scenario())
    assert isinstance(bad, sqlite3.OperationalError)
    assert len(good) == 3 and empty == []
    samples = {s.name: s.value for s in query.metrics.batch_size.collect()[0].samples
               if s.name.endswith(("_sum", "_count"))}
    assert samples == {"xmodal_batch_size_count": 1.0, "xmodal_batch_size_sum": 3.0}  # one batch


def test_a_query_vector_of_the_wrong_size_fails_alone(query) -> None:
    vector = query.engine.encode_texts(["a red circle"])[0]

    async def scenario() -> list:
        results = await asyncio.gather(query.find(vector, 3), query.find(vector[:-1], 3),
                                       return_exceptions=True)
        await query.close()
        return results

    good, bad = asyncio.run(scenario())
    assert isinstance(bad, InputError) and f"{vector.size} numbers" in str(bad)
    assert len(good) == 3 and good[0].score == pytest.approx(max(h.score for h in good))


@pytest.fixture()
def reranking(rerank_setup: RerankSetup) -> QueryService:
    settings = Settings(engine_dir=rerank_setup.engine, index_dir=rerank_setup.index,
                        cache_entries=0, batch_max_wait_ms=200, rerank_max_pairs=5)
    metrics = Metrics()
    query = QueryService.load(settings, metrics)
    query.active = 3
    return query


def test_concurrent_reranks_share_reranker_batches_and_score_as_alone(reranking) -> None:
    """Three rerank requests (11 pairs) form one batch, run as 5 + 5 + 1 pairs per engine call;
    each gets the probabilities a direct engine call gives it, and an unknown id fails alone."""
    ids = [int(i) for i in reranking.searcher.ids[:6]]
    jobs = [("a red circle", ids[:4]), ("a blue square", ids[2:]), ("a green triangle", ids[1:4])]
    engine, searcher = reranking.engine, reranking.searcher
    calls: list[int] = []
    score = engine.score
    engine.score = lambda tokens, texts: calls.append(len(texts)) or score(tokens, texts)

    async def scenario() -> list:
        results = await asyncio.gather(
            *(reranking.match_probabilities(text, chosen) for text, chosen in jobs),
            reranking.match_probabilities("a red circle", [ids[0], 10**9]),
            return_exceptions=True)
        await reranking.close()
        return results

    *scored, unknown = asyncio.run(scenario())
    assert isinstance(unknown, KeyError) and str(10**9) in str(unknown)
    assert calls == [5, 5, 1]
    for (text, chosen), probs in zip(jobs, scored, strict=True):
        expected = score(searcher.tokens(chosen), [text] * len(chosen))
        np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    samples = {s.name: s.value for s in reranking.metrics.rerank_batch_size.collect()[0].samples
               if s.name.endswith(("_sum", "_count"))}
    assert samples == {"xmodal_rerank_batch_size_count": 1.0, "xmodal_rerank_batch_size_sum": 4.0}


def test_a_cached_embedding_searches_through_the_vector_batcher(demo) -> None:
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index, cache_entries=100)
    metrics = Metrics()
    query = QueryService.load(settings, metrics)

    async def scenario() -> tuple[list, list]:
        first = await query.find("a red circle", 4)  # encodes, caches the embedding
        second = await query.find("a red circle", 4)  # from the cached embedding
        await query.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert [h.id for h in second] == [h.id for h in first] and len(first) == 4
    hits = {s.labels["outcome"]: s.value for s in metrics.cache.collect()[0].samples
            if s.name.endswith("_total") and s.labels["cache"] == "embedding"}
    assert hits == {"hit": 1.0, "miss": 1.0}
    counts = {s.name: s.value for s in metrics.batch_size.collect()[0].samples
              if s.name.endswith("_count")}
    assert counts == {"xmodal_batch_size_count": 2.0}  # the encode batch, then the vector one
