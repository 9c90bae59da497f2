"""Precision variants of exported graphs: fp16 for GPUs, int8 for CPUs (static or dynamic).

int8 comes two ways, and which is faster depends on the tower (`encoders.int8` measures them):
- static: QDQ with per-channel int8 weights and uint8 activations whose ranges are fixed
  beforehand on calibration inputs (`encoders.calibration`); ONNX Runtime fuses the pattern into
  QLinearConv / QGemm / MatMulIntegerToFloat, which run u8s8 products on AVX-512 VNNI;
- dynamic: int8 weights, activations quantised on the fly each call (MatMulInteger, QAttention).

Both leave the heads after pooling in fp32: they are a small share of the work and their error
goes straight into the embedding.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

PRECISIONS = ("fp32", "fp16", "int8")
INT8_METHODS = ("static", "dynamic")

# the operators static quantisation turns into int8 ones: the products and what lies between
# the convolutions of a CNN, so a conv stack stays int8 from one layer to the next. Norms,
# softmax and embedding look-ups stay float: quantised, they cost MiniLM most of its accuracy.
STATIC_OPS = ("Conv", "MatMul", "Gemm", "Add", "Mul", "Clip", "Relu", "GlobalAveragePool",
              "AveragePool", "MaxPool", "Concat")
# fused graphs hold ONNX Runtime's own operators (SkipLayerNormalization, ...), whose outputs
# onnx's shape inference cannot type: they are float
FUSED_TYPES = {"DefaultTensorType": onnx.TensorProto.FLOAT}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """ONNX Runtime's quantiser and optimiser log every node they touch at INFO, on the root
    logger; what matters of their work the caller records."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def convert(src: Path, dst: Path, precision: str, calibration: Sequence[dict] | None = None,
            method: str = "dynamic") -> None:
    """Write `src` (an fp32 graph) to `dst` at `precision`; inputs and outputs stay fp32/int64.
    int8 `method` "static" needs `calibration`: the graph's input feeds to fix ranges on."""
    if precision == "fp32":
        shutil.copyfile(src, dst)
    elif precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
    elif precision == "int8":
        quantize_int8(src, dst, method, calibration)
    else:
        raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")


def quantize_int8(src: Path, dst: Path, method: str, calibration: Sequence[dict] | None = None,
                  heads_from: Path | None = None) -> None:
    """`heads_from`: the plain graph `src` was fused from; the heads are found there, since
    shape inference cannot see ranks through a fused graph's own operators (names survive)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if method not in INT8_METHODS:
        raise ValueError(f"unknown int8 method {method!r}; one of {', '.join(INT8_METHODS)}")
    if method == "static" and not calibration:
        raise ValueError("static int8 needs calibration inputs (images and texts of the collection)")
    with tempfile.TemporaryDirectory() as tmp, quiet():
        prepared = Path(tmp) / "prepared.onnx"
        _prepare(src, prepared)
        heads = head_nodes(onnx.load(str(prepared), load_external_data=False))
        if heads_from is not None and heads_from != src:
            plain = onnx.shape_inference.infer_shapes(onnx.load(str(heads_from)))
            heads += [name for name in head_nodes(plain) if name not in heads]
        if method == "dynamic":
            quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8,
                             per_channel=True, nodes_to_exclude=heads, extra_options=FUSED_TYPES)
        else:
            _static(prepared, dst, calibration or [], heads)


def _prepare(src: Path, dst: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # shape inference and graph optimisation first, as ONNX Runtime recommends, so more
    # products are recognised and every activation has a known rank
    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def _static(prepared: Path, dst: Path, calibration: Sequence[dict], heads: list[str]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    quantize_static(str(prepared), str(dst), Feeds(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=list(STATIC_OPS),
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=heads,
                    extra_options=FUSED_TYPES)


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Products on 2-D activations (batch, features): the projection heads after pooling, which
    stay fp32. Products inside a tower act on (batch, tokens, width) or on feature maps."""
    ranks = {v.name: len(v.type.tensor_type.shape.dim)
             for v in list(model.graph.value_info) + list(model.graph.input)}
    return [node.name for node in model.graph.node
            if node.op_type == "Gemm" or node.op_type == "MatMul" and ranks.get(node.input[0]) == 2]
