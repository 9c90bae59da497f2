"""Prometheus metrics: one histogram per request stage, cache outcomes, errors, batch sizes
(encode + search, and rerank).

Each app gets its own registry, so several apps (tests, reloads) never collide.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

STAGES = ("encode", "search", "rerank")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "xmodal_stage_seconds", "Time spent per request stage", ["stage"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.cache = Counter("xmodal_cache_total", "Cache lookups by cache and outcome",
                             ["cache", "outcome"], registry=self.registry)
        self.cache_errors = Counter("xmodal_cache_errors_total",
                                    "Cache backend failures (requests went on without it)",
                                    registry=self.registry)
        self.errors = Counter("xmodal_errors_total", "Error responses by code", ["code"],
                              registry=self.registry)
        sizes = (1, 2, 4, 8, 16, 32, 64, 128)
        self.batch_size = Histogram("xmodal_batch_size", "Queries per engine batch",
                                    registry=self.registry, buckets=sizes)
        self.rerank_batch_size = Histogram("xmodal_rerank_batch_size",
                                           "Rerank requests per reranker batch",
                                           registry=self.registry, buckets=sizes)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(stage=name).observe(time.perf_counter() - start)

    def render(self) -> bytes:
        return generate_latest(self.registry)
