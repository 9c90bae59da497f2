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
        from onnxruntime.quantization.shape_inference import quant_pre_process

        # shape inference and graph optimisation first, as ONNX Runtime recommends, so more
        # MatMuls are recognised; then int8 weights with activations quantised on the fly
        prepared = dst.with_suffix(".prep.onnx")
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        try:
            quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8)
        finally:
            prepared.unlink(missing_ok=True)
    else:
        raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")
