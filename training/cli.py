"""`xmodal train` and `xmodal eval`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training import options


def _train(args: argparse.Namespace) -> int:
    from training.train import train

    cfg = options.config_from_args(args)
    train(cfg)
    print(f"checkpoint written to {cfg.out}")
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a dual encoder on synthetic scenes (ITC)")
    options.add_arguments(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="Recall@K of an engine on a captioned image folder")
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True, help="folder with captions.jsonl")
    p.set_defaults(func=_eval)
