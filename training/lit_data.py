"""Training items for the `lit` family: images (made lazily), captions, style and concept.

Sources (comma-separated in `--data`):
- `emoji`: every named Twemoji (style "twemoji");
- `emoji-augmented`: each Twemoji once more per augmentation in `training.styles`
  (greyscale, colour jitter, outline, edges, scale and offset; style "twemoji-<kind>");
- `emoji-augmented-1`: each Twemoji once more, with one augmentation drawn per emoji (a fifth
  of the images, so a fifth of the extraction time);
- `symbola`: Symbola's monochrome glyphs (Debian `fonts-symbola`; style "symbola");
- `compositional`: the synthetic scenes' training split, with hard-negative captions.

Emoji concepts are split by a hash of their base concept (skin-tone variants together): a
`holdout` of "test" or "val" leaves that 10% out of every style. Captions that state one of
the compositional split's held-out combinations ("blue circle") are left out of every source,
so that split stays held out for a model trained on emoji names too.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from encoders.preprocess import load_image
from training.compositional import (
    compositional_scenes,
    render_scene,
    stated_combinations,
    training_negatives,
)
from training.leaks import Provenance

SOURCES = ("emoji", "emoji-augmented", "emoji-augmented-1", "symbola", "compositional")
SPLITS = {"test": 0, "val": 1}  # hash bucket of each concept split, 10% each
_SKIN_TONES = {f"{c:x}" for c in range(0x1F3FB, 0x1F400)}


@dataclass
class Item:
    load: Callable[[], Image.Image]  # the image, made when features are extracted
    captions: list[str]
    style: str
    concept: str = ""  # emoji base concept; "" for synthetic scenes
    negatives: list[str] = field(default_factory=list)  # captions known not to match


def base_concept(png_stem: str) -> str:
    """A Twemoji file stem without skin tones or variation selectors ("1f44b-1f3fd" -> "1f44b")."""
    parts = [p for p in png_stem.split("-") if p not in _SKIN_TONES and p != "fe0f"]
    return "-".join(parts)


def concept_split(concept: str) -> str:
    """"test", "val" or "train": a stable 10% / 10% / 80% split by concept."""
    bucket = int(hashlib.sha1(concept.encode()).hexdigest(), 16) % 10
    return next((name for name, b in SPLITS.items() if b == bucket), "train")


def _emoji(kinds: tuple[str, ...], seed: int, one: bool = False) -> list[Item]:
    """Each Twemoji in each of `kinds` ("": as drawn), or in one of them drawn by seed."""
    from training.emoji import twemoji
    from training.styles import augment

    items = []
    for e in twemoji():
        for kind in [random.Random(f"{seed}-{e.png.stem}").choice(kinds)] if one else kinds:
            def load(png=e.png, kind=kind) -> Image.Image:
                image = load_image(png)
                rng = random.Random(f"{seed}-{png.stem}-{kind}")
                return image if kind == "" else augment(image, kind, rng)
            style = "twemoji" + (f"-{kind}" if kind else "")
            items.append(Item(load, list(e.names), style, base_concept(e.png.stem)))
    return items


def _symbola() -> list[Item]:
    from training.styles import symbola_items

    return [Item(lambda image=image: image, list(e.names), "symbola", base_concept(e.png.stem))
            for e, image in symbola_items()]


def _compositional(count: int, seed: int, size: int) -> list[Item]:
    return [Item(lambda s=s: render_scene(s, size), s.captions, "compositional",
                 negatives=training_negatives(s))
            for s in compositional_scenes(count, seed, "train")]


def source_items(name: str, count: int, seed: int, size: int) -> list[Item]:
    """Every item of one source, before any holdout (the feature cache is per source)."""
    from training.styles import AUGMENTATIONS

    if name == "emoji":
        return _emoji(("",), seed)
    if name == "emoji-augmented":
        return _emoji(AUGMENTATIONS, seed)
    if name == "emoji-augmented-1":
        return _emoji(AUGMENTATIONS, seed, one=True)
    if name == "symbola":
        return _symbola()
    if name == "compositional":
        return _compositional(count, seed, size)
    raise ValueError(f"unknown source {name!r} for the lit family; known: {', '.join(SOURCES)}")


def keep(item: Item, holdout: str) -> list[str]:
    """The item's captions that training may use ([] drops it): none for a held-out concept,
    and none that state a held-out compositional combination."""
    if holdout and item.concept and concept_split(item.concept) == holdout:
        return []
    return [c for c in item.captions if not stated_combinations(c)]


def provenance_of(items: list[Item], kept: list[list[str]], sources: list[str]) -> Provenance:
    """What training on `items` with captions `kept` shows the model."""
    provenance = Provenance(sources=list(sources))
    for item, captions in zip(items, kept, strict=True):
        if captions:
            provenance.add(item.style, item.concept, captions + item.negatives)
    return provenance
