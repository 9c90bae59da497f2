"""Engine benchmark: PyTorch eager vs ONNX Runtime fp32 vs int8 on the same model, side by side,
against the machine's own matrix-product rates measured in the same run.

Every runner is timed in the same rounds, interleaved, so load on a shared machine falls on
all of them alike; figures are medians, and the headlines are ratios: to PyTorch eager, and
the tower's achieved FLOP/s (counted FLOPs per item x items/s, `bench.flops`) as a fraction of
the 2048^3 GEMM rate at its precision (`bench.gemm`), measured before and after the towers.
Outputs are checked against PyTorch before any figure is printed. The int8 engine is the fp32
bundle's int8 variant: each tower static or dynamic, whichever export measured faster within
bounds, calibrated on `calibration` (default: rendered scenes).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import gemm
from bench.flops import flops_per_item
from encoders.calibration import read_calibration
from encoders.engine import OnnxEngine
from encoders.export import export_bundle
from encoders.int8 import items_per_s
from encoders.roles import IMAGE, TEXT, Exportable
from training import synthetic

HF_CLIP_B32 = "hf-clip-b32"  # a random-weight Hugging Face CLIPModel at ViT-B/32 dimensions


def source(model: str, checkpoint: Path | None, workdir: Path) -> Exportable:
    """What to benchmark: a trained checkpoint, a Hugging Face CLIPModel folder at ViT-B/32 size
    imported as `xmodal export --hf` imports it, or a config with random weights."""
    if checkpoint is not None:
        from encoders.checkpoint import load_checkpoint

        return load_checkpoint(checkpoint).exportable()
    if model == HF_CLIP_B32:
        from bench.own_model import make_folder
        from encoders.imported import load_exportable

        make_folder("clip", workdir / "hf-clip")
        return load_exportable(workdir / "hf-clip", "huggingface")
    return _random(model).exportable()


def _random(model: str) -> Any:  # -> encoders.checkpoint.Checkpoint
    from encoders.checkpoint import Checkpoint
    from encoders.config import LiTConfig, load_config
    from encoders.models import build_model
    from encoders.preprocess import ImagePreprocess
    from encoders.tokenizer import train_word_tokenizer

    cfg = load_config(model)
    torch.manual_seed(0)
    if isinstance(cfg, LiTConfig):  # pretrained towers, random heads: the trained cost
        from encoders.packaged import text_model_folder
        from encoders.pretrained_text import tokenizer_for
        from training.lit_train import _spec

        tokenizer = tokenizer_for(text_model_folder(cfg.text), cfg.context_length)
        return Checkpoint(build_model(cfg).eval(), tokenizer, _spec(cfg), {})
    tokenizer = train_word_tokenizer((s.caption for s in synthetic.scenes(500, 0)),
                                     cfg.text.context_length)
    cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, vocab_size=tokenizer.vocab_size))
    return Checkpoint(build_model(cfg).eval(), tokenizer, ImagePreprocess(size=cfg.vision.image_size), {})


def _runners(src: Exportable, engines: dict[str, OnnxEngine], pixels: np.ndarray,
             texts: list[str]) -> dict[str, tuple[tuple, dict[str, Callable[[], Any]]]]:
    """Per tower: the PyTorch inputs (for the FLOP count) and a runner per engine."""
    ids, mask = src.tokenizer.encode(texts)
    tp, ti, tm = (torch.from_numpy(a) for a in (pixels, ids, mask))
    image, text = src.roles[IMAGE], src.roles[TEXT]
    runners = {"image": ((tp,), {"torch_eager": lambda: image(tp)[0].numpy()}),
               "text": ((ti, tm), {"torch_eager": lambda: text(ti, tm).numpy()})}
    for name, engine in engines.items():
        runners["image"][1][f"onnx_{name}"] = lambda e=engine: e.encode_pixels(pixels)["image_embeds"]
        runners["text"][1][f"onnx_{name}"] = lambda e=engine: e.encode_texts(texts)
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


def _rows(tower: str, batch: int, rates: dict[str, float], cosines: dict[str, float],
          flops: float, limits: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for name, rate in rates.items():
        achieved = rate * flops / 1e9
        precision = "int8" if name.endswith("int8") else "fp32"
        rows.append({"tower": tower, "batch": batch, "runner": name, "items_per_s": round(rate, 1),
                     "vs_torch": round(rate / rates["torch_eager"], 2),
                     "min_cosine_to_torch": cosines[name], "gflop_per_item": round(flops / 1e9, 6),
                     "achieved_gflops": round(achieved, 1),
                     "of_gemm": round(achieved / limits[precision], 3), "gemm_precision": precision})
    return rows


def _limits(threads: int, size: int) -> dict[str, Any]:
    return {"torch": gemm.torch_rates(size, threads), "onnxruntime": gemm.onnxruntime_rates(size, threads),
            "loadavg": os.getloadavg()}


def _choices(manifest: Any) -> dict[str, Any]:
    """The export's per-tower int8 choice and figures, for the report."""
    variant = manifest.variants["int8"]
    return {"towers": {role: t["int8"] for role, t in variant["towers"].items()},
            "check": variant["check"],
            "fused": {role: p.get("fused", {}) for role, p in manifest.parity.items() if role != "calibration"}}


