"""A tiny engine with a hash head, trained on a rendered gallery's own pairs: what the codes
tests of training, index and service build on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from encoders.code_export import add_hash_head
from encoders.engine import OnnxEngine
from training.hashing import HashConfig, HashHeads, train_hash_heads


def gallery_pairs(engine: OnnxEngine, gallery: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image embeddings, caption embeddings, group per pair) of a captioned folder."""
    rows = [json.loads(line) for line in (gallery / "captions.jsonl").read_text().splitlines()]
    images = [Image.open(gallery / row["file"]).convert("RGB") for row in rows]
    captions = [row["caption"] for row in rows]
    return (engine.encode_images(images), engine.encode_texts(captions),
            np.asarray([hash(c) % 10**6 for c in captions]))  # one group per distinct caption


def code_engine(engine: OnnxEngine, gallery: Path, out: Path, bits: int = 64,
                steps: int = 60) -> tuple[OnnxEngine, HashHeads]:
    heads, info = train_hash_heads(*gallery_pairs(engine, gallery),
                                   HashConfig(bits=bits, steps=steps, batch_size=64))
    add_hash_head(engine.path, out, heads.export(), info)
    return OnnxEngine(out, threads=1), heads
