"""`xmodal bench own-model`: a user's own model at real size, through the same commands.

Two random-weight ViT-B/32 folders, as their libraries save them: a Hugging Face `CLIPModel`
(transformers' default CLIP config is ViT-B/32) with OpenAI CLIP's BPE tokenizer and CLIP's
image processor, and an OpenCLIP `ViT-B-32` (`create_model(pretrained=None)`, config JSON and
safetensors). For each: export (seconds, peak memory, parity), an index build over rendered
images (images/s, how busy the engine was), text encoding through the engine, and fine-tuning
(`train --init`) at batch 32 on rendered pairs (seconds per step, peak memory). Every phase runs
in a fresh process, so its peak resident memory is its own. Random weights cost what trained
ones of the same shape cost (time, memory); recall is not measured here.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.output import emit

log = logging.getLogger(__name__)

KINDS = {"clip": "Hugging Face CLIPModel ViT-B/32", "open_clip": "OpenCLIP ViT-B-32"}
OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one phase in a fresh process (spawn: the parent holds no torch threads to fork)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        return pool.submit(fn, *args).result()


def make_folder(kind: str, folder: Path) -> dict[str, Any]:
    """A random-weight ViT-B/32 folder of `kind`, saved as its library saves it."""
    import torch

    torch.manual_seed(0)
    folder.mkdir(parents=True)
    model = _make_hf_clip(folder) if kind == "clip" else _make_open_clip(folder)
    weights = sum(f.stat().st_size for f in folder.iterdir() if f.suffix in (".safetensors", ".bin"))
    return {"parameters": sum(p.numel() for p in model.parameters()), "weights_bytes": weights}


def _make_hf_clip(folder: Path) -> Any:
    import transformers as tf

    from encoders.clip_bpe import EOT, SOT, clip_bpe_tokenizer
    from encoders.open_clip_import import import_open_clip

    bpe = Path(import_open_clip().__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    tok = clip_bpe_tokenizer(bpe, 77)
    tok.save(folder / "tokenizer.json")  # the same BPE OpenAI's CLIP tokenizer files hold
    tf.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), bos_token=SOT,
                               eos_token=EOT, pad_token=EOT, unk_token=EOT,
                               model_max_length=77).save_pretrained(folder)
    model = tf.CLIPModel(tf.CLIPConfig())  # transformers' default: ViT-B/32, 512-d
    model.save_pretrained(folder)
    tf.CLIPImageProcessorPil().save_pretrained(folder)
    return model


def _make_open_clip(folder: Path) -> Any:
    from safetensors.torch import save_file

    from encoders.open_clip_import import import_open_clip

    open_clip = import_open_clip()
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    config = {"model_cfg": open_clip.get_model_config("ViT-B-32"),
              "preprocess_cfg": {"mean": OPENAI_MEAN, "std": OPENAI_STD}}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=1))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    return model


def export_phase(folder: Path, out: Path) -> dict[str, Any]:
    from encoders.export import export_bundle
    from encoders.imported import load_exportable

    started = time.perf_counter()
    manifest = export_bundle(load_exportable(folder), out)
    return {"export_s": time.perf_counter() - started, "export_peak_gb": _peak_gb(),
            "parity": {role: p["max_abs"] for role, p in manifest.parity.items()},
            "engine_id": manifest.engine_id}


def index_phase(engine_dir: Path, images: Path, out: Path, batch_size: int) -> dict[str, Any]:
    from encoders.captions import read_captions
    from encoders.engine import OnnxEngine
    from index.build import BuildStats, build_index
    from index.executors import default_workers

    engine = OnnxEngine(engine_dir)
    stats: list[BuildStats] = []
    build_index(engine, images, out, batch_size, stats=stats, factory="Flat",
                workers=default_workers())
    texts = list(read_captions(images).values())
    engine.encode_texts(texts[:32])  # warm-up: the first run allocates
    started = time.perf_counter()
    for i in range(0, len(texts), 32):
        engine.encode_texts(texts[i:i + 32])
    return {"index_images_per_s": stats[0].images_per_s,
            "engine_busy": stats[0].inference_s / stats[0].seconds,
            "texts_per_s": len(texts) / (time.perf_counter() - started),
            "index_peak_gb": _peak_gb(), "workers": default_workers()}


def fine_tune_phase(folder: Path, data: Path, out: Path, steps: int, batch_size: int
                    ) -> dict[str, Any]:
    from training.options import FINE_TUNE_DEFAULTS, TrainConfig
    from training.train import train

    threads = os.cpu_count() or 1
    cfg = TrainConfig(**{**FINE_TUNE_DEFAULTS, "out": out, "init": str(folder), "data": str(data),
                         "steps": steps, "batch_size": batch_size, "save_every": 0,
                         "threads": threads, "log_every": 10})
    started = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - started
    record = json.loads((out / "xmodal_training.json").read_text())
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    return {"steps": steps, "batch_size": batch_size, "threads": threads,
            "loop_s_per_step": record["seconds_this_run"] / steps,
            "total_s": seconds, "fine_tune_peak_gb": _peak_gb(),
            "loss_first": losses[0], "loss_last": losses[-1]}


def write_pairs(folder: Path, count: int, size: int = 128) -> Path:
    """`count` rendered training pairs as a JSONL dataset file (the format users bring)."""
    from training.synthetic import render, scenes

    folder.mkdir(parents=True)
    rows = []
    for i, scene in enumerate(scenes(count, seed=5)):
        render(scene, size).save(folder / f"{i:04d}.png")
        rows.append({"image": f"{i:04d}.png", "caption": scene.caption, "split": "train"})
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "pairs.jsonl"


def measure(kind: str, work: Path, images: Path, pairs: Path, steps: int, batch_size: int
            ) -> dict[str, Any]:
    """Every phase for one kind of folder, each in its own process."""
    row: dict[str, Any] = {"model": KINDS[kind]}
    row |= _in_child(make_folder, kind, work / kind)
    log.info("%s: %s parameters", kind, row["parameters"])
    row |= _in_child(export_phase, work / kind, work / f"{kind}-engine")
    log.info("%s: exported in %.1f s", kind, row["export_s"])
    row |= _in_child(index_phase, work / f"{kind}-engine", images, work / f"{kind}-index", 32)
    log.info("%s: index build %.1f images/s", kind, row["index_images_per_s"])
    if steps:
        row["fine_tune"] = _in_child(fine_tune_phase, work / kind, pairs, work / f"{kind}-tuned",
                                     steps, batch_size)
        log.info("%s: fine-tuning %.2f s/step", kind, row["fine_tune"]["loop_s_per_step"])
    return row


def _header(command: str, count: int) -> list[str]:
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    return ["# Your own model at real size (`xmodal bench own-model`)", "",
            (f"Generated by `{command}` on {os.cpu_count()} CPU cores ({cpu}), torch "
             f"{torch.__version__}, onnxruntime {onnxruntime.__version__}. Random-weight "
             "ViT-B/32 folders as their libraries save them; each phase in a fresh process, "
             "peak = its peak resident memory. Parity: largest difference between ONNX Runtime "
             "and PyTorch over the export's random inputs (batch 1 and 7)."), "",
            (f"Index build: {count} rendered 256 px images, batch 32, Flat index; engine busy = "
             "time inside the image graph / build time. Text: the build's captions through "
             "the engine, 32 at a time."), ""]


def _export_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [("| model | parameters | weights | export | export peak | parity image / text "
              "| index build | engine busy | text encode |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        parity = f"{r['parity']['image_encoder']:.1e} / {r['parity']['text_encoder']:.1e}"
        lines.append(
            f"| {r['model']} | {r['parameters'] / 1e6:.1f} M | {r['weights_bytes'] / 2**20:.0f} MiB "
            f"| {r['export_s']:.1f} s | {r['export_peak_gb']:.2f} GiB | {parity} | "
            f"{r['index_images_per_s']:.1f} images/s | {r['engine_busy']:.0%} | "
            f"{r['texts_per_s']:.0f} texts/s |")
    return lines


def _fine_tune_table(rows: list[dict[str, Any]]) -> list[str]:
    tuned = [r for r in rows if "fine_tune" in r]
    if not tuned:
        return []
    ft = tuned[0]["fine_tune"]
    lines = ["", (f"Fine-tuning (`xmodal train --init FOLDER`): {ft['steps']} steps at batch "
                  f"{ft['batch_size']} on rendered pairs (a JSONL file), both towers, ITC, AdamW, "
                  f"{ft['threads']} threads; s/step from the loop's own timer, total with loading "
                  "the model and data and writing it back."), "",
             "| model | s/step | total | peak | loss first → last |", "|---|---|---|---|---|"]
    for r in tuned:
        ft = r["fine_tune"]
        lines.append(f"| {r['model']} | {ft['loop_s_per_step']:.2f} | {ft['total_s']:.0f} s | "
                     f"{ft['fine_tune_peak_gb']:.2f} GiB | {ft['loss_first']:.3f} → "
                     f"{ft['loss_last']:.3f} |")
    return lines


def report(rows: list[dict[str, Any]], command: str, count: int) -> str:
    """The markdown of bench/results/own-model.md."""
    return "\n".join(_header(command, count) + _export_table(rows) + _fine_tune_table(rows)) + "\n"


def main(kinds: tuple[str, ...], count: int, steps: int, batch_size: int, out: Path | None,
         json_out: Path | None, workdir: Path | None, command: str) -> int:
    import tempfile

    from training.synthetic import write_gallery

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        work = Path(tmp)
        images = write_gallery(work / "images", count, seed=11, size=256)
        pairs = write_pairs(work / "pairs", max(batch_size * 4, 64))
        rows = [measure(kind, work, images, pairs, steps, batch_size) for kind in kinds]
    emit(report(rows, command, count), out, rows, json_out)
    return 0
