"""`xmodal bench ...`: one subcommand per benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path


def _stages(args: argparse.Namespace) -> int:
    from bench.stages import main

    return main(args.engine, args.index, args.queries)


def _engine(args: argparse.Namespace) -> int:
    from bench.engine import main

    return main(args.model, args.checkpoint, tuple(args.batch), args.rounds, args.json,
                args.calibration, args.gemm_size, args.keep)


def _engine_report(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from bench.engine_report import main

    return main(args.runs, args.build, args.out, "xmodal " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


def _index(args: argparse.Namespace) -> int:
    if args.codes:
        from bench.codes import main as codes_main

        return codes_main(max(args.sizes), args.dim, args.codes, args.recall, args.queries,
                          args.out, args.json, args.engine, args.checkpoint, args.cache,
                          args.workdir, seconds=args.seconds, steps=args.hash_steps)
    from bench.index import main

    return main(tuple(args.sizes), args.dim, args.recall, args.queries, args.out, args.json,
                seconds=args.seconds)


def _update(args: argparse.Namespace) -> int:
    from bench.update import main

    return main(tuple(args.sizes), args.dim, tuple(args.tokens), args.before_max, args.queries,
                args.rounds, args.workdir, args.out, args.json)


def _build(args: argparse.Namespace) -> int:
    from bench.build import main

    return main(args.engine, args.images, args.count, args.batch_size, args.workers, args.json,
                tuple(args.token_pools), args.precision)


def _quality(args: argparse.Namespace) -> int:
    from bench.quality import main

    return main(args.engine, args.out, args.workdir, args.k, args.cache)


def _screenshot(args: argparse.Namespace) -> int:
    from bench.screenshot import main

    return main(args.url, args.query, args.out, args.rerank)


def _serve(args: argparse.Namespace) -> int:
    from bench.serve import main

    return main(args.engine, args.index, args.requests, args.seconds, tuple(args.concurrency),
                args.json, args.threads, args.out)


def _ab(args: argparse.Namespace) -> int:
    from bench.settings_ab import main, parse_variants

    try:
        variants = parse_variants(args.variant)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"xmodal bench ab: {exc}") from None
    return main(args.engine, args.index, variants, tuple(args.concurrency), args.rounds,
                args.requests, args.seconds, args.out, args.json)


def _soak(args: argparse.Namespace) -> int:
    from bench.soak import main

    return main(args.engine, args.index, args.clients, args.seconds, args.hostile, args.json,
                seed=args.seed)


def _own_model(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from bench.own_model import main

    command = "xmodal " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return main(tuple(args.kinds), args.count, args.steps, args.batch_size, args.out, args.json,
                args.workdir, command)


def _fuzz(args: argparse.Namespace) -> int:
    from bench.fuzz import main

    return main(args.examples)


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="name", required=True)
    p = bench.add_parser("stages", help="query latency per stage and the gain from batching")
    p.add_argument("--engine", type=Path, default=Path("var/demo/engine"))
    p.add_argument("--index", type=Path, default=Path("var/demo/index"))
    p.add_argument("--queries", type=int, default=256)
    p.set_defaults(func=_stages)

    p = bench.add_parser("engine", help="PyTorch eager vs ONNX Runtime fp32 vs int8 throughput, "
                         "against this machine's GEMM rates measured in the same run")
    p.add_argument("--model", default="small-clip", help="config to benchmark, randomly "
                   "initialised, or hf-clip-b32: a random-weight Hugging Face CLIPModel at "
                   "ViT-B/32 dimensions, imported as `xmodal export --hf` imports it")
    p.add_argument("--checkpoint", type=Path, help="benchmark a trained checkpoint instead "
                   "(and measure the int8 recall change on its quality sets)")
    p.add_argument("--calibration", type=Path, help="images (and captions.jsonl) static int8 "
                   "calibrates on (default: rendered scenes)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--gemm-size", type=int, default=2048, help="side of the GEMM-rate probe")
    p.add_argument("--keep", type=Path, help="write the exported bundle (fp32 + int8 variant) "
                   "here, e.g. for `bench build --precision int8`")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.set_defaults(func=_engine)

    p = bench.add_parser("engine-report", help="bench/results/engine.md from `bench engine` and "
                         "`bench build --precision int8` JSON files, each goal marked met or not")
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="`bench engine --json` files")
    p.add_argument("--build", type=Path, help="a `bench build --precision int8 --json` file")
    p.add_argument("--out", type=Path, default=Path("bench/results/engine.md"))
    p.set_defaults(func=_engine_report)

    p = bench.add_parser("index", help="Flat vs auto-chosen FAISS index: QPS and recall@10")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--recall", type=float, default=0.95, help="recall@10 target for tuning")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--out", type=Path, help="also write the markdown report here")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--seconds", type=float, default=2.0, help="time per QPS measurement")
    p.add_argument("--codes", type=int, nargs="+", choices=(64, 128, 256), metavar="BITS",
                   help="binary codes of these lengths against float search at the largest "
                        "size, and learnt vs sign codes on the default model's galleries")
    p.add_argument("--engine", type=Path, help="with --codes: the default model's engine bundle")
    p.add_argument("--checkpoint", type=Path, help="with --codes: its checkpoint (hash heads "
                                                   "train on its cached features)")
    p.add_argument("--cache", type=Path, help="with --codes: the feature cache (default: the "
                                              "checkpoint's features/)")
    p.add_argument("--workdir", type=Path, default=Path("var/bench-codes"),
                   help="with --codes: where evaluation sets are rendered")
    p.add_argument("--hash-steps", type=int, default=600, help="with --codes: training steps "
                                                                 "of each hash head")
    p.set_defaults(func=_index)

    p = bench.add_parser("update", help="add, delete and compact: segments against the version "
                                        "before them, in one run")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=256, help="embedding width (the default engine's)")
    p.add_argument("--tokens", type=int, nargs=2, default=[49, 128],
                   help="image tokens per image and their width (the default engine's)")
    p.add_argument("--before-max", type=int, default=200_000,
                   help="largest size the version before segments is run at (it loads the "
                        "whole index into memory to change it)")
    p.add_argument("--queries", type=int, default=200, help="single queries per QPS round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path("var/bench-update"))
    p.add_argument("--out", type=Path, help="also write the markdown report here")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    p.set_defaults(func=_update)

    p = bench.add_parser("build", help="index build throughput vs the engine's raw throughput")
    p.add_argument("--engine", type=Path, default=Path("var/demo/engine"))
    p.add_argument("--images", type=Path, help="image folder (default: render --count scenes)")
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, help="decode worker processes (default: cores - 1)")
    p.add_argument("--token-pools", type=int, nargs="*", default=[],
                   help="engines with a reranker: also rerank recall with tokens pooled to these")
    p.add_argument("--precision", choices=("int8",), help="also build at the precision "
                   "`xmodal index build --precision` chooses, after fp32, in the same run")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.set_defaults(func=_build)

    p = bench.add_parser("quality", help="the default model's quality on held-out sets, dual encoder vs reranked")
    p.add_argument("--engine", type=Path, default=Path("var/demo/engine"))
    p.add_argument("--out", type=Path, default=Path("bench/results/quality.md"))
    p.add_argument("--workdir", type=Path, default=Path("var/quality"), help="plots, JSON, emoji renders")
    p.add_argument("--k", type=int, default=16, help="rerank depth")
    p.add_argument("--cache", type=Path, default=Path("var/demo/checkpoint/features"),
                   help="feature cache the held-out-concepts model trains from (the demo's)")
    p.set_defaults(func=_quality)

    p = bench.add_parser("screenshot", help="the search page with a query and its results, as a PNG")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--query", default="red heart")
    p.add_argument("--rerank", action="store_true", help="tick the page's rerank box")
    p.add_argument("--out", type=Path, default=Path("bench/results/search-page.png"))
    p.set_defaults(func=_screenshot)

    p = bench.add_parser("serve", help="HTTP throughput and latency on loopback: overhead over the "
                         "raw engine, batching on vs off")
    p.add_argument("--engine", type=Path, default=Path("var/demo/engine"))
    p.add_argument("--index", type=Path, default=Path("var/demo/index"))
    p.add_argument("--requests", type=int, default=200, help="requests per row (at most)")
    p.add_argument("--seconds", type=float, default=10.0, help="time per row (at most)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--threads", type=int, help="ONNX Runtime threads, service and raw path")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--out", type=Path, help="also write the report as markdown here")
    p.set_defaults(func=_serve)

    p = bench.add_parser("ab", help="same-run A/B of service settings or code: throughput and "
                         "p50 per concurrency, medians of alternating rounds")
    p.add_argument("--variant", action="append", required=True, metavar='NAME[@CHECKOUT]=JSON',
                   help='a server\'s XMODAL_* settings, e.g. no_spin=\'{"spin_us": 0}\', run '
                   "from this checkout or from CHECKOUT, another one of this project; the "
                   "first is the baseline; twice or more")
    p.add_argument("--engine", type=Path, default=Path("var/demo/engine"))
    p.add_argument("--index", type=Path, default=Path("var/demo/index"))
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=1500, help="requests per run (at most)")
    p.add_argument("--seconds", type=float, default=4.0, help="time per run (at most)")
    p.add_argument("--out", type=Path, help="also write the markdown report here")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.set_defaults(func=_ab)

    p = bench.add_parser("soak", help="mixed valid and hostile load on loopback: errors and memory")
    p.add_argument("--engine", type=Path, default=Path("var/demo/engine"))
    p.add_argument("--index", type=Path, default=Path("var/demo/index"))
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--hostile", type=float, default=0.1, help="share of hostile requests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.set_defaults(func=_soak)

    p = bench.add_parser("own-model", help="a random-weight ViT-B/32 Hugging Face CLIPModel and "
                         "OpenCLIP folder: export, index build, fine-tuning at real size")
    p.add_argument("--kinds", nargs="+", choices=("clip", "open_clip"), default=["clip", "open_clip"])
    p.add_argument("--count", type=int, default=256, help="images the index build encodes")
    p.add_argument("--steps", type=int, default=50, help="fine-tuning steps (0: none)")
    p.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch")
    p.add_argument("--workdir", type=Path, help="where the temporary folders go (default: /tmp)")
    p.add_argument("--out", type=Path, help="also write the markdown report here "
                   "(bench/results/own-model.md)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.set_defaults(func=_own_model)

    p = bench.add_parser("fuzz", help="API fuzzing from the OpenAPI schema, longer than in CI")
    p.add_argument("--examples", type=int, default=500, help="examples per API operation")
    p.set_defaults(func=_fuzz)
