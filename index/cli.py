"""`xmodal index ...`: build and maintain index bundles."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from encoders.engine import OnnxEngine
    from index.build import build_index

    manifest = build_index(OnnxEngine(args.engine), args.images, args.out, args.batch_size)
    print(json.dumps({"version": manifest.version, "count": manifest.count,
                      "skipped": manifest.skipped, "engine_id": manifest.engine_id}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ops = sub.add_parser("index", help="index operations").add_subparsers(dest="op", required=True)
    p = ops.add_parser("build", help="build and publish an index over a folder of images")
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="index root folder")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=_build)
