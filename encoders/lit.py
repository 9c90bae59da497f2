"""Pretrained towers aligned by small trained heads: the `lit` family, the default engine.

- LiT (Zhai et al. 2022, "LiT: Zero-Shot Transfer with Locked-image text Tuning"): the image
  tower is a pretrained backbone kept frozen (EfficientNet-Lite, ImageNet-1k), and only heads into the shared space are trained, on cached
  features. The text tower is the pretrained MiniLM sentence encoder, mean-pooled, and a
  linear head.
- ConSE (Norouzi et al. 2014, "Zero-Shot Learning by Convex Combination of Semantic
  Embeddings"): the backbone's own ImageNet classifier gives a prior embedding, the
  probability-weighted text embedding of its top class names, so a photo of an ImageNet
  concept is found with no training on photos. It is added to the learnt embedding with a
  weight proportional to the classifier's confidence (the probability mass of its top
  classes) times a trained scale: drawings the classifier does not recognise keep the learnt
  embedding, photos it recognises lean on the prior.
- The reranker follows ALBEF (Li et al. 2021) and BLIP-2 (Li et al. 2023): MiniLM's lower
  layers encode the text, its top `fusion_layers` layers are copied and each given a
  cross-attention over the backbone's last feature map (7 x 7 tokens, projected to
  `token_dim` with a position embedding), and an ITM head scores the [CLS] output. The
  match logit is divided by a temperature fitted after training (Guo et al. 2017), so the
  probability it exports is calibrated.

Every function training uses on cached features (`embed_pooled`, `embed_text_pooled`,
`itm_logits_from_hidden`) is the one the exported graphs run, so cached training and serving
compute the same thing.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from encoders.config import LiTConfig
from encoders.efficientnet import EfficientNetLite, load_packaged
from encoders.fusion import ModelTextGraph, RerankerGraph
from encoders.hf_towers import padding_bias
from encoders.layers import CrossAttention
from encoders.packaged import text_model_folder
from encoders.pretrained_text import PretrainedTextTower
from encoders.roles import IMAGE, RERANKER, TEXT


class FusionLayer(nn.Module):
    """A copy of one BERT layer (post-norm) with a cross-attention to image tokens added after
    its self-attention; the cross-attention's output starts at zero, so an untrained fusion
    layer computes what the pretrained layer did."""

    def __init__(self, bert_layer: nn.Module, token_dim: int, heads: int) -> None:
        super().__init__()
        width = bert_layer.output.dense.out_features
        self.attention = copy.deepcopy(bert_layer.attention)
        self.cross = CrossAttention(width, heads, token_dim)
        nn.init.zeros_(self.cross.proj.weight)
        nn.init.zeros_(self.cross.proj.bias)
        self.ln_cross = nn.LayerNorm(width, eps=1e-12)
        self.intermediate = copy.deepcopy(bert_layer.intermediate)
        self.output = copy.deepcopy(bert_layer.output)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """x (b, t, width), bias (b, 1, 1, t), tokens (b, n, token_dim) -> (b, t, width)."""
        x = self.attention(x, bias)[0]  # BertAttention adds its residual and norm itself
        x = self.ln_cross(x + self.cross(x, tokens))
        return self.output(self.intermediate(x), x)


class LiTModel(nn.Module):
    def __init__(self, cfg: LiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone: EfficientNetLite = load_packaged(cfg.backbone)
        self.text = PretrainedTextTower(text_model_folder(cfg.text), cfg.embed_dim, pooling="mean")
        width = self.text.width
        if cfg.text_head == "frozen":
            if cfg.embed_dim != width:
                raise ValueError(f"a frozen text head needs embed_dim = {width}, the text width")
            nn.init.eye_(self.text.proj.weight)
            self.text.proj.requires_grad_(False)
        self.image_head = nn.Sequential(
            nn.Linear(1280, cfg.head_hidden), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, cfg.embed_dim))
        # the text encoder's pooled vectors of the ImageNet class names (filled by
        # `set_class_vectors` before training; a checkpoint carries them)
        self.register_buffer("class_vectors", torch.zeros(1000, width))
        self.conse_scale = nn.Parameter(torch.zeros(()))  # log of the prior's weight
        grid = (cfg.image_size + 31) // 32
        self.token_proj = nn.Linear(self.backbone.feature_width, cfg.token_dim)
        self.token_pos = nn.Parameter(torch.randn(grid * grid, cfg.token_dim) * 0.02)
        self.token_norm = nn.LayerNorm(cfg.token_dim)
        layers = self.text.encoder.encoder.layer
        self.text_lower = len(layers) - cfg.fusion_layers  # text layers shared with the tower
        heads = self.text.encoder.config.num_attention_heads
        self.fusion = nn.ModuleList(FusionLayer(layer, cfg.token_dim, heads)
                                    for layer in layers[self.text_lower:])
        self.itm_head = nn.Linear(width, 2)
        self.register_buffer("itm_temperature", torch.ones(()))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        self.freeze_pretrained()

    def freeze_pretrained(self) -> None:
        """The pretrained encoders stay as they are: training sees only their cached outputs."""
        for p in [*self.backbone.parameters(), *self.text.encoder.parameters()]:
            p.requires_grad_(False)

    @torch.no_grad()
    def set_class_vectors(self, names: list[str], tokenizer) -> None:
        """Encode the ImageNet class names with the text encoder (for the ConSE prior)."""
        ids, mask = tokenizer.encode(names)
        ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
        self.class_vectors.copy_(self.pooled_text(ids, mask))

    # -- image side ------------------------------------------------------------------------
    def image_tokens_from_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Last block's map (b, c, h, w) -> reranker tokens (b, h * w, token_dim)."""
        x = self.token_proj(feature_map.flatten(2).transpose(1, 2))  # (b, h*w, token_dim)
        return self.token_norm(x + self.token_pos)

    def conse(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled backbone features (b, 1280) -> (prior embedding (b, d), confidence (b, 1))."""
        probs = self.backbone.classifier(pooled).softmax(dim=-1)  # (b, 1000)
        top, index = probs.topk(self.cfg.conse_top, dim=-1)  # (b, k)
        confidence = top.sum(dim=-1, keepdim=True)
        mixed = (top.unsqueeze(-1) * self.class_vectors[index]).sum(dim=1) / confidence  # (b, width)
        return F.normalize(self.text.proj(mixed), dim=-1), confidence

    def embed_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (b, 1280) -> normalised image embedding (b, d)."""
        learnt = F.normalize(self.image_head(pooled), dim=-1)
        if not self.cfg.conse_top:
            return learnt
        prior, confidence = self.conse(pooled)
        return F.normalize(learnt + self.conse_scale.exp() * confidence * prior, dim=-1)

    def encode_image_with_tokens(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = self.backbone.features(pixels)  # (b, 320, 7, 7) for Lite0 at 224 px
        pooled = self.backbone.pooled(feature_map)
        return self.embed_pooled(pooled), self.image_tokens_from_map(feature_map)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encode_image_with_tokens(pixels)[0]

    # -- text side -------------------------------------------------------------------------
    def pooled_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MiniLM's mean-pooled sentence vector (b, width), before the head."""
        return self.text.pool(self.text.hidden_states(ids, mask), mask)

    def embed_text_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text.proj(pooled), dim=-1)

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.embed_text_pooled(self.pooled_text(ids, mask))

    # -- reranker --------------------------------------------------------------------------
    def lower_hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The text's hidden states below the fusion layers (b, t, width)."""
        out = self.text.encoder(input_ids=ids, attention_mask=padding_bias(mask),
                                output_hidden_states=True)
        return out.hidden_states[self.text_lower]

    def itm_logits_from_hidden(self, tokens: torch.Tensor, hidden: torch.Tensor,
                               mask: torch.Tensor) -> torch.Tensor:
        """Image tokens (b, n, token_dim), lower text states (b, t, width) -> match logits (b, 2)."""
        bias = padding_bias(mask)
        for layer in self.fusion:
            hidden = layer(hidden, bias, tokens)
        return self.itm_head(hidden[:, 0])

    def itm_logits(self, tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.itm_logits_from_hidden(tokens, self.lower_hidden(ids, mask), mask)

    def score(self, tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Calibrated match probability (b,)."""
        return (self.itm_logits(tokens, ids, mask) / self.itm_temperature).softmax(dim=-1)[:, 1]

    def graph_modules(self) -> dict[str, nn.Module]:
        return {IMAGE: LiTImageGraph(self), TEXT: ModelTextGraph(self), RERANKER: RerankerGraph(self)}


class LiTImageGraph(nn.Module):
    def __init__(self, model: LiTModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_image_with_tokens(pixel_values)
