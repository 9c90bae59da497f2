import asyncio
import threading
from collections.abc import Sequence

import pytest

from service.batching import BatcherClosed, MicroBatcher


def test_concurrent_requests_share_one_engine_call() -> None:
    calls: list[list[int]] = []

    def double(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        return [2 * i for i in items]

    async def scenario() -> list[int]:
        batcher = MicroBatcher(double, max_size=64, max_wait_s=0.2)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.close()
        return results

    assert asyncio.run(scenario()) == [2 * i for i in range(10)]
    assert calls == [list(range(10))]


def test_batches_never_exceed_max_size() -> None:
    sizes: list[int] = []

    async def scenario() -> None:
        batcher = MicroBatcher(lambda xs: list(xs), max_size=4, max_wait_s=0.2, on_batch=sizes.append)
        assert await asyncio.gather(*(batcher.submit(i) for i in range(10))) == list(range(10))
        await batcher.close()

    asyncio.run(scenario())
    assert sum(sizes) == 10 and max(sizes) == 4


def test_a_failing_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    def fragile(items: Sequence[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky batch")
        return list(items)

    async def scenario() -> None:
        batcher = MicroBatcher(fragile, max_size=8, max_wait_s=0.05)
        with pytest.raises(ValueError, match="unlucky"):
            await batcher.submit(13)
        assert await batcher.submit(7) == 7
        await batcher.close()

    asyncio.run(scenario())


def test_an_item_that_breaks_the_batch_fails_alone() -> None:
    calls: list[list[int]] = []

    def fragile(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if 13 in items:
            raise OverflowError("13 does not fit")
        return [2 * i for i in items]

    async def scenario() -> list[int | BaseException]:
        batcher = MicroBatcher(fragile, max_size=8, max_wait_s=0.2)
        results = await asyncio.gather(*(batcher.submit(i) for i in (1, 13, 2)),
                                       return_exceptions=True)
        await batcher.close()
        return results

    one, unlucky, two = asyncio.run(scenario())
    assert (one, two) == (2, 4)
    assert isinstance(unlucky, OverflowError)
    assert calls == [[1, 13, 2], [1], [13], [2]]


def test_queries_that_arrive_while_the_engine_is_busy_form_the_next_batch() -> None:
    """With no wait, a lone query runs at once and the ones queued behind it run together."""
    calls: list[list[int]] = []
    release = threading.Event()

    def slow(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(5)  # the first batch holds the engine while others queue
        return list(items)

    async def scenario() -> list[int]:
        batcher = MicroBatcher(slow, max_size=64, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit(0))
        while not calls:  # the lone query was taken without waiting for company
            await asyncio.sleep(0.001)
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return results

    assert asyncio.run(scenario()) == list(range(6))
    assert calls == [[0], [1, 2, 3, 4, 5]]


def test_a_lone_request_runs_inline_when_allowed_and_otherwise_in_the_worker() -> None:
    threads: list[str] = []
    sizes: list[int] = []

    def record(items: Sequence[int]) -> list[int]:
        threads.append(threading.current_thread().name)
        return list(items)

    async def scenario(alone: bool) -> None:
        batcher = MicroBatcher(record, max_size=8, max_wait_s=0.0, on_batch=sizes.append,
                               inline_when=lambda: alone)
        assert await batcher.submit(1) == 1
        await batcher.close()

    asyncio.run(scenario(alone=True))
    asyncio.run(scenario(alone=False))
    assert threads[0] == threading.main_thread().name != threads[1]
    assert sizes == [1, 1]  # both counted as batches of one


def test_the_worker_starts_the_next_batch_while_the_event_loop_is_busy() -> None:
    """Queued queries go to the engine as soon as it is free, not when the event loop next
    gets round to handing them over."""
    calls: list[list[int]] = []
    release, second_started = threading.Event(), threading.Event()

    def slow(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(5)
        else:
            second_started.set()
        return list(items)

    async def scenario() -> list[int]:
        batcher = MicroBatcher(slow, max_size=64, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit(0))
        while not calls:
            await asyncio.sleep(0.001)
        rest = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.02)  # both queued behind the first batch
        release.set()
        started = second_started.wait(5)  # blocks the event loop, as a burst of work would
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        assert started, "the next batch waited for the event loop"
        return results

    assert asyncio.run(scenario()) == [0, 1, 2]
    assert calls == [[0], [1, 2]]


def test_closing_fails_the_queued_requests_and_refuses_new_ones() -> None:
    release = threading.Event()
    running = threading.Event()

    def slow(items: Sequence[int]) -> list[int]:
        running.set()
        release.wait(5)
        return list(items)

    async def scenario() -> None:
        batcher = MicroBatcher(slow, max_size=1, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit(1))
        await asyncio.to_thread(running.wait, 5)
        queued = asyncio.create_task(batcher.submit(2))
        await asyncio.sleep(0.01)
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0.01)
        release.set()
        await closing
        assert await first == 1  # the batch already running is finished
        with pytest.raises(BatcherClosed):
            await queued
        with pytest.raises(BatcherClosed):
            await batcher.submit(3)

    asyncio.run(scenario())
