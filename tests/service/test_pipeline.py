"""The query pipeline: queries batched together share the engine and FAISS calls, and a
query that fails on its own fails alone."""

from __future__ import annotations

import asyncio

import pytest

from encoders.errors import InputError
from index.metadata import Filter
from service.config import Settings
from service.metrics import Metrics
from service.pipeline import QueryPipeline, make_cache
from service.runtime import Runtime


@pytest.fixture()
def pipeline(demo) -> QueryPipeline:
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index, cache_entries=0,
                        batch_max_wait_ms=200)  # long enough that the queries share one batch
    metrics = Metrics()
    pipeline = QueryPipeline(Runtime.load(settings), settings, metrics, make_cache(settings, metrics))
    pipeline.active = 3  # three requests hold it, as their leases would: none runs inline
    return pipeline


def test_batched_queries_get_what_each_would_get_alone(pipeline) -> None:
    texts = ["a red circle", "a blue square", "a green triangle"]

    async def scenario() -> tuple[list, list]:
        together = await asyncio.gather(*(pipeline.find(t, k) for t, k in zip(texts, (3, 5, 1))))
        alone = [await pipeline.find(t, k) for t, k in zip(texts, (3, 5, 1))]
        await pipeline.close()
        return together, alone

    together, alone = asyncio.run(scenario())
    assert [len(h) for h in together] == [3, 5, 1]
    assert [[h.id for h in hits] for hits in together] == [[h.id for h in hits] for hits in alone]


def test_a_query_alone_runs_on_the_event_loop_and_gets_the_same_hits(pipeline) -> None:
    async def scenario() -> tuple[list, list]:
        threaded = await pipeline.find("a red circle", 5)
        pipeline.active = 1
        inline = await pipeline.find("a red circle", 5)
        await pipeline.close()
        return threaded, inline

    threaded, inline = asyncio.run(scenario())
    assert [h.id for h in inline] == [h.id for h in threaded] and len(inline) == 5


def test_a_bad_filter_fails_only_its_own_query(pipeline) -> None:
    async def scenario() -> list:
        results = await asyncio.gather(
            pipeline.find("a red circle", 3),
            pipeline.find("a blue square", 3, Filter(equals={"no such field!": "x"})),
            return_exceptions=True)
        await pipeline.close()
        return results

    good, bad = asyncio.run(scenario())
    assert isinstance(bad, InputError) and "filter field" in str(bad)
    assert len(good) == 3
    samples = {s.name: s.value for s in pipeline.metrics.batch_size.collect()[0].samples
               if s.name.endswith(("_sum", "_count"))}
    assert samples == {"xmodal_batch_size_count": 1.0, "xmodal_batch_size_sum": 2.0}  # one batch
