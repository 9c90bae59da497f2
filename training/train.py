"""Training loop for the dual encoder with the ITC objective; `main(argv)` is the CLI edge.

AdamW with linear warmup and cosine decay, gradient clipping, a JSONL log of every step,
and a safetensors checkpoint with the config needed to rebuild the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from encoders.checkpoint import Checkpoint, save_checkpoint
from encoders.clip import DualEncoder
from encoders.config import load_config
from encoders.preprocess import ImagePreprocess, preprocess
from encoders.tokenizer import train_word_tokenizer
from training import synthetic
from training.losses import itc_loss
from training.options import TrainConfig, add_arguments, config_from_args

log = logging.getLogger(__name__)


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _synthetic_data(cfg: TrainConfig, spec: ImagePreprocess) -> tuple[np.ndarray, list[str]]:
    scenes = list(synthetic.scenes(cfg.train_size, seed=cfg.seed))
    images = [synthetic.render(s, cfg.render_size) for s in scenes]
    return preprocess(images, spec), [s.caption for s in scenes]


def train(cfg: TrainConfig) -> Checkpoint:
    """Train a dual encoder on synthetic scenes and write the checkpoint to `cfg.out`."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model_cfg = load_config(cfg.model)
    spec = ImagePreprocess(size=model_cfg.vision.image_size)
    pixels, captions = _synthetic_data(cfg, spec)
    tokenizer = train_word_tokenizer(captions, model_cfg.text.context_length)
    model_cfg = dataclasses.replace(
        model_cfg, text=dataclasses.replace(model_cfg.text, vocab_size=tokenizer.vocab_size)
    )
    ids, mask = tokenizer.encode(captions)
    model = DualEncoder(model_cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(out / "log.jsonl", "w") as log_file:
        for step in range(cfg.steps):
            batch = rng.sample(range(len(captions)), cfg.batch_size)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, cfg)
            loss = itc_loss(**model(torch.from_numpy(pixels[batch]),
                                    torch.from_numpy(ids[batch]), torch.from_numpy(mask[batch])))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            record = {"step": step, "loss": round(loss.item(), 5), "lr": _lr_at(step, cfg)}
            log_file.write(json.dumps(record) + "\n")
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                log.info("step %d/%d loss %.4f (%.0fs)", step + 1, cfg.steps, loss.item(),
                         time.perf_counter() - started)
    info = {
        "data": f"synthetic shapes, {cfg.train_size} scenes, seed {cfg.seed}",
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "final_loss": round(loss.item(), 5),
        "seconds": round(time.perf_counter() - started, 1),
    }
    ckpt = Checkpoint(model.eval(), tokenizer, spec, info)
    save_checkpoint(out, ckpt)
    return ckpt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xmodal train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(argv))
    train(cfg)
    print(f"checkpoint written to {cfg.out}")
    return 0
