"""`xmodal bench quality` (`make quality`): the default model's retrieval quality, each figure on
data its model never trained on unless the table says so, dual encoder vs reranked.

Sets (bench.quality_sets): the Twemoji gallery (trained on), Twemoji concepts held out of
training (measured on a model trained by the same preset without them, made here if missing),
Twemoji -> Noto (a style never trained on), the compositional test split (held-out bindings
and triples), scikit-image's sample photos; then the ITM head's calibration on held-out pairs
and the engine's speed; then the MLM ablation (bench.quality_mlm) and vector / keyword /
hybrid search on literal-tag queries (bench.quality_hybrid). Every split is checked against the engine's training provenance first
(training.leaks): a leaking split stops the report. Every figure is computed here.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench import quality_sets as sets
from bench.quality_hybrid import hybrid_rows
from bench.quality_mlm import mlm_rows
from encoders.engine import OnnxEngine
from encoders.preprocess import load_image
from training.calibration import plot_reliability, reliability
from training.evaluate import engine_embeddings
from training.leaks import read_provenance
from training.report import markdown_table, plot_recall_vs_k
from training.rerank import evaluate_engine_reranked, sampled

log = logging.getLogger(__name__)

GOALS = {"gallery_r10": 90, "gallery_r1": 50, "concepts_r10": 75, "noto_r10": 50,
         "rerank_gain": 15, "ece": 0.05, "images_per_s": 100, "texts_per_s": 500}


def _held_out_engine(workdir: Path, cache: Path) -> Path:
    """The default preset trained without the test concepts (heads only), exported."""
    from encoders.checkpoint import WEIGHTS, load_checkpoint
    from encoders.export import export_bundle
    from training.options import PRESETS
    from training.train import TrainConfig, train

    root = workdir / "holdout-test"
    if not (root / "checkpoint" / WEIGHTS).is_file():
        settings = {**PRESETS["default"], "holdout": "test", "rerank_steps": 0, "progress": False}
        train(TrainConfig(out=root / "checkpoint", cache=str(cache), **settings))
    if not (root / "engine").is_dir():
        export_bundle(load_checkpoint(root / "checkpoint").exportable(), root / "engine")
    return root / "engine"


# queries per direction: a rerank costs k pairs per query, and the reranker scored 137 pairs/s
# on 2 cores (measured beside another job)
SAMPLE = 400
CURVE = (1, 4, 16)


def _encode(engine: OnnxEngine, data: sets.EvalSet) -> tuple:
    """The set's leak check, then (image embeddings, image tokens, text embeddings), encoded once
    per report: the recall table, the calibration pairs and the plain names share them."""
    sets.check(engine, data.held_out)
    return engine_embeddings(engine, data.images, data.texts)


def _measure(engine: OnnxEngine, data: sets.EvalSet, encoded: tuple, k: int, workdir: Path,
             key: str) -> dict:
    # a model trained without its reranker stage (the held-out-concepts one) shows no rerank rows
    trained_reranker = bool(engine.manifest.training.get("rerank_steps", 1))
    result = evaluate_engine_reranked(engine, data.images, data.texts, data.owner, k=k,
                                      rerank=trained_reranker, sample=SAMPLE,
                                      curve_ks=tuple(d for d in CURVE if d <= k),
                                      embeddings=encoded)
    (workdir / f"{key}.json").write_text(json.dumps(result, indent=1) + "\n")
    plot_recall_vs_k(result, workdir / f"{key}_recall_vs_k.png", data.name)
    return result


def _trained_on(engine: OnnxEngine) -> str:
    return "; ".join(read_provenance(engine.path).sources)


def _photo_rows(data: sets.EvalSet, encoded: tuple) -> tuple[list[str], int]:
    """One line per query: what it should find, what came first; and how many came first."""
    images, _, texts = encoded
    order = np.argsort(-(texts @ images.T), axis=1)
    lines, right = ["| query | photo | first result | rank of the photo |", "| --- | --- | --- | --- |"], 0
    for q, text in enumerate(data.texts):
        rank = int(np.flatnonzero(order[q] == data.owner[q])[0]) + 1
        right += rank == 1
        lines.append(f"| {text} | {Path(data.images[data.owner[q]]).name} | "
                     f"{Path(data.images[order[q, 0]]).name} | {rank} |")
    return lines, right


def _plain_names(engine: OnnxEngine, data: sets.EvalSet, encoded: tuple, k: int
                 ) -> tuple[list[str], dict]:
    """Each plain name's first result in the whole gallery, plain and reranked (top-k by ITM)."""
    images, tokens, _ = encoded
    texts = engine.encode_texts(list(sets.PLAIN_NAMES))
    order = np.argsort(-(texts @ images.T), axis=1)
    lines = ["| query | first result | first result, reranked |", "| --- | --- | --- |"]
    hits = {"top1": 0, "top5": 0, "reranked_top1": 0}
    for q, name in enumerate(sets.PLAIN_NAMES):
        head = order[q, :k]
        probs = engine.score(tokens[head], [name] * len(head))
        reranked = head[np.argsort(-probs, kind="stable")]
        first, first_reranked = data.texts[head[0]], data.texts[reranked[0]]
        hits["top1"] += first == name
        hits["top5"] += name in [data.texts[i] for i in head[:5]]
        hits["reranked_top1"] += first_reranked == name
        lines.append(f"| {name} | {first} | {first_reranked} |")
    return lines, hits


