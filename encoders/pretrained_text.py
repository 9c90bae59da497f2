"""A pretrained BERT-family text tower in the slot of `encoders.clip.TextTower`.

`DualEncoder` uses it when `TextConfig.pretrained` names a local `save_pretrained` folder
(e.g. sentence-transformers' all-MiniLM-L6-v2): the folder's encoder, pooled, then a new
linear projection into the shared embedding space, which training learns.

Pooling follows the checkpoint. A sentence-transformers folder says how its sentence vector
was trained (`modules.json` -> Pooling config); all-MiniLM-L6-v2 was trained on mean-pooled
tokens, and its [CLS] output was never trained as a sentence summary, so mean pooling keeps
what the pretraining learned. A plain BERT folder has no such file and pools [CLS], as BERT's
own pretraining (next-sentence prediction) and ALIGN/BLIP do.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from encoders.errors import BundleError
from encoders.hf import hf_tokenizer
from encoders.hf_towers import padding_bias
from encoders.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

POOLINGS = ("mean", "cls")
_ST_POOLING = "sentence_transformers.models.Pooling"


def _checked(folder: str | Path) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise BundleError(f"no pretrained text model at {folder}: config.json is missing")
    return folder


def pooling_for(folder: str | Path) -> str:
    """"mean" or "cls": what the checkpoint's own sentence vector is (see the module doc)."""
    folder = Path(folder)
    modules = folder / "modules.json"
    if not modules.is_file():
        return "cls"
    for module in json.loads(modules.read_text()):
        if module.get("type") == _ST_POOLING:
            cfg = json.loads((folder / module["path"] / "config.json").read_text())
            if cfg.get("pooling_mode_mean_tokens"):
                return "mean"
            if cfg.get("pooling_mode_cls_token"):
                return "cls"
            raise BundleError(f"{folder}: unsupported sentence-transformers pooling {cfg}")
    return "cls"


def tokenizer_for(folder: str | Path, max_length: int) -> TextTokenizer:
    """The folder's own tokenizer.json (WordPiece, [CLS] ... [SEP], [PAD]) cut at max_length."""
    return hf_tokenizer(_checked(folder), max_length)


class PretrainedTextTower(nn.Module):
    """(ids, mask) -> (embedding (b, embed_dim), tokens (b, t, width)), as `TextTower`."""

    def __init__(self, folder: str | Path, embed_dim: int, pooling: str | None = None) -> None:
        super().__init__()
        folder = _checked(folder)
        self.pooling = pooling or pooling_for(folder)
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; one of {', '.join(POOLINGS)}")
        from transformers import AutoModel  # heavy; only towers that are pretrained need it

        # eager attention: the 4-D additive mask below is a plain Add in the ONNX graph
        self.encoder = AutoModel.from_pretrained(
            folder, attn_implementation="eager", local_files_only=True)
        self.width = self.encoder.config.hidden_size
        self.max_positions = self.encoder.config.max_position_embeddings
        self.proj = nn.Linear(self.width, embed_dim, bias=False)
        log.info("text tower from %s (%s pooling, width %d)", folder, self.pooling, self.width)

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The pretrained encoder's last hidden states (b, t, width)."""
        # A ready 4-D mask passes through transformers' mask builder untouched, so tracing never
        # meets its data-dependent "no padding, drop the mask" shortcut.
        out = self.encoder(input_ids=ids, attention_mask=padding_bias(mask))
        return out.last_hidden_state

    def pool(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(b, t, width) -> (b, width): mean of real tokens (sentence-transformers) or [CLS]."""
        if self.pooling == "cls":
            return tokens[:, 0]
        weights = mask.to(tokens.dtype).unsqueeze(-1)  # (b, t, 1)
        return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.hidden_states(ids, mask)
        return self.proj(self.pool(tokens, mask)), tokens
