"""Tokenised training data and the random batches drawn from it.

Every caption and hard negative is tokenised once, up front, to one shared width, so any
rows concatenate. Each batch draws its images, one caption per image and one hard negative
(where the image has any) from the loop's generator: the same seed gives the same batches,
including after a resume.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from encoders.config import ModelConfig
from encoders.tokenizer import TextTokenizer, train_word_tokenizer
from training.sources import PairData


def _context_length(cfg: ModelConfig) -> int:
    return cfg.text.context_length if hasattr(cfg, "text") else cfg.context_length


def tokenizer_for_data(cfg: ModelConfig, data: PairData, val: PairData | None = None,
                       mask: bool = False) -> tuple[TextTokenizer, ModelConfig]:
    """The pretrained tower's own tokenizer, or a word-level one fitted to every text here
    (validation texts included, so none of their words is unknown; with `mask`, [MASK] for
    MLM too); the config gets its size."""
    pretrained = getattr(getattr(cfg, "text", None), "pretrained", None)
    if pretrained:
        from encoders.pretrained_text import tokenizer_for

        return tokenizer_for(pretrained, _context_length(cfg)), cfg
    corpus = [t for group in (data.captions + data.negatives) for t in group]
    if val is not None:
        corpus += [t for group in val.captions for t in group]
    tokenizer = train_word_tokenizer(corpus, _context_length(cfg), mask)
    if hasattr(cfg, "text"):
        cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, vocab_size=tokenizer.vocab_size))
    else:
        cfg = dataclasses.replace(cfg, vocab_size=tokenizer.vocab_size)
    return tokenizer, cfg


def _rows(groups: list[list[str]], offset: int) -> list[list[int]]:
    rows, n = [], offset
    for group in groups:
        rows.append(list(range(n, n + len(group))))
        n += len(group)
    return rows


class Batches:
    def __init__(self, data: PairData, tokenizer: TextTokenizer, device: torch.device) -> None:
        if any(not c for c in data.captions):
            raise ValueError("every training image needs at least one caption")
        texts = [t for g in data.captions for t in g] + [t for g in data.negatives for t in g]
        ids, mask = tokenizer.encode(texts)
        self.tokenizer = tokenizer
        self.device = device
        self.pixels = torch.from_numpy(data.pixels)
        self.ids, self.mask = torch.from_numpy(ids), torch.from_numpy(mask)
        self.caption_rows = _rows(data.captions, 0)
        self.negative_rows = _rows(data.negatives, sum(len(g) for g in data.captions))

    def __len__(self) -> int:
        return len(self.caption_rows)

    def _pick(self, options: list[int], gen: torch.Generator) -> int:
        return options[int(torch.randint(len(options), (1,), generator=gen))]

    def sample(self, size: int, gen: torch.Generator) -> dict:
        """`size` distinct images, a caption each, and (image row, negative) pairs where known."""
        if size > len(self):
            raise ValueError(f"batch of {size} asked from {len(self)} training images")
        images = torch.randperm(len(self), generator=gen)[:size].tolist()
        rows = [self._pick(self.caption_rows[i], gen) for i in images]
        ids, mask = self.ids[rows], self.mask[rows]
        with_neg = [(b, self._pick(self.negative_rows[i], gen)) for b, i in enumerate(images)
                    if self.negative_rows[i]]
        negatives = None
        if with_neg:
            which, neg_rows = zip(*with_neg, strict=True)
            negatives = (torch.tensor(which).to(self.device), self.ids[list(neg_rows)].to(self.device),
                         self.mask[list(neg_rows)].to(self.device))
        same = (ids[:, None, :] == ids[None, :, :]).all(-1)  # duplicate captions: not negatives
        return {"pixels": self.pixels[images].to(self.device), "ids": ids.to(self.device),
                "mask": mask.to(self.device), "same": same.to(self.device), "negatives": negatives}

    def validation(self, val: PairData) -> dict:
        """Every validation image with every caption, ready for `evaluate`."""
        texts = [t for g in val.captions for t in g]
        ids, mask = self.tokenizer.encode(texts)
        text_to_image = [i for i, g in enumerate(val.captions) for _ in g]
        return {"pixels": torch.from_numpy(val.pixels).to(self.device),
                "ids": torch.from_numpy(ids).to(self.device), "mask": torch.from_numpy(mask).to(self.device),
                "text_to_image": np.asarray(text_to_image)}
