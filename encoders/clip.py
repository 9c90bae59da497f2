"""CLIP-style dual encoder (Radford et al. 2021, "Learning Transferable Visual Models From
Natural Language Supervision"): a ViT image tower and a transformer text tower, each ending
in a linear projection to a shared space, L2-normalised; similarity is the dot product
scaled by a learned inverse temperature.

The text tower attends bidirectionally under a padding mask and pools the [CLS] token
(the first), as BERT-style towers do, so pretrained BERT-family towers fit the same slot.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from encoders.config import DualEncoderConfig, TextConfig, VisionConfig
from encoders.layers import TowerEncoders, Transformer, padding_bias
from encoders.roles import IMAGE, TEXT


class VisionTower(nn.Module):
    def __init__(self, cfg: VisionConfig, embed_dim: int) -> None:
        super().__init__()
        grid = cfg.image_size // cfg.patch_size
        self.patch_embed = nn.Conv2d(3, cfg.width, cfg.patch_size, cfg.patch_size, bias=False)
        self.cls_token = nn.Parameter(torch.randn(cfg.width) * cfg.width**-0.5)
        self.pos_embed = nn.Parameter(torch.randn(grid * grid + 1, cfg.width) * 0.02)
        self.ln_pre = nn.LayerNorm(cfg.width)
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads)
        self.ln_post = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, pixels: torch.Tensor, keep: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels (b, 3, H, W) -> (embedding (b, embed_dim), tokens (b, 1 + patches, width)).

        `keep` (b, k): the patches of each image that enter the transformer, by index (FLIP's
        patch dropping in training); the tokens are then (b, 1 + k, width)."""
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2) + self.pos_embed[1:]  # (b, p, w)
        if keep is not None:
            x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
        cls = (self.cls_token + self.pos_embed[0]).expand(x.shape[0], 1, -1)
        tokens = self.ln_post(self.transformer(self.ln_pre(torch.cat([cls, x], dim=1))))
        return self.proj(tokens[:, 0]), tokens


class TextTower(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int) -> None:
        super().__init__()
        self.token_embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_embed = nn.Parameter(torch.randn(cfg.context_length, cfg.width) * 0.01)
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads)
        self.ln_final = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, mask (b, t) -> (embedding (b, embed_dim), tokens (b, t, width))."""
        x = self.token_embed(ids) + self.pos_embed[: ids.shape[1]]
        tokens = self.ln_final(self.transformer(x, padding_bias(mask)))
        return self.proj(tokens[:, 0]), tokens


class ImageGraph(nn.Module):
    """The image_encoder role: pixels -> (normalised embedding, tokens)."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embed, tokens = self.tower(pixel_values)
        return F.normalize(embed, dim=-1), tokens


class TextGraph(nn.Module):
    """The text_encoder role: (ids, mask) -> normalised embedding."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        embed, _ = self.tower(input_ids, attention_mask)
        return F.normalize(embed, dim=-1)


class DualEncoder(TowerEncoders, nn.Module):
    def __init__(self, cfg: DualEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual = VisionTower(cfg.vision, cfg.embed_dim)
        if cfg.text.pretrained:
            # transformers is imported only for towers that start from a checkpoint
            from encoders.pretrained_text import PretrainedTextTower

            self.text: nn.Module = PretrainedTextTower(cfg.text.pretrained, cfg.embed_dim)
        else:
            self.text = TextTower(cfg.text, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def graph_modules(self) -> dict[str, nn.Module]:
        """One module per exported role (see `encoders.roles`)."""
        return {IMAGE: ImageGraph(self.visual), TEXT: TextGraph(self.text)}

