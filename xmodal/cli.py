"""`xmodal <command>`: the one entry point; each layer registers its own commands.

Command modules import their layer only when a command runs, so `xmodal serve` works from
an install with the `serve` extra alone and `xmodal --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bench import cli as bench_cli
from encoders import cli as encoders_cli
from index import cli as index_cli
from service import cli as service_cli
from training import cli as training_cli
from training import codes_cli


def _demo(args: argparse.Namespace) -> int:
    from xmodal.demo import prepare

    paths = prepare(args.workdir, steps=args.steps, kind=args.model)
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
    for module in (training_cli, codes_cli, encoders_cli, index_cli, service_cli, bench_cli):
        module.register(sub)
    p = sub.add_parser("demo", help="prepare the demo gallery, model and index, then serve")
    p.add_argument("--workdir", type=Path, default=Path("var/demo"))
    p.add_argument("--model", choices=("default", "shapes"), default="default",
                   help="default: the --preset default model over the Twemoji gallery; "
                        "shapes: a tiny model over rendered shapes (quick)")
    p.add_argument("--steps", type=int, default=300, help="training steps of the shapes model")
    p.add_argument("--no-serve", action="store_true", help="prepare only")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)
