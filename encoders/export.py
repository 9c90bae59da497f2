"""ONNX export of any family into an engine bundle, with parity measured against PyTorch.

Each role (see `encoders.roles`) becomes its own graph with dynamic batch and sequence axes.
Parity is measured on random inputs at batch sizes 1 and 7 (texts of 8 and 5 tokens) and
written into the manifest; export fails when an output differs by more than the precision's
tolerance. fp16 and int8 bundles are converted from the fp32 graphs and measured against the
same PyTorch outputs.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from encoders.atomic import staging_dir
from encoders.bundle import EngineManifest, TokenizerSpec, write_manifest
from encoders.errors import ParityError
from encoders.quantize import PRECISIONS, convert
from encoders.roles import DYNAMIC_AXES, GRAPHS, IMAGE, RERANKER, TEXT, Exportable

log = logging.getLogger(__name__)

PARITY_BATCHES = (1, 7)
PARITY_TEXT_LENGTHS = (8, 5)  # tokens per random text, one per batch size
# difference allowed per precision, on unit-scale outputs (see measure_parity)
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.25}
OPSET = 17


def _random_text(batch: int, seq: int, vocab: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    lengths = torch.randint(1, seq + 1, (batch,), generator=gen)
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).to(torch.int64)
    return ids, mask


def parity_inputs(src: Exportable, seed: int = 0) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """Random inputs for every role at each parity batch size."""
    gen = torch.Generator().manual_seed(seed)
    size = src.preprocess.size
    pixels = [torch.randn(b, 3, size, size, generator=gen) for b in PARITY_BATCHES]
    # a second text length too: a graph that traced its example's length as a constant (as
    # torch.nn.MultiheadAttention does) fails there instead of at the first real query
    texts = [_random_text(b, seq, src.vocab_size, gen)
             for b, seq in zip(PARITY_BATCHES, PARITY_TEXT_LENGTHS, strict=True)]
    inputs = {IMAGE: [(p,) for p in pixels], TEXT: texts}
    if RERANKER in src.roles:
        with torch.no_grad():
            tokens = [src.roles[IMAGE](p)[1] for p in pixels]
        inputs[RERANKER] = [(t, *tx) for t, tx in zip(tokens, texts, strict=True)]
    return inputs


def _export_graph(module: torch.nn.Module, example: tuple, role: str, path: Path) -> None:
    spec = GRAPHS[role]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not ours to fix
        torch.onnx.export(
            module.eval(), example, str(path),
            input_names=spec.inputs, output_names=spec.outputs,
            dynamic_axes={n: DYNAMIC_AXES[n] for n in spec.inputs + spec.outputs},
            opset_version=OPSET, dynamo=False,
        )


def measure_parity(module: torch.nn.Module, path: Path, role: str, inputs: list[tuple]) -> float:
    """Largest difference between PyTorch and ONNX Runtime over all inputs and outputs, in units
    of the output's own scale where that exceeds 1: embeddings and probabilities lie in [-1, 1]
    and are compared as they are, unnormalised outputs (the reranker's image tokens) relative to
    their largest value, so one tolerance per precision means the same for both."""
    spec = GRAPHS[role]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for args in inputs:
        with torch.no_grad():
            expected = module(*args)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(spec.outputs, {n: a.numpy() for n, a in zip(spec.inputs, args)})
        for e, g in zip(expected, got, strict=True):
            scale = max(1.0, float(np.abs(e.numpy()).max()))
            worst = max(worst, float(np.abs(e.numpy() - g).max()) / scale)
    return worst


def export_bundle(src: Exportable, out_dir: str | Path, precision: str = "fp32",
                  atol: float | None = None) -> EngineManifest:
    """Export every role of `src` to a new engine bundle at `out_dir`; return its manifest."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")
    atol = TOLERANCE[precision] if atol is None else atol
    inputs = parity_inputs(src)
    graphs = {role: GRAPHS[role] for role in src.roles}
    parity = {}
    with staging_dir(Path(out_dir)) as tmp, tempfile.TemporaryDirectory() as fp32_dir:
        for role, module in src.roles.items():
            fp32_path = Path(fp32_dir) / GRAPHS[role].file
            _export_graph(module, inputs[role][0], role, fp32_path)
            convert(fp32_path, tmp / GRAPHS[role].file, precision)
            diff = measure_parity(module, tmp / GRAPHS[role].file, role, inputs[role])
            log.info("parity %s %s: max abs diff %.2e (tolerance %.2g)", role, precision, diff, atol)
            if diff > atol:
                raise ParityError(f"{role} ({precision}) differs from PyTorch by {diff:.2e} > {atol:.2g}")
            parity[role] = {"max_abs": diff, "atol": atol, "batch_sizes": list(PARITY_BATCHES)}
        src.tokenizer.save(tmp / "tokenizer.json")
        for name, path in src.files.items():
            shutil.copyfile(path, tmp / name)
        manifest = EngineManifest(
            family=src.family,
            embed_dim=src.embed_dim,
            image_preprocess=src.preprocess,
            tokenizer=TokenizerSpec("tokenizer.json", src.tokenizer.max_length,
                                    pad_token=src.tokenizer.pad_token),
            graphs=graphs,
            precision=precision,
            parity=parity,
            training=src.info,
            similarity=src.similarity,
            score=src.score,
        )
        return write_manifest(tmp, manifest)
