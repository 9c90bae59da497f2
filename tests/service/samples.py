"""Small images the service tests upload."""

from __future__ import annotations

import io

from PIL import Image

from training.synthetic import COLOURS


def square_png(colour: str) -> bytes:
    """A 128x128 PNG: a square of one of the synthetic scenes' colours on a light ground."""
    buffer = io.BytesIO()
    image = Image.new("RGB", (128, 128), (250, 250, 250))
    image.paste(COLOURS[colour], (32, 32, 96, 96))
    image.save(buffer, format="PNG")
    return buffer.getvalue()
