"""The MLM objective in the training loop: what it needs of the tokenizer, and one step's loss.

Masked language modelling conditioned on the image (ALBEF's third objective): the fusion model
predicts the masked words of a caption from the rest of it and the image's tokens, through the
same cross-attention layers the ITM head reads, so it trains the reranker's fusion encoder on
every word rather than on one match bit per pair. With momentum distillation on, the
teacher's prediction at each masked position is a soft target beside the true word.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from encoders.tokenizer import TextTokenizer
from training.losses import mask_tokens, mlm_loss
from training.momentum import MomentumTeacher

OBJECTIVES = ("itc", "itm", "mlm")


@dataclass(frozen=True)
class MlmSpec:
    mask_id: int
    special_ids: list[int]
    vocab_size: int


def parse_objectives(text: str) -> tuple[str, ...]:
    """`--objectives itc,itm,mlm` -> the names; unknown ones and a missing itc are refused."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ValueError(f"unknown objectives {unknown}: choose from {', '.join(OBJECTIVES)}")
    if "itc" not in names:
        raise ValueError("the objectives must include itc: it trains the towers retrieval uses")
    return names


def mlm_spec(model: nn.Module, tokenizer: TextTokenizer) -> MlmSpec:
    """What MLM needs, or a ValueError naming what the model or tokenizer lacks."""
    if not hasattr(model, "mlm_logits"):
        raise ValueError(f"mlm needs a fusion model (ALBEF / BLIP family); {type(model).__name__} "
                         "has no fusion layers to predict words through")
    if tokenizer.mask_id is None:
        raise ValueError("mlm needs a [MASK] token, and this tokenizer has none")
    return MlmSpec(tokenizer.mask_id, tokenizer.special_ids, tokenizer.vocab_size)


def mlm_step(model: nn.Module, teacher: MomentumTeacher | None, image_tokens: torch.Tensor,
             batch: dict, spec: MlmSpec, generator: torch.Generator, alpha: float) -> torch.Tensor:
    """One batch's MLM loss over its captions, against the student's own image tokens."""
    masked, labels = mask_tokens(batch["ids"], batch["mask"], spec.mask_id, spec.special_ids,
                                 spec.vocab_size, generator)
    logits = model.mlm_logits(image_tokens, masked, batch["mask"])
    soft = None
    if teacher is not None:
        with torch.no_grad():
            soft = teacher.model.mlm_logits(teacher.model.image_tokens(batch["pixels"]), masked,
                                            batch["mask"])
    return mlm_loss(logits, labels, soft, alpha)
