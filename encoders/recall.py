"""Recall@K in both directions from embeddings (numpy only): training's evaluation and the
recall change export measures for a reduced-precision variant use this one implementation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (1, 5, 10)


def recall_at_k(scores: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int] = KS) -> dict:
    """scores (queries, items); a query is a hit at K if any relevant item is in its top K."""
    order = np.argsort(-scores, axis=1)
    out = {}
    for k in ks:
        hits = [bool(relevant[q] & set(order[q, :k].tolist())) for q in range(len(relevant))]
        out[f"R@{k}"] = round(100.0 * float(np.mean(hits)), 2)
    return out


def evaluate(image_embeds: np.ndarray, text_embeds: np.ndarray, text_to_image: Sequence[int]) -> dict:
    """Text->image and image->text Recall@K; `text_to_image[t]` is caption t's image row."""
    scores = text_embeds @ image_embeds.T  # (texts, images)
    captions_of: list[set[int]] = [set() for _ in range(len(image_embeds))]
    for t, i in enumerate(text_to_image):
        captions_of[i].add(t)
    return {
        "text_to_image": recall_at_k(scores, [{i} for i in text_to_image]),
        "image_to_text": recall_at_k(scores.T, captions_of),
    }
