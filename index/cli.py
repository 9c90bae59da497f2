"""`xmodal index ...`: build and maintain index bundles."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path


def _options(args: argparse.Namespace):  # -> index.build.BuildOptions (imported lazily)
    from index.build import BuildOptions

    return BuildOptions(batch_size=args.batch_size, shard_size=args.shard_size,
                        workers=args.workers, executor=args.executor, ray_address=args.ray_address,
                        ray_actors=args.ray_actors,
                        factory=args.factory, recall=args.recall,
                        memory_budget=int(args.memory_gb * 2**30) if args.memory_gb else None,
                        token_pool=args.token_pool, codes=args.codes or 0,
                        codes_only=args.codes_only, rescore=args.rescore)


def _report(manifest) -> int:
    print(json.dumps({"version": manifest.version, "count": manifest.count,
                      "skipped": manifest.skipped, "deleted": manifest.deleted,
                      "engine_id": manifest.engine_id, "factory": manifest.factory,
                      "search_params": manifest.search_params,
                      "recall_at_10": manifest.tuning.get("recall_at_10"),
                      "token_bytes_per_image": manifest.tokens.get("bytes_per_image"),
                      "codes": {k: v for k, v in manifest.codes.items() if k != "tuning"}
                      | {"recall_at_10": manifest.codes.get("tuning", {}).get("recall_at_10")}
                      if manifest.codes else None}, indent=2))
    return 0


def build_engine(folder: Path, precision: str | None):  # -> encoders.engine.OnnxEngine
    """The bundle's engine at the fastest precision, down to `precision`, whose measured recall
    change is within bounds (`encoders.variants.build_precision`); its own graphs without one."""
    from encoders.bundle import read_manifest
    from encoders.engine import OnnxEngine
    from encoders.variants import build_precision

    if precision is None:
        return OnnxEngine(folder)
    chosen = build_precision(read_manifest(folder), precision)
    print(f"encoding at {chosen} (the fastest within bounds, down to {precision})", file=sys.stderr)
    return OnnxEngine(folder, precision=chosen)


def _build(args: argparse.Namespace) -> int:
    from index.build import build_index

    engine = build_engine(args.engine, args.precision)
    return _report(build_index(engine, args.images, args.out, args.batch_size, _options(args)))


def _add(args: argparse.Namespace) -> int:
    from encoders.engine import OnnxEngine
    from index.update import add_images

    return _report(add_images(OnnxEngine(args.engine), args.index, args.images, _options(args)))


def _delete(args: argparse.Namespace) -> int:
    from index.update import delete_ids

    return _report(delete_ids(args.index, args.ids))


def _compact(args: argparse.Namespace) -> int:
    from index.update import compact

    return _report(compact(args.index))


def _reindex(args: argparse.Namespace) -> int:
    from encoders.engine import OnnxEngine
    from index.update import reindex

    return _report(reindex(OnnxEngine(args.engine), args.index, args.out, _options(args)))


def _refusals(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A change that is refused (bad input, another writer, a full disk) ends with one line
    naming why, and exit status 1; nothing was published."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from encoders.errors import BundleError, InputError
        from index.errors import IndexFailure

        try:
            return command(args)
        except (InputError, BundleError, IndexFailure, OSError) as exc:
            print(f"xmodal index {args.op}: {exc}; nothing was published", file=sys.stderr)
            return 1
    return run


def _build_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=1024, help="images per checkpointed shard")
    p.add_argument("--workers", type=int, help="decode processes (default: cores - 1; 0: inline)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", help="Ray cluster to join (default: a local instance)")
    p.add_argument("--ray-actors", type=int, default=1,
                   help="engine replicas encoding shards in parallel on Ray (e.g. one per node)")
    p.add_argument("--factory", help="FAISS factory string (default: chosen by size and memory)")
    p.add_argument("--recall", type=float, default=0.95, help="recall@10 target for tuning")
    p.add_argument("--memory-gb", type=float, help="memory budget for the index")
    p.add_argument("--token-pool", type=int, help="store this many pooled reranker tokens")
    p.add_argument("--codes", type=int, choices=(64, 128, 256), metavar="BITS",
                   help="also store the engine's binary codes (64, 128 or 256 bits; the engine "
                        "must output them: xmodal codes train) in a FAISS binary index, "
                        "searched by Hamming distance")
    p.add_argument("--codes-only", action="store_true",
                   help="with --codes: no float index; float vectors only rescore candidates")
    p.add_argument("--rescore", type=int, help="with --codes: rescore this many Hamming "
                   "candidates with the float vectors (0: none; default: tuned to --recall)")


def register(sub: argparse._SubParsersAction) -> None:
    ops = sub.add_parser("index", help="index operations").add_subparsers(dest="op", required=True)
    p = ops.add_parser("build", help="build and publish an index (resumes an interrupted build)")
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True,
                   help="image folder, .jsonl dataset file, or WebDataset .tar shard(s)")
    p.add_argument("--out", type=Path, required=True, help="index root folder")
    p.add_argument("--precision", choices=("fp32", "int8"),
                   help="encode with the fastest of the engine's variants down to this precision "
                   "whose recall change is within a point of R@10 (export --variants int8)")
    _build_flags(p)
    p.set_defaults(func=_refusals(_build))

    p = ops.add_parser("add", help="add images to the current version (publishes a new one)")
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--index", type=Path, required=True, help="index root folder")
    p.add_argument("--images", type=Path, required=True)
    _build_flags(p)
    p.set_defaults(func=_refusals(_add))

    p = ops.add_parser("delete", help="delete ids (publishes a new version)")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("ids", type=int, nargs="+")
    p.set_defaults(func=_refusals(_delete))

    p = ops.add_parser("compact", help="drop deleted ids for good; retrain and retune")
    p.add_argument("--index", type=Path, required=True)
    p.set_defaults(func=_refusals(_compact))

    p = ops.add_parser("reindex", help="build a bundle for a new engine from the stored images")
    p.add_argument("--engine", type=Path, required=True, help="the new engine bundle")
    p.add_argument("--index", type=Path, required=True, help="the index root serving now")
    p.add_argument("--out", type=Path, required=True, help="a new index root")
    _build_flags(p)
    p.set_defaults(func=_refusals(_reindex))
