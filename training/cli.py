"""`xmodal train`, `xmodal eval` and `xmodal data filter`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from encoders.captions import read_captions
from training import options


def _train(args: argparse.Namespace) -> int:
    from training.train import train

    cfg = options.config_from_args(args)
    train(cfg)
    print(f"checkpoint written to {cfg.out}")
    return 0


def _eval_set(args: argparse.Namespace) -> tuple[list, list[str], list[int], str]:
    """(images, texts, text -> image row) from a dataset file's split or a captioned folder."""
    if args.data is not None:
        from training.datasets import decode, load_dataset, split_of

        records = split_of(load_dataset(args.data), args.split)
        decoded = decode(records)
        if not decoded.rows:
            raise SystemExit(f"{args.data} has no readable images in split {args.split!r}")
        kept = decoded.kept(records)
        texts = [c for r in kept for c in r.captions]
        owner = [i for i, r in enumerate(kept) for _ in r.captions]
        return decoded.images, texts, owner, f"{args.data} ({args.split}), {decoded.skipped} unreadable"
    captions = read_captions(args.images)  # the index build's captions.jsonl
    if not captions:
        raise SystemExit(f"{args.images} has no captions.jsonl to evaluate against")
    files = sorted(captions)
    return [str(args.images / f) for f in files], [captions[f] for f in files], list(range(len(files))), str(args.images)


def _eval(args: argparse.Namespace) -> int:
    from encoders.engine import OnnxEngine
    from training.report import markdown_table, plot_recall_vs_k
    from training.rerank import evaluate_engine_reranked

    if (args.data is None) == (args.images is None):
        raise SystemExit("give exactly one of --data (a dataset file) or --images (a captioned folder)")
    images, texts, owner, name = _eval_set(args)
    result = evaluate_engine_reranked(OnnxEngine(args.engine), images, texts, owner, k=args.k,
                                      rerank=not args.no_rerank)
    result["data"] = name
    # stdout stays JSON with the dual encoder's figures at the top, as scripts read it
    print(json.dumps({**result["dual"], **result}, indent=1))
    table = markdown_table(result)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "recall.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "recall.md").write_text(table)
        plot_recall_vs_k(result, args.out / "recall_vs_k.png", name)
        print(f"written to {args.out}")
    return 0


def _filter(args: argparse.Namespace) -> int:
    from encoders.engine import OnnxEngine
    from training.data_filter import filter_dataset, report_json
    from training.datasets import DatasetError

    try:
        report = filter_dataset(OnnxEngine(args.engine), args.data, args.out,
                                args.min_probability, args.histogram)
    except (DatasetError, ValueError) as exc:
        raise SystemExit(f"xmodal data filter: {exc}") from exc
    print(report_json(report))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train towers (ITC) and, for fusion models, the reranker (ITM)")
    options.add_arguments(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="Recall@K of an engine, dual encoder and reranked")
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--data", type=Path, help="dataset file: Karpathy/COCO .json, .csv, .jsonl, .tar")
    p.add_argument("--split", default="test", help="split of --data to evaluate (default test)")
    p.add_argument("--images", type=Path, help="or: a folder with captions.jsonl")
    p.add_argument("--k", type=int, default=16, help="rerank depth: ITC top-k rescored by ITM")
    p.add_argument("--no-rerank", action="store_true", help="dual encoder only")
    p.add_argument("--out", type=Path, help="write recall.json, recall.md and recall_vs_k.png here")
    p.set_defaults(func=_eval)

    p = sub.add_parser("data", help="operations on dataset files")
    data = p.add_subparsers(dest="data_command", required=True)
    p = data.add_parser("filter", help="keep the (image, caption) pairs the reranker believes match")
    p.add_argument("--engine", type=Path, required=True, help="engine bundle with a reranker")
    p.add_argument("--data", type=Path, required=True,
                   help="dataset file: Karpathy/COCO .json, .csv, .jsonl, .tar shards")
    p.add_argument("--out", type=Path, required=True,
                   help="the filtered dataset: .json (Karpathy), .jsonl, .csv or .tar")
    p.add_argument("--min-probability", type=float, required=True,
                   help="keep pairs whose ITM match probability is at least this")
    p.add_argument("--histogram", type=Path,
                   help="histogram of the scores (default: <out stem>.scores.png beside --out)")
    p.set_defaults(func=_filter)
