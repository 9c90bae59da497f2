"""`xmodal bench engine-report`: bench/results/engine.md from the JSON of `bench engine` runs
(the default towers, ViT-B/32) and of `bench build --precision int8`, every figure read from
them and each goal of the engine work marked met or not."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from bench.engine import HF_CLIP_B32


def _row(run: dict, tower: str, batch: int, runner: str) -> dict | None:
    return next((r for r in run["results"] if (r["tower"], r["batch"], r["runner"])
                 == (tower, batch, runner)), None)


def _ratio(run: dict | None, tower: str, runner: str, over: str, batch: int = 32) -> float | None:
    if run is None:
        return None
    a, b = _row(run, tower, batch, runner), _row(run, tower, batch, over)
    # from the ratios to PyTorch, which the run computed before rounding items/s
    return None if a is None or b is None else a["vs_torch"] / b["vs_torch"]


def _met(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**not met**")


def _at_least(value: float | None, goal: float) -> str:
    return f"{value:.2f}x -> {_met(None if value is None else value >= goal)}" if value else _met(None)


def _recall_goal(run: dict | None) -> str:
    if run is None or not run.get("recall"):
        return _met(None)
    drops = [r["R@10"][d][k] - r["R@10"][d]["fp32"] for r in run["recall"] for d in r["R@10"]
             for k in ("int8_index", "int8")]
    cosines = [c for r in run["recall"] for c in r["min_cosine"].values()]
    return (f"largest R@10 drop {-min(drops):.2f} points, lowest cosine {min(cosines):.4f} -> "
            f"{_met(min(drops) >= -1.0 and min(cosines) >= 0.99)}")


def _build_goal(build: list[dict] | None) -> str:
    if not build:
        return _met(None)
    builds = [r for r in build if "workers" in r]
    base = next((r for r in builds if "asked" not in r), None)
    fast = next((r for r in builds if "asked" in r), None)
    if base is None or fast is None:
        return _met(None)
    ratio = fast["images_per_s"] / base["images_per_s"]
    return (f"--precision {fast['asked']} chose {fast['precision']}: engine busy "
            f"{fast['engine_busy']:.0%}, {ratio:.2f}x the fp32 build -> "
            f"{_met(fast['precision'] != 'fp32' and fast['engine_busy'] >= 0.9 and ratio >= 2.0)}")


def goals(runs: list[dict], build: list[dict] | None) -> list[str]:
    vit = next((r for r in runs if r["model"] == HF_CLIP_B32), None)
    default = next((r for r in runs if r.get("family") == "lit"), None)
    fp32 = [(r["model"], t, _row(r, t, 32, "onnx_fp32")) for r in runs for t in ("image", "text")]
    fp32_text = ", ".join(f"{m} {t} {row['of_gemm']:.0%}" for m, t, row in fp32 if row)
    return [
        (f"- int8 image tower >= 3x PyTorch eager at batch 32 on ViT-B/32: "
        f"{_at_least(_ratio(vit, 'image', 'onnx_int8', 'torch_eager'), 3.0)}"),
        (f"- int8 default image tower >= 2x ONNX Runtime fp32 at batch 32: "
        f"{_at_least(_ratio(default, 'image', 'onnx_int8', 'onnx_fp32'), 2.0)}"),
        (f"- int8 default text tower >= 2.5x PyTorch eager at batch 32: "
        f"{_at_least(_ratio(default, 'text', 'onnx_int8', 'torch_eager'), 2.5)}"),
        (f"- int8 recall change within 1 point of R@10 (t2i and i2t) and cosine to fp32 >= 0.99 "
        f"per embedding, default model's quality sets: {_recall_goal(default)}"),
        (f"- fp32 towers >= 70% of the fp32 GEMM rate at batch 32: {fp32_text} -> "
        f"{_met(all(row['of_gemm'] >= 0.7 for _, _, row in fp32 if row) if fp32_text else None)}"),
        (f"- `xmodal bench build` with int8: engine >= 90% busy and >= 2x the fp32 build: "
        f"{_build_goal(build)}"),
    ]


def _gemm(run: dict) -> list[str]:
    lines = [("| when | load average (1, 5, 15 min) | torch fp32 GFLOP/s | torch bf16 GFLOP/s | "
             "torch int8 GOP/s | ORT fp32 MatMul | ORT u8s8 MatMulInteger | ORT bf16 MatMul |"),
             "|---|---|---|---|---|---|---|---|"]
    for when in ("gemm_before", "gemm_after"):
        g = run[when]
        ort = [f"{v:.0f}" if isinstance(v, float) else v for v in
               (g["onnxruntime"][k] for k in ("fp32", "int8", "bf16"))]
        lines.append(f"| {when.split('_')[1]} | {', '.join(f'{x:.2f}' for x in g['loadavg'])} | "
                     f"{g['torch']['fp32']:.0f} | {g['torch']['bf16']:.0f} | {g['torch']['int8']:.0f} | "
                     + " | ".join(ort) + " |")
    return lines


def _bf16(run: dict) -> list[str]:
    """What bf16 would give and whether ONNX Runtime's CPU provider can give it."""
    g = run["gemm_before"]
    answer, gain = g["onnxruntime"]["bf16"], g["torch"]["bf16"] / g["torch"]["fp32"]
    if isinstance(answer, str):
        return [(f"bf16: PyTorch's bf16 products run at {gain:.2f}x its fp32 rate here, but ONNX "
                f"Runtime's CPU provider has no bf16 MatMul kernel ({answer}), so no engine graph "
                "can use AVX-512 BF16 through it; the bundles carry no bf16 variant.")]
    return [(f"bf16: ONNX Runtime's CPU provider ran a bf16 MatMul at {answer:.0f} GFLOP/s "
            f"({answer / g['onnxruntime']['fp32']:.2f}x its fp32 MatMul); PyTorch's at {gain:.2f}x fp32.")]


