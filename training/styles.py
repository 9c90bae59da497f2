"""More drawing styles for the emoji pairs, so a model learns the thing and not Twemoji's look.

- Symbola: Debian's `fonts-symbola` draws about 1,100 of the single-codepoint emoji as
  black-on-white line art -- a second artist, with no colour to lean on.
- Augmentations: cheap re-drawings of any emoji image (greyscale, colour jitter, outline,
  edge map, smaller and off-centre), each reproducible from a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from training.emoji import Emoji, fit_glyph, ink_box, twemoji

SYMBOLA_FONT = Path("/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf")
# drawn at twice the final glyph side, so downscaling anti-aliases the strokes
SYMBOLA_SIZE = 136
AUGMENTATIONS = ("grey", "jitter", "outline", "edges", "offset")
INK = 250  # a channel below this is drawing, not background (keeps faint anti-aliasing)


def _codepoint(char: str) -> int | None:
    """The emoji's one codepoint, a trailing VS16 aside; None for sequences."""
    base = char.removesuffix("\ufe0f")
    return ord(base) if len(base) == 1 else None


def render_symbola(char: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """`char` in black on white, IMAGE_SIZE square as render_noto draws; None when blank."""
    left, top, right, bottom = font.getbbox(char)
    canvas = Image.new("L", (right - left + 8, bottom - top + 8), "white")
    ImageDraw.Draw(canvas).text((4 - left, 4 - top), char, font=font, fill="black")
    box = ink_box(canvas)
    return None if box is None else fit_glyph(canvas, box).convert("RGB")


@lru_cache(maxsize=2)
def _symbola_renders(font_path: Path) -> tuple[tuple[Emoji, Image.Image], ...]:
    from fontTools.ttLib import TTFont

    # FreeType draws .notdef (a box) for a codepoint the font lacks: ask the cmap first
    with TTFont(font_path, lazy=True) as tables:
        cmap = tables["cmap"].getBestCmap()
    font = ImageFont.truetype(str(font_path), SYMBOLA_SIZE)
    out = []
    for e in twemoji():
        point = _codepoint(e.char)
        if point is None or point not in cmap:
            continue
        # the bare codepoint: VS16 is not in every font, and would be drawn as .notdef
        image = render_symbola(chr(point), font)
        if image is not None:
            out.append((e, image))
    return tuple(out)


def symbola_items(font_path: Path | str = SYMBOLA_FONT) -> list[tuple[Emoji, Image.Image]]:
    """Every single-codepoint Twemoji that Symbola has, drawn by Symbola (cached: the images
    are shared between calls, so copy one before changing it)."""
    font_path = Path(font_path)
    if not font_path.is_file():  # checked before the cache, so installing the font later works
        raise FileNotFoundError(f"{font_path} is missing: install Debian's fonts-symbola "
                                "(apt-get install fonts-symbola) to render the Symbola set")
    return list(_symbola_renders(font_path))


def _filtered(image: Image.Image, kernel: ImageFilter.Filter) -> Image.Image:
    # PIL leaves a 3x3 filter's border pixels as they were; pad with white so the frame of an
    # image is filtered like its inside
    padded = ImageOps.expand(image, border=1, fill="white" if image.mode == "RGB" else 0)
    return padded.filter(kernel).crop((1, 1, image.width + 1, image.height + 1))


def _grey(image: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.grayscale(image).convert("RGB")


def _signed(rng: random.Random, low: float, high: float) -> float:
    # never near zero, so every jittered copy really is a different colouring
    return rng.uniform(low, high) * rng.choice((-1, 1))


def _jitter(image: Image.Image, rng: random.Random) -> Image.Image:
    out = ImageEnhance.Brightness(image).enhance(1 + _signed(rng, 0.1, 0.3))
    out = ImageEnhance.Contrast(out).enhance(1 + _signed(rng, 0.1, 0.3))
    out = ImageEnhance.Color(out).enhance(1 + _signed(rng, 0.1, 0.4))
    hsv = np.array(out.convert("HSV"))
    # small hue turns only (3..20 degrees): the texts name colours ("green heart")
    hsv[..., 0] += np.uint8(round(_signed(rng, 2, 14)) % 256)  # uint8 wraps: the hue circle
    return Image.fromarray(hsv, "HSV").convert("RGB")


def _ink_mask(image: Image.Image) -> Image.Image:
    drawn = np.asarray(image).min(axis=2) < INK
    return Image.fromarray(drawn.astype(np.uint8) * 255, "L")


def _outline(image: Image.Image, rng: random.Random) -> Image.Image:
    edges = _filtered(_ink_mask(image), ImageFilter.FIND_EDGES)
    thick = edges.filter(ImageFilter.MaxFilter(3))  # 1 px is lost at 72x72 once resized
    return ImageOps.invert(thick).convert("RGB")


def _edges(image: Image.Image, rng: random.Random) -> Image.Image:
    per_band = np.asarray(_filtered(image, ImageFilter.FIND_EDGES), dtype=np.int32)
    # the strongest band, doubled: a soft colour step is drawn as firmly as the silhouette
    strength = np.clip(per_band.max(axis=2) * 2, 0, 255).astype(np.uint8)
    return Image.fromarray(255 - strength, "L").convert("RGB")


def _offset(image: Image.Image, rng: random.Random) -> Image.Image:
    out = Image.new("RGB", image.size, "white")
    box = ink_box(image)
    if box is None:
        return out
    glyph = image.crop(box)
    scale = rng.uniform(0.5, 1.0)
    size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
    glyph = glyph.resize(size, Image.LANCZOS)
    out.paste(glyph, (rng.randint(0, image.width - size[0]), rng.randint(0, image.height - size[1])))
    return out


_KINDS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "grey": _grey, "jitter": _jitter, "outline": _outline, "edges": _edges, "offset": _offset,
}


def augment(image: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """A new RGB copy of `image`, same size, re-drawn as `kind` (one of AUGMENTATIONS); the
    random kinds draw only from `rng`, so the same rng state gives the same image."""
    if kind not in _KINDS:
        raise ValueError(f"unknown augmentation {kind!r}: known are {', '.join(AUGMENTATIONS)}")
    return _KINDS[kind](image.convert("RGB"), rng)
