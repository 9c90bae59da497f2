"""`xmodal bench index --codes 64 128 256`: binary codes against float search, in one run.

Two parts, side by side:
1. Speed and memory at scale: the synthetic vectors of `bench.index` (1M by default) in float
   Flat, the auto-chosen float index (tuned to the recall target), and for each code length
   the signs of a random rotation (LSH; learnt codes cost the same to search) in a binary
   index alone (Hamming ranking) and with the float rescoring of the top candidates read from
   a memory-mapped vectors file, as a segment does (`index.codes`). Bytes per image in RAM
   (the serialised index; the rescored vectors stay in the memory-mapped file), QPS at batch
   1 and 64 (interleaved rounds, median), recall@10 against exact float search.
2. Learnt codes on the default model's real galleries: hash heads of each length trained
   on the model's cached training features (`training.hashing`), against the signs of the
   float embedding (a random rotation of it below its dimension: the head's starting point)
   of the same length: text -> image recall@10 of the right image, and recall@10 against
   exact float search, Hamming ranking alone; ties broken by one fixed random order.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from bench.index import TUNE_MARGIN, index_mb, qps, synthetic
from encoders.codes import pack
from index.choose import RECALL_K, choose_factory, make_index, recall_at, tune
from index.codes import code_search, make_binary_index, set_code_params, tune_codes

log = logging.getLogger(__name__)


@dataclass
class SpeedRow:
    n: int
    index: str
    bits: int
    params: str
    build_s: float
    recall_at_10: float
    qps_batch1: float
    qps_batch64: float
    ram_bytes_per_image: float


@dataclass
class QualityRow:
    set: str
    gallery: int
    queries: int
    bits: int
    float_r10: float
    learnt_r10: float
    sign_r10: float
    learnt_vs_exact: float
    sign_vs_exact: float
    learnt_rescored_r10: float


def rotation(dim: int, bits: int, seed: int) -> np.ndarray:
    """(dim, bits) orthonormal columns: a random rotation's first `bits` axes."""
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))[0]
    return q[:, :bits].astype(np.float32)


