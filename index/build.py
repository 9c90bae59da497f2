"""Offline index build: records -> checkpointed embedding shards -> tuned FAISS index and
stores -> a new version of the index root, published atomically.

The shards live in a work folder under the index root named by the plan's hash (engine,
records, shard and batch sizes), so running the same build again after a crash picks up
the shards already written; the folder is removed once the version is published.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoders.codes import BITS
from encoders.engine import Engine
from encoders.errors import InputError
from encoders.records import IMAGE_SUFFIXES, Record
from index.bundle import IndexManifest
from index.codes import CodeLayout
from index.executors import Progress, run_local
from index.lock import writer_lock
from index.metadata import Item
from index.segment import write_segment
from index.shards import Assembled, Plan, assemble, prepare_work
from index.sources import read_source
from index.version import VersionPlan, publish_version
from index.writer import Contents

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
CAPTION_BATCH = 256


@dataclass(frozen=True)
class BuildOptions:
    """How to build; none of these change which images are indexed or their ids."""

    batch_size: int = 64
    shard_size: int = 1024  # images per checkpointed shard
    workers: int | None = None  # decode processes (local executor); None: cores - 1
    executor: str = "local"  # "local" or "ray"
    ray_address: str | None = None  # Ray cluster to join; None starts a local instance
    ray_actors: int = 1  # engine replicas encoding shards in parallel (one per GPU or node)
    factory: str | None = None  # FAISS factory string; None chooses by size and memory
    recall: float = 0.95  # recall@10 target the search parameter is tuned to
    memory_budget: int | None = None  # bytes the index may take in memory
    token_pool: int | None = None  # store this many pooled tokens per image; None: all
    codes: int = 0  # store the engine's binary codes of this many bits (index.codes); 0: none
    codes_only: bool = False  # with codes: no float FAISS index, search by codes alone
    rescore: int | None = None  # code candidates rescored with float vectors; None: tuned
    crash_at: int | None = None  # test hook: die after this many shards


@dataclass(frozen=True)
class BuildStats:
    images: int
    seconds: float
    images_per_s: float
    inference_s: float  # time the engine spent encoding: engine busy = inference_s / seconds


def build_index(engine: Engine, images: str | Path, out_root: str | Path, batch_size: int = 64,
                options: BuildOptions | None = None, stats: list[BuildStats] | None = None,
                **overrides: Any) -> IndexManifest:
    """Encode every image of `images` (folder, .jsonl or WebDataset) and publish a version.

    `overrides` are `BuildOptions` fields; `stats`, when given, receives the encode timing.
    """
    opts = BuildOptions(**{**(options.__dict__ if options else {}), "batch_size": batch_size,
                           **overrides})
    root, records = read_source(images)
    if not records:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {images}")
    # uris are relative to `root`: the manifest records it so re-index can read them again
    return build_records(engine, root, records, out_root, opts, source=str(root.resolve()),
                         stats=stats)


def build_records(engine: Engine, root: Path, records: list[Record], out_root: str | Path,
                  opts: BuildOptions, source: str = "", ids: np.ndarray | None = None,
                  stats: list[BuildStats] | None = None,
                  stored_uris: list[str] | None = None) -> IndexManifest:
    """Build from an explicit record list; `ids` (default 0..n-1) are the item ids to give.

    `stored_uris`: the uri to store per record where it differs from the one read (uploads,
    read from wherever they are but stored relative to their index root)."""
    done = encode_records(engine, root, records, Path(out_root), opts, stats)
    ids = np.arange(len(records), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    uris = stored_uris or [r.uri for r in records]
    item_ids = ids[done.rows]
    items = [Item(int(i), uris[r], records[r].caption, records[r].fields)
             for i, r in zip(item_ids, done.rows)]
    caption_ids, caption_embeds = encode_captions(engine, items)
    contents = Contents(item_ids, done.embeds, done.tokens, items, caption_ids, caption_embeds,
                        done.full_tokens, *coded(engine, done, code_layout(opts)))
    skipped = [(records[r].uri, message) for r, message in done.errors]
    manifest = publish_contents(engine.engine_id, contents, out_root, opts, source=source,
                                skipped=skipped, next_id=int(ids.max()) + 1)
    finish_work(done)
    return manifest


def encode_records(engine: Engine, root: Path, records: list[Record], work_root: Path,
                   opts: BuildOptions, stats: list[BuildStats] | None = None) -> Assembled:
    """Encode `records` through checkpointed shards under `work_root`; resumable.

    The caller must publish before calling `finish_work` (which removes the shards)."""
    if opts.executor not in EXECUTORS:
        raise InputError(f"unknown executor {opts.executor!r}; expected one of {EXECUTORS}")
    if opts.ray_actors < 1:
        raise InputError(f"ray_actors must be at least 1, got {opts.ray_actors}")
    # an engine running one of its bundle's variants embeds differently: its shards must not
    # resume a build at another precision (the engine_id is the bundle's either way)
    precision = getattr(engine, "precision", engine.manifest.precision)
    encoder = (engine.engine_id if precision == engine.manifest.precision
               else f"{engine.engine_id}@{precision}")
    plan = Plan(str(root), records, encoder, engine.manifest.image_preprocess.to_dict(),
                opts.shard_size, opts.batch_size, opts.token_pool)
    work = work_root / f".build-{plan.key}"
    todo = prepare_work(work, plan)
    started = time.perf_counter()
    progress = Progress(len(records), done=len(records) - sum(len(plan.shard_rows(s)) for s in todo))
    try:
        if opts.executor == "ray":
            from index.ray_executor import run_ray

            infer_s = run_ray(_engine_path(engine), plan, work, todo, opts.ray_address,
                               opts.ray_actors)
        else:
            infer_s = run_local(engine, plan, work, todo, opts.workers, opts.crash_at, progress)
    finally:
        progress.close()
    seconds = time.perf_counter() - started
    encoded = sum(len(plan.shard_rows(s)) for s in todo)
    if stats is not None:
        stats.append(BuildStats(encoded, seconds, encoded / max(seconds, 1e-9), infer_s))
    log.info("encoded %d images in %.1fs (%.1f images/s, engine busy %.0f%%)", encoded, seconds,
             encoded / max(seconds, 1e-9), 100 * infer_s / max(seconds, 1e-9))
    done = assemble(work, plan)
    done.work = work
    return done


def code_layout(opts: BuildOptions) -> CodeLayout | None:
    """The codes a build asks for; None: none. Bad combinations are refused by name."""
    if not opts.codes:
        if opts.codes_only or opts.rescore is not None:
            raise InputError("--codes-only and --rescore need --codes BITS")
        return None
    if opts.codes not in BITS:
        raise InputError(f"--codes {opts.codes}: one of {', '.join(map(str, BITS))} bits")
    if opts.rescore is not None and opts.rescore < 0:
        raise InputError(f"--rescore must be >= 0 (0: Hamming distance alone), got {opts.rescore}")
    return CodeLayout(opts.codes, float_index=not opts.codes_only, rescore=opts.rescore)


def coded(engine: Engine, done: Assembled, layout: CodeLayout | None
          ) -> tuple[np.ndarray | None, CodeLayout | None]:
    """The encoded images' codes and their layout, checked against the engine's codes."""
    if layout is None:
        return None, None
    bits = engine.manifest.code_bits
    if bits != layout.bits or done.codes is None:
        has = f"{bits}-bit codes" if bits else "no codes (train a hash head: xmodal codes train)"
        raise InputError(f"an index of {layout.bits}-bit codes needs an engine that outputs "
                         f"them; engine {engine.engine_id} has {has}")
    return done.codes, layout


def finish_work(done: Assembled) -> None:
    """Remove a build's shards once its version is published."""
    if done.work is not None:
        shutil.rmtree(done.work, ignore_errors=True)


