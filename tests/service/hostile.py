"""A corpus of hostile inputs, made here: broken and odd images, bad bodies, odd text and k."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 100_000) -> bytes:
    """A few dozen bytes that declare a side x side image (10 gigapixels by default)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


def valid_images() -> dict[str, bytes]:
    """Unusual but valid images: each must be answered with results."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    return {
        "animated.gif": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "animated.webp": _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "cmyk.jpg": _encode(rgb.convert("CMYK"), "JPEG"),
        "grey16.png": _encode(rgb.convert("L").convert("I;16"), "PNG"),
        "palette_alpha.png": _encode(rgb.convert("RGBA").convert("P"), "PNG", transparency=0),
        "rgba.webp": _encode(rgb.convert("RGBA"), "WEBP"),
        "one_pixel.png": _encode(Image.new("RGB", (1, 1)), "PNG"),
        "very_wide.png": _encode(Image.new("RGB", (4000, 2)), "PNG"),
        # a few hundred bytes; the whole resize it used to get took 2 GB and 4 s
        "extreme_aspect.png": _encode(Image.new("RGB", (100_000, 1), "teal"), "PNG"),
        "extreme_aspect_tall.png": _encode(Image.new("RGB", (1, 100_000), "teal"), "PNG"),
    }


def other_formats() -> dict[str, bytes]:
    """Valid images in formats Pillow reads but uploads do not accept: each must be a 422
    that names the format (where its first bytes have a signature) and the accepted ones."""
    rgb = Image.new("RGB", (16, 16), "orange")
    out = {f"image.{fmt.lower()}": _encode(rgb, fmt)
           for fmt in ("PPM", "PCX", "SGI", "DDS", "QOI", "TIFF", "EPS", "ICO", "TGA")}
    out["image.xbm"] = _encode(rgb.convert("1"), "XBM")
    return out


def broken_images() -> dict[str, bytes]:
    """Bytes that are not a decodable image: each must be a 4xx naming the problem."""
    rgb = Image.new("RGB", (64, 64), "purple")
    whole = {"jpg": _encode(rgb, "JPEG"), "png": _encode(rgb, "PNG"),
             "webp": _encode(rgb, "WEBP"), "gif": _encode(rgb, "GIF")}
    out = {f"truncated.{ext}": data[: len(data) // 3] for ext, data in whole.items()}
    out |= {f"zero.{ext}": b"" for ext in whole}
    out |= {
        "bomb.png": png_bomb(),
        "text_as_png.png": b"hello, I am not an image" * 10,
        "svg.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        "html.jpg": b"<html><body>nope</body></html>",
    }
    return out


HOSTILE_TEXTS = {
    "control_chars": "a red \x00\x07\x1b[31m circle\r\n",
    "mixed_scripts": "красный круг 赤い円 دائرة حمراء 🔴",
    "zero_width": "a\u200b\u200c\u200dred\ufeff circle",
    "right_to_left": "\u202e elcric der a",
    "combining": "a" + "\u0301" * 900,
    "surrogate_like_emoji": "👩‍👩‍👧‍👦" * 100,
}
