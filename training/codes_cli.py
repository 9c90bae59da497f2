"""`xmodal codes train`: a hash head on top of an engine bundle's towers (training.hashing)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from encoders.code_export import add_hash_head
    from training.hash_data import engine_pairs, lit_pairs
    from training.hashing import HashConfig, train_hash_heads

    if (args.checkpoint is None) == (args.data is None):
        raise SystemExit("give exactly one of --checkpoint (a lit checkpoint with its feature "
                         "cache) or --data (a dataset file encoded by the engine)")
    if args.checkpoint is not None:
        pairs = lit_pairs(args.checkpoint, args.sources, args.cache)
        source = f"checkpoint {args.checkpoint}"
    else:
        from encoders.engine import OnnxEngine

        pairs, source = engine_pairs(OnnxEngine(args.engine), args.data), f"dataset {args.data}"
    cfg = HashConfig(bits=args.bits, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                     seed=args.seed)
    heads, info = train_hash_heads(*pairs, cfg)
    manifest = add_hash_head(args.engine, args.out, heads.export(), {**info, "data": source})
    print(json.dumps({"engine": str(args.out), "engine_id": manifest.engine_id,
                      "bits": manifest.code_bits, "parity": manifest.codes["parity"],
                      "final_loss": info["final_loss"]}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ops = sub.add_parser("codes", help="binary hash codes for an engine").add_subparsers(
        dest="op", required=True)
    p = ops.add_parser("train", help="train a hash head on an engine's towers and write a new "
                                     "bundle whose graphs also output codes")
    p.add_argument("--engine", type=Path, required=True, help="the engine bundle to add codes to")
    p.add_argument("--out", type=Path, required=True, help="the new engine bundle")
    p.add_argument("--bits", type=int, default=128, choices=(64, 128, 256))
    p.add_argument("--checkpoint", type=Path, help="the lit checkpoint the engine was exported "
                   "from: train on its cached features (fast)")
    p.add_argument("--sources", help="with --checkpoint: training sources (default: the "
                   "default preset's)")
    p.add_argument("--cache", type=Path, help="with --checkpoint: the feature cache (default: "
                   "the checkpoint's features/)")
    p.add_argument("--data", type=Path, help="or: a dataset file whose train split the engine encodes")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train)
