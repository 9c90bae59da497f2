"""Role modules over Hugging Face retrieval models: each computes what transformers' own
`get_image_features` / `get_text_features` / ITM head compute, with the role's fixed inputs and
outputs (`encoders.roles`), so an exported graph can be checked against the library itself.

Masks: transformers builds attention masks in `masking_utils`, which may drop an all-ones
mask (a data-dependent branch that tracing would freeze into the graph). Every role therefore
hands the HF module a ready 4-D additive float mask, which `masking_utils` passes through
untouched, and models are loaded with eager attention so the mask is a plain `Add`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def padding_bias(mask: torch.Tensor) -> torch.Tensor:
    """(b, t) 1/0 mask -> additive (b, 1, 1, t), the value transformers' eager masks use."""
    return (1.0 - mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min


def causal_padding_bias(mask: torch.Tensor) -> torch.Tensor:
    """(b, t) mask -> additive (b, 1, t, t): query i never sees key j > i, nor padding."""
    t = mask.shape[1]
    pos = torch.arange(t, device=mask.device)
    future = (pos[None, :] > pos[:, None]).to(torch.float32)  # (t, t)
    padded = 1.0 - mask[:, None, None, :].to(torch.float32)  # (b, 1, 1, t)
    # max, not sum: two finfo.min added would overflow to -inf
    return torch.maximum(future, padded) * torch.finfo(torch.float32).min


def pad_to_context(ids: torch.Tensor, mask: torch.Tensor, pad_id: int, length: int) -> torch.Tensor:
    """(b, t) ids, t <= length -> (b, length): padded positions (mask 0) and the tail set to
    `pad_id`. For towers trained on fixed-length padded text without a mask (SigLIP, some
    OpenCLIP ones), whose output depends on the padding. Written as concatenate-then-slice so
    the graph keeps a dynamic t and a constant `length`; using the mask keeps it a graph input."""
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
    tail = torch.full_like(ids[:, :1], pad_id).expand(-1, length)  # (b, length)
    return torch.cat([ids, tail], dim=1)[:, :length]


class ClipImage(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision, self.proj = model.vision_model, model.visual_projection

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vision(pixel_values=pixel_values)
        return F.normalize(self.proj(out.pooler_output), dim=-1), out.last_hidden_state


class ClipText(nn.Module):
    """Pools where CLIPTextModel pools (the EOS token, by its own rule), then projects."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text, self.proj = model.text_model, model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.text(input_ids=input_ids, attention_mask=causal_padding_bias(attention_mask))
        return F.normalize(self.proj(out.pooler_output), dim=-1)


class AlignImage(nn.Module):
    """EfficientNet feature map -> global pool (ALIGN has no image projection)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision = model.vision_model
        self.pooling = model.config.vision_config.pooling_type

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.vision(pixel_values=pixel_values).last_hidden_state  # (b, c, h, w)
        # HF pools with AvgPool2d(kernel=hidden_dim, ceil_mode=True), a kernel larger than the
        # map, i.e. a global pool; written as a mean so ONNX gets no oversized-window pooling.
        pooled = features.mean(dim=(2, 3)) if self.pooling == "mean" else features.amax(dim=(2, 3))
        return F.normalize(pooled, dim=-1), features.flatten(2).transpose(1, 2)  # (b, h*w, c)


class AlignText(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text, self.proj = model.text_model, model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text(input_ids=input_ids, attention_mask=padding_bias(attention_mask))
        return F.normalize(self.proj(hidden.last_hidden_state[:, 0]), dim=-1)  # [CLS]


class BlipImage(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision, self.proj = model.vision_model, model.vision_proj

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vision(pixel_values=pixel_values).last_hidden_state  # (b, 1 + patches, w)
        return F.normalize(self.proj(tokens[:, 0]), dim=-1), tokens


class BlipText(nn.Module):
    """BLIP's unimodal text encoder (no cross-attention): [CLS] -> text_proj, as its ITC path."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text, self.proj = model.text_encoder, model.text_proj

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text(input_ids=input_ids, attention_mask=padding_bias(attention_mask))
        return F.normalize(self.proj(hidden.last_hidden_state[:, 0]), dim=-1)


class BlipReranker(nn.Module):
    """BLIP's ITM path: text cross-attends to every image token, [CLS] -> itm_head -> P(match)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text, self.itm_head = model.text_encoder, model.itm_head

    def logits(self, image_tokens: torch.Tensor, input_ids: torch.Tensor,
               attention_mask: torch.Tensor) -> torch.Tensor:
        """(b, 2) no-match / match logits, what fine-tuning's ITM loss takes."""
        # HF passes an all-ones image mask, which adds nothing; None is the same and exports smaller
        hidden = self.text(input_ids=input_ids, attention_mask=padding_bias(attention_mask),
                           encoder_hidden_states=image_tokens).last_hidden_state
        return self.itm_head(hidden[:, 0])

    def forward(self, image_tokens: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        return self.logits(image_tokens, input_ids, attention_mask).softmax(dim=-1)[:, 1]  # (b,)


class SiglipImage(nn.Module):
    """SigLIP's attention-pooling head output (no projection; SiglipModel normalises it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision = model.vision_model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vision(pixel_values=pixel_values)
        return F.normalize(out.pooler_output, dim=-1), out.last_hidden_state  # (b, patches, w)


class SiglipText(nn.Module):
    """SigLIP's text tower sees no attention mask and pools the last of its fixed-length
    positions, which is padding for any short text: it was trained on texts padded to the
    full context (transformers' docs: tokenize with padding="max_length"). The graph pads
    itself, so the engine's usual pad-to-longest batches give the same embeddings."""

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.text = model.text_model
        self.pad_id = pad_id
        self.length = model.config.text_config.max_position_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ids = pad_to_context(input_ids, attention_mask, self.pad_id, self.length)
        return F.normalize(self.text(input_ids=ids).pooler_output, dim=-1)
