"""Engine benchmark: PyTorch eager vs ONNX Runtime fp32 vs int8 on the same model, side by side.

Every runner is timed in the same rounds, interleaved, so load on a shared machine falls on
all of them alike; figures are medians and the headline is the ratio to PyTorch eager.
Outputs are checked against PyTorch before any figure is printed.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoders.checkpoint import Checkpoint, load_checkpoint
from encoders.config import load_config
from encoders.engine import OnnxEngine
from encoders.errors import ParityError
from encoders.export import export_bundle
from encoders.models import build_model
from encoders.preprocess import ImagePreprocess
from encoders.roles import IMAGE, TEXT
from encoders.tokenizer import train_word_tokenizer
from training import synthetic

PRECISIONS = ("fp32", "int8")


def _checkpoint(model: str, checkpoint: Path | None) -> Checkpoint:
    if checkpoint is not None:
        return load_checkpoint(checkpoint)
    cfg = load_config(model)
    tokenizer = train_word_tokenizer((s.caption for s in synthetic.scenes(500, 0)),
                                     cfg.text.context_length)
    cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, vocab_size=tokenizer.vocab_size))
    torch.manual_seed(0)
    return Checkpoint(build_model(cfg).eval(), tokenizer, ImagePreprocess(size=cfg.vision.image_size), {})


def _export_all(ckpt: Checkpoint, folder: Path, threads: int) -> tuple[dict[str, OnnxEngine], dict[str, str]]:
    """An engine per precision, and why export refused the ones it refused (a reduced precision
    whose parity misses its tolerance is reported, not benchmarked; fp32 must export)."""
    engines, refused = {}, {}
    for precision in PRECISIONS:
        try:
            export_bundle(ckpt.exportable(), folder / precision, precision)
        except ParityError as exc:
            if precision == "fp32":
                raise
            refused[precision] = str(exc)
            continue
        engines[precision] = OnnxEngine(folder / precision, threads=threads)
    return engines, refused


def recall_by_precision(checkpoint: Path, gallery: Path) -> dict[str, Any]:
    """Recall@K of the fp32 and int8 engines of one checkpoint on a captioned image folder."""
    from encoders.captions import read_captions
    from training.evaluate import evaluate_engine

    captions = read_captions(gallery)
    files = sorted(captions)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engines, refused = _export_all(load_checkpoint(checkpoint), Path(tmp), 2)
        if refused:
            raise SystemExit(f"cannot compare recall by precision: {refused}")
        for precision, engine in engines.items():
            out[precision] = evaluate_engine(engine, [str(gallery / f) for f in files],
                                             [captions[f] for f in files], list(range(len(files))))
    out["int8_minus_fp32_R@10"] = {
        d: round(out["int8"][d]["R@10"] - out["fp32"][d]["R@10"], 2) for d in out["fp32"]
    }
    return out


def _runners(ckpt: Checkpoint, engines: dict[str, OnnxEngine], pixels: np.ndarray,
             texts: list[str]) -> dict[str, dict[str, Callable[[], Any]]]:
    roles = ckpt.model.graph_modules()
    ids, mask = ckpt.tokenizer.encode(texts)
    tp, ti, tm = (torch.from_numpy(a) for a in (pixels, ids, mask))
    runners = {
        "image": {"torch_eager": lambda: roles[IMAGE](tp)[0].numpy()},
        "text": {"torch_eager": lambda: roles[TEXT](ti, tm).numpy()},
    }
    for name, engine in engines.items():
        runners["image"][f"onnx_{name}"] = lambda e=engine: e.encode_pixels(pixels)["image_embeds"]
        runners["text"][f"onnx_{name}"] = lambda e=engine: e.encode_texts(texts)
    return runners


def _check(runners: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Lowest cosine between each runner's embeddings and PyTorch's; fp32 must be ~exact."""
    with torch.no_grad():
        reference = runners["torch_eager"]()
        cosines = {name: round(float((run() * reference).sum(axis=1).min()), 5)
                   for name, run in runners.items()}
    if cosines["onnx_fp32"] < 0.9999:
        raise AssertionError(f"ONNX fp32 disagrees with PyTorch: min cosine {cosines['onnx_fp32']}")
    return cosines


def _time(runners: dict[str, Callable[[], Any]], rounds: int, items: int) -> dict[str, float]:
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    with torch.no_grad():
        for name, run in runners.items():
            run()  # warm-up
        for _ in range(rounds):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
    return {name: round(items / statistics.median(s), 1) for name, s in seconds.items()}


def run(model: str = "small-clip", checkpoint: Path | None = None,
        batches: tuple[int, ...] = (1, 32), rounds: int = 7, threads: int = 2) -> dict[str, Any]:
    torch.set_num_threads(threads)
    ckpt = _checkpoint(model, checkpoint)
    size = ckpt.preprocess.size
    captions = [s.caption for s in synthetic.scenes(max(batches), seed=5)]
    report: dict[str, Any] = {"model": str(checkpoint or model), "threads": threads, "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        engines, report["refused"] = _export_all(ckpt, Path(tmp), threads)
        for batch in batches:
            pixels = np.random.default_rng(batch).normal(size=(batch, 3, size, size)).astype(np.float32)
            for tower, runners in _runners(ckpt, engines, pixels, captions[:batch]).items():
                cosines = _check(runners)
                per_s = _time(runners, rounds, batch)
                for name, rate in per_s.items():
                    report["results"].append({
                        "tower": tower, "batch": batch, "runner": name, "items_per_s": rate,
                        "vs_torch": round(rate / per_s["torch_eager"], 2),
                        "min_cosine_to_torch": cosines[name],
                    })
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{'tower':6} {'batch':>5} {'runner':12} {'items/s':>10} {'vs torch':>9} {'cosine':>8}"]
    for r in report["results"]:
        lines.append(f"{r['tower']:6} {r['batch']:>5} {r['runner']:12} {r['items_per_s']:>10.1f} "
                     f"{r['vs_torch']:>8.2f}x {r['min_cosine_to_torch']:>8.4f}")
    lines += [f"{precision}: not benchmarked, export refused it: {why}"
              for precision, why in report.get("refused", {}).items()]
    return "\n".join(lines)


def main(model: str, checkpoint: Path | None, batches: tuple[int, ...], rounds: int,
         json_out: Path | None, gallery: Path | None = None) -> int:
    report = run(model, checkpoint, batches, rounds)
    print(format_table(report))
    if checkpoint and gallery:
        report["recall"] = recall_by_precision(checkpoint, gallery)
        print(json.dumps(report["recall"]["int8_minus_fp32_R@10"]))
    if json_out:
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0
