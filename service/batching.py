"""Micro-batching: concurrent requests are grouped into one engine call.

Continuous batching: one worker runs the engine in a thread, so the event loop keeps
accepting requests meanwhile; when the engine is free, every request that queued up while it
was busy goes into the next batch (up to `max_size`). An idle engine takes a lone request at
once, so a single client pays no batching delay, and batches grow with the load on their own.
`max_wait` optionally holds a batch open a little longer for more requests to join (it trades
latency for larger batches; 0 by default).

A batch whose call fails is run again one request at a time, so an input that breaks the
engine (or the index) fails its own request only; a fault that is not tied to one input fails
them all again, each with its own error.

`inline_when` (e.g. "this is the only request in flight") lets a lone request run on the event
loop itself when the engine is idle: two thread hand-offs less, and nobody is kept waiting,
since no other request is there to be served meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[Sequence[T]], Sequence[R]],
        max_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
        inline_when: Callable[[], bool] | None = None,
    ) -> None:
        self._fn = fn
        self._max_size = max_size
        self._max_wait = max_wait_s
        self._on_batch = on_batch
        self._inline_when = inline_when
        self._busy = False  # a batch is running in the worker thread
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        if self._inline_when is not None and self._idle():
            # first let every request that is ready now get this far (and take its lease):
            # running inline blocks the loop, so "alone" must not just mean "first"
            await asyncio.sleep(0)
            if self._idle() and self._inline_when():
                if self._on_batch:
                    self._on_batch(1)
                return self._fn([item])[0]
        if self._queue is None:  # created lazily, inside the loop that serves requests
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run())
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    def _idle(self) -> bool:
        return not self._busy and (self._queue is None or self._queue.empty())

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = self._queue = None

    async def _collect(self) -> list[tuple[T, asyncio.Future[R]]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        while len(batch) < self._max_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if self._max_wait <= 0:
            return batch
        deadline = asyncio.get_running_loop().time() + self._max_wait
        while len(batch) < self._max_size:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            if self._on_batch:
                self._on_batch(len(live))
            self._busy = True
            try:
                outcomes = await asyncio.to_thread(self._call, [item for item, _ in live])
            finally:
                self._busy = False
            for (_, fut), outcome in zip(live, outcomes, strict=True):
                if fut.done():
                    continue
                if isinstance(outcome, _Failed):
                    fut.set_exception(outcome.error)
                else:
                    fut.set_result(outcome)

    def _call(self, items: list[T]) -> Sequence[R | _Failed]:
        """The batch's results; if the call fails, each item's own result or error."""
        try:
            return self._fn(items)
        except Exception as exc:  # noqa: BLE001 - isolated below, item by item
            if len(items) == 1:
                return [_Failed(exc)]
            log.warning("a batch of %d failed (%r); running its items one by one", len(items), exc)
        outcomes: list[R | _Failed] = []
        for item in items:
            try:
                outcomes.append(self._fn([item])[0])
            except Exception as exc:  # noqa: BLE001 - the item's caller gets it
                outcomes.append(_Failed(exc))
        return outcomes


class _Failed:
    """An item's error, carried back to its caller (results themselves may be exceptions)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error
