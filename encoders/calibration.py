"""Calibration inputs for static int8 quantisation: images and texts of the collection.

A folder of images (the ones the index will hold, or a sample of them) and, optionally, their
captions in `captions.jsonl` beside them (one `{"file": ..., "caption": ...}` per line, the
index build's format). Static quantisation fixes each activation's int8 range from these
inputs, so they should look like what the engine will be fed: the collection's own images and
texts, not noise. Captioned images also measure an int8 variant's recall change at export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from encoders.errors import InputError
from encoders.preprocess import ImagePreprocess, load_image, preprocess
from encoders.tokenizer import TextTokenizer

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
LIMIT = 64  # enough for min/max ranges to settle; every image costs a fp32 pass per graph
BATCH = 16


@dataclass(frozen=True)
class Calibration:
    images: list[Image.Image]
    texts: list[str]  # the images' captions in the same order, or none
    source: str = ""

    @property
    def paired(self) -> bool:
        """One caption per image: enough to measure recall, not only ranges."""
        return len(self.texts) == len(self.images) > 1

    def pixels(self, spec: ImagePreprocess) -> np.ndarray:
        return preprocess(self.images, spec)

    def text_feeds(self, tokenizer: TextTokenizer) -> list[dict[str, np.ndarray]]:
        return [dict(zip(("input_ids", "attention_mask"), tokenizer.encode(chunk), strict=True))
                for chunk in _chunks(self.texts)]


def read_calibration(folder: str | Path, limit: int = LIMIT) -> Calibration:
    """Up to `limit` images of `folder` (sorted by name) and their captions, when every one of
    them has one; a clear error for a folder with no readable image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"calibration folder {folder} does not exist")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    images, names = [], []
    for path in paths:
        try:
            images.append(load_image(path))
        except InputError:
            continue  # the build skips unreadable images as well
        names.append(path.relative_to(folder).as_posix())
        if len(images) == limit:
            break
    if not images:
        raise InputError(f"calibration folder {folder} holds no readable image "
                         f"({', '.join(sorted(SUFFIXES))})")
    captions = _captions(folder)
    texts = [captions[n] for n in names] if all(n in captions for n in names) else []
    return Calibration(images, texts, str(folder))


def _captions(folder: Path) -> dict[str, str]:
    path = folder / "captions.jsonl"
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["file"]: row["caption"] for row in rows}


def _chunks(items: list, size: int = BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batched(array: np.ndarray, size: int = BATCH) -> list[np.ndarray]:
    return [array[start : start + size] for start in range(0, len(array), size)]
