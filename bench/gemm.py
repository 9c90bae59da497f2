"""The machine's own matrix-product rates: the ceiling each engine precision is measured against.

One 2048^3 product per precision, through PyTorch (fp32, bf16 and int8 `_int_mm`) and through
ONNX Runtime's CPU provider (fp32 MatMul, u8s8 MatMulInteger, bf16 MatMul), with the thread
count the engines get. A product of (m, k) by (k, n) is 2mkn operations (a multiply and an
add each). ONNX Runtime's answer for bf16 is recorded as it comes: a rate, or the error that
says it has no kernel for it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

SIZE = 2048


def gemm_ops(m: int, k: int, n: int) -> int:
    """Operations in one (m, k) x (k, n) product: m*n dot products of length k, 2 ops per term."""
    return 2 * m * k * n


def _rate(run: Callable[[], Any], ops: int, rounds: int) -> float:
    """Operations per second (giga), median of `rounds` timed calls after a warm-up."""
    run()
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return ops / statistics.median(seconds) / 1e9


def torch_rates(size: int = SIZE, threads: int = 2, rounds: int = 3) -> dict[str, float]:
    """GFLOP/s (fp32, bf16) and GOP/s (int8) of PyTorch matrix products at `threads`."""
    import torch

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=gen), torch.randn(size, size, generator=gen)
    a16, b16 = a.bfloat16(), b.bfloat16()
    a8 = torch.randint(-128, 128, (size, size), dtype=torch.int8, generator=gen)
    b8 = torch.randint(-128, 128, (size, size), dtype=torch.int8, generator=gen)
    ops = gemm_ops(size, size, size)
    with torch.no_grad():
        return {"fp32": _rate(lambda: a @ b, ops, rounds),
                "bf16": _rate(lambda: a16 @ b16, ops, rounds),
                "int8": _rate(lambda: torch._int_mm(a8, b8), ops, rounds)}


def _matmul_graph(op: str, elem_a: int, elem_b: int, elem_out: int) -> bytes:
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["a", "b"], ["y"])
    graph = helper.make_graph([node], "gemm", [
        helper.make_tensor_value_info("a", elem_a, ["m", "k"]),
        helper.make_tensor_value_info("b", elem_b, ["k", "n"])],
        [helper.make_tensor_value_info("y", elem_out, ["m", "n"])])
    opset = 21 if elem_a == TensorProto.BFLOAT16 else 17
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model.SerializeToString()


def onnxruntime_rates(size: int = SIZE, threads: int = 2, rounds: int = 3) -> dict[str, Any]:
    """The same products through ONNX Runtime's CPU provider: a rate per precision, or, where a
    session cannot be made or run, the reason it gave."""
    import onnxruntime as ort
    from onnx import TensorProto as T

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    rng = np.random.default_rng(0)
    f32 = rng.normal(size=(size, size)).astype(np.float32)
    u8 = rng.integers(0, 256, (size, size), dtype=np.uint8)
    s8 = rng.integers(-128, 128, (size, size), dtype=np.int8)
    cases = {"fp32": (("MatMul", T.FLOAT, T.FLOAT, T.FLOAT), f32, f32),
             "int8": (("MatMulInteger", T.UINT8, T.INT8, T.INT32), u8, s8),
             "bf16": (("MatMul", T.BFLOAT16, T.BFLOAT16, T.BFLOAT16), None, None)}
    out: dict[str, Any] = {}
    for name, (spec, a, b) in cases.items():
        try:
            session = ort.InferenceSession(_matmul_graph(*spec), options,
                                           providers=["CPUExecutionProvider"])
            if a is None:  # numpy has no bfloat16: ONNX Runtime must take it as an OrtValue
                a = b = _bf16_value(f32)
            feeds = {"a": a, "b": b}
            out[name] = _rate(lambda s=session, f=feeds: s.run(None, f), gemm_ops(size, size, size),
                              rounds)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types are untyped
            out[name] = f"not run: {str(exc).splitlines()[0][:200]}"
    return out


def _bf16_value(array: np.ndarray) -> Any:
    import onnxruntime as ort

    # bfloat16 is the top half of a float32's bits
    bits = (array.view(np.uint32) >> 16).astype(np.uint16)
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, 16)  # 16: TensorProto.BFLOAT16
