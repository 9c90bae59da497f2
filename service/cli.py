"""`xmodal serve`: run the HTTP service."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    # Before FAISS (and its OpenMP runtime) loads: OpenMP threads otherwise spin for a while
    # after each parallel region (a batched search), taking the cores the event loop and the
    # engine need; measured, it halved throughput at 8 clients (bench/results/serve.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from service.config import Settings
    from service.main import serve

    overrides = {k: v for k, v in vars(args).items()
                 if k in Settings.model_fields and v is not None}
    serve(Settings(**overrides))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (settings from XMODAL_* too)")
    p.add_argument("--engine-dir", type=Path)
    p.add_argument("--index-dir", type=Path)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=_serve)
