"""Graph optimisation at export: ONNX Runtime's transformer optimiser, run once and saved.

The optimiser fuses the attention blocks, LayerNorm (with its residual add: SkipLayerNorm) and
GELU of BERT-style text towers and ViTs into ONNX Runtime's own fused operators. It is Python
and slow (seconds per graph), so the bundle stores the fused graph and no start redoes it; the
session-level optimisations ONNX Runtime applies at every load stay on (they are fast). A
graph is fused with the model type its role suggests; the fused graph is kept only if it still
matches PyTorch within the fp32 tolerance (the caller checks), else the plain one is.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import onnx

from encoders.quantize import quiet
from encoders.roles import IMAGE

log = logging.getLogger(__name__)

# the optimiser's model type per role: "vit" fuses ViT encoders (and leaves CNNs as they are),
# "bert" the text towers and the reranker's BERT layers
MODEL_TYPES = {IMAGE: "vit"}
DEFAULT_MODEL_TYPE = "bert"


def optimize_graph(src: Path, dst: Path, role: str) -> dict[str, int]:
    """Write `src` fused to `dst`; return the count of each fused operator it now holds."""
    from onnxruntime.transformers.optimizer import optimize_model

    # the optimiser prints its progress; what matters of it is returned and logged
    with contextlib.redirect_stdout(io.StringIO()), quiet():
        model = optimize_model(str(src), model_type=MODEL_TYPES.get(role, DEFAULT_MODEL_TYPE),
                               num_heads=0, hidden_size=0, opt_level=0, use_gpu=False)
        fused = {op: count for op, count in model.get_fused_operator_statistics().items() if count}
        model.save_model_to_file(str(dst), use_external_data_format=_needs_external(model.model))
    log.info("%s: fused %s", role, fused or "nothing")
    return fused


def _needs_external(model: onnx.ModelProto) -> bool:
    return model.ByteSize() > 2**31 - 2**20  # protobuf's 2 GB limit on one file
