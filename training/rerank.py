"""Recall@K with and without the fusion reranker, by the protocol of ALBEF and BLIP.

1. ITC similarity between every query and the gallery (the dual encoder's ranking).
2. For each query, the top-k candidates by ITC go through the ITM head.
3. Final score of those k: the ITM match probability alone ("itm", as ALBEF ranks) or ITM plus
   the ITC cosine ("itm+itc", as BLIP ranks; BLIP adds the match logit, the engine exposes the
   probability). Candidates outside the top-k keep their ITC order, below every reranked one.

Text->image: a query caption finds its image. Image->text: an image finds any of its captions.
Texts with image -1 are distractors (e.g. hard-negative captions): candidates for
image->text, never queries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from encoders.engine import Engine
from training.evaluate import KS, engine_embeddings, recall_at_k

# (image rows, text rows) -> match probability per pair
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
RULES = ("itm", "itm+itc")
CURVE_KS = (1, 2, 4, 8, 16, 32)


def _rerank_order(itc: np.ndarray, candidates: np.ndarray, itm: np.ndarray, rule: str, k: int) -> np.ndarray:
    """Full ranking per query: reranked top-k first, then the rest in ITC order."""
    k = min(k, itm.shape[1])  # a gallery smaller than k is reranked whole
    top, top_itm = candidates[:, :k], itm[:, :k]
    top_itc = np.take_along_axis(itc, top, axis=1)
    final = top_itm if rule == "itm" else top_itm + top_itc
    reranked = np.take_along_axis(top, np.argsort(-final, axis=1, kind="stable"), axis=1)
    return np.concatenate([reranked, candidates[:, k:]], axis=1)


def _recall_from_order(order: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int]) -> dict:
    out = {}
    for k in ks:
        hits = [bool(relevant[q] & set(order[q, :k].tolist())) for q in range(len(relevant))]
        out[f"R@{k}"] = round(100.0 * float(np.mean(hits)), 2)
    return out


def _score_top(itc: np.ndarray, depth: int, scorer: Callable[[np.ndarray, np.ndarray], np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray]:
    """ITC order of every candidate, and the ITM score of each query's first `depth`."""
    candidates = np.argsort(-itc, axis=1, kind="stable")
    rows = np.repeat(np.arange(len(itc)), depth)
    itm = scorer(rows, candidates[:, :depth].reshape(-1)).reshape(len(itc), depth)
    return candidates, itm


def evaluate_reranked(image_embeds: np.ndarray, text_embeds: np.ndarray, text_to_image: Sequence[int],
                      pair_scorer: PairScorer | None, k: int = 16, ks: Sequence[int] = KS,
                      curve_ks: Sequence[int] = CURVE_KS, sample: int | None = None) -> dict:
    """Recall@ks both ways for the dual encoder and, with a scorer, each rerank rule at depth k;
    `curve` holds the reranked recall at every depth in `curve_ks` (for the recall-vs-k plot).
    `sample` bounds the queries of each direction (drawn with a fixed seed, the same for every
    ranking; the galleries stay whole), since a rerank costs depth pairs per query."""
    t2i_map = np.asarray(text_to_image)
    queries = sampled(np.flatnonzero(t2i_map >= 0), sample)
    images = sampled(np.arange(len(image_embeds)), sample)
    itc = text_embeds @ image_embeds.T  # (texts, images)
    captions_of = [set(np.flatnonzero(t2i_map == i).tolist()) for i in images]
    t2i_truth = [{int(t2i_map[q])} for q in queries]
    i2t_itc = itc.T[images]
    result = {"k": k, "queries": {"text_to_image": len(queries), "image_to_text": len(images)},
              "dual": {"text_to_image": recall_at_k(itc[queries], t2i_truth, ks),
                       "image_to_text": recall_at_k(i2t_itc, captions_of, ks)}}
    if pair_scorer is None:
        return result
    depths = sorted({d for d in (*curve_ks, k)})
    depth = max(depths)
    # pair_scorer takes (image rows, text rows); the two directions feed it differently
    t2i_cand, t2i_itm = _score_top(itc[queries], min(depth, len(image_embeds)),
                                   lambda q, img: pair_scorer(img, queries[q]))
    i2t_cand, i2t_itm = _score_top(i2t_itc, min(depth, len(text_embeds)),
                                   lambda q, txt: pair_scorer(images[q], txt))
    curve: dict[str, dict[int, dict]] = {rule: {} for rule in RULES}
    for rule in RULES:
        for d in depths:
            t2i = _recall_from_order(_rerank_order(itc[queries], t2i_cand, t2i_itm, rule, d), t2i_truth, ks)
            i2t = _recall_from_order(_rerank_order(i2t_itc, i2t_cand, i2t_itm, rule, d), captions_of, ks)
            curve[rule][d] = {"text_to_image": t2i, "image_to_text": i2t}
        result[rule] = curve[rule][k]
    result["curve"] = {rule: {d: v for d, v in c.items() if d in curve_ks} for rule, c in curve.items()}
    return result


def sampled(rows: np.ndarray, sample: int | None) -> np.ndarray:
    if sample is None or len(rows) <= sample:
        return rows
    return np.sort(np.random.default_rng(0).choice(rows, sample, replace=False))


def evaluate_engine_reranked(engine: Engine, images: Sequence, texts: Sequence[str],
                             text_to_image: Sequence[int], k: int = 16, rerank: bool = True,
                             batch_size: int = 64, sample: int | None = None,
                             curve_ks: Sequence[int] | None = None,
                             embeddings: tuple | None = None) -> dict:
    """`evaluate_reranked` on an engine bundle: its towers give the ITC ranking,
    its reranker graph the ITM scores (skipped when the bundle has none or `rerank` is off).
    `embeddings`: `engine_embeddings(engine, images, texts)` when the caller has them already."""
    image_embeds, image_tokens, text_embeds = (
        embeddings or engine_embeddings(engine, images, texts, batch_size))
    scorer = None
    if rerank and image_tokens is not None:
        def scorer(image_rows: np.ndarray, text_rows: np.ndarray) -> np.ndarray:
            return np.concatenate([
                engine.score(image_tokens[image_rows[i:i + 256]], [texts[t] for t in text_rows[i:i + 256]])
                for i in range(0, len(image_rows), 256)])
    return evaluate_reranked(image_embeds, text_embeds, text_to_image, scorer, k,
                             curve_ks=curve_ks or CURVE_KS, sample=sample)
