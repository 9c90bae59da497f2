"""Image loading and preprocessing: one numpy implementation for training, index build and serving.

The rule (size, resize, crop, mean, std, interpolation) is data stored in the engine
manifest, so the pixels a model was trained on and the pixels it is served are made by
the same function from the same numbers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from encoders.errors import InputError

_INTERPOLATION = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class ImagePreprocess:
    size: int = 64  # square output side, pixels
    resize: str = "shortest"  # "shortest": scale the short side to `size`; "stretch": to size x size
    crop: str = "center"  # crop rule after a "shortest" resize
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per RGB channel, on 0..1 pixels
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.resize not in ("shortest", "stretch"):
            raise ValueError(f"unknown resize rule {self.resize!r}")
        if self.crop != "center":
            raise ValueError(f"unknown crop rule {self.crop!r}")
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(f"unknown interpolation {self.interpolation!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePreprocess:
        data = dict(data)
        data["mean"] = tuple(data.get("mean", cls.mean))
        data["std"] = tuple(data.get("std", cls.std))
        return cls(**data)


def load_image(source: str | Path | bytes) -> Image.Image:
    """Open an image file or bytes as RGB, upright (EXIF orientation applied), first frame only."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.seek(0)  # animated formats: the first frame stands for the image
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        name = "image bytes" if isinstance(source, bytes) else str(source)
        raise InputError(f"cannot decode {name}: {exc}") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping at 255
        array = np.asarray(image, dtype=np.float64)
        peak = max(float(array.max()), 1.0)
        image = Image.fromarray((array * (255.0 / peak)).astype(np.uint8), "L")
    if image.mode == "P" or image.mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _resize(image: Image.Image, spec: ImagePreprocess) -> Image.Image:
    method = _INTERPOLATION[spec.interpolation]
    if spec.resize == "stretch":
        return image.resize((spec.size, spec.size), method)
    width, height = image.size
    scale = spec.size / min(width, height)
    new_w = max(spec.size, round(width * scale))
    new_h = max(spec.size, round(height * scale))
    image = image.resize((new_w, new_h), method)
    left = (new_w - spec.size) // 2
    top = (new_h - spec.size) // 2
    return image.crop((left, top, left + spec.size, top + spec.size))


def preprocess(images: Sequence[Image.Image], spec: ImagePreprocess) -> np.ndarray:
    """RGB PIL images -> float32 array (batch, 3, size, size), normalised by the spec."""
    if not images:
        raise InputError("no images to preprocess")
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)
    out = np.empty((len(images), 3, spec.size, spec.size), dtype=np.float32)
    for i, image in enumerate(images):
        pixels = np.asarray(_resize(to_rgb(image), spec), dtype=np.float32) / 255.0
        out[i] = (pixels.transpose(2, 0, 1) - mean) / std
    return out