def _pairs(engine: OnnxEngine, data: sets.EvalSet, encoded: tuple, negatives_per_image: int = 3
           ) -> tuple[np.ndarray, np.ndarray]:
    """Match probabilities and labels: each image with its text, and with its hardest wrong
    texts by the dual encoder (what a rerank meets) -- or its listed distractors."""
    images, tokens, texts = encoded
    owner = np.asarray(data.owner)
    sims = images @ texts.T
    probs, labels = [], []
    for i in sampled(np.arange(len(images)), SAMPLE):
        own = np.flatnonzero(owner == i)
        wrong = [int(t) for t in np.argsort(-sims[i]) if owner[t] != i][:negatives_per_image]
        rows = [*own[:1], *wrong]
        probs.append(engine.score(tokens[[i] * len(rows)], [data.texts[t] for t in rows]))
        labels.append([1] + [0] * len(wrong))
    return np.concatenate(probs), np.concatenate(labels)


def _speed(engine: OnnxEngine, rounds: int = 5) -> dict:
    """Images/s and texts/s at batch 32 through ONNX Runtime (best of `rounds`)."""
    from training.emoji import twemoji

    images = [load_image(e.png) for e in twemoji()[:32]]
    texts = [e.names[0] for e in twemoji()[:32]]
    pixels = engine.pixels(images)
    best = {"images_per_s": 0.0, "texts_per_s": 0.0}
    for _ in range(rounds):
        start = time.perf_counter()
        engine.encode_pixels(pixels)
        best["images_per_s"] = max(best["images_per_s"], 32 / (time.perf_counter() - start))
        start = time.perf_counter()
        engine.encode_texts(texts)
        best["texts_per_s"] = max(best["texts_per_s"], 32 / (time.perf_counter() - start))
    return {k: round(v, 1) for k, v in best.items()}


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _best_r10(result: dict) -> float:
    return max(result[key]["text_to_image"]["R@10"] for key in ("dual", "itm", "itm+itc") if key in result)


def _goals(gallery: dict, concepts: dict, noto: dict, comp: dict, photos: tuple[int, int],
           curves: dict, speed: dict) -> list[str]:
    """One line per goal: the figure it is judged on and whether it is met."""
    g = GOALS
    gallery_r1 = gallery["dual"]["text_to_image"]["R@1"]
    gain = max(comp[r]["text_to_image"]["R@1"] for r in ("itm", "itm+itc")) - comp["dual"]["text_to_image"]["R@1"]
    ece = max(c["ece"] for c in curves.values())
    fast = speed["images_per_s"] >= g["images_per_s"] and speed["texts_per_s"] >= g["texts_per_s"]
    return [
        (f"- Twemoji gallery t2i R@10 >= {g['gallery_r10']}: best {_best_r10(gallery):.1f}; R@1 >= "
         f"{g['gallery_r1']}: dual {gallery_r1:.1f} -> "
         f"{_met(_best_r10(gallery) >= g['gallery_r10'] and gallery_r1 >= g['gallery_r1'])}"),
        (f"- held-out concepts t2i R@10 >= {g['concepts_r10']}: best {_best_r10(concepts):.1f} -> "
         f"{_met(_best_r10(concepts) >= g['concepts_r10'])}"),
        (f"- Twemoji -> Noto t2i R@10 >= {g['noto_r10']}: best {_best_r10(noto):.1f} -> "
         f"{_met(_best_r10(noto) >= g['noto_r10'])}"),
        (f"- compositional, reranked t2i R@1 >= dual + {g['rerank_gain']}: {gain:+.1f} -> "
         f"{_met(gain >= g['rerank_gain'])}"),
        (f"- photos, the right photo first for all but one query: {photos[0]} of {photos[1]} -> "
         f"{_met(photos[0] >= photos[1] - 1)}"),
        f"- ITM calibration ECE <= {g['ece']} on held-out pairs: worst {ece:.3f} -> {_met(ece <= g['ece'])}",
        (f"- engine at batch 32: {speed['images_per_s']:.0f} images/s (>= {g['images_per_s']}), "
         f"{speed['texts_per_s']:.0f} texts/s (>= {g['texts_per_s']}) -> {_met(fast)}"),
    ]


