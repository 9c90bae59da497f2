"""Tokenisation through Hugging Face `tokenizers` files (`tokenizer.json`), the same for every family.

A bundle carries its tokenizer file; this module turns text into fixed-dtype id and mask
arrays, padded to the longest text in the batch and truncated to the model's context.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer

from encoders.errors import InputError

PAD, UNK, CLS, MASK = "[PAD]", "[UNK]", "[CLS]", "[MASK]"
# `encode_batch` hands the texts to a thread pool: below this many it takes 2-3x the time and
# CPU of encoding them one by one (16 emoji names: 590 us against 225 us on 2 cores), and its
# idle threads take CPU from the server's event loop. Query batches are far below it.
PARALLEL_FROM = 256


class TextTokenizer:
    """Wraps a `tokenizers.Tokenizer` with the max length and padding rule from a manifest."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, pad_token: str = PAD) -> None:
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise InputError(f"padding token {pad_token!r} is not in the tokenizer's vocabulary")
        self.pad_id = pad_id
        self.max_length = max_length
        self.pad_token = pad_token
        self._tok = tokenizer
        self._tok.enable_truncation(max_length)
        # pads batches encoded together, and is part of the file a bundle carries
        self._tok.enable_padding(pad_id=pad_id, pad_token=pad_token)

    @classmethod
    def from_file(cls, path: str | Path, max_length: int, pad_token: str = PAD) -> TextTokenizer:
        return cls(Tokenizer.from_file(str(path)), max_length, pad_token)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    @property
    def mask_id(self) -> int | None:
        """The id of [MASK] (what masked language modelling puts in place of a word), if any."""
        return self._tok.token_to_id(MASK)

    @property
    def special_ids(self) -> list[int]:
        """Ids of the special tokens ([PAD], [CLS], ...): never masked, never drawn as words."""
        return sorted(i for i, added in self._tok.get_added_tokens_decoder().items()
                      if added.special)

    def save(self, path: str | Path) -> None:
        self._tok.save(str(path))

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (input_ids, attention_mask), both int64 of shape (batch, seq)."""
        if not texts:
            raise InputError("no texts to encode")
        texts = list(texts)
        encodings = (self._tok.encode_batch(texts) if len(texts) >= PARALLEL_FROM
                     else [self._tok.encode(text) for text in texts])  # each unpadded
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), width), self.pad_id, np.int64)
        mask = np.zeros((len(texts), width), np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = e.attention_mask
        return ids, mask


def train_word_tokenizer(corpus: Iterable[str], max_length: int, mask: bool = False) -> TextTokenizer:
    """A lower-cased word-level tokenizer over a caption corpus, prefixing [CLS] to every text;
    with `mask`, [MASK] joins the special tokens, for masked language modelling (left out
    otherwise, so the vocabulary of models trained without MLM stays as it was).

    Used for small models trained from scratch; pretrained text towers bring their own file.
    """
    tok = Tokenizer(WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, WordLevelTrainer(special_tokens=[PAD, UNK, CLS] + ([MASK] if mask else [])))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A", special_tokens=[(CLS, tok.token_to_id(CLS))]
    )
    return TextTokenizer(tok, max_length)
