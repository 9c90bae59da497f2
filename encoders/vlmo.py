"""VLMo: a mixture-of-modality-experts transformer (Bao, Wang et al. 2021, "VLMo: Unified
Vision-Language Pre-Training with Mixture-of-Modality-Experts").

One stack of blocks, each with ONE shared self-attention and several feed-forward experts:
V-FFN for image tokens, L-FFN for text tokens and, in the top `fusion_layers` blocks, VL-FFN
for joint tokens. The same weights run in two modes:

- retrieval (dual encoder): image tokens through every block with the V-FFN, text tokens
  through every block with the L-FFN; each [CLS] is projected and L2-normalised (ITC);
- fusion (matching): the image and text hidden states after the bottom
  `layers - fusion_layers` blocks are concatenated and run through the top blocks with the
  shared attention and the VL-FFN; the joint [CLS] (the image's) feeds the ITM head.

So the image hidden states after the bottom blocks are what the reranker consumes: the
image role exports them as `image_tokens`, and the index stores them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from encoders.config import VLMoConfig
from encoders.fusion import ModelTextGraph, RerankerGraph
from encoders.layers import Attention, ContrastiveOutputs, feed_forward, padding_bias
from encoders.roles import IMAGE, RERANKER, TEXT

V, L, VL = "v", "l", "vl"  # expert names


class Expert(nn.Module):
    """A feed-forward expert with its own pre-norm, as each VLMo expert normalises separately."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.mlp = feed_forward(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln(x))


class MoMEBlock(nn.Module):
    """Pre-norm block: shared self-attention, then the feed-forward expert the caller names."""

    def __init__(self, width: int, heads: int, experts: tuple[str, ...]) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.experts = nn.ModuleDict({name: Expert(width) for name in experts})

    def forward(
        self, x: torch.Tensor, expert: str, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), bias)  # (b, t, width)
        return x + self.experts[expert](x)


class VLMo(ContrastiveOutputs, nn.Module):
    def __init__(self, cfg: VLMoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        grid = cfg.image_size // cfg.patch_size
        self.patch_embed = nn.Conv2d(3, w, cfg.patch_size, cfg.patch_size, bias=False)
        self.cls_token = nn.Parameter(torch.randn(w) * w**-0.5)
        self.image_pos = nn.Parameter(torch.randn(grid * grid + 1, w) * 0.02)
        self.token_embed = nn.Embedding(cfg.vocab_size, w)
        self.text_pos = nn.Parameter(torch.randn(cfg.context_length, w) * 0.01)
        # Separate position tables already tell the modalities apart, so VLMo's modality-type
        # embedding would be redundant here: a constant per modality folds into them.
        self.bottom = nn.ModuleList(
            MoMEBlock(w, cfg.heads, (V, L)) for _ in range(cfg.layers - cfg.fusion_layers)
        )
        self.top = nn.ModuleList(
            MoMEBlock(w, cfg.heads, (V, L, VL)) for _ in range(cfg.fusion_layers)
        )
        self.ln_final = nn.LayerNorm(w)  # shared by both modes, as in VLMo
        self.image_proj = nn.Linear(w, cfg.embed_dim, bias=False)
        self.text_proj = nn.Linear(w, cfg.embed_dim, bias=False)
        self.itm_head = nn.Linear(w, 2)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    @staticmethod
    def _run(blocks: nn.ModuleList, x: torch.Tensor, expert: str,
             bias: torch.Tensor | None = None) -> torch.Tensor:
        for block in blocks:
            x = block(x, expert, bias)
        return x

    # -- unimodal bottom: what both modes share ------------------------------------------
    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (b, 3, H, W) -> hidden states after the bottom blocks (b, 1 + patches, width)."""
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)  # (b, patches, width)
        x = torch.cat([self.cls_token.expand(x.shape[0], 1, -1), x], dim=1) + self.image_pos
        return self._run(self.bottom, x, V)

    def text_tokens(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask (b, t) -> hidden states after the bottom blocks (b, t, width)."""
        x = self.token_embed(ids) + self.text_pos[: ids.shape[1]]
        return self._run(self.bottom, x, L, padding_bias(mask))

    # -- retrieval mode ------------------------------------------------------------------
    def embed_image_tokens(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Bottom-block image tokens (b, n, width) -> image embedding (b, embed_dim)."""
        x = self.ln_final(self._run(self.top, tokens, V))
        embed = self.image_proj(x[:, 0])
        return F.normalize(embed, dim=-1) if normalize else embed

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.embed_image_tokens(self.image_tokens(pixels), normalize)

    def encode_text(
        self, ids: torch.Tensor, mask: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        x = self._run(self.top, self.text_tokens(ids, mask), L, padding_bias(mask))
        embed = self.text_proj(self.ln_final(x)[:, 0])  # (b, embed_dim), pooled at [CLS]
        return F.normalize(embed, dim=-1) if normalize else embed

    # -- fusion mode ---------------------------------------------------------------------
    def itm_logits(
        self, image_tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Bottom-block image tokens (b, n, width) and a text -> match logits (b, 2)."""
        joint = torch.cat([image_tokens, self.text_tokens(ids, mask)], dim=1)  # (b, n + t, width)
        image_mask = torch.ones_like(image_tokens[:, :, 0], dtype=mask.dtype)  # (b, n)
        bias = padding_bias(torch.cat([image_mask, mask], dim=1))  # (b, 1, 1, n + t)
        x = self.ln_final(self._run(self.top, joint, VL, bias))
        return self.itm_head(x[:, 0])  # the joint [CLS] is the image's

    def score(
        self, image_tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Match probability (b,) in [0, 1]."""
        return self.itm_logits(image_tokens, ids, mask).softmax(dim=-1)[:, 1]

    def graph_modules(self) -> dict[str, nn.Module]:
        """One module per exported role (see `encoders.roles`)."""
        return {IMAGE: ImageGraph(self), TEXT: ModelTextGraph(self), RERANKER: RerankerGraph(self)}



class ImageGraph(nn.Module):
    """The image_encoder role: pixels -> (normalised embedding, bottom-block tokens).

    One pass: the tokens the reranker needs are the midpoint of the retrieval pass.
    """

    def __init__(self, model: VLMo) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.model.image_tokens(pixel_values)  # (b, 1 + patches, width)
        return self.model.embed_image_tokens(tokens), tokens

