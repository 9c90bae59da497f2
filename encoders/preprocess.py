"""Image loading and preprocessing: one numpy implementation for training, index build and serving.

The rule (size, resize, crop, mean, std, interpolation) is data stored in the engine
manifest, so the pixels a model was trained on and the pixels it is served are made by
the same function from the same numbers.
"""

from __future__ import annotations

import io
import re
import struct
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
    crop: str = "center"  # crop rule after the resize
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per RGB channel, on 0..1 pixels
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Side the resize aims at before the centre crop to `size` (the short side for "shortest",
    # both sides for "stretch"); None means `size`, i.e. no margin is cropped away.
    resize_to: int | None = None
    # How a "shortest" resize sizes the long side: "round" (this project's native models) or
    # "floor" (int(), as Hugging Face image processors and torchvision do).
    long_side: str = "round"
    # Where the centre crop starts: "floor" ((d - size) // 2: this project, Hugging Face) or
    # "round" (int(round((d - size) / 2)), round-half-even: torchvision, hence open_clip).
    crop_offset: str = "floor"

    def __post_init__(self) -> None:
        if self.resize not in ("shortest", "stretch"):
            raise ValueError(f"unknown resize rule {self.resize!r}")
        if self.resize_to is not None and self.resize_to < self.size:
            raise ValueError(f"resize_to {self.resize_to} is below the crop size {self.size}")
        if self.long_side not in ("round", "floor"):
            raise ValueError(f"unknown long-side rule {self.long_side!r}")
        if self.crop_offset not in ("floor", "round"):
            raise ValueError(f"unknown crop offset rule {self.crop_offset!r}")
        if self.crop != "center":
            raise ValueError(f"unknown crop rule {self.crop!r}")
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(f"unknown interpolation {self.interpolation!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Fields added later are written only when set, so the engine_id of a bundle made
        # before they existed (a hash over this dict) still verifies.
        for name, default in _OPTIONAL_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePreprocess:
        data = dict(data)
        data["mean"] = tuple(data.get("mean", cls.mean))
        data["std"] = tuple(data.get("std", cls.std))
        return cls(**data)


_OPTIONAL_DEFAULTS = {"resize_to": None, "long_side": "round", "crop_offset": "floor"}

# Larger images are refused before their pixels are decoded (decompression bombs).
MAX_PIXELS = 64_000_000


def load_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS,
               formats: Sequence[str] | None = None) -> Image.Image:
    """Open an image file or bytes as RGB, upright (EXIF orientation applied), first frame only.

    `formats` (Pillow's names, e.g. ("JPEG", "PNG")) are the only decoders tried: bytes in
    any other format are refused by name, and no other decoder sees them.
    """
    name = "image bytes" if isinstance(source, bytes) else str(source)
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source,
                           formats=None if formats is None else tuple(formats))
        width, height = image.size  # read from the header; nothing is decoded yet
        if width * height > max_pixels:
            raise InputError(f"{name} is {width}x{height} = {width * height} pixels, over the "
                             f"limit of {max_pixels}")
        image.seek(0)  # animated formats: the first frame stands for the image
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except InputError:
        raise
    except Image.UnidentifiedImageError as exc:  # its message shows the file object's repr
        raise InputError(_unidentified(name, source, formats)) from exc
    except Image.DecompressionBombError as exc:  # Pillow's own limit, above ours by default
        counted = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{counted.group(1)} pixels" if counted else "too many pixels"
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise InputError(f"{name} is {size}, over the limit of {limit}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        raise InputError(f"cannot decode {name}: {exc}") from exc


def _unidentified(name: str, source: str | Path | bytes, formats: Sequence[str] | None) -> str:
    """Why Pillow could not open `source`, naming the format its first bytes announce."""
    if isinstance(source, bytes):
        prefix = source[:16]
    else:
        with open(source, "rb") as file:
            prefix = file.read(16)
    found = _signature(prefix)
    accepted = None if formats is None else ", ".join(f.upper() for f in formats)
    if accepted is not None and found is not None and found not in accepted.split(", "):
        return (f"{name}: format {found} (by its signature) is not accepted; accepted formats "
                f"are {accepted}")
    if found is not None:
        return f"cannot decode {name}: a malformed {found} header"
    if accepted is not None:
        return f"cannot decode {name}: not an image in an accepted format ({accepted})"
    return f"cannot decode {name}: not an image in a format Pillow reads"


def _signature(prefix: bytes) -> str | None:
    """The format whose signature `prefix` starts with, by each Pillow plugin's own check.

    Only these few-byte checks run, never a plugin's header parser or decoder; formats
    without a signature (TGA, for one) are not named.
    """
    Image.init()
    for fmt in Image.ID:
        accept = Image.OPEN[fmt][1]
        if accept is not None and _accepts(accept, prefix):
            return fmt
    return None


def _accepts(accept: Any, prefix: bytes) -> bool:
    try:
        return bool(accept(prefix))
    except (IndexError, ValueError, struct.error):  # tripped on a short prefix: not its format
        return False


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


# A resize to more than this many times the output's pixels (an aspect ratio over 4) is
# replaced by resampling only the crop box: a 100000x1 image would otherwise become a
# 6.4 M x 64 intermediate (2 GB) for its middle 64x64.
_WHOLE_RESIZE_MAX = 4


def _resize(image: Image.Image, spec: ImagePreprocess) -> Image.Image:
    """The spec's resize, then a centre crop to size x size."""
    target = spec.resize_to or spec.size
    width, height = image.size
    if spec.resize == "stretch":
        new_w = new_h = target
    elif spec.long_side == "floor":
        # exactly Hugging Face's get_resize_output_image_size(default_to_square=False)
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(target * long / short)
        new_w, new_h = (target, new_long) if width <= height else (new_long, target)
    else:
        scale = target / min(width, height)
        new_w = max(target, round(width * scale))
        new_h = max(target, round(height * scale))
    left, top = _crop_start(new_w, spec), _crop_start(new_h, spec)
    if new_w * new_h > _WHOLE_RESIZE_MAX * target * target:
        return _crop_resize(image, (new_w, new_h), (left, top), spec.size, spec.interpolation)
    image = image.resize((new_w, new_h), _INTERPOLATION[spec.interpolation])
    if (new_w, new_h) == (spec.size, spec.size):
        return image
    return image.crop((left, top, left + spec.size, top + spec.size))


def _crop_start(side: int, spec: ImagePreprocess) -> int:
    margin = side - spec.size
    return round(margin / 2) if spec.crop_offset == "round" else margin // 2


def _crop_resize(image: Image.Image, resized: tuple[int, int], corner: tuple[int, int],
                 size: int, interpolation: str) -> Image.Image:
    """The size x size square at `corner` of `image` resized to `resized`, without the resize:
    Pillow resamples just the square's box in source pixels (its filters still read the pixels
    around the box), so work and memory follow the output size, not the input's aspect ratio.
    The pixels match the whole resize's to within the rounding between its two passes."""
    (width, height), (new_w, new_h) = image.size, resized
    sx, sy = width / new_w, height / new_h
    box = (corner[0] * sx, corner[1] * sy, (corner[0] + size) * sx, (corner[1] + size) * sy)
    return image.resize((size, size), _INTERPOLATION[interpolation], box=box)


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