class CodeSearcher:
    """`search(rows, k)` over query rows, as `bench.index.qps` calls an index: their codes
    through the binary index, then (rescore > 0) their float vectors over the candidates."""

    def __init__(self, index: faiss.IndexBinary, queries: np.ndarray, codes: np.ndarray,
                 rescore: int, vectors: np.ndarray) -> None:
        self.index, self.queries, self.codes = index, queries, codes
        self.rescore, self.vectors = rescore, vectors

    def search(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return code_search(self.index, self.codes[rows], k, self.rescore, self.vectors,
                           self.queries[rows])


def _codes(vectors: np.ndarray, rot: np.ndarray) -> np.ndarray:
    return np.concatenate([pack(vectors[i:i + 65536] @ rot) for i in range(0, len(vectors), 65536)])


def speed_rows(n: int, dim: int, bits_list: list[int], target: float, n_queries: int,
               seed: int, seconds: float, rounds: int = 3) -> list[SpeedRow]:
    data = synthetic(n, dim, seed)
    tune_q, eval_q = synthetic(n_queries, dim, seed + 1), synthetic(n_queries, dim, seed + 2)
    with tempfile.TemporaryDirectory(dir=os.environ.get("XMODAL_BENCH_TMP")) as tmp:
        np.save(Path(tmp) / "vectors.npy", data)
        vectors = np.load(Path(tmp) / "vectors.npy", mmap_mode="r")
        flat = faiss.IndexFlatIP(dim)
        flat.add(data)
        truth_tune, truth_eval = flat.search(tune_q, RECALL_K)[1], flat.search(eval_q, RECALL_K)[1]
        built: list[tuple[str, int, object, np.ndarray, dict, float]] = [
            ("float Flat", 0, flat, eval_q, {}, 0.0)]
        started = time.perf_counter()
        factory = choose_factory(n, dim)
        auto = make_index(factory, data, seed=seed)
        params = tune(auto, tune_q, truth_tune, min(1.0, target + TUNE_MARGIN)).search_params
        built.append((f"auto float: {factory}", 0, auto, eval_q, params,
                      time.perf_counter() - started))
        del data
        rows_q = np.arange(n_queries)
        for bits in bits_list:
            rot = rotation(dim, bits, seed)
            started = time.perf_counter()
            codes = _codes(vectors, rot)
            for flat_codes in (True, False):
                binary, name = _binary(codes, bits, flat_codes, seed)
                tq, eq = _codes(tune_q, rot), _codes(eval_q, rot)
                tuning = tune_codes(binary, vectors, tune_q, tq, truth_tune, None,
                                    min(1.0, target + TUNE_MARGIN))
                secs = time.perf_counter() - started
                chosen = tuning["search_params"]
                alone = {k: v for k, v in chosen.items() if k != "rescore"}
                built.append((f"codes alone: {name}", bits, CodeSearcher(binary, eval_q, eq, 0, vectors),
                              rows_q, alone, secs))
                built.append((f"codes + rescore: {name}", bits,
                              CodeSearcher(binary, eval_q, eq, chosen["rescore"], vectors),
                              rows_q, chosen, secs))
        out = _measure(n, built, truth_eval, seconds, rounds)
    return out


def _binary(codes: np.ndarray, bits: int, flat: bool, seed: int) -> tuple[faiss.IndexBinary, str]:
    if flat:
        index = faiss.IndexBinaryFlat(bits)
        index.add(codes)
        return index, "BFlat"
    return make_binary_index(codes, bits, seed)


def _measure(n: int, built: list, truth: np.ndarray, seconds: float, rounds: int) -> list[SpeedRow]:
    recalls = []
    for _, _, index, queries, params, _ in built:
        _apply(index, params)
        # results checked against exact search before any speed figure
        recalls.append(recall_at(index.search(queries, RECALL_K)[1], truth))
    speeds: dict[tuple[int, int], list[float]] = {}
    for _ in range(rounds):  # interleaved: load that comes and goes hits every row alike
        for i, (_, _, index, queries, params, _) in enumerate(built):
            _apply(index, params)
            for batch, q in ((1, queries[:256]), (64, queries)):
                speeds.setdefault((i, batch), []).append(qps(index, q, batch, seconds))
    rows = []
    for i, (name, bits, index, _, params, secs) in enumerate(built):
        rows.append(SpeedRow(n, name, bits, json.dumps(params), round(secs, 1), round(recalls[i], 4),
                             round(float(np.median(speeds[i, 1])), 1),
                             round(float(np.median(speeds[i, 64])), 1),
                             round(_ram(index) / n, 1)))
        log.info("%s", rows[-1])
    return rows


def _apply(index, params: dict) -> None:
    if isinstance(index, CodeSearcher):
        set_code_params(index.index, params)
    elif params:
        from index.choose import set_search_params

        set_search_params(index, params)


def _ram(index) -> float:
    if isinstance(index, CodeSearcher):
        return float(len(faiss.serialize_index_binary(index.index)))
    return index_mb(index) * 2**20


# -- real galleries --------------------------------------------------------------------------
def _top(scores: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Gallery rows by score, best first; equal scores (Hamming ties) in the order `tie`."""
    return np.lexsort((np.broadcast_to(tie, scores.shape), -scores), axis=1)


def _r10(top: np.ndarray, owner: np.ndarray) -> float:
    """Fraction of queries whose own image is in their top 10."""
    return round(float((top[:, :RECALL_K] == owner[:, None]).any(axis=1).mean()), 4)


def _signs(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, 1.0, -1.0).astype(np.float32)


def quality_rows(name: str, images: np.ndarray, texts: np.ndarray, owner: np.ndarray,
                 heads: dict[int, object], seed: int = 0, rescore: int = 100) -> list[QualityRow]:
    """Per code length: text -> image recall@10 (the query's own image) of float search, of
    learnt codes, of sign codes, and of learnt codes rescored; and each code's recall@10
    against exact float search. Queries are the texts with an image (`owner` >= 0)."""
    from training.hashing import code_outputs

    texts, owner = texts[owner >= 0], owner[owner >= 0]
    tie = np.random.default_rng(seed).permutation(len(images))
    exact = texts @ images.T
    exact_top = _top(exact, tie)
    rows = []
    for bits, head in heads.items():
        dim = images.shape[1]
        rot = np.eye(dim, dtype=np.float32) if bits == dim else rotation(dim, bits, seed)
        # (+-1 codes) @ (+-1 codes).T = bits - 2 * Hamming distance: ranking by it is Hamming's
        learnt = _signs(code_outputs(head, text=texts)) @ _signs(code_outputs(head, image=images)).T
        sign = _signs(texts @ rot) @ _signs(images @ rot).T
        top_l, top_s = _top(learnt, tie), _top(sign, tie)
        cand = top_l[:, :rescore]
        rescored = np.take_along_axis(cand, _top(np.take_along_axis(exact, cand, axis=1),
                                                 tie[:rescore]), axis=1)
        rows.append(QualityRow(
            name, len(images), len(texts), bits, _r10(exact_top, owner), _r10(top_l, owner),
            _r10(top_s, owner), round(recall_at(top_l[:, :RECALL_K], exact_top), 4),
            round(recall_at(top_s[:, :RECALL_K], exact_top), 4), _r10(rescored, owner)))
        log.info("%s", rows[-1])
    return rows


def real_rows(engine_dir: Path, checkpoint: Path, cache: Path | None, workdir: Path,
              bits_list: list[int], steps: int) -> tuple[list[QualityRow], list[str]]:
    """Hash heads trained on the checkpoint's cached features, measured on the real sets;
    with notes on sets left out (not held out from this engine's training)."""
    from bench import quality_sets as sets
    from encoders.engine import OnnxEngine
    from training.hash_data import lit_pairs
    from training.hashing import HashConfig, train_hash_heads
    from training.leaks import LeakError

    engine = OnnxEngine(engine_dir)
    pairs = lit_pairs(checkpoint, cache=cache)
    heads = {bits: train_hash_heads(*pairs, HashConfig(bits=bits, steps=steps))[0]
             for bits in bits_list}
    rows, notes = [], [(f"hash heads trained on {len(pairs[0]):,} (image, caption) pairs of "
                        f"{checkpoint}'s training data, {steps} steps each, towers frozen")]
    for make in (sets.twemoji_gallery, lambda: sets.held_out_concepts("test"),
                 lambda: sets.noto(workdir), sets.compositional):
        evalset = make()
        try:
            sets.check(engine, evalset.held_out)
        except LeakError as exc:
            notes.append(f"{evalset.name}: left out, not held out of training ({exc})")
            continue
        name = evalset.name + ("" if evalset.held_out else " [trained on]")
        images = _encode_images(engine, evalset.images)
        texts = np.concatenate([engine.encode_texts(evalset.texts[i:i + 64])
                                for i in range(0, len(evalset.texts), 64)])
        rows += quality_rows(name, images, texts, np.asarray(evalset.owner), heads)
    return rows, notes


def _encode_images(engine, images: list) -> np.ndarray:
    from PIL import Image

    out = []
    for i in range(0, len(images), 32):
        batch = [im if isinstance(im, Image.Image) else Image.open(im).convert("RGB")
                 for im in images[i:i + 32]]
        out.append(engine.encode_images(batch))
    return np.concatenate(out)


def _mark(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def goals(speed: list[SpeedRow], quality: list[QualityRow], dim: int) -> list[str]:
    float_bytes = next(r.ram_bytes_per_image for r in speed if r.index == "float Flat")
    auto = next(r for r in speed if r.index.startswith("auto"))
    lines = []
    alone = [r for r in speed if r.bits == 256 and r.index.startswith("codes alone")]
    if alone:
        best = max(alone, key=lambda r: float_bytes / r.ram_bytes_per_image)
        ratio = float_bytes / best.ram_bytes_per_image
        lines.append(f"- 256-bit codes alone at >= 60x less RAM per image than float vectors: "
                     f"{_mark(ratio >= 60)} ({best.index}: {best.ram_bytes_per_image:g} bytes vs "
                     f"{float_bytes:g}, {ratio:.1f}x)")
    rescored = [r for r in speed if r.index.startswith("codes + rescore")]
    passing = [r for r in rescored if r.recall_at_10 >= 0.95 and r.qps_batch1 >= auto.qps_batch1
               and r.qps_batch64 >= auto.qps_batch64
               and r.ram_bytes_per_image < auto.ram_bytes_per_image]
    for r in rescored:
        lines.append(f"  - {r.index} {r.bits} bits: recall@10 {r.recall_at_10:.4f}, QPS b1 "
                     f"{r.qps_batch1 / auto.qps_batch1:.2f}x and b64 "
                     f"{r.qps_batch64 / auto.qps_batch64:.2f}x the auto index's, RAM "
                     f"{r.ram_bytes_per_image:g} vs {auto.ram_bytes_per_image:g} bytes per image")
    lines.insert(len(lines) - len(rescored),
                 f"- codes + rescoring at recall@10 >= 0.95, QPS (batch 1 and 64) >= the auto "
                 f"float index's and RAM per image below its: {_mark(bool(passing))}"
                 + (f" ({', '.join(f'{r.index} {r.bits} bits' for r in passing)})" if passing else ""))
    held = [r for r in quality if "[trained on]" not in r.set]
    if held:
        gaps = [(r, 100 * (r.learnt_r10 - r.sign_r10)) for r in held]
        lines.append(f"- learnt codes beat sign codes of the same length by >= 5 points of "
                     f"text -> image recall@10 on every held-out set and length: "
                     f"{_mark(all(g >= 5 for _, g in gaps))}")
        lines += [f"  - {r.set}, {r.bits} bits: {g:+.1f} points ({100 * r.learnt_r10:.1f} vs "
                  f"{100 * r.sign_r10:.1f})" for r, g in gaps]
    return lines


def render(speed: list[SpeedRow], quality: list[QualityRow], notes: list[str], meta: dict) -> str:
    float_bytes = next(r.ram_bytes_per_image for r in speed if r.index == "float Flat")
    lines = [
        f"# xmodal bench index --codes {' '.join(map(str, meta['bits']))}",
        "",
        (f"{meta['cores']} CPU cores shared with other work; load average (1, 5, 15 min) "
         f"{meta['load_start']} at the start, {meta['load_end']} at the end; faiss "
         f"{faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads; recall target "
         f"{meta['target']} (tuned to +{TUNE_MARGIN} on separate queries)."),
        "",
        "## Goals", "", *goals(speed, quality, meta["dim"]), "",
        f"## Speed and memory: {speed[0].n:,} synthetic vectors, d={meta['dim']}",
        "",
        ("Codes here are the signs of a random rotation (LSH); learnt codes are searched alike. "
         "RAM is the serialised index; the rescored float vectors are read from a memory-mapped "
         "file (disk, page cache), as an index segment's `embeddings.npy` is."),
        "",
        ("| index | bits | search params | build+tune s | recall@10 vs exact | QPS batch 1 | "
         "QPS batch 64 | RAM bytes / image | less RAM than float |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in speed:
        lines.append(f"| {r.index} | {r.bits or '-'} | {r.params} | {r.build_s} | "
                     f"{r.recall_at_10:.4f} | {r.qps_batch1:,.0f} | {r.qps_batch64:,.0f} | "
                     f"{r.ram_bytes_per_image:,.1f} | {float_bytes / r.ram_bytes_per_image:.1f}x |")
    lines += ["", "## Learnt vs sign codes on the default model's galleries", "",
              ("Text -> image recall@10 of the query's own image (Hamming ranking, no rescoring, "
               "except the last column: the top 100 by Hamming rescored with float vectors) and "
               "recall@10 against exact float search. Sign codes: the signs of the float "
               "embedding at its own length, of a random rotation of it below that."), "",
              ("| set | gallery | queries | bits | float R@10 | learnt R@10 | sign R@10 | "
               "learnt - sign | learnt vs exact | sign vs exact | learnt + rescore R@10 |"),
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for q in quality:
        lines.append(f"| {q.set} | {q.gallery:,} | {q.queries:,} | {q.bits} | {100 * q.float_r10:.1f} | "
                     f"{100 * q.learnt_r10:.1f} | {100 * q.sign_r10:.1f} | "
                     f"{100 * (q.learnt_r10 - q.sign_r10):+.1f} | {q.learnt_vs_exact:.3f} | "
                     f"{q.sign_vs_exact:.3f} | {100 * q.learnt_rescored_r10:.1f} |")
    lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def main(n: int, dim: int, bits: list[int], target: float, queries: int, out: Path | None,
         json_out: Path | None, engine: Path | None, checkpoint: Path | None,
         cache: Path | None, workdir: Path, seconds: float = 2.0, steps: int = 600,
         seed: int = 0) -> int:
    meta = {"bits": bits, "dim": dim, "target": target, "cores": os.cpu_count(),
            "load_start": [round(x, 2) for x in os.getloadavg()]}
    quality, notes = [], []
    if engine is not None and checkpoint is not None:
        quality, notes = real_rows(engine, checkpoint, cache, workdir, bits, steps)
    else:
        notes.append("real galleries not measured: give --engine and --checkpoint")
    speed = speed_rows(n, dim, bits, target, queries, seed, seconds)
    meta["load_end"] = [round(x, 2) for x in os.getloadavg()]
    report = render(speed, quality, notes, meta)
    print(report)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
    if json_out:
        json_out.write_text(json.dumps({"meta": meta, "speed": [asdict(r) for r in speed],
                                        "quality": [asdict(q) for q in quality],
                                        "notes": notes}, indent=2) + "\n")
    return 0
