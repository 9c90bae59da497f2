"""The (image embedding, text embedding) pairs a hash head trains on, and `xmodal codes train`.

Two sources, both the dual encoder's own embeddings, so the head learns on what the towers
output at serving time:
- a `lit` checkpoint: its cached frozen features (`training.features`, the cache training
  wrote) through its trained heads, over the data it trained on, less its holdout;
- any engine bundle and a dataset file: images and captions encoded by the engine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from encoders.engine import Engine

log = logging.getLogger(__name__)

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # image (n, d), text (n, d), group (n,)


@torch.no_grad()
def lit_pairs(checkpoint: str | Path, data: str | None = None, cache: str | Path | None = None) -> Pairs:
    """Every (image, caption) pair of a `lit` checkpoint's training data, embedded by it.

    `data`: the sources (default: the default preset's); `cache`: the feature cache
    (default: the checkpoint's `features/`). The checkpoint's holdout stays held out."""
    from encoders.checkpoint import load_checkpoint
    from training.lit_train import load_features
    from training.options import PRESETS, TrainConfig

    ckpt = load_checkpoint(checkpoint)
    preset = dict(PRESETS["default"])
    cfg = TrainConfig(**{**preset, "out": str(checkpoint), "progress": False,
                         "cache": str(cache) if cache else str(Path(checkpoint) / "features"),
                         **({"data": data} if data else {})})
    sources = [s.strip() for s in cfg.data.split(",") if s.strip()]
    holdout = ckpt.info.get("holdout") or ""
    feats, _ = load_features(ckpt.model, ckpt.tokenizer, cfg, sources, holdout)
    images = ckpt.model.embed_pooled(feats.pooled).numpy()
    rows = [(r, t) for r, caps in enumerate(feats.captions) for t in caps]
    text_rows = feats.texts.rows([t for _, t in rows])
    texts = ckpt.model.embed_text_pooled(torch.from_numpy(feats.texts.pooled[text_rows])).numpy()
    image_rows = np.asarray([r for r, _ in rows], np.int64)
    log.info("%d pairs over %d images (holdout %r)", len(rows), len(images), holdout)
    return images[image_rows], texts, feats.groups[image_rows]


def engine_pairs(engine: Engine, dataset: str | Path, batch: int = 64) -> Pairs:
    """Every (image, caption) pair of a dataset file's train split, embedded by `engine`."""
    from training.datasets import decode, load_dataset, split_of

    records = split_of(load_dataset(dataset), "train") or load_dataset(dataset)
    decoded = decode(records)
    images = np.concatenate([engine.encode_images(decoded.images[i:i + batch])
                             for i in range(0, len(decoded.images), batch)])
    owner = np.asarray([i for i, r in enumerate(decoded.records) for _ in r.captions], np.int64)
    captions = [c for r in decoded.records for c in r.captions]
    texts = np.concatenate([engine.encode_texts(captions[i:i + batch])
                            for i in range(0, len(captions), batch)])
    return images[owner], texts, owner
