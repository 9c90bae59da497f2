"""`xmodal bench build`: index build throughput against the engine's raw throughput.

Raw: the same images decoded and preprocessed up front, then only `encode_pixels` timed —
the most any build could do. Build: the checkpointed pipeline (decode in worker processes
overlapped with inference), with and without workers, on the same images in the same run.
Engine busy = time inside `encode_pixels` / wall time of the encode phase.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from encoders.engine import OnnxEngine
from encoders.errors import InputError
from encoders.preprocess import load_image
from index.build import BuildStats, build_index
from index.executors import default_workers
from index.sources import list_images

log = logging.getLogger(__name__)


def _readable(images: list[Path]) -> list:
    out = []
    for path in images:
        try:
            out.append(load_image(path))
        except InputError:  # the build skips these too
            log.info("leaving out unreadable %s", path)
    return out


def raw_throughput(engine: OnnxEngine, images: list[Path], batch_size: int) -> float:
    pixels = engine.pixels(_readable(images))
    engine.encode_pixels(pixels[:batch_size])  # warm-up: first run allocates
    started = time.perf_counter()
    for start in range(0, len(pixels), batch_size):
        engine.encode_pixels(pixels[start : start + batch_size])
    return len(pixels) / (time.perf_counter() - started)


def token_pool_recall(engine: OnnxEngine, images: Path, pools: tuple[int, ...],
                      k: int = 16) -> list[dict]:
    """Rerank recall (text -> image, ITM over the ITC top-k) with the tokens as the bundle
    stores them: fp16 in full, and pooled to each of `pools` then expanded back."""
    from encoders.captions import read_captions
    from index.tokens import expand_tokens, pool_tokens
    from training.evaluate import engine_embeddings
    from training.rerank import evaluate_reranked

    captions = read_captions(images)
    names = sorted(captions)
    texts = [captions[n] for n in names]
    embeds, tokens, text_embeds = engine_embeddings(engine, _readable([images / n for n in names]),
                                                    texts)
    if tokens is None:
        raise InputError(f"engine {engine.engine_id} has no reranker: no token cost to measure")
    rows = []
    for pool in (None, *pools):
        stored = pool_tokens(tokens.astype(np.float16), pool).astype(np.float16)
        fed = expand_tokens(stored.astype(np.float32), tokens.shape[1])

        def scorer(image_rows: np.ndarray, text_rows: np.ndarray, fed: np.ndarray = fed) -> np.ndarray:
            return np.concatenate([engine.score(fed[image_rows[i:i + 256]],
                                                [texts[t] for t in text_rows[i:i + 256]])
                                   for i in range(0, len(image_rows), 256)])

        result = evaluate_reranked(embeds, text_embeds, list(range(len(texts))), scorer, k)
        rows.append({"tokens": stored.shape[1], "bytes_per_image": int(np.prod(stored.shape[1:]) * 2),
                     "dual": result["dual"]["text_to_image"],
                     "rerank": result["itm+itc"]["text_to_image"]})
    return rows


def _build_rows(engine: OnnxEngine, images: Path, paths: list[Path], batch_size: int,
                workers: list[int], work: Path) -> list[dict]:
    """Raw engine throughput, then the index build with each decode worker count."""
    raw = raw_throughput(engine, paths, batch_size)
    label = f" at {engine.precision}"
    rows = [{"pipeline": f"engine only (pre-decoded pixels){label}", "images_per_s": raw,
             "of_raw": 1.0, "engine_busy": 1.0, "precision": engine.precision}]
    for n_workers in workers:
        stats: list[BuildStats] = []
        started = time.perf_counter()
        build_index(engine, images, work / f"index-{engine.precision}-{n_workers}", batch_size,
                    stats=stats, workers=n_workers, factory="Flat")
        total = time.perf_counter() - started
        s = stats[0]
        rows.append({"pipeline": f"index build{label}, {n_workers} decode workers",
                     "images_per_s": s.images_per_s, "of_raw": s.images_per_s / raw,
                     "engine_busy": s.inference_s / s.seconds, "precision": engine.precision,
                     "workers": n_workers, "end_to_end_images_per_s": len(paths) / total})
    return rows


def main(engine_dir: Path, images: Path | None, count: int, batch_size: int,
         workers: int | None, json_out: Path | None,
         pools: tuple[int, ...] = (), precision: str | None = None) -> int:
    """`precision`: also build with the engine at the precision `xmodal index build
    --precision` would choose, in the same run, after fp32."""
    from encoders.variants import build_precision

    engine = OnnxEngine(engine_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if images is None:
            from training.synthetic import write_gallery

            images = write_gallery(Path(tmp) / "images", count, seed=11, size=256)
        paths = list_images(images)
        n_workers = workers if workers is not None else default_workers()
        rows = _build_rows(engine, images, paths, batch_size,
                           [n_workers] if precision else [n_workers, 0], Path(tmp))
        if precision:
            chosen = build_precision(engine.manifest, precision)
            asked = _build_rows(OnnxEngine(engine_dir, precision=chosen), images, paths,
                                batch_size, [n_workers], Path(tmp))
            rows += [r | {"asked": precision} for r in asked]
    lines = [(f"# xmodal bench build ({len(paths)} images, batch {batch_size}, "
             f"{os.cpu_count()} CPU cores, engine {engine.engine_id})"), "",
             "| pipeline | images/s | of raw engine | engine busy | incl. FAISS + publish |",
             "|---|---|---|---|---|"]
    for r in rows:
        e2e = f"{r['end_to_end_images_per_s']:.1f}" if "end_to_end_images_per_s" in r else "-"
        lines.append(f"| {r['pipeline']} | {r['images_per_s']:.1f} | {r['of_raw']:.0%} | "
                     f"{r['engine_busy']:.0%} | {e2e} |")
    if pools:
        with tempfile.TemporaryDirectory() as tmp:
            if images is None or not (images / "captions.jsonl").is_file():
                from training.synthetic import write_gallery

                images = write_gallery(Path(tmp) / "captioned", min(count, 500), seed=21)
            pooled = token_pool_recall(engine, images, pools)
        lines += ["", ("Reranker token store: recall cost of pooling (text -> image, ITM+ITC "
                  "over the ITC top-16)"), "",
                  "| tokens per image | bytes per image | dual R@1 | rerank R@1 | rerank R@5 |",
                  "|---|---|---|---|---|"]
        for r in pooled:
            lines.append(f"| {r['tokens']} | {r['bytes_per_image']:,} | {r['dual']['R@1']} | "
                         f"{r['rerank']['R@1']} | {r['rerank']['R@5']} |")
        rows.append({"token_pooling": pooled})
    print("\n".join(lines))
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0
