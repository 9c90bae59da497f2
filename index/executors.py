"""Executors that run a plan's shards: local (decode in worker processes, overlapped with
inference in this one) and Ray Data (`index.ray_executor`). Both call `index.shards`.

Locally the engine stays in the main process (one model in memory, all inference threads
for it) while worker processes read and preprocess the batches ahead of it; a bounded
window of pending batches keeps memory flat however large the collection.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from encoders.records import Decoded
from index.shards import Plan, ShardWriter, SimulatedCrash, decode_batch, encode_batch

# for type hints only: decode workers import this module, and need no onnxruntime
if TYPE_CHECKING:
    from encoders.engine import Engine

log = logging.getLogger(__name__)

# Worker-process state, set once by the pool initializer so each task ships only a row range
# instead of pickling the whole record list again.
_WORKER_PLAN: Plan | None = None


def _init_worker(plan: Plan) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = plan


def _decode_in_worker(rows: range) -> Decoded:
    assert _WORKER_PLAN is not None, "worker used before its initializer ran"
    return decode_batch(_WORKER_PLAN, rows)


def default_workers() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


class Progress:
    """Images done, images/s and ETA: a tqdm bar on a terminal, a log line every 10 s otherwise."""

    def __init__(self, total: int, done: int = 0) -> None:
        self.total, self.done, self.started = total, done, time.perf_counter()
        self._first, self._logged = done, self.started
        self._bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, initial=done, unit="img", desc="index build")
            except ImportError:  # tqdm is optional: the log line says the same
                pass

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.perf_counter() - self._logged >= 10:
            self._logged = time.perf_counter()
            log.info("encoded %d/%d images, %.1f images/s", self.done, self.total, self.rate)

    @property
    def rate(self) -> float:
        return (self.done - self._first) / max(time.perf_counter() - self.started, 1e-9)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run_local(engine: Engine, plan: Plan, work: Path, todo: list[int], workers: int | None = None,
              crash_at: int | None = None, progress: Progress | None = None) -> float:
    """Encode the `todo` shards; returns seconds the engine spent in inference.

    `workers=0` decodes in this process (no overlap). `crash_at=k` raises `SimulatedCrash`
    after the k-th shard is written, for the resume test.
    """
    workers = default_workers() if workers is None else workers
    jobs = deque((shard, rows) for shard in todo for rows in plan.batches(shard))
    pool = None
    if workers > 0:
        # spawn, not fork: the parent holds ONNX Runtime threads that must not be forked
        pool = ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(plan,))
    pending: deque[tuple[int, range, Future[Decoded] | None]] = deque()
    window = 2 * workers + 2
    writers: dict[int, ShardWriter] = {}
    left = {shard: len(plan.batches(shard)) for shard in todo}
    written, infer_s = 0, 0.0
    try:
        while jobs or pending:
            while jobs and len(pending) < max(window, 1):
                shard, rows = jobs.popleft()
                pending.append((shard, rows, pool.submit(_decode_in_worker, rows) if pool else None))
            shard, rows, future = pending.popleft()
            decoded = future.result() if future is not None else decode_batch(plan, rows)
            writer = writers.setdefault(shard, ShardWriter(work, shard))
            encoded: tuple = (None, None, 0)
            if decoded.rows:
                started = time.perf_counter()
                encoded = encode_batch(engine, plan, decoded)
                infer_s += time.perf_counter() - started
            writer.add(decoded, *encoded)
            if progress is not None:
                progress.update(len(rows))
            left[shard] -= 1
            if left[shard] == 0:
                writers.pop(shard).write()
                written += 1
                if crash_at is not None and written >= crash_at:
                    raise SimulatedCrash(f"crash_at={crash_at}: stopped after {written} shards")
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return infer_s
