"""Training objectives. Each loss takes the model's output dict: `itc_loss(**model(...))`."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def itc_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor, **_: object
) -> torch.Tensor:
    """Symmetric image-text contrastive loss (CLIP): cross-entropy over the batch both ways.

    Embeddings are L2-normalised (batch, dim); pair i is the positive for row and column i.
    """
    logits = logit_scale * image_embeds @ text_embeds.t()  # (batch, batch)
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