def _towers(run: dict) -> list[str]:
    lines = [("| tower | batch | runner | items/s | vs PyTorch eager | GFLOP/item | achieved G(FL)OP/s "
             "| of GEMM rate | min cosine to PyTorch |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in run["results"]:
        lines.append(f"| {r['tower']} | {r['batch']} | {r['runner']} | {r['items_per_s']:.1f} | "
                     f"{r['vs_torch']:.2f}x | {r['gflop_per_item']:.3f} | {r['achieved_gflops']:.1f} | "
                     f"{r['of_gemm']:.0%} of {r['gemm_precision']} | {r['min_cosine_to_torch']:.4f} |")
    return lines


def _choice(run: dict) -> list[str]:
    lines = ["| tower | candidate | items/s at export | max diff to PyTorch | min cosine to fp32 | chosen |",
             "|---|---|---|---|---|---|"]
    for role, rec in run["export"]["towers"].items():
        for name, c in rec["candidates"].items():
            cos = "-" if c["min_cosine"] is None else f"{c['min_cosine']:.4f}"
            lines.append(f"| {role} | {name} | {c['items_per_s']:.1f} | {c['max_abs']:.3g} | {cos} | "
                         f"{'yes' if name == rec['chosen'] else ''} |")
    fused = "; ".join(f"{role}: {ops or 'nothing'}" for role, ops in run["export"]["fused"].items())
    return lines + ["", f"Transformer optimiser fusions saved in the bundle: {fused}."]


def _recall(run: dict) -> list[str]:
    lines = ["| set | direction | fp32 R@10 | int8-built index R@10 | int8 throughout R@10 |",
             "|---|---|---|---|---|"]
    for r in run["recall"]:
        for d, v in r["R@10"].items():
            lines.append(f"| {r['set']} | {d} | {v['fp32']} | {v['int8_index']} | {v['int8']} |")
    cos = "; ".join(f"{r['set']}: image {r['min_cosine']['image']}, text {r['min_cosine']['text']}"
                    for r in run["recall"])
    return lines + ["", f"Lowest cosine of an int8 embedding to its fp32 one: {cos}."]


def _build(build: list[dict]) -> list[str]:
    lines = ["| pipeline | images/s | of raw engine | engine busy |", "|---|---|---|---|"]
    lines += [f"| {r['pipeline']} | {r['images_per_s']:.1f} | {r['of_raw']:.0%} | {r['engine_busy']:.0%} |"
              for r in build if "pipeline" in r]
    return lines


def render(runs: list[dict], build: list[dict] | None, command: str) -> str:
    flags = sorted({f for f in Path("/proc/cpuinfo").read_text().split()
                    if f in ("avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")}) \
        if Path("/proc/cpuinfo").is_file() else []
    lines = ["# Engines against this CPU's own limits", "",
             (f"Regenerated by `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{platform.machine()}, {os.cpu_count()} cores, {', '.join(flags) or 'no VNNI/BF16 flags'}). "
             "Every ratio is measured side by side in one run, rounds interleaved; the cores are "
             "shared, so absolute rates are depressed and the load average is printed beside them. "
             "Achieved G(FL)OP/s = counted FLOPs per item (torch FlopCounterMode on the exported "
             "module: products, convolutions, attention) x items/s; the GEMM rates are 2048^3 "
             "products at the engines' thread count, measured in the same run before and after the towers. "
             "`make bench-engine` makes the JSON runs this is read from and then this page."),
             "", "## Goals", "", *goals(runs, build)]
    for run in runs:
        lines += ["", f"## {run['model']} ({run.get('family', '?')}, {run['threads']} threads)", "",
                  "### GEMM rates in this run", "", *_gemm(run), "", *_bf16(run), "", "### Towers", "", *_towers(run),
                  "", ("### int8 choice per tower at export (calibration: "
                  f"{run['export']['calibration']})"), "", *_choice(run)]
        if run.get("recall"):
            lines += ["", "### int8 recall change on the quality sets", "", *_recall(run)]
    if build:
        lines += ["", "## Index build, fp32 then int8 (`xmodal bench build --precision int8`)", "",
                  *_build(build)]
    return "\n".join(lines) + "\n"


def main(runs: list[Path], build: Path | None, out: Path, command: str) -> int:
    text = render([json.loads(p.read_text()) for p in runs],
                  json.loads(build.read_text()) if build else None, command)
    out.write_text(text)
    print(text)
    return 0
