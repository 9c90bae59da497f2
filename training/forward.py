"""The student's forward pass for training: one image pass gives both the embedding and the
tokens the ITM head needs, optionally over a random subset of patches (FLIP, Li et al. 2022:
"Scaling Language-Image Pre-training via Masking" -- dropping 50-75% of patches makes each
step several times cheaper at little cost in accuracy)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from encoders.clip import VisionTower


def _random_patches(tower: VisionTower, pixels: torch.Tensor, keep: float,
                    generator: torch.Generator | None) -> torch.Tensor:
    """(b, kept) indices of a random `keep` fraction of each image's patches."""
    b, patches = pixels.shape[0], tower.pos_embed.shape[0] - 1
    kept = max(1, round(patches * keep))
    noise = torch.rand(b, patches, generator=generator).to(pixels.device)  # the loop's CPU generator
    return noise.argsort(dim=1)[:, :kept]  # each image keeps its own random patches


def student_outputs(model: nn.Module, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                    keep: float = 1.0, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The model's output dict plus `image_tokens` when it has an ITM head (for `itm_loss`)."""
    if not 0 < keep <= 1:
        raise ValueError(f"patch keep ratio must be in (0, 1], got {keep}")
    tower = getattr(model, "visual", None)
    if isinstance(tower, VisionTower):
        patches = _random_patches(tower, pixels, keep, generator) if keep < 1 else None
        embed, tokens = tower(pixels, patches)
        out = {
            "image_embeds": F.normalize(embed, dim=-1),
            "text_embeds": model.encode_text(ids, mask),
            # clamp as CLIP does: a temperature below 1/100 destabilises training
            "logit_scale": model.logit_scale.clamp(max=math.log(100.0)).exp(),
        }
    else:
        if keep < 1:
            raise ValueError(f"patch dropping needs a ViT image tower; {type(model).__name__} has none")
        out = dict(model(pixels, ids, mask))
        # a model that returns its tokens with the embeddings saves a second image pass
        tokens = out.pop("image_tokens", None)
        if tokens is None and hasattr(model, "itm_logits"):
            tokens = model.image_tokens(pixels)
    if hasattr(model, "itm_logits"):
        out["image_tokens"] = tokens
    return out
