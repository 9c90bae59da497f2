"""Image-token store for the fusion reranker: fp16 patch tokens, memory-mapped at search time.

Stored as one `.npy` array (images, tokens, width) in float16 aligned with the FAISS
positions, so the service reads a candidate's tokens with one slice of a memory map and
the operating system pages in only the rows it touches. Bytes per image are
tokens x width x 2; `pool_tokens` is the compressed option: contiguous groups of tokens
averaged down to `keep` (for a ViT in raster order, strips of neighbouring patches).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from encoders.errors import InputError

TOKENS_FILE = "image_tokens.npy"


def pool_tokens(tokens: np.ndarray, keep: int | None) -> np.ndarray:
    """(b, n, w) -> (b, keep, w) by averaging `keep` contiguous groups; None keeps all."""
    if keep is None or tokens.shape[1] <= keep or tokens.size == 0:
        return tokens
    if keep < 1:
        raise InputError(f"token_pool must be >= 1, got {keep}")
    groups = np.array_split(np.arange(tokens.shape[1]), keep)
    # average in float32: fp16 sums of many tokens lose precision
    return np.stack([tokens[:, g].astype(np.float32).mean(axis=1) for g in groups], axis=1)


def expand_tokens(pooled: np.ndarray, full: int) -> np.ndarray:
    """(b, keep, w) -> (b, full, w): each pooled token repeated over the group it averaged.

    The reranker graph takes a fixed token count; this is how pooled tokens are fed to it.
    """
    if pooled.shape[1] == full:
        return pooled
    sizes = [len(g) for g in np.array_split(np.arange(full), pooled.shape[1])]
    return np.repeat(pooled, sizes, axis=1)


def open_tokens(path: Path) -> np.ndarray:
    """The store as a read-only memory map: nothing is read until a row is sliced."""
    return np.load(path, mmap_mode="r")


def bytes_per_image(tokens: np.ndarray) -> int:
    return int(np.prod(tokens.shape[1:])) * 2
