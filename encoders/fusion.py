"""Two-stream fusion model with cross-attention: ALBEF (Li et al. 2021, "Align before Fuse:
Vision and Language Representation Learning with Momentum Distillation") and BLIP (Li et al.
2022, "BLIP: Bootstrapping Language-Image Pre-training for Unified Vision-Language
Understanding and Generation"), image-text matching part.

A ViT image tower and a text encoder give the unimodal embeddings used for retrieval (ITC).
Then `fusion_layers` multimodal blocks run over the text tokens: self-attention under the
padding mask, cross-attention from text to the ViT's tokens (projected from the vision width
to the text width, as ALBEF does), feed-forward. The [CLS] output of the last multimodal
block feeds the ITM head. The same blocks give every text position its image-conditioned state
for masked language modelling (MLM, ALBEF's third objective), decoded to the vocabulary
through the token embedding (tied weights, as BERT's decoder), so MLM adds no parameters and
changes nothing exported.

The reranker role takes the ViT tokens the image role exported (the index stores them) and
re-runs the text encoder on the ids inside its own graph.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from encoders.clip import ImageGraph, TextGraph, TextTower, VisionTower
from encoders.config import FusionConfig
from encoders.layers import CrossBlock, TowerEncoders, padding_bias
from encoders.roles import IMAGE, RERANKER, TEXT


class RerankerGraph(nn.Module):
    """The reranker role over any model with `score(image_tokens, ids, mask) -> (b,)`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, image_tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.model.score(image_tokens, input_ids, attention_mask)  # (b,)


class ModelTextGraph(nn.Module):
    """The text_encoder role over any model with `encode_text(ids, mask) -> (b, d)` normalised."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids, attention_mask)


class FusionModel(TowerEncoders, nn.Module):
    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        if cfg.text.pretrained:
            # the native text tower is built from the config fields; refuse rather than ignore
            raise ValueError("FusionModel does not load text.pretrained checkpoints")
        self.cfg = cfg
        self.visual = VisionTower(cfg.vision, cfg.embed_dim)
        self.text = TextTower(cfg.text, cfg.embed_dim)
        self.fusion = nn.ModuleList(
            CrossBlock(cfg.text.width, cfg.text.heads, cfg.vision.width)
            for _ in range(cfg.fusion_layers)
        )
        self.ln_fusion = nn.LayerNorm(cfg.text.width)
        self.itm_head = nn.Linear(cfg.text.width, 2)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (b, 3, H, W) -> tokens (b, 1 + patches, vision.width): the reranker's input."""
        _, tokens = self.visual(pixels)
        return tokens

    def fused(self, image_tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ViT tokens (b, n, vision.width) and a text (b, t) -> fused text states (b, t, text.width)."""
        _, x = self.text(ids, mask)  # (b, t, text.width)
        bias = padding_bias(mask)  # (b, 1, 1, t)
        for block in self.fusion:
            x = block(x, image_tokens, bias)
        return self.ln_fusion(x)

    def itm_logits(
        self, image_tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """ViT tokens (b, n, vision.width) and a text (b, t) -> match logits (b, 2)."""
        return self.itm_head(self.fused(image_tokens, ids, mask)[:, 0])  # pooled at [CLS]

    def mlm_logits(
        self, image_tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """ViT tokens and a (masked) text (b, t) -> vocabulary logits at every position (b, t, vocab)."""
        # scaled as attention scores are: unit-variance states against N(0, 1) embeddings
        # would start the loss near sqrt(width) nats above chance and swamp the other objectives
        weight = self.text.token_embed.weight  # (vocab, text.width)
        return self.fused(image_tokens, ids, mask) @ weight.t() / math.sqrt(weight.shape[1])

    def score(
        self, image_tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Match probability (b,) in [0, 1]."""
        return self.itm_logits(image_tokens, ids, mask).softmax(dim=-1)[:, 1]

    def graph_modules(self) -> dict[str, nn.Module]:
        """One module per exported role (see `encoders.roles`)."""
        return {
            IMAGE: ImageGraph(self.visual),
            TEXT: TextGraph(self.text),
            RERANKER: RerankerGraph(self),
        }

