"""Fine-tuning an imported model (`xmodal train --init FOLDER`): a Hugging Face or OpenCLIP
folder's towers, as the training loop's model.

The loop (`training.train`) is the one native models train in, with its resumable state,
accumulation and logging; this module gives it a model with the same surface:
`forward(pixels, ids, mask)` -> the loss's dict, `encode_image` / `encode_text` for validation
recall and `itm_logits` where the model has a matching head (BLIP). The losses: ITC with the
model's own temperature, or SigLIP's sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for
Language Image Pre-Training") for a model with a logit bias; ITM with hard negatives for
BLIP; `--freeze-image` keeps the image tower as it is (LiT, Zhai et al. 2022). The result is
written in its source's format, so `xmodal export --model` reads it like the original.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from encoders.imported import import_folder
from encoders.roles import IMAGE, RERANKER, TEXT
from encoders.source import Imported
from encoders.tokenizer import TextTokenizer
from training.options import TrainConfig
from training.sources import PairData, load_sources

BLIP_TEMPERATURE = 0.07  # BLIP's ITC temperature at the start of training; HF's class has none


class ImportedTowers(nn.Module):
    """The library model is the one registered submodule, so the state dict (and the resumable
    state) holds each weight once; the roles that read it are kept beside it, unregistered."""

    def __init__(self, imported: Imported, freeze_image: bool = False) -> None:
        super().__init__()
        self.model = imported.model
        self._roles = dict(imported.exportable.roles)  # a plain dict: not registered again
        self._imported = imported
        self.freeze_image = freeze_image
        if imported.scale_param is None:  # learnt here, not written back
            self.own_scale = nn.Parameter(torch.tensor(math.log(1 / BLIP_TEMPERATURE)))
        if freeze_image:
            for param in self._roles[IMAGE].parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> ImportedTowers:
        super().train(mode)
        if self.freeze_image:  # dropout and BatchNorm statistics stay as the tower was trained
            self._roles[IMAGE].eval()
        return self

    def logit_scale(self) -> torch.Tensor:
        scale = self._imported.logit_scale()
        return scale if scale is not None else self.own_scale.clamp(max=math.log(100.0)).exp()

    def _image(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.freeze_image:
            with torch.no_grad():
                return self._roles[IMAGE](pixels)
        return self._roles[IMAGE](pixels)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._image(pixels)[0]

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._roles[TEXT](ids, mask)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        image_embeds, tokens = self._image(pixels)
        out = {"image_embeds": image_embeds, "text_embeds": self.encode_text(ids, mask),
               "logit_scale": self.logit_scale()}
        if self._imported.bias_param is not None:
            out["logit_bias"] = self._imported.bias_param
        if RERANKER in self._roles:
            out["image_tokens"] = tokens
        return out


class ImportedTowersWithItm(ImportedTowers):
    """A model with a matching head: the loop adds ITM with hard negatives for it."""

    def itm_logits(self, image_tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
                   ) -> torch.Tensor:
        return self._roles[RERANKER].logits(image_tokens, ids, mask)


@dataclass
class FineTuneSetup:
    model: ImportedTowers
    imported: Imported
    tokenizer: TextTokenizer
    data: PairData
    val: PairData | None
    info: dict[str, Any]


def setup_fine_tune(cfg: TrainConfig, val_size: int) -> FineTuneSetup:
    """The imported model, and the data made with its own preprocessing."""
    imported = import_folder(cfg.init)
    if cfg.distill and imported.sigmoid:
        raise ValueError("--distill gives soft softmax targets; SigLIP's sigmoid loss has none")
    if cfg.patch_keep < 1:
        raise ValueError("--patch-keep (FLIP) drops patches of xmodal's own ViT only, not of "
                         f"an imported {imported.exportable.family} model")
    src = imported.exportable
    spec = src.preprocess
    data = load_sources(cfg.data, cfg.train_size, cfg.seed, cfg.render_size, spec)
    val = load_sources(cfg.data.split(",")[0], val_size, cfg.seed, cfg.render_size, spec,
                       split="val") if cfg.eval_every else None
    towers = ImportedTowersWithItm if RERANKER in src.roles else ImportedTowers
    model = towers(imported, cfg.freeze_image).train()
    objectives = ["sigmoid" if imported.sigmoid else "itc"]
    objectives += ["itm"] if RERANKER in src.roles and cfg.itm_weight > 0 else []
    objectives += ["momentum distillation"] if cfg.distill else []
    info = {"init": str(Path(cfg.init)), "from": dict(src.info), "data": data.names,
            "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "freeze_image": cfg.freeze_image, "objectives": objectives}
    info["from"].pop("fine_tuned", None)  # the record of an earlier round stays in its folder
    return FineTuneSetup(model, imported, src.tokenizer, data, val, info)
