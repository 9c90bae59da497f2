"""Training settings and their command-line flags (torch-free, so `xmodal --help` stays fast)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrainConfig:
    out: Path  # checkpoint folder to write
    model: str = "tiny-clip"  # registry name or JSON path
    steps: int = 300
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 30
    grad_clip: float = 1.0
    train_size: int = 4000  # synthetic scenes rendered for training
    render_size: int = 128  # pixels per rendered scene, before preprocessing
    seed: int = 0
    log_every: int = 25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per `TrainConfig` field, `--out` required, the rest defaulting to the dataclass."""
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    for f in dataclasses.fields(TrainConfig):
        if f.name != "out":
            parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default),
                                default=f.default)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
