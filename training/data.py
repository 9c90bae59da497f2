"""Image files into model inputs for training, through the same preprocessing the engine runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from encoders.preprocess import ImagePreprocess, load_image, preprocess


def load_pixels(paths: Sequence[str | Path], spec: ImagePreprocess) -> np.ndarray:
    """Files -> (batch, 3, size, size) float32, exactly as `OnnxEngine.pixels` makes them."""
    return preprocess([load_image(p) for p in paths], spec)
