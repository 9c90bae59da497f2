"""The engine benchmark's accounting: GEMM operation counts, FLOPs per item of a tower, the
GEMM-rate probe's answers, and the goals the report marks from the figures it is given."""

from __future__ import annotations

import pytest
import torch

from bench import gemm
from bench.engine_report import goals
from bench.flops import flops_per_item


def test_a_product_counts_a_multiply_and_an_add_per_term() -> None:
    assert gemm.gemm_ops(2, 3, 4) == 2 * 2 * 3 * 4
    assert gemm.gemm_ops(2048, 2048, 2048) == 2 * 2048**3


def test_flops_per_item_count_the_products_of_one_row() -> None:
    linear = torch.nn.Linear(64, 32)
    assert flops_per_item(linear, (torch.randn(5, 64),)) == gemm.gemm_ops(1, 64, 32)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    # per output pixel and channel: 3 x 3 x 3 multiply-adds
    assert flops_per_item(conv, (torch.randn(2, 3, 10, 10),)) == 2 * 8 * 10 * 10 * 27


def test_gemm_probe_measures_every_precision_and_says_why_one_did_not_run() -> None:
    rates = gemm.torch_rates(size=64, threads=1, rounds=1)
    assert set(rates) == {"fp32", "bf16", "int8"} and all(r > 0 for r in rates.values())
    ort = gemm.onnxruntime_rates(size=64, threads=1, rounds=1)
    assert isinstance(ort["fp32"], float) and isinstance(ort["int8"], float)
    # bf16 MatMul: a rate where this onnxruntime has the kernel, else its own error, as text
    assert isinstance(ort["bf16"], float) or ort["bf16"].startswith("not run: ")


def _run(model: str, family: str, rates: dict[tuple[str, str], float], of_gemm: float) -> dict:
    results = [{"tower": t, "batch": 32, "runner": r, "items_per_s": v, "of_gemm": of_gemm,
                "vs_torch": v / rates[(t, "torch_eager")]} for (t, r), v in rates.items()]
    return {"model": model, "family": family, "results": results}


@pytest.mark.parametrize("int8_image, verdict", [(350.0, "**met**"), (250.0, "**not met**")])
def test_goals_are_marked_from_the_figures(int8_image: float, verdict: str) -> None:
    default = _run("ckpt", "lit", {("image", "torch_eager"): 100.0, ("image", "onnx_fp32"): 150.0,
                                   ("image", "onnx_int8"): int8_image, ("text", "torch_eager"): 100.0,
                                   ("text", "onnx_fp32"): 120.0, ("text", "onnx_int8"): 300.0}, 0.8)
    lines = goals([default], None)
    assert lines[1].endswith(f"{int8_image / 150.0:.2f}x -> {verdict}")
    assert lines[2].endswith("3.00x -> **met**")
    assert lines[0].endswith("not measured")  # no ViT-B/32 run given
    assert lines[4].endswith("-> **met**")  # every fp32 tower at 80% of the GEMM rate


def _build(chosen: str, rate: float, busy: float) -> list[dict]:
    return [{"precision": "fp32", "workers": 1, "images_per_s": 40.0, "engine_busy": 0.97},
            {"precision": chosen, "workers": 1, "images_per_s": rate, "engine_busy": busy,
             "asked": "int8"}]


def test_build_goal_needs_the_int8_engine_busy_and_twice_as_fast() -> None:
    assert goals([], _build("int8", 100.0, 0.95))[5].endswith("2.50x the fp32 build -> **met**")
    assert goals([], _build("int8", 100.0, 0.80))[5].endswith("**not met**")
    assert goals([], _build("int8", 60.0, 0.95))[5].endswith("**not met**")
    # the build fell back to fp32: whatever its speed, int8 did not deliver
    assert goals([], _build("fp32", 90.0, 0.95))[5].endswith("**not met**")
