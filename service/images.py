"""Uploaded image bytes -> a decoded RGB image, within the configured limits."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io

from PIL import Image

from encoders.errors import InputError
from encoders.preprocess import load_image
from service.config import Settings
from service.errors import InvalidQuery, PayloadTooLarge

# The image formats every upload path accepts (search, rerank, admin add), by Pillow's name,
# with the suffix an added image is stored under: the index build lists a folder by these
# suffixes (encoders.records.IMAGE_SUFFIXES), so a format outside it could not be indexed.
# Pillow opens uploads with these decoders only; no other decoder sees upload bytes.
UPLOAD_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


def decode_upload(data: bytes, settings: Settings) -> Image.Image:
    """Decode an upload; blocking (a large image takes a while): async code calls
    `decode_upload_off_loop`."""
    if not data:
        raise InvalidQuery("the image is empty (0 bytes)")
    if len(data) > settings.max_image_bytes:
        raise PayloadTooLarge(f"the image is over the limit of {settings.max_image_bytes} bytes")
    try:
        return load_image(data, max_pixels=settings.max_image_pixels,
                          formats=tuple(UPLOAD_FORMATS))
    except InputError as exc:
        raise InvalidQuery(str(exc)) from exc


def check_total_pixels(uploads: list[bytes], settings: Settings) -> None:
    """Refuse a request whose images add up to more than `max_request_pixels`, from their
    headers alone: a few kilobytes of PNG can each decode to tens of millions of pixels, and a
    request may carry a hundred."""
    total = 0
    for data in uploads:
        try:
            with Image.open(io.BytesIO(data), formats=tuple(UPLOAD_FORMATS)) as image:
                pixels = image.size[0] * image.size[1]
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # decoding it names the problem, and the file
        if pixels <= settings.max_image_pixels:  # one over its own limit is refused by name
            total += pixels
    if total > settings.max_request_pixels:
        raise PayloadTooLarge(f"the images add up to {total} pixels, over the limit of "
                              f"{settings.max_request_pixels} per request")


async def decode_upload_off_loop(data: bytes, settings: Settings) -> Image.Image:
    """`decode_upload` in a worker thread, so other requests are served meanwhile."""
    return await asyncio.to_thread(decode_upload, data, settings)


def stored_suffix(data: bytes) -> str:
    """The file suffix to store an upload under, once `decode_upload` has accepted it."""
    try:
        fmt = Image.open(io.BytesIO(data), formats=tuple(UPLOAD_FORMATS)).format
    except (OSError, ValueError, SyntaxError):
        fmt = None
    # a JPEG that carries more pictures (a camera's MPO) opens as MPO; it is a .jpg file
    suffix = UPLOAD_FORMATS.get("JPEG" if fmt == "MPO" else str(fmt))
    if suffix is None:
        raise InvalidQuery(f"{fmt or 'these'} images cannot be added; use one of "
                           f"{', '.join(UPLOAD_FORMATS)}")
    return suffix


def decode_base64(text: str, field: str) -> bytes:
    """An image's bytes from base64 text: the standard or the URL-safe alphabet, bare or as a
    `data:image/...;base64,` URL (what a browser's FileReader gives)."""
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise InvalidQuery(f"{field}: a data URL must be base64, like data:image/png;base64,...")
    altchars = b"-_" if "-" in text or "_" in text else None
    try:
        return base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        raise InvalidQuery(f"{field} is not valid base64: {exc}") from exc
