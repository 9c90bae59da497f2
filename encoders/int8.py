"""Per-tower int8 choice: quantise each graph every way, measure, keep the fastest within bounds.

Static QDQ wins on convolution stacks (QLinearConv keeps activations int8 from layer to layer);
dynamic wins on BERT-style towers (their activations have outliers that one fixed range per
tensor clips). Rather than guess per architecture, export builds both, times them side by side
on the same inputs and keeps the fastest whose output stays within bounds: max difference to
PyTorch within the int8 tolerance and cosine to the fp32 graph at least `MIN_COSINE` on every
embedding (`encoders.variants`). When neither int8 graph stays within bounds the tower stays fp32 ("fp32" is a
candidate too). The manifest records every candidate's figures and the choice.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from encoders.quantize import INT8_METHODS, quantize_int8
from encoders.variants import MIN_COSINE

ROUNDS = 3
ROUND_S = 0.05  # shortest timed round


@dataclass(frozen=True)
class Candidate:
    method: str  # "fp32", "static" or "dynamic"
    items_per_s: float  # on the timing batch, measured beside the other candidates
    max_abs: float  # against PyTorch on the parity inputs (encoders.export.measure_parity)
    min_cosine: float | None  # against the fp32 graph on the calibration inputs; None: no embedding

    def within(self, atol: float, min_cosine: float = MIN_COSINE) -> bool:
        return self.max_abs <= atol and (self.min_cosine is None or self.min_cosine >= min_cosine)


def choose(candidates: Sequence[Candidate], atol: float, min_cosine: float = MIN_COSINE) -> Candidate:
    """The fastest candidate within bounds; fp32 is within them by construction when offered."""
    within = [c for c in candidates if c.within(atol, min_cosine)]
    if not within:
        worst = ", ".join(f"{c.method}: max diff {c.max_abs:.3g}, cosine {c.min_cosine}"
                          for c in candidates)
        raise ValueError(f"no graph within bounds (diff <= {atol}, cosine >= {min_cosine}): {worst}")
    return max(within, key=lambda c: c.items_per_s)


def build_candidates(fp32: Path, plain: Path, folder: Path,
                     calibration: Sequence[dict] | None) -> dict[str, Path]:
    """fp32 and each int8 method's graph in `folder`; static only with calibration. Dynamic
    starts from the fused graph `fp32` (ONNX Runtime quantises its fused attention); static
    from the `plain` one, whose every tensor onnx's shape inference can type (in a fused graph
    it cannot, and QDQ then leaves those products float)."""
    paths = {"fp32": fp32}
    for method in INT8_METHODS:
        if method == "static" and not calibration:
            continue
        paths[method] = folder / f"{fp32.stem}.{method}.onnx"
        quantize_int8(plain if method == "static" else fp32, paths[method], method, calibration,
                      heads_from=plain)
    return paths


def sessions(paths: dict[str, Path], threads: int) -> dict[str, ort.InferenceSession]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return {name: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
            for name, p in paths.items()}


def min_cosines(runs: dict[str, ort.InferenceSession], feeds: Sequence[dict], output: str,
                reference: str = "fp32") -> dict[str, float]:
    """Lowest cosine, over every input row, between each session's `output` and the reference's."""
    worst = {name: 1.0 for name in runs}
    for feed in feeds:
        expected = runs[reference].run([output], feed)[0]
        for name, session in runs.items():
            got = session.run([output], feed)[0]
            cos = (got * expected).sum(axis=1) / (np.linalg.norm(got, axis=1)
                                                  * np.linalg.norm(expected, axis=1) + 1e-12)
            worst[name] = min(worst[name], float(cos.min()))
    return worst


def items_per_s(runs: dict[str, Callable[[], object]], items: int, rounds: int = ROUNDS) -> dict[str, float]:
    """Throughput of each runner, timed in interleaved rounds so load on a shared machine falls
    on all alike; the median round, after one warm-up call each. A round repeats a call that
    takes under `ROUND_S` until it does not, so timer and scheduler noise stay small."""
    repeats = {}
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        repeats[name] = max(1, math.ceil(ROUND_S / max(time.perf_counter() - start, 1e-6)))
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(repeats[name]):
                run()
            seconds[name].append((time.perf_counter() - start) / repeats[name])
    return {name: items / statistics.median(s) for name, s in seconds.items()}


def record(chosen: Candidate, candidates: Sequence[Candidate]) -> dict:
    """What the manifest keeps of a tower's choice."""
    return {"chosen": chosen.method, "min_cosine_bound": MIN_COSINE,
            "candidates": {c.method: {k: v for k, v in asdict(c).items() if k != "method"}
                           for c in candidates}}
