"""Synthetic compositional scenes: two shapes with colour and size, one spatial relation.

Captions bind attributes to objects and state the relation ("a small red circle left of a
large blue square"), so a bag-of-concepts model cannot tell a caption from its hard
negatives, which swap colours, shapes, sizes or the relation between the two objects.

The test split holds out combinations: some colour-shape bindings and some
(colour, relation, colour) triples never occur in a training scene, and every test scene
contains at least one of them. Everything is deterministic by seed; any size.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from PIL import Image, ImageDraw

from training.synthetic import COLOURS, SHAPES, draw_shape

SIZES = {"small": 0.11, "large": 0.2}  # radius as a fraction of the canvas side
RELATIONS = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
# Held out of training: these bindings and triples appear only in the test split.
HELD_OUT_BINDINGS = frozenset({("red", "triangle"), ("blue", "circle"), ("green", "square"),
                               ("yellow", "diamond"), ("purple", "circle"), ("orange", "square")})
HELD_OUT_TRIPLES = frozenset({("red", "above", "green"), ("blue", "left of", "yellow"),
                              ("orange", "below", "purple"), ("green", "right of", "blue")})
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Thing:
    colour: str
    kind: str
    size: str

    @property
    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.kind}"


@dataclass(frozen=True)
class CompositionalScene:
    first: Thing
    relation: str  # first <relation> second
    second: Thing
    x: tuple[float, float]  # centres of first and second, fractions of the side
    y: tuple[float, float]

    @property
    def caption(self) -> str:
        return describe(self.first, self.relation, self.second)

    @property
    def captions(self) -> list[str]:
        """Both ways of stating the scene: from the first object and from the second."""
        return [self.caption, describe(self.second, RELATIONS[self.relation], self.first)]

    def combinations(self) -> set[tuple[str, ...]]:
        bindings = {(t.colour, t.kind) for t in (self.first, self.second)}
        triples = {(self.first.colour, self.relation, self.second.colour),
                   (self.second.colour, RELATIONS[self.relation], self.first.colour)}
        return bindings | triples

    def hard_negatives(self) -> list[str]:
        """Captions with the same words rebound: each describes a different scene."""
        a, b, rel = self.first, self.second, self.relation
        swaps = [
            (replace(a, colour=b.colour), rel, replace(b, colour=a.colour)),
            (replace(a, kind=b.kind), rel, replace(b, kind=a.kind)),
            (replace(a, size=b.size), rel, replace(b, size=a.size)),
            (a, RELATIONS[rel], b),
        ]
        true = set(self.captions)
        out = []
        for first, relation, second in swaps:
            text = describe(first, relation, second)
            if text not in true and text not in out:
                out.append(text)
        return out


def stated_combinations(caption: str, bindings: frozenset[tuple[str, str]] = HELD_OUT_BINDINGS,
                        triples: frozenset[tuple[str, str, str]] = HELD_OUT_TRIPLES
                        ) -> list[tuple[str, ...]]:
    """The given bindings and triples that `caption` states, in any wording: "blue circle" and
    "large blue circle" bind blue to circle; "a red ... above a ... green ..." is a triple."""
    text = " " + re.sub(r"[^a-z ]+", " ", caption.lower()) + " "
    sizes = "|".join(SIZES)
    found: list[tuple[str, ...]] = []
    for colour, shape in sorted(bindings):
        if re.search(rf" {colour} (?:(?:{sizes}) )?{shape}s? ", text):
            found.append((colour, shape))
    for first, relation, second in sorted(triples):
        if re.search(rf" {first} [a-z ]*? {relation} [a-z ]*?{second} ", text):
            found.append((first, relation, second))
    return found


def training_negatives(scene: CompositionalScene) -> list[str]:
    """The scene's hard negatives that state no held-out combination: a swap can rebind a
    training scene's words into a held-out one, and training on that text would leak it."""
    return [t for t in scene.hard_negatives() if not stated_combinations(t)]


def describe(first: Thing, relation: str, second: Thing) -> str:
    return f"{first.phrase} {relation} {second.phrase}"


def _is_held_out(scene: CompositionalScene) -> bool:
    return bool(scene.combinations() & (HELD_OUT_BINDINGS | HELD_OUT_TRIPLES))


def _random_scene(rng: random.Random) -> CompositionalScene:
    first = second = Thing(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(list(SIZES)))
    while second == first:  # two identical objects would make the relation unfalsifiable
        second = Thing(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(list(SIZES)))
    relation = rng.choice(list(RELATIONS))
    # the two objects sit in opposite halves along the relation's axis, jittered across it
    near, far = rng.uniform(0.22, 0.3), rng.uniform(0.7, 0.78)
    across = (rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75))
    along = (near, far) if relation in ("left of", "above") else (far, near)
    if relation in ("left of", "right of"):
        x, y = along, across
    else:
        x, y = across, along
    return CompositionalScene(first, relation, second, x, y)


def compositional_scenes(count: int, seed: int, split: str = "train") -> Iterator[CompositionalScene]:
    """`count` scenes of `split`: train never shows a held-out combination, test always does."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    rng = random.Random(f"{seed}-{split}")
    made = 0
    while made < count:
        scene = _random_scene(rng)
        if _is_held_out(scene) == (split == "test"):
            made += 1
            yield scene


def render_scene(scene: CompositionalScene, size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for thing, cx, cy in ((scene.first, scene.x[0], scene.y[0]), (scene.second, scene.x[1], scene.y[1])):
        draw_shape(draw, thing.kind, cx * size, cy * size, SIZES[thing.size] * size, thing.colour)
    return image
