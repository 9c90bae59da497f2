"""Precision variants of exported graphs: fp16 for GPUs, int8 dynamic quantisation for CPUs."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

PRECISIONS = ("fp32", "fp16", "int8")


def convert(src: Path, dst: Path, precision: str) -> None:
    """Write `src` (an fp32 graph) to `dst` at `precision`; inputs and outputs stay fp32/int64."""
    if precision == "fp32":
        shutil.copyfile(src, dst)
    elif precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # weights of MatMul/Gemm in int8, activations quantised on the fly
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    else:
        raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")
