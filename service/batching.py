"""Micro-batching: concurrent requests are grouped into one engine call.

Continuous batching: a worker thread of the batcher's own runs the engine, so the event loop
keeps accepting requests meanwhile; when the engine is free, every request that queued up
while it was busy goes into the next batch (up to `max_size`). The worker takes that next
batch itself, at once, rather than wait for a turn of the busy event loop to be handed it
(bench/results/batcher.md says what waiting cost; batcher-ab*.md have the figures). An idle
engine takes a lone request at once, so a single client pays no batching delay, and batches
grow with the load on their own. `max_wait` optionally holds a batch open a little longer
for more requests to join (it trades latency for larger batches; 0 by default).

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
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Job = tuple[T, "asyncio.Future[R]"]


class BatcherClosed(RuntimeError):
    """The batcher was closed before this request's batch ran."""


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[Sequence[T]], Sequence[R]],
        max_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
        inline_when: Callable[[], bool] | None = None,
        name: str = "batcher",
    ) -> None:
        self._fn = fn
        self._max_size = max_size
        self._max_wait = max_wait_s
        self._on_batch = on_batch
        self._inline_when = inline_when
        self._name = name
        # guards everything below; the event loop holds it only to append a job
        self._lock = threading.Condition()
        self._jobs: deque[Job[T, R]] = deque()
        self._busy = False  # the worker is running a batch
        self._closed = False
        self._worker: threading.Thread | None = None

    async def submit(self, item: T) -> R:
        if self._inline_when is not None and self._idle():
            # first let every request that is ready now get this far (and take its lease):
            # running inline blocks the loop, so "alone" must not just mean "first"
            await asyncio.sleep(0)
            if self._idle() and self._inline_when():
                if self._on_batch:
                    self._on_batch(1)
                return self._fn([item])[0]
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._closed:
                raise BatcherClosed(f"{self._name} is closed")
            self._jobs.append((item, future))
            if self._worker is None:  # started lazily: a batcher that only runs inline has none
                self._worker = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._worker.start()
            self._lock.notify()
        return await future

    def _idle(self) -> bool:
        return not self._busy and not self._jobs

    async def close(self) -> None:
        """Stop the worker after its current batch; requests still queued fail with
        BatcherClosed."""
        with self._lock:
            self._closed = True
            left, worker = list(self._jobs), self._worker
            self._jobs.clear()
            self._lock.notify()
        for _, future in left:
            if not future.done():
                future.set_exception(BatcherClosed(f"{self._name} closed"))
        if worker is not None:
            await asyncio.to_thread(worker.join)

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            try:
                live = [(item, fut) for item, fut in batch if not fut.cancelled()]
                if live:
                    if self._on_batch:
                        self._on_batch(len(live))
                    outcomes = self._call([item for item, _ in live])
                    _deliver_soon(live, outcomes)
            finally:
                with self._lock:
                    self._busy = False

    def _take(self) -> list[Job[T, R]] | None:
        """The next batch, once there is one (None once closed): everything queued, up to
        max_size, after holding it open for max_wait when that is set."""
        with self._lock:
            while not self._jobs and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            if self._max_wait > 0:
                deadline = time.monotonic() + self._max_wait
                while len(self._jobs) < self._max_size and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._lock.wait(remaining):
                        break
            batch = [self._jobs.popleft() for _ in range(min(self._max_size, len(self._jobs)))]
            self._busy = bool(batch)
            return batch

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


def _deliver_soon(jobs: list[Job[T, R]], outcomes: Sequence[R | _Failed]) -> None:
    """Hand a batch's outcomes to the event loops its callers wait in (futures are not
    thread-safe: each is settled in its own loop), one callback per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[R], R | _Failed]]] = {}
    for (_, future), outcome in zip(jobs, outcomes, strict=True):
        by_loop.setdefault(future.get_loop(), []).append((future, outcome))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, settled)
        except RuntimeError:  # that loop has closed: nobody is waiting any more
            log.info("a batch finished after its event loop closed")


def _settle(settled: list[tuple[asyncio.Future[R], R | _Failed]]) -> None:
    for future, outcome in settled:
        if future.done():  # cancelled meanwhile (the client went away)
            continue
        if isinstance(outcome, _Failed):
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome)


class _Failed:
    """An item's error, carried back to its caller (results themselves may be exceptions)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error
