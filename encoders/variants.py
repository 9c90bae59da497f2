"""Reduced-precision variants carried beside an fp32 bundle's graphs, and which one to build with.

A variant holds the same towers at another precision (`image_encoder.int8.onnx`, ...). Its
embeddings are not the fp32 ones, only close to them, so export measures how close on the
calibration images: the lowest cosine to fp32 per embedding and, with captions, the recall
change of an index built with the variant and queried at fp32 (R@10, text -> image and image
-> text). An index build asked for `--precision int8` takes the fastest precision down to
int8 whose measured change is within bounds (`build_precision`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from encoders.bundle import EngineManifest, GraphSpec
from encoders.errors import BundleError
from encoders.recall import evaluate
from encoders.roles import IMAGE, TEXT

ORDER = ("fp32", "fp16", "int8")  # most precise first: `--precision int8` allows all three
MAX_RECALL_DROP = 1.0  # R@10 points, either direction
# lowest cosine to fp32 any one embedding may have: a sanity bound (an embedding turned by more
# than ~18 degrees is another model's), not a quality one; what users see is the recall change
MIN_COSINE = 0.95


def variant_file(name: str, precision: str) -> str:
    """`image_encoder.onnx` -> `image_encoder.int8.onnx`."""
    stem, _, suffix = name.rpartition(".")
    return f"{stem}.{precision}.{suffix}"


def _embeds(folder: Path, files: dict[str, str], calibration: Any, src: Any,
            threads: int) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    out = {}
    if IMAGE in files:
        image = ort.InferenceSession(str(folder / files[IMAGE]), options,
                                     providers=["CPUExecutionProvider"])
        out[IMAGE] = image.run(["image_embeds"], {"pixel_values": calibration.pixels(src.preprocess)})[0]
    if TEXT in files and calibration.texts:
        text = ort.InferenceSession(str(folder / files[TEXT]), options,
                                    providers=["CPUExecutionProvider"])
        out[TEXT] = np.concatenate([text.run(["text_embeds"], feed)[0]
                                    for feed in calibration.text_feeds(src.tokenizer)])
    return out


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return round(float(cos.min()), 5)


def check_variant(folder: Path, graphs: dict[str, GraphSpec], files: dict[str, str], src: Any,
                  calibration: Any, threads: int = 2) -> dict[str, Any]:
    """Cosine to fp32 per embedding and, with one caption per image, the recall change of an
    index built with the variant's graphs (`files`) and searched with fp32 queries."""
    if calibration is None:
        return {}
    base = _embeds(folder, {r: g.file for r, g in graphs.items()}, calibration, src, threads)
    low = _embeds(folder, files, calibration, src, threads)
    check: dict[str, Any] = {"min_cosine": {r: _min_cosine(low[r], base[r]) for r in low},
                             "images": len(calibration.images)}
    if calibration.paired:
        rows = list(range(len(calibration.texts)))
        fp32 = evaluate(base[IMAGE], base[TEXT], rows)
        # text -> image: fp32 text queries against the variant's image vectors; image -> text:
        # fp32 image queries against the variant's caption vectors (the caption index)
        built = {"text_to_image": evaluate(low[IMAGE], base[TEXT], rows)["text_to_image"],
                 "image_to_text": evaluate(base[IMAGE], low[TEXT], rows)["image_to_text"]}
        check["recall_at_10"] = {d: {"fp32": fp32[d]["R@10"], "variant": built[d]["R@10"]}
                                 for d in fp32}
        check["recall_change"] = {d: round(built[d]["R@10"] - fp32[d]["R@10"], 2) for d in fp32}
    return check


def within_bounds(check: dict[str, Any]) -> bool:
    """A variant whose measured recall change is within a point and whose every embedding stays
    within the cosine bound; what was not measured (no calibration, no captions) does not count
    against it."""
    return (all(c >= MIN_COSINE for c in check.get("min_cosine", {}).values())
            and all(d >= -MAX_RECALL_DROP for d in check.get("recall_change", {}).values()))


def image_speedup(variant: dict[str, Any]) -> float:
    """The variant's image tower throughput over fp32's, timed side by side at export."""
    record = variant["towers"][IMAGE].get("int8")
    if record is None:
        return 1.0
    rates = record["candidates"]
    return rates[record["chosen"]]["items_per_s"] / rates["fp32"]["items_per_s"]


def build_precision(manifest: EngineManifest, lowest: str) -> str:
    """The fastest precision from fp32 down to `lowest` that the bundle carries and whose
    measured change is within bounds; fp32 when no variant qualifies."""
    if lowest not in ORDER:
        raise ValueError(f"unknown precision {lowest!r}; one of {', '.join(ORDER)}")
    if manifest.precision != "fp32":
        raise BundleError(f"engine {manifest.engine_id} is an {manifest.precision} bundle; "
                          "--precision chooses among an fp32 bundle's variants")
    allowed = ORDER[: ORDER.index(lowest) + 1]
    if lowest != "fp32" and not set(manifest.variants) & set(allowed):
        raise BundleError(f"engine {manifest.engine_id} carries no variant down to {lowest}: "
                          f"export it with --variants {lowest} (and --calibration IMAGES)")
    options = {"fp32": 1.0} | {p: image_speedup(v) for p, v in manifest.variants.items()
                               if p in allowed and within_bounds(v.get("check", {}))}
    return max(options, key=options.get)
