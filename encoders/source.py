"""A model imported from another library's folder (Hugging Face, OpenCLIP): the library's own
model object, the roles that export and fine-tuning use (they share its weights), its
temperature, and how to write it back in the format it came in.

A fine-tuned model is written as a folder of the same kind as its source, so it can be
exported the same way and still opened by its own library; `xmodal_training.json` beside it
records how it was trained, and export carries that record into the engine manifest.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from encoders.roles import Exportable

TRAINING_RECORD = "xmodal_training.json"


@dataclass
class Imported:
    kind: str  # "huggingface" or "open_clip"
    folder: Path
    model: nn.Module  # the library's model object
    exportable: Exportable
    write: Callable[[nn.Module, Path], None]  # weights and config, in the source's own format
    carry: tuple[str, ...] = ()  # files copied unchanged into a fine-tuned folder
    scale_param: nn.Parameter | None = None  # the model's temperature parameter, if it has one
    scale_rule: str = "log"  # logit scale = exp(param) ("log") or 1 / param ("inverse": ALIGN)
    bias_param: nn.Parameter | None = None  # SigLIP's logit bias

    @property
    def sigmoid(self) -> bool:
        """Pairs scored by sigmoid(scale * cosine + bias) each, not a softmax over a batch."""
        return self.bias_param is not None

    def logit_scale(self) -> torch.Tensor | None:
        """The multiplier on cosine similarity, differentiable in the model's parameter."""
        if self.scale_param is None:
            return None
        if self.scale_rule == "inverse":
            return 1.0 / self.scale_param
        # clamped as CLIP trains: a temperature below 1/100 destabilises training
        return self.scale_param.clamp(max=math.log(100.0)).exp()

    def annotate(self, record: dict[str, Any]) -> None:
        """Set the manifest facts: how scores are made, and the fine-tuning behind this folder."""
        src, scale, bias = self.exportable, self.logit_scale(), self.bias_param
        src.score = score_rule(None if scale is None else float(scale.detach()),
                               None if bias is None else float(bias.detach()))
        src.similarity = "sigmoid" if self.sigmoid else "cosine"
        if record:
            src.info["fine_tuned"] = record

    def save(self, out: str | Path, record: dict[str, Any]) -> Path:
        """Write the (fine-tuned) model to `out` in its source's format, with `record`."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.write(self.model, out)
        for name in self.carry:
            if (self.folder / name).is_file() and (self.folder / name).resolve() != (out / name).resolve():
                shutil.copyfile(self.folder / name, out / name)
        (out / TRAINING_RECORD).write_text(json.dumps(record, indent=1) + "\n")
        return out


def score_rule(scale: float | None, bias: float | None) -> dict[str, Any]:
    """How an imported model turns its embeddings into scores, for the engine manifest. Search
    ranks by cosine either way: with a positive scale, sigmoid(scale * cos + bias) and softmax
    over scale * cos both order candidates exactly as cos does."""
    rule: dict[str, Any] = {"search": "cosine"}
    if scale is None:
        return rule
    if bias is None:
        return rule | {"logits": "logit_scale * cosine (softmax over candidates)",
                       "logit_scale": round(scale, 6)}
    return rule | {"probability": "sigmoid(logit_scale * cosine + logit_bias)",
                   "logit_scale": round(scale, 6), "logit_bias": round(bias, 6)}


def read_record(folder: Path) -> dict[str, Any]:
    """The training record a fine-tuned folder carries, or {} for a model as published."""
    path = folder / TRAINING_RECORD
    return json.loads(path.read_text()) if path.is_file() else {}
