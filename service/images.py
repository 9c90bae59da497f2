"""Uploaded image bytes -> a decoded RGB image, within the configured limits."""

from __future__ import annotations

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