def run(model: str = "small-clip", checkpoint: Path | None = None,
        batches: tuple[int, ...] = (1, 32), rounds: int = 7, threads: int = 2,
        calibration: Path | None = None, gemm_size: int = gemm.SIZE,
        keep: Path | None = None) -> dict[str, Any]:
    """`keep`: write the exported bundle (fp32 with its int8 variant) there, for `bench build`."""
    torch.set_num_threads(threads)
    report: dict[str, Any] = {"model": str(checkpoint or model), "threads": threads, "results": [],
                              "gemm_before": _limits(threads, gemm_size)}
    with tempfile.TemporaryDirectory() as tmp:
        src = source(model, checkpoint, Path(tmp))
        size = src.preprocess.size
        if calibration is None:
            calibration = synthetic.write_gallery(Path(tmp) / "calibration", 64, seed=13, size=size)
        bundle = keep or Path(tmp) / "engine"
        manifest = export_bundle(src, bundle, calibration=read_calibration(calibration),
                                 variants=("int8",), threads=threads)
        report["export"] = _choices(manifest) | {"calibration": str(calibration)}
        report["family"] = manifest.family
        engines = {p: OnnxEngine(bundle, threads=threads, precision=p)
                   for p in ("fp32", "int8")}
        limits = {"fp32": report["gemm_before"]["torch"]["fp32"],
                  "int8": report["gemm_before"]["torch"]["int8"]}
        captions = [s.caption for s in synthetic.scenes(max(batches), seed=5)]
        for batch in batches:
            pixels = np.random.default_rng(batch).normal(size=(batch, 3, size, size)).astype(np.float32)
            for tower, (args, runners) in _runners(src, engines, pixels, captions[:batch]).items():
                cosines = _check(runners)
                with torch.no_grad():
                    rates = items_per_s(runners, batch, rounds)
                flops = flops_per_item(src.roles[IMAGE if tower == "image" else TEXT], args)
                report["results"] += _rows(tower, batch, rates, cosines, flops, limits)
        if checkpoint is not None:  # a trained model: the int8 recall change on its quality sets
            from bench.engine_recall import default_sets, precision_recall

            report["recall"] = precision_recall(bundle, default_sets(), threads)
    report["gemm_after"] = _limits(threads, gemm_size)
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [(f"{'tower':6} {'batch':>5} {'runner':12} {'items/s':>10} {'vs torch':>9} "
             f"{'GFLOP/s':>8} {'of GEMM':>8} {'cosine':>8}")]
    for r in report["results"]:
        lines.append(f"{r['tower']:6} {r['batch']:>5} {r['runner']:12} {r['items_per_s']:>10.1f} "
                     f"{r['vs_torch']:>8.2f}x {r['achieved_gflops']:>8.1f} "
                     f"{r['of_gemm']:>7.0%} {r['min_cosine_to_torch']:>8.4f}")
    for when in ("gemm_before", "gemm_after"):
        g = report[when]
        lines.append(f"{when}: torch " + ", ".join(f"{k} {v:.0f}" for k, v in g["torch"].items())
                     + " G(FL)OP/s; load average " + ", ".join(f"{x:.2f}" for x in g["loadavg"]))
    return "\n".join(lines)


def main(model: str, checkpoint: Path | None, batches: tuple[int, ...], rounds: int,
         json_out: Path | None, calibration: Path | None = None, gemm_size: int = gemm.SIZE,
         keep: Path | None = None) -> int:
    import json

    report = run(model, checkpoint, batches, rounds, calibration=calibration, gemm_size=gemm_size,
                 keep=keep)
    print(format_table(report))
    for row in report.get("recall", []):
        print(json.dumps(row))
    if json_out:
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0
