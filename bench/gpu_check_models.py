"""GPU check steps for the models and the service: the engine under the CUDA execution provider
(fp32, fp16) against the CPU engine, AMP training against CPU training, and `xmodal serve`
with batching on and off (bench.gpu_check runs them)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.gpu_check import (
    REPO,
    CheckConfig,
    Outcome,
    cuda_provider_missing,
    faiss_gpu_missing,
    rate,
    torch_cuda_missing,
)

GOAL_FP16_SPEEDUP = 20.0  # fp16 images/s on the GPU over the CPU engine's on 2 cores
CPU_CORES = 2  # the project's own machine, which the CPU engine figure stands for
STANDIN_STEPS = 100
AGREEMENT_QUERIES = 32
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def tail(text: str, lines: int = 3) -> str:
    """The last lines of a child's stderr, on one line (a report cell holds no newline)."""
    return " / ".join([line.strip() for line in text.strip().splitlines() if line.strip()][-lines:])


def prepare_standin(cfg: CheckConfig, out: Outcome) -> None:
    """The shapes demo (a tiny model, trained here) when the default engine is not on this
    machine; its index needs FAISS, so only its engine may come out of a bare machine."""
    out.goal = "a stand-in engine and index: the shapes demo, not the default model"
    argv = [sys.executable, "-m", "xmodal", "demo", "--no-serve", "--model", "shapes",
            "--steps", str(STANDIN_STEPS), "--workdir", str(cfg.work / "standin")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    ready = [p for p in ("engine", "index") if (cfg.work / "standin" / p).is_dir()]
    out.headline = f"made: {', '.join(ready) or 'nothing'}"
    out.notes.append(f"no engine at {cfg.engine}; the engine and serve steps check the shapes "
                     f"demo's instead ({STANDIN_STEPS} training steps)")
    if done.returncode != 0:
        out.notes.append(f"`xmodal demo` exited {done.returncode}: {tail(done.stderr)}")


# -- engine -----------------------------------------------------------------------------------

@contextlib.contextmanager
def _cores(count: int) -> Iterator[None]:
    """Run on `count` cores of this machine, as on the project's own 2-core machine."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(before)[:count])
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _fp16_bundle(src: Path, dst: Path) -> Path:
    """The fp32 bundle's graphs converted to fp16 (encoders.quantize), with the fp16 tolerance
    that export would have measured them against."""
    from encoders.bundle import read_manifest, write_manifest
    from encoders.export import TOLERANCE
    from encoders.quantize import convert

    manifest = read_manifest(src)
    graphs = {g.file for g in manifest.graphs.values()}
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=lambda _, names: [n for n in names if n in graphs])
    for name in graphs:
        convert(src / name, dst / name, "fp16")
    parity = {role: {"atol": TOLERANCE["fp16"], "measured_at_export": False} for role in manifest.graphs}
    write_manifest(dst, dataclasses.replace(manifest, precision="fp16", parity=parity))
    return dst


def _tolerance(manifest: Any, role: str) -> float:
    from encoders.export import TOLERANCE

    return float(manifest.parity.get(role, {}).get("atol", TOLERANCE[manifest.precision]))


def _outputs(engine: Any, pixels: np.ndarray, texts: list[str]) -> dict[str, np.ndarray]:
    return {**engine.encode_pixels(pixels), "text_embeds": engine.encode_texts(texts)}


def _diff(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest difference per output, relative to the output's scale where that exceeds 1
    (as export measures parity: embeddings absolute, image tokens relative)."""
    return {k: float(np.abs(got[k] - v).max() / max(1.0, float(np.abs(v).max()))) for k, v in want.items()}


def _speed(engine: Any, pixels: np.ndarray, texts: list[str], batch: int, seconds: float) -> dict[str, float]:
    return {"images/s": round(rate(lambda: engine.encode_pixels(pixels[:batch]), batch, seconds), 1),
            "texts/s": round(rate(lambda: engine.encode_texts(texts[:batch]), batch, seconds), 1)}


def _inputs(engine: Any, batch: int) -> tuple[np.ndarray, list[str]]:
    from training import synthetic

    size = engine.manifest.image_preprocess.size
    pixels = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
    return pixels, [s.caption for s in synthetic.scenes(batch, seed=5)]


def _on_gpu(engine: Any) -> bool:
    # the engine keeps text batches whole only when a session runs on a provider other than
    # CPU; ONNX Runtime falls back to CPU, printing a warning, when CUDA cannot start
    return engine.text_call_tokens == math.inf


def _open_on_gpu(out: Outcome, folder: Path) -> Any:
    """The engine at `folder` on the CUDA provider as the service would open it, or None; when
    that lands on CPU, tried again with the CUDA and cuDNN libraries of the nvidia-* wheels
    loaded first (onnxruntime.preload_dlls), which the engine itself does not do."""
    import onnxruntime as ort

    from encoders.engine import OnnxEngine

    engine = OnnxEngine(folder, providers=[CUDA, CPU])
    if _on_gpu(engine):
        return engine
    precision = engine.manifest.precision
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
        engine = OnnxEngine(folder, providers=[CUDA, CPU])
        if _on_gpu(engine):
            out.fail(f"the {precision} engine reaches CUDA only after onnxruntime.preload_dlls(), "
                     "which encoders/engine.py does not call: the service would run it on CPU")
            return engine
    out.skip(f"no GPU: the {precision} engine's sessions fell back to CPU (CUDA could not start: "
             "see the log)")
    return None


def _default_preference(engine_dir: Path, pixels: np.ndarray) -> dict[str, Any]:
    """What the service opens: the engine with its default provider order (TensorRT first
    where offered), its load time and its first call at the largest batch (a provider that
    builds per input shape pays here)."""
    import time

    from encoders.engine import OnnxEngine

    started = time.perf_counter()
    engine = OnnxEngine(engine_dir)
    loaded = time.perf_counter()
    engine.encode_pixels(pixels)
    return {"providers asked": ", ".join(engine.providers), "on GPU": _on_gpu(engine),
            "load s": round(loaded - started, 2), "batch": len(pixels),
            "first call s": round(time.perf_counter() - loaded, 2)}


def _gpu_engine(out: Outcome, folder: Path, pixels: np.ndarray, texts: list[str],
                reference: dict[int, dict[str, np.ndarray]], cfg: CheckConfig,
                cpu_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    engine = _open_on_gpu(out, folder)
    if engine is None:
        return []
    precision = engine.manifest.precision
    rows = []
    for batch, cpu_row in zip(cfg.batches, cpu_rows, strict=True):
        diff = _diff(_outputs(engine, pixels[:batch], texts[:batch]), reference[batch])
        row = {"engine": f"CUDA {precision}", "batch": batch,
               **_speed(engine, pixels, texts, batch, cfg.seconds)}
        row["images/s vs CPU"] = round(row["images/s"] / cpu_row["images/s"], 1)
        row["largest diff"] = max(diff.values())
        rows.append(row)
        for name, d in diff.items():
            role = "text_encoder" if name == "text_embeds" else "image_encoder"
            tol = _tolerance(engine.manifest, role)
            out.check(f"CUDA {precision} {name} at batch {batch}: diff {d:.2g} ≤ {tol:g}", d <= tol)
    return rows


def engine_step(cfg: CheckConfig, out: Outcome) -> None:
    top = max(cfg.batches)
    out.goal = (f"fp16 images/s at batch {top} ≥ {GOAL_FP16_SPEEDUP:g}× the CPU engine's on "
                f"{CPU_CORES} cores; CUDA fp32 and fp16 outputs within the manifest's tolerance "
                "of the CPU engine's")
    from encoders.engine import OnnxEngine

    if not (cfg.engine / "manifest.json").is_file():
        out.skip(f"no engine bundle at {cfg.engine}: run `xmodal demo --no-serve` (var/demo/engine), "
                 "pass --engine, or --standin")
        return
    with _cores(CPU_CORES):
        cpu = OnnxEngine(cfg.engine, providers=[CPU], threads=CPU_CORES)
        pixels, texts = _inputs(cpu, top)
        reference = {b: _outputs(cpu, pixels[:b], texts[:b]) for b in cfg.batches}
        cpu_rows = [{"engine": f"CPU {cpu.manifest.precision}", "batch": b,
                     **_speed(cpu, pixels, texts, b, cfg.seconds)} for b in cfg.batches]
    out.notes.append(f"engine {cpu.engine_id} ({cpu.manifest.family}) from {cfg.engine}; the CPU "
                     f"engine runs {CPU_CORES} threads on {CPU_CORES} cores of this machine, "
                     "standing in for the project's own machine")
    out.tables["CPU reference"] = cpu_rows
    out.check("CPU engine gives finite outputs", all(np.isfinite(v).all() for r in reference.values()
                                                    for v in r.values()))
    out.headline = f"CPU {cpu_rows[-1]['images/s']:,.1f} images/s at batch {top}"
    fp16 = _fp16_bundle(cfg.engine, cfg.work / "engine-fp16")
    out.notes.append(f"fp16 bundle converted here from the fp32 one: {fp16}")
    missing = cuda_provider_missing()
    if missing:
        out.skip(missing)
        return
    rows = [r for folder in (cfg.engine, fp16)
            for r in _gpu_engine(out, folder, pixels, texts, reference, cfg, cpu_rows)]
    out.tables["CUDA execution provider"] = rows
    out.tables["default provider order (what the service opens)"] = [
        _default_preference(cfg.engine, pixels)]
    fp16_top = [r for r in rows if r["engine"] == "CUDA fp16" and r["batch"] == top]
    if fp16_top:
        gain = fp16_top[0]["images/s vs CPU"]
        out.headline = f"fp16 {fp16_top[0]['images/s']:,.0f} images/s at batch {top} ({gain}× CPU)"
        out.check(f"fp16 images/s ≥ {GOAL_FP16_SPEEDUP:g}× CPU", gain >= GOAL_FP16_SPEEDUP)


# -- training ---------------------------------------------------------------------------------

def _train(cfg: CheckConfig, folder: Path, steps: int, cuda: bool, *extra: str) -> dict[str, Any]:
    """One `xmodal train` run of the generic trainer in its own process; CUDA hidden for the
    CPU reference (the trainer takes a GPU whenever torch sees one)."""
    shutil.rmtree(folder, ignore_errors=True)  # a folder with a run in it would be resumed
    argv = [sys.executable, "-m", "xmodal", "train", "--out", str(folder), "--steps", str(steps),
            "--train-size", str(cfg.train_size), "--batch-size", str(cfg.batch_size),
            "--save-every", "0", *extra]
    env = {**os.environ} | ({} if cuda else {"CUDA_VISIBLE_DEVICES": ""})
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": tail(done.stderr)}
    info = json.loads((folder / "config.json").read_text())["info"]
    seconds = info["seconds_this_run"]
    return {"steps": steps, "loop s": seconds, "steps/s": round(steps / max(seconds, 1e-9), 2),
            "final loss": info["final_loss"]}


def train_step(cfg: CheckConfig, out: Outcome) -> None:
    out.goal = f"{cfg.train_steps} AMP training steps on the GPU: steps/s against the CPU's, loss finite"
    missing = torch_cuda_missing()  # imports torch: a machine without it skips the step here
    out.notes.append("the default preset (lit-lite0, training/lit_train.py) trains its heads and "
                     "reranker on cached features held as CPU tensors: it has no device or AMP hook "
                     "and cannot run on a GPU. Measured instead: the generic trainer "
                     "(training/train.py: autocast and GradScaler on CUDA) with its default model "
                     f"(tiny-clip) on shapes, batch {cfg.batch_size}; the CPU reference uses the "
                     "trainer's own thread count (TrainConfig.threads)")
    cpu = _train(cfg, cfg.work / "train-cpu", cfg.cpu_train_steps, cuda=False)
    out.tables["runs"] = [{"device": "CPU", **cpu}]
    if not out.check("CPU training ran, loss finite", "error" not in cpu and math.isfinite(cpu["final loss"])):
        return
    out.headline = f"CPU {cpu['steps/s']} steps/s"
    if missing:
        out.skip(missing)
        return
    gpu = _train(cfg, cfg.work / "train-gpu", cfg.train_steps, cuda=True)
    out.tables["runs"].append({"device": "GPU (AMP)", **gpu})
    if out.check("GPU AMP training ran, loss finite", "error" not in gpu and math.isfinite(gpu["final loss"])):
        out.headline = f"GPU {gpu['steps/s']} steps/s, {gpu['steps/s'] / cpu['steps/s']:.1f}× CPU"
    # validation during training moves the model's outputs to numpy: on CUDA tensors too
    evaluated = _train(cfg, cfg.work / "train-gpu-eval", 2, True, "--eval-every", "2")
    out.check("GPU training with --eval-every (recall on the validation set) runs",
              "error" not in evaluated)
    out.tables["runs"].append({"device": "GPU, eval every 2 steps", **evaluated})


# -- serving ----------------------------------------------------------------------------------

def _agreement(url: str, cfg: CheckConfig, texts: list[str], k: int) -> float:
    """Share of queries whose service ids equal the CPU path's (CPU engine, CPU FAISS)."""
    import httpx

    from encoders.engine import OnnxEngine
    from index.search import Searcher

    engine = OnnxEngine(cfg.engine, providers=[CPU])
    searcher = Searcher(cfg.index, engine.engine_id, gpu=False)
    same = 0
    try:
        for text in texts:
            body = httpx.post(f"{url}/v1/search/text", json={"text": text, "k": k}, timeout=30).json()
            want = [h.id for h in searcher.search(engine.encode_texts([text]), k)[0]]
            same += [r["id"] for r in body["results"]] == want
    finally:
        searcher.close()
    return same / len(texts)


def serve_step(cfg: CheckConfig, out: Outcome) -> None:
    out.goal = (f"batching on / off throughput at {cfg.serve_clients} clients ≥ bench.serve's "
                "goal with the service on the GPU; service ids equal the CPU path's")
    from bench.load import index_items, query_texts, start_server
    from bench.serve import GOAL_BATCH_GAIN, MIN_AGREEMENT, SERVERS, batching_gain

    out.goal = (f"batching on / off throughput at {cfg.serve_clients} clients ≥ "
                f"{GOAL_BATCH_GAIN:g}× with the service on the GPU; service ids equal the CPU "
                f"path's for ≥ {MIN_AGREEMENT:.0%} of queries")
    if not (cfg.engine / "manifest.json").is_file() or not cfg.index.exists():
        out.skip(f"no engine at {cfg.engine} or no index at {cfg.index}: run `xmodal demo "
                 "--no-serve`, or pass --engine and --index")
        return
    # the servers run in this environment and pick devices as it offers them (engine providers,
    # faiss.get_num_gpus): what this process finds is what they get
    missing = [m for m in (cuda_provider_missing(), faiss_gpu_missing()) if m]
    _, items = index_items(cfg.index)
    texts = query_texts(items, max(cfg.serve_requests, AGREEMENT_QUERIES), seed=1)
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(start_server(cfg.engine, cfg.index, cache_entries=0, **extra))
                   for name, extra in SERVERS.items()}
        gain = batching_gain(servers, cfg.serve_clients, False, texts, 10, cfg.serve_requests,
                             cfg.serve_seconds)
        agreement = _agreement(servers["batching_on"].url, cfg, texts[:AGREEMENT_QUERIES], 10)
    device = "CPU" if missing else "GPU"
    out.tables["batching on vs off"] = [{"service on": device, "clients": cfg.serve_clients,
                                         "ratio (median)": gain["ratio"],
                                         "rounds": ", ".join(map(str, gain["round_ratios"])),
                                         "on req/s": float(np.median(gain["on_req_per_s"])),
                                         "off req/s": float(np.median(gain["off_req_per_s"])),
                                         "ids equal CPU path": agreement}]
    out.headline = f"{device}: batching {gain['ratio']}× at {cfg.serve_clients} clients"
    out.check(f"service ids equal the CPU path's for ≥ {MIN_AGREEMENT:.0%}", agreement >= MIN_AGREEMENT)
    for reason in missing:
        out.skip(reason)
    if not missing:
        out.check(f"batching gain ≥ {GOAL_BATCH_GAIN:g}×", gain["ratio"] >= GOAL_BATCH_GAIN)
