"""`xmodal export`: a checkpoint, Hugging Face or OpenCLIP folder becomes an engine bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# flag -> the folder kind it insists on (encoders.imported); --model takes any kind
_SOURCES = {"checkpoint": "checkpoint", "hf": "huggingface", "open_clip": "open_clip", "model": None}


def _export(args: argparse.Namespace) -> int:
    from encoders.calibration import read_calibration
    from encoders.errors import EncoderError
    from encoders.export import export_bundle
    from encoders.imported import load_exportable

    flag = next(name for name in _SOURCES if getattr(args, name) is not None)
    try:
        calibration = read_calibration(args.calibration) if args.calibration else None
        source = load_exportable(getattr(args, flag), _SOURCES[flag])
        manifest = export_bundle(source, args.out, args.precision, calibration=calibration,
                                 variants=tuple(args.variants))
    except (EncoderError, ValueError) as exc:  # a folder that is not what it should be: say so, no traceback
        raise SystemExit(f"xmodal export: {exc}") from None
    print(json.dumps({"engine_id": manifest.engine_id, "family": manifest.family,
                      "precision": manifest.precision, "similarity": manifest.similarity,
                      "score": manifest.score, "parity": manifest.parity,
                      "variants": {p: v["check"] for p, v in manifest.variants.items()}}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint or an imported model to an engine bundle")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="an xmodal training checkpoint folder")
    source.add_argument("--hf", type=Path, help="a Hugging Face save_pretrained folder: "
                        "CLIPModel, AlignModel, BlipForImageTextRetrieval or SiglipModel")
    source.add_argument("--open-clip", type=Path, help="an OpenCLIP folder: open_clip_config.json "
                        "and open_clip_model.safetensors or open_clip_pytorch_model.bin")
    source.add_argument("--model", type=Path, help="any of the three, its kind told by its files")
    p.add_argument("--out", type=Path, required=True, help="engine bundle folder (must not exist)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="fp16 for GPUs, int8 for CPUs (static or dynamic per tower, whichever "
                   "is faster within bounds)")
    p.add_argument("--calibration", type=Path, help="images of the collection (captions.jsonl "
                   "beside them: texts too) that static int8 fixes its ranges on, and that "
                   "measure a variant's recall change")
    p.add_argument("--variants", nargs="*", choices=("int8",), default=[],
                   help="reduced precisions to carry beside the fp32 graphs, for "
                   "`xmodal index build --precision`")
    p.set_defaults(func=_export)
