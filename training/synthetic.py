"""Synthetic image-caption pairs: coloured shapes on a canvas, captions naming them.

Deterministic by seed and any size; needs no download. Objects are described left to
right, so a caption carries colour, shape and (coarsely) order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from encoders.captions import write_captions

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 40),
    "purple": (140, 60, 180),
    "orange": (245, 130, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")


@dataclass(frozen=True)
class Shape:
    colour: str
    kind: str
    x: float  # centre, as a fraction of the canvas side
    y: float
    radius: float  # half the extent, as a fraction of the canvas side


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]

    @property
    def caption(self) -> str:
        ordered = sorted(self.shapes, key=lambda s: s.x)
        return " and ".join(f"a {s.colour} {s.kind}" for s in ordered)


def random_scene(rng: random.Random, max_objects: int = 2) -> Scene:
    count = rng.randint(1, max_objects)
    # one object per horizontal slot so shapes never overlap and left/right is unambiguous
    slots = sorted(rng.sample(range(max_objects), count))
    shapes = []
    for slot in slots:
        width = 1.0 / max_objects
        radius = rng.uniform(0.12, 0.2) * min(1.0, 2 * width)
        x = slot * width + rng.uniform(radius, width - radius)
        y = rng.uniform(radius + 0.05, 0.95 - radius)
        shapes.append(Shape(rng.choice(list(COLOURS)), rng.choice(SHAPES), x, y, radius))
    return Scene(tuple(shapes))


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float,
               colour: str) -> None:
    """One shape centred at (cx, cy) with half-extent r, in pixels."""
    fill = COLOURS[colour]
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:  # diamond
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)


def render(scene: Scene, size: int = 128) -> Image.Image:
    image = Image.new("RGB", (size, size), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for s in scene.shapes:
        draw_shape(draw, s.kind, s.x * size, s.y * size, s.radius * size, s.colour)
    return image


def scenes(count: int, seed: int) -> Iterator[Scene]:
    rng = random.Random(seed)
    for _ in range(count):
        yield random_scene(rng)


def write_gallery(folder: str | Path, count: int, seed: int, size: int = 128) -> Path:
    """Render `count` scenes as PNGs into `folder`, with `captions.jsonl` (file, caption) beside them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    captions = {}
    for i, scene in enumerate(scenes(count, seed)):
        name = f"scene-{i:05d}.png"
        render(scene, size).save(folder / name)
        captions[name] = scene.caption
    write_captions(folder, captions)
    return folder
