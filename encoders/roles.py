"""The graph roles an engine bundle can hold, and what an exportable model provides.

Every family (native or imported from Hugging Face) is exported through the same three
roles, each a `torch.nn.Module` with fixed input and output names:

| role            | inputs                                        | outputs                                   |
| --------------- | --------------------------------------------- | ----------------------------------------- |
| image_encoder   | pixel_values (b, 3, H, W) float32             | image_embeds (b, d) L2-normalised,        |
|                 |                                               | image_tokens (b, n, w) for the reranker   |
| text_encoder    | input_ids (b, t) int64, attention_mask (b, t) | text_embeds (b, d) L2-normalised          |
| reranker        | image_tokens (b, n, w), input_ids, attention_mask | match_prob (b,) in [0, 1]             |

This module is torch-free: it only names things, so the engine can use it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from encoders.bundle import GraphSpec
from encoders.preprocess import ImagePreprocess
from encoders.tokenizer import TextTokenizer

IMAGE, TEXT, RERANKER = "image_encoder", "text_encoder", "reranker"

GRAPHS = {
    IMAGE: GraphSpec("image_encoder.onnx", ["pixel_values"], ["image_embeds", "image_tokens"]),
    TEXT: GraphSpec("text_encoder.onnx", ["input_ids", "attention_mask"], ["text_embeds"]),
    RERANKER: GraphSpec(
        "reranker.onnx", ["image_tokens", "input_ids", "attention_mask"], ["match_prob"]
    ),
}

# Axes left dynamic in every exported graph.
DYNAMIC_AXES = {
    "pixel_values": {0: "batch"},
    "image_embeds": {0: "batch"},
    "image_tokens": {0: "batch"},
    "input_ids": {0: "batch", 1: "seq"},
    "attention_mask": {0: "batch", 1: "seq"},
    "text_embeds": {0: "batch"},
    "match_prob": {0: "batch"},
}


@dataclass
class Exportable:
    """A model ready for export: one module per role, and what the bundle needs beside them."""

    family: str  # "clip", "align", "vlmo", "albef", "blip", ...
    embed_dim: int
    roles: dict[str, Any]  # role name -> torch.nn.Module with the role's signature
    tokenizer: TextTokenizer
    preprocess: ImagePreprocess
    vocab_size: int  # for random parity inputs
    info: dict[str, Any] = field(default_factory=dict)  # source, training data, metrics
    files: dict[str, Any] = field(default_factory=dict)  # bundle file name -> Path to copy in
    similarity: str = "cosine"  # "sigmoid" for SigLIP-style models (see `score`)
    score: dict[str, Any] = field(default_factory=dict)  # how scores are made from embeddings
