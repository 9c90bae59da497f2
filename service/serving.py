"""The pipeline answering requests now, swapped atomically for a new one.

Each request leases the current pipeline for its whole life; a swap points new requests at
the new pipeline at once, and the old one is closed only when its last request has ended,
so a swap under load fails no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from service.errors import NotReady
from service.pipeline import QueryPipeline

log = logging.getLogger(__name__)


class Serving:
    def __init__(self) -> None:
        self.current: QueryPipeline | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[QueryPipeline]:
        pipeline = self.current
        if pipeline is None:
            raise NotReady("the engine and index are not loaded yet")
        pipeline.active += 1
        try:
            yield pipeline
        finally:
            pipeline.active -= 1
            if pipeline.retired and pipeline.active == 0:
                await pipeline.close()

    async def swap(self, new: QueryPipeline) -> None:
        async with self._lock:
            old, self.current = self.current, new
            if old is not None:
                old.retired = True
                if old.active == 0:
                    await old.close()
        log.info("now serving index %s", new.index_version)

    async def close(self) -> None:
        async with self._lock:
            if self.current is not None:
                await self.current.close()
                self.current = None
