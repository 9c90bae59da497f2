"""`xmodal bench ...`: one subcommand per benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path


def _serving(args: argparse.Namespace) -> int:
    from bench.serving import main

    return main(args.engine, args.index, args.queries)


def _engine(args: argparse.Namespace) -> int:
    from bench.engine import main

    return main(args.model, args.checkpoint, tuple(args.batch), args.rounds, args.json,
                args.gallery)


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="name", required=True)
    p = bench.add_parser("serving", help="query latency per stage and the gain from batching")
    p.add_argument("--engine", type=Path, default=Path("var/demo/engine"))
    p.add_argument("--index", type=Path, default=Path("var/demo/index"))
    p.add_argument("--queries", type=int, default=256)
    p.set_defaults(func=_serving)

    p = bench.add_parser("engine", help="PyTorch eager vs ONNX Runtime fp32 vs int8 throughput")
    p.add_argument("--model", default="small-clip", help="config to benchmark, randomly initialised")
    p.add_argument("--checkpoint", type=Path, help="benchmark a trained checkpoint instead")
    p.add_argument("--gallery", type=Path, help="with --checkpoint: also Recall@K, fp32 vs int8")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.set_defaults(func=_engine)
