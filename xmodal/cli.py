"""`xmodal <command>`: train, export, index, eval, serve, bench, demo.

Each command imports its layer only when it runs, so `xmodal serve` works from an install
with the `serve` extra alone.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from training import options as train_options


def _train(args: argparse.Namespace) -> int:
    from training.options import config_from_args
    from training.train import train

    cfg = config_from_args(args)
    train(cfg)
    print(f"checkpoint written to {cfg.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from encoders.checkpoint import load_checkpoint
    from encoders.export import export_bundle

    manifest = export_bundle(load_checkpoint(args.checkpoint).exportable(), args.out, args.precision)
    print(json.dumps({"engine_id": manifest.engine_id, "precision": manifest.precision,
                      "parity": manifest.parity}, indent=2))
    return 0


def _index_build(args: argparse.Namespace) -> int:
    from encoders.engine import OnnxEngine
    from index.build import build_index

    manifest = build_index(OnnxEngine(args.engine), args.images, args.out, args.batch_size)
    print(json.dumps({"version": manifest.version, "count": manifest.count,
                      "skipped": manifest.skipped, "engine_id": manifest.engine_id}, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from encoders.engine import OnnxEngine
    from index.build import read_captions
    from training.evaluate import evaluate_engine

    captions = read_captions(args.images)
    if not captions:
        raise SystemExit(f"{args.images} has no captions.jsonl to evaluate against")
    files = sorted(captions)
    paths = [str(args.images / f) for f in files]
    result = evaluate_engine(OnnxEngine(args.engine), paths, [captions[f] for f in files],
                             list(range(len(files))))
    print(json.dumps(result, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from service.config import Settings
    from service.main import serve

    overrides = {k: v for k, v in vars(args).items()
                 if k in Settings.model_fields and v is not None}
    serve(Settings(**overrides))
    return 0


def _bench_serving(args: argparse.Namespace) -> int:
    from bench.serving import main as bench_main

    return bench_main(args.engine, args.index, args.queries)


def _bench_engine(args: argparse.Namespace) -> int:
    from bench.engine import main as bench_main

    return bench_main(args.model, args.checkpoint, tuple(args.batch), args.rounds, args.json,
                      args.gallery)


def _demo(args: argparse.Namespace) -> int:
    from xmodal.demo import prepare

    paths = prepare(args.workdir, steps=args.steps)
    print(f"demo ready: engine {paths.engine}, index {paths.index}")
    if args.no_serve:
        return 0
    from service.config import Settings
    from service.main import serve

    serve(Settings(engine_dir=paths.engine, index_dir=paths.index))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmodal", description="Cross-modal retrieval.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a dual encoder on synthetic scenes (ITC)")
    train_options.add_arguments(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("export", help="export a checkpoint to an engine bundle")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="engine bundle folder (must not exist)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="fp16 for GPUs, int8 (dynamic quantisation) for CPUs")
    p.set_defaults(func=_export)

    index = sub.add_parser("index", help="index operations").add_subparsers(dest="op", required=True)
    p = index.add_parser("build", help="build and publish an index over a folder of images")
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="index root folder")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=_index_build)

    p = sub.add_parser("eval", help="Recall@K of an engine on a captioned image folder")
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True, help="folder with captions.jsonl")
    p.set_defaults(func=_eval)

    p = sub.add_parser("serve", help="run the HTTP service (settings from XMODAL_* too)")
    p.add_argument("--engine-dir", type=Path)
    p.add_argument("--index-dir", type=Path)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=_serve)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="name", required=True)
    p = bench.add_parser("serving", help="query latency per stage and the gain from batching")
    p.add_argument("--engine", type=Path, default=Path("var/demo/engine"))
    p.add_argument("--index", type=Path, default=Path("var/demo/index"))
    p.add_argument("--queries", type=int, default=256)
    p.set_defaults(func=_bench_serving)

    p = bench.add_parser("engine", help="PyTorch eager vs ONNX Runtime fp32 vs int8 throughput")
    p.add_argument("--model", default="small-clip", help="config to benchmark, randomly initialised")
    p.add_argument("--checkpoint", type=Path, help="benchmark a trained checkpoint instead")
    p.add_argument("--gallery", type=Path, help="with --checkpoint: also Recall@K, fp32 vs int8")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.set_defaults(func=_bench_engine)

    p = sub.add_parser("demo", help="prepare the demo gallery, model and index, then serve")
    p.add_argument("--workdir", type=Path, default=Path("var/demo"))
    p.add_argument("--steps", type=int, default=300, help="training steps for the demo model")
    p.add_argument("--no-serve", action="store_true", help="prepare only")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)
