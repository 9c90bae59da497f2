"""Binary codes: what an engine bundle with a hash head outputs, and how they are packed.

A bundle with codes (`training.hashing`) has a third output on each tower graph,
`image_codes` / `text_codes` (batch, bits) float32: the hash head's real-valued outputs,
whose signs are the code. Everything past the graph works on packed codes: bit j of a code
is 1 where output j is positive, eight bits a byte (`numpy.packbits`, most significant bit
first), the layout FAISS's binary indexes take. Torch-free, so engine, index and service use it.
"""

from __future__ import annotations

import numpy as np

IMAGE_CODES, TEXT_CODES = "image_codes", "text_codes"
BITS = (64, 128, 256)  # code lengths a hash head may have


def pack(outputs: np.ndarray) -> np.ndarray:
    """Hash-head outputs (n, bits) -> packed codes (n, bits / 8) uint8."""
    if outputs.ndim != 2 or outputs.shape[1] % 8:
        raise ValueError(f"code outputs must be (n, bits) with bits a multiple of 8, got {outputs.shape}")
    return np.packbits(outputs > 0, axis=1)


def check_bits(bits: int) -> int:
    if bits not in BITS:
        raise ValueError(f"codes of {bits} bits are not supported; one of {', '.join(map(str, BITS))}")
    return bits


def hamming_to_score(distances: np.ndarray, bits: int) -> np.ndarray:
    """Hamming distances -> the cosine of the two codes read as +-1 vectors, in [-1, 1]: the
    score a code-only search reports, on the same scale as a float search's."""
    return (1.0 - 2.0 * distances.astype(np.float32) / bits).astype(np.float32)
