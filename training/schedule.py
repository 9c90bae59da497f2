"""The learning-rate schedule every training loop uses: linear warmup, then cosine decay to 0."""

from __future__ import annotations

import math


def warmup_cosine(step: int, steps: int, base: float, warmup: int) -> float:
    """The rate for 0-based `step` of `steps`: rising to `base` over `warmup` steps, then cosine."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