def _section(title: str, data: sets.EvalSet, result: dict, trained_on: str) -> list[str]:
    held = data.held_out
    what = ("nothing: the model trained on these images and names" if held is None
            else f"{held.name} (checked against the training provenance)")
    q = result["queries"]
    return [f"## {title}", "", data.name + ".", "", f"- model trained on: {trained_on}",
            f"- held out: {what}",
            f"- queries: {q['text_to_image']} texts (t2i) and {q['image_to_text']} images (i2t)"
            + (f", a fixed-seed sample of at most {SAMPLE} per direction over the whole gallery"
               if max(q.values()) == SAMPLE else ""), "", markdown_table(result)]


def main(engine_dir: Path, out: Path, workdir: Path, k: int = 16, cache: Path | None = None) -> int:
    engine = OnnxEngine(engine_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    shipped = _trained_on(engine)
    gallery_set, noto_set, comp_set, photo_set = (sets.twemoji_gallery(), sets.noto(workdir),
                                                  sets.compositional(), sets.photos())
    encoded = {id(data): _encode(engine, data) for data in (gallery_set, noto_set, comp_set, photo_set)}
    gallery = _measure(engine, gallery_set, encoded[id(gallery_set)], k, workdir, "gallery")
    holdout_engine = OnnxEngine(_held_out_engine(workdir, cache or workdir / "features"))
    concepts_set = sets.held_out_concepts("test")
    concepts = _measure(holdout_engine, concepts_set, _encode(holdout_engine, concepts_set), k,
                        workdir, "concepts")
    noto = _measure(engine, noto_set, encoded[id(noto_set)], k, workdir, "noto")
    comp = _measure(engine, comp_set, encoded[id(comp_set)], k, workdir, "compositional")
    name_lines, name_hits = _plain_names(engine, gallery_set, encoded[id(gallery_set)], k)
    photo_lines, photo_right = _photo_rows(photo_set, encoded[id(photo_set)])
    curves = {name: reliability(*_pairs(engine, data, encoded[id(data)])) for name, data in
              (("compositional test split", comp_set), ("Twemoji -> Noto", noto_set))}
    plot_reliability(curves, out.with_name("quality-reliability.png"), "ITM match probability, held-out pairs")
    speed = _speed(engine)
    ablations = [*mlm_rows(workdir, k)[0], *hybrid_rows(engine, workdir)[0]]

    goals = _goals(gallery, concepts, noto, comp, (photo_right, len(photo_set.texts)), curves, speed)
    calibration = engine.manifest.training.get("calibration", {})
    lines = [
        "# Retrieval quality of the default model", "",
        (f"Regenerated by `make quality` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
         f"engine `{engine.engine_id}`). Queries are each emoji's CLDR name (one text per image). Rerank: "
         f"the dual encoder's top-{k} rescored by the ITM head; ITM alone ranks as ALBEF, ITM + ITC as "
         "BLIP. Recall in %. Before any figure is measured, each split's held-out claim is checked "
         "against the provenance the engine carries (`training.leaks`); a leaking split stops the report."),
        "", "## Goals", "", *goals, "",
        *_section("Twemoji gallery (trained on)", gallery_set, gallery, shipped),
        *_section("Twemoji concepts held out of training", concepts_set, concepts, _trained_on(holdout_engine)),
        ("The shipped model trains on every concept; this table is a model trained by the same "
         "preset without these concepts (`--holdout test`, heads only), in a gallery of those concepts."),
        "",
        *_section("Twemoji -> Noto (a style never trained on)", noto_set, noto, shipped),
        *_section("Compositional test split", comp_set, comp, shipped),
        "## Plain names in the demo gallery (trained on)", "",
        (f"{len(sets.PLAIN_NAMES)} exact CLDR names a new user might type, each searched in the whole "
         f"gallery of {len(gallery_set.texts)}: the right emoji first for {name_hits['top1']}, "
         f"in the top 5 for {name_hits['top5']}; reranked (ITM, top-{k}) first for "
         f"{name_hits['reranked_top1']}."), "", *name_lines, "",
        "## Real photos (never trained on)", "", photo_set.name + "; the distractors answer no query.", "",
        f"- model trained on: {shipped}", "- held out: every photo (no photo style in training)", "",
        *photo_lines, "",
        "## ITM calibration", "",
        (f"Temperature {calibration.get('temperature')} fitted after training on {calibration.get('data')}; "
         f"ECE there {calibration.get('ece_before')} before, {calibration.get('ece')} after. On the held-out "
         "pairs below (each image with its own text and its 3 hardest wrong texts by the dual encoder):"),
        "", "| pairs | count | ECE |", "| --- | --- | --- |",
        *[f"| {name} | {c['pairs']} | {c['ece']:.3f} |" for name, c in curves.items()], "",
        "Reliability diagram: `bench/results/quality-reliability.png`.", "",
        "## Engine speed", "",
        (f"ONNX Runtime, batch 32, best of 5 rounds, this machine: image tower {speed['images_per_s']:.0f} "
         f"images/s, text tower {speed['texts_per_s']:.0f} texts/s."), "",
        *ablations,
        f"Raw figures and recall-vs-depth plots: `{workdir}/*.json`, `{workdir}/*_recall_vs_k.png`.",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0
