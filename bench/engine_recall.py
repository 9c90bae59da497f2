"""The int8 variant's recall change on the default model's quality sets, beside fp32.

Two ways an int8 engine is used, both measured from the same embeddings: an index built at
int8 and searched with fp32 queries (`xmodal index build --precision int8`), and int8 through
and through (a service running the variant). Recall@10 in both directions, in points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from encoders.engine import OnnxEngine
from encoders.recall import evaluate
from training.evaluate import engine_embeddings


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return round(float((a * b).sum(axis=1).min()), 5)


def precision_recall(bundle: Path, sets: list[Any], threads: int = 2) -> list[dict[str, Any]]:
    """Per quality set: R@10 at fp32, of an int8-built index, of int8 throughout, and the
    lowest cosine of an int8 embedding to its fp32 one."""
    engines = {p: OnnxEngine(bundle, threads=threads, precision=p) for p in ("fp32", "int8")}
    rows = []
    for data in sets:
        texts = [t for t, o in zip(data.texts, data.owner, strict=True) if o >= 0]
        owner = [o for o in data.owner if o >= 0]
        (i32, _, t32), (i8, _, t8) = (engine_embeddings(e, data.images, texts) for e in engines.values())
        fp32, all8 = evaluate(i32, t32, owner), evaluate(i8, t8, owner)
        built = {"text_to_image": evaluate(i8, t32, owner)["text_to_image"],
                 "image_to_text": evaluate(i32, t8, owner)["image_to_text"]}
        rows.append({"set": data.name, "images": len(i32), "texts": len(t32),
                     "min_cosine": {"image": _cosine(i8, i32), "text": _cosine(t8, t32)},
                     "R@10": {d: {"fp32": fp32[d]["R@10"], "int8_index": built[d]["R@10"],
                                  "int8": all8[d]["R@10"]} for d in fp32}})
    return rows


def default_sets() -> list[Any]:
    """The quality sets the default model is measured on that are cheap to make: Twemoji
    concepts held out of training, and the compositional test scenes."""
    from bench import quality_sets

    return [quality_sets.held_out_concepts(), quality_sets.compositional(scenes=100)]
