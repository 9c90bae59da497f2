"""An engine in plain numpy that knows colours: a second implementation of
`encoders.engine.Engine`, so that index build and the service are shown to need the protocol
and nothing of ONNX Runtime's engine.

An image's embedding is its mean colour, a text's the colour words it names, both centred and
normalised, so "red" finds the red images. Its image tokens are the mean colours of the
image's four quadrants, and its reranker scores how well those agree with the text's colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from encoders.bundle import EngineManifest, TokenizerSpec
from encoders.errors import InputError
from encoders.preprocess import ImagePreprocess, preprocess

COLOURS = {"red": (1, -1, -1), "green": (-1, 1, -1), "blue": (-1, -1, 1),
           "yellow": (1, 1, -1), "cyan": (-1, 1, 1), "magenta": (1, -1, 1)}
SIZE = 8  # pixels a side: colours need no more


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-6)
            ).astype(np.float32)


class NumpyEngine:
    def __init__(self, engine_id: str = "numpy-colours") -> None:
        self.manifest = EngineManifest("numpy", 3, ImagePreprocess(size=SIZE), TokenizerSpec(),
                                       graphs={}, engine_id=engine_id)

    @property
    def path(self) -> Path | None:
        return None

    @property
    def engine_id(self) -> str:
        return self.manifest.engine_id

    @property
    def dim(self) -> int:
        return self.manifest.embed_dim

    @property
    def has_reranker(self) -> bool:
        return True

    def pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        return preprocess(images, self.manifest.image_preprocess)

    def encode_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        if pixels.ndim != 4 or pixels.shape[1:] != (3, SIZE, SIZE):
            raise InputError(f"pixels must have shape (batch, 3, {SIZE}, {SIZE})")
        half = SIZE // 2
        quadrants = [pixels[:, :, y : y + half, x : x + half].mean(axis=(2, 3))
                     for y in (0, half) for x in (0, half)]
        return {"image_embeds": _unit(pixels.mean(axis=(2, 3))),
                "image_tokens": np.stack(quadrants, axis=1).astype(np.float32)}  # (b, 4, 3)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_pixels(self.pixels(images))["image_embeds"]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            raise InputError("no texts to encode")
        named = [[COLOURS[w] for w in text.lower().split() if w in COLOURS] or [(0, 0, 0)]
                 for text in texts]
        return _unit(np.asarray([np.mean(words, axis=0) for words in named], np.float32))

    def encode_text_outputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return {"text_embeds": self.encode_texts(texts)}

    def score(self, image_tokens: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        if image_tokens.ndim != 3 or image_tokens.shape[0] != len(texts):
            raise InputError(f"image_tokens must have shape ({len(texts)}, tokens, width)")
        agreement = (_unit(image_tokens.mean(axis=1)) * self.encode_texts(texts)).sum(axis=1)
        return (1.0 / (1.0 + np.exp(-6.0 * agreement))).astype(np.float32)
