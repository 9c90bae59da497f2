"""Retrieval evaluation: Recall@K in both directions from embeddings (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from encoders.engine import Engine
from encoders.preprocess import load_image
from encoders.recall import KS, evaluate, recall_at_k  # noqa: F401 - re-exported


def evaluate_engine(engine: Engine, image_paths: Sequence[str], captions: Sequence[str],
                    text_to_image: Sequence[int], batch_size: int = 64) -> dict:
    images = np.concatenate([
        engine.encode_images([load_image(p) for p in image_paths[i:i + batch_size]])
        for i in range(0, len(image_paths), batch_size)
    ])
    texts = np.concatenate([
        engine.encode_texts(captions[i:i + batch_size]) for i in range(0, len(captions), batch_size)
    ])
    return evaluate(images, texts, text_to_image)


def engine_embeddings(engine: Engine, images: Sequence, texts: Sequence[str], batch_size: int = 64
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Image embeddings, image tokens (None without a reranker) and text embeddings."""
    if not len(images) or not len(texts):
        raise ValueError(f"nothing to evaluate: {len(images)} images, {len(texts)} texts")
    embeds, tokens = [], []
    for i in range(0, len(images), batch_size):
        chunk = [load_image(x) if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__") else x
                 for x in images[i:i + batch_size]]
        out = engine.encode_pixels(engine.pixels(chunk))
        embeds.append(out["image_embeds"])
        tokens.append(out.get("image_tokens"))
    texts_out = np.concatenate([engine.encode_texts(texts[i:i + batch_size])
                                for i in range(0, len(texts), batch_size)])
    has_tokens = engine.has_reranker and all(t is not None for t in tokens)
    return np.concatenate(embeds), (np.concatenate(tokens) if has_tokens else None), texts_out
