"""Uploaded image bytes -> a decoded RGB image, within the configured limits."""

from __future__ import annotations

import io

from PIL import Image

from encoders.errors import InputError
from encoders.preprocess import load_image
from service.config import Settings
from service.errors import InvalidQuery, PayloadTooLarge


def decode_upload(data: bytes, settings: Settings) -> Image.Image:
    if not data:
        raise InvalidQuery("the image is empty (0 bytes)")
    if len(data) > settings.max_image_bytes:
        raise PayloadTooLarge(f"the image is over the limit of {settings.max_image_bytes} bytes")
    try:
        return load_image(data, max_pixels=settings.max_image_pixels)
    except InputError as exc:
        raise InvalidQuery(str(exc)) from exc


# formats the index build reads from a folder, by the suffix it lists them under
_SUFFIX = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


def stored_suffix(data: bytes) -> str:
    """The file suffix to store an uploaded image under; refuses formats the index skips."""
    fmt = Image.open(io.BytesIO(data)).format or "unknown"
    if fmt not in _SUFFIX:
        raise InvalidQuery(f"{fmt} images cannot be added; use one of {', '.join(_SUFFIX)}")
    return _SUFFIX[fmt]