def publish_contents(engine_id: str, contents: Contents, out_root: Path, opts: BuildOptions,
                     source: str = "", skipped: list[tuple[str, str]] | None = None,
                     next_id: int = 0) -> IndexManifest:
    """Write `contents` as the one segment of a new version of `out_root`, made CURRENT."""
    out_root = Path(out_root)
    with writer_lock(out_root):
        segment = write_segment(out_root, contents, opts.factory, opts.recall, opts.memory_budget)
        manifest = publish_version(out_root, VersionPlan(
            engine_id, contents.embeds.shape[1], [segment], skipped=skipped or [], source=source,
            next_id=next_id, token_pool=opts.token_pool, full_tokens=contents.full_tokens))
    log.info("index %s: %s, %s, %d skipped", manifest.version, manifest.factory,
             manifest.search_params or "exact", manifest.skipped)
    return manifest


def encode_captions(engine: Engine, items: list[Item]) -> tuple[np.ndarray, np.ndarray]:
    """Text embeddings of the items' captions, for image -> text search."""
    with_caption = [it for it in items if it.caption]
    if not with_caption:
        return np.zeros(0, np.int64), np.zeros((0, engine.manifest.embed_dim), np.float32)
    parts = [engine.encode_texts([it.caption for it in with_caption[i : i + CAPTION_BATCH]])
             for i in range(0, len(with_caption), CAPTION_BATCH)]
    return np.asarray([it.id for it in with_caption], np.int64), np.concatenate(parts)


def _engine_path(engine: Engine) -> Path:
    if engine.path is None:
        raise InputError("the Ray executor loads the engine in each worker from its bundle "
                         "folder; this engine has none (pass one loaded from a bundle)")
    return engine.path
