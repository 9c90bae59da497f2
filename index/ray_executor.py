"""Ray Data executor: the same reader -> mapper -> writer (`index.shards.encode_shard`) run
by a pool of Ray actors, one engine per actor, one shard per call.

On a cluster the work folder and the image source must be on storage every node sees (a
shared filesystem); each actor writes its shard files there exactly as the local executor
does, so the driver assembles, resumes and publishes the same way.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from index.shards import Plan, encode_shard

log = logging.getLogger(__name__)


class _ShardEncoder:
    """A Ray Data callable class: loads the engine once per actor."""

    def __init__(self, engine_path: str, plan: Plan, work: str, threads: int | None) -> None:
        from encoders.engine import OnnxEngine

        self.engine = OnnxEngine(engine_path, threads=threads)
        self.plan, self.work = plan, Path(work)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        seconds = []
        for shard in batch["shard"]:
            started = time.perf_counter()
            encode_shard(self.engine, self.plan, self.work, int(shard))
            seconds.append(time.perf_counter() - started)
        return {"shard": batch["shard"], "seconds": seconds}


def run_ray(engine_path: Path, plan: Plan, work: Path, todo: list[int],
            address: str | None = None, actors: int = 1, threads: int | None = None) -> float:
    """Encode the `todo` shards on Ray; returns the seconds actors spent on them."""
    import ray

    if not todo:
        return 0.0
    if not ray.is_initialized():
        # a local instance when no address is given: tests and single machines
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    dataset = ray.data.from_items([{"shard": s} for s in todo])
    done = dataset.map_batches(
        _ShardEncoder, batch_size=1, concurrency=actors,
        fn_constructor_kwargs={"engine_path": str(engine_path), "plan": plan, "work": str(work),
                               "threads": threads},
    ).take_all()
    log.info("ray encoded %d shards with %d actor(s)", len(done), actors)
    return float(sum(row["seconds"] for row in done))
