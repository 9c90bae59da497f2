"""Transformer building blocks shared by every native family (PyTorch).

Attention is written out (no fused kernels, no boolean masks) so that every graph exports
to plain ONNX ops with dynamic batch and sequence axes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NEG_INF = -1e4  # additive mask value; finite so fully padded rows cannot produce NaN


def padding_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, seq) 1/0 mask -> additive bias (batch, 1, 1, seq) for attention scores."""
    return (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * NEG_INF


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(w // self.heads)  # (b, heads, t, t)
        if bias is not None:
            scores = scores + bias
        out = scores.softmax(dim=-1) @ v  # (b, heads, t, head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, t, w))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
        )

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), bias)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, bias)
        return x


def feed_forward(width: int, mlp_ratio: int = 4) -> nn.Sequential:
    """The transformer MLP (same layout as `Block.mlp`), for blocks that hold several of them."""
    return nn.Sequential(
        nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
    )


class CrossAttention(nn.Module):
    """Queries from one sequence, keys and values from another, possibly of another width.

    Keys and values are projected from `kv_width` to `width`, as ALBEF's cross-attention
    projects ViT tokens into BERT's width.
    """

    def __init__(self, width: int, heads: int, kv_width: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(kv_width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (b, t, width) attends to context (b, n, kv_width); bias (b, 1, 1, n) or None."""
        b, t, w = x.shape
        hd = w // self.heads
        q = self.q(x).reshape(b, t, self.heads, hd).transpose(1, 2)  # (b, heads, t, hd)
        k, v = self.kv(context).reshape(b, -1, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(hd)  # (b, heads, t, n)
        if bias is not None:
            scores = scores + bias
        out = scores.softmax(dim=-1) @ v  # (b, heads, t, hd)
        return self.proj(out.transpose(1, 2).reshape(b, t, w))


class CrossBlock(nn.Module):
    """Pre-norm multimodal block: self-attention, cross-attention to a context, feed-forward."""

    def __init__(self, width: int, heads: int, kv_width: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.cross = CrossAttention(width, heads, kv_width)
        self.ln_3 = nn.LayerNorm(width)
        self.mlp = feed_forward(width, mlp_ratio)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (b, t, width) with self-attention bias (b, 1, 1, t); context (b, n, kv_width)."""
        x = x + self.attn(self.ln_1(x), bias)
        x = x + self.cross(self.ln_2(x), context)
        return x + self.mlp(self.ln_3(x))


class ContrastiveOutputs:
    """`forward` shared by every family: the dict the losses take, `itc_loss(**model(...))`.

    The class provides `encode_image`, `encode_text` and a `logit_scale` parameter.
    """

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor,
                mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "image_embeds": self.encode_image(pixels),
            "text_embeds": self.encode_text(ids, mask),
            # clamp as CLIP does: a temperature below 1/100 destabilises training
            "logit_scale": self.logit_scale.clamp(max=math.log(100.0)).exp(),
        }


class TowerEncoders(ContrastiveOutputs):
    """`encode_image` / `encode_text` for families with separate `visual` and `text` towers
    that return (embedding, tokens)."""

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        embed, _ = self.visual(pixels)
        return torch.nn.functional.normalize(embed, dim=-1) if normalize else embed

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor,
                    normalize: bool = True) -> torch.Tensor:
        embed, _ = self.text(ids, mask)
        return torch.nn.functional.normalize(embed, dim=-1) if normalize else embed
