"""ONNX export of a dual encoder into an engine bundle, with parity measured against PyTorch.

Each tower becomes its own graph with dynamic batch (and sequence) axes. Parity is measured
on random inputs at batch sizes 1 and 7, written into the manifest, and export fails when
any output differs by more than the tolerance.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from encoders.atomic import staging_dir
from encoders.bundle import EngineManifest, GraphSpec, TokenizerSpec, write_manifest
from encoders.clip import DualEncoder
from encoders.errors import ParityError
from encoders.preprocess import ImagePreprocess
from encoders.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

FP32_ATOL = 1e-4
PARITY_BATCHES = (1, 7)

IMAGE_GRAPH = GraphSpec("image_encoder.onnx", ["pixel_values"], ["image_embeds", "image_tokens"])
TEXT_GRAPH = GraphSpec("text_encoder.onnx", ["input_ids", "attention_mask"], ["text_embeds"])


class _ImageGraph(nn.Module):
    def __init__(self, model: DualEncoder) -> None:
        super().__init__()
        self.visual = model.visual

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embed, tokens = self.visual(pixel_values)
        return F.normalize(embed, dim=-1), tokens


class _TextGraph(nn.Module):
    def __init__(self, model: DualEncoder) -> None:
        super().__init__()
        self.text = model.text

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        embed, _ = self.text(input_ids, attention_mask)
        return F.normalize(embed, dim=-1)


def _export_graph(
    module: nn.Module, example: tuple[torch.Tensor, ...], spec: GraphSpec, path: Path, axes: dict
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not ours to fix
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=spec.inputs,
            output_names=spec.outputs,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _random_text(batch: int, seq: int, vocab: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    lengths = torch.randint(1, seq + 1, (batch,), generator=gen)
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).to(torch.int64)
    return ids, mask


def _parity(module: nn.Module, path: Path, spec: GraphSpec, inputs: list[tuple]) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for args in inputs:
        with torch.no_grad():
            expected = module(*args)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(spec.outputs, {n: a.numpy() for n, a in zip(spec.inputs, args)})
        for e, g in zip(expected, got, strict=True):
            worst = max(worst, float(np.abs(e.numpy() - g).max()))
    return worst


def export_dual_encoder(
    model: DualEncoder,
    tokenizer: TextTokenizer,
    preprocess: ImagePreprocess,
    out_dir: str | Path,
    training: dict[str, Any] | None = None,
    atol: float = FP32_ATOL,
) -> EngineManifest:
    """Export both towers to a new engine bundle at `out_dir` and return its manifest."""
    model = model.eval()
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    size, seq = preprocess.size, min(8, cfg.text.context_length)
    image_inputs = [(torch.randn(b, 3, size, size, generator=gen),) for b in PARITY_BATCHES]
    text_inputs = [_random_text(b, seq, cfg.text.vocab_size, gen) for b in PARITY_BATCHES]
    graphs = {"image_encoder": IMAGE_GRAPH, "text_encoder": TEXT_GRAPH}
    with staging_dir(Path(out_dir)) as tmp:
        image, text = _ImageGraph(model), _TextGraph(model)
        _export_graph(image, image_inputs[0], IMAGE_GRAPH, tmp / IMAGE_GRAPH.file,
                      {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"},
                       "image_tokens": {0: "batch"}})
        _export_graph(text, text_inputs[0], TEXT_GRAPH, tmp / TEXT_GRAPH.file,
                      {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                       "text_embeds": {0: "batch"}})
        parity = {
            "image_encoder": _parity(image, tmp / IMAGE_GRAPH.file, IMAGE_GRAPH, image_inputs),
            "text_encoder": _parity(text, tmp / TEXT_GRAPH.file, TEXT_GRAPH, text_inputs),
        }
        for role, diff in parity.items():
            log.info("parity %s: max abs diff %.2e (tolerance %.0e)", role, diff, atol)
            if diff > atol:
                raise ParityError(f"{role} differs from PyTorch by {diff:.2e} > {atol:.0e}")
        tokenizer.save(tmp / "tokenizer.json")
        manifest = EngineManifest(
            family=cfg.family,
            embed_dim=cfg.embed_dim,
            image_preprocess=preprocess,
            tokenizer=TokenizerSpec("tokenizer.json", tokenizer.max_length),
            graphs=graphs,
            parity={role: {"max_abs": diff, "atol": atol, "batch_sizes": list(PARITY_BATCHES)}
                    for role, diff in parity.items()},
            training=training or {},
        )
        return write_manifest(tmp, manifest)
