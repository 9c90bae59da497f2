"""`xmodal export`: a checkpoint becomes an engine bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _export(args: argparse.Namespace) -> int:
    from encoders.checkpoint import load_checkpoint
    from encoders.export import export_bundle

    manifest = export_bundle(load_checkpoint(args.checkpoint).exportable(), args.out, args.precision)
    print(json.dumps({"engine_id": manifest.engine_id, "precision": manifest.precision,
                      "parity": manifest.parity}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to an engine bundle")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="engine bundle folder (must not exist)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="fp16 for GPUs, int8 (dynamic quantisation) for CPUs")
    p.set_defaults(func=_export)
