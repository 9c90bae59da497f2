"""The evaluation sets of `xmodal bench quality`, each with what it holds out.

Every set names a `HeldOut` (training.leaks); `evaluate_set` checks it against the engine's
provenance before measuring anything and raises `LeakError` for a split that is not held out
(the Twemoji gallery, which the shipped model trains on, says so and checks nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from encoders.engine import OnnxEngine
from training.leaks import COMPOSITIONAL, HeldOut, check_held_out, read_provenance

# scikit-image's sample photos (shipped in its wheel) and a query naming what each shows
PHOTO_QUERIES = {
    "chelsea.png": "a cat",
    "coffee.png": "a cup of coffee",
    "rocket.jpg": "a rocket on its launch pad",
    "motorcycle_left.png": "a motorcycle",
    "astronaut.png": "an astronaut",
    "camera.png": "a man with a camera",
    "coins.png": "old coins",
    "moon.png": "the surface of the moon",
    "brick.png": "a brick wall",
    "hubble_deep_field.jpg": "galaxies in deep space",
    "clock_motion.png": "a clock",
    "page.png": "a page of printed text",
}
PHOTO_DISTRACTORS = ("grass.png", "gravel.png", "retina.jpg", "horse.png")
# plain queries a new user types: exact CLDR names, searched in the whole demo gallery
PLAIN_NAMES = ("grinning face", "red heart", "pizza", "dog face", "airplane", "cat face",
               "birthday cake", "rocket", "sun", "rainbow", "snowman", "hot beverage", "banana",
               "soccer ball", "guitar", "automobile", "thumbs up", "fire", "ghost", "crown")


@dataclass
class EvalSet:
    name: str
    images: list  # paths or PIL images
    texts: list[str]
    owner: list[int]  # text -> image row (-1: a distractor caption, never a query)
    held_out: HeldOut | None  # None: the model trained on it, and the report says so
    trained_on: str = ""  # what the row's model trained on, for the table
    notes: list[str] = field(default_factory=list)


def check(engine: OnnxEngine, held: HeldOut | None) -> None:
    """Refuse to evaluate a split the engine's training saw (LeakError)."""
    if held is not None:
        check_held_out(read_provenance(engine.path), held)


def twemoji_gallery() -> EvalSet:
    from training.emoji import twemoji

    items = twemoji()
    return EvalSet("Twemoji gallery (the demo)", [e.png for e in items], [e.names[0] for e in items],
                   list(range(len(items))), None, notes=["trained on: these images and names"])


def held_out_concepts(split: str = "test") -> EvalSet:
    from training.emoji import twemoji
    from training.lit_data import base_concept, concept_split

    items = [e for e in twemoji() if concept_split(base_concept(e.png.stem)) == split]
    concepts = frozenset(base_concept(e.png.stem) for e in items)
    held = HeldOut(f"Twemoji concepts of split {split!r}", concepts=concepts)
    return EvalSet(f"Twemoji concepts held out of training ({len(concepts)} concepts)",
                   [e.png for e in items], [e.names[0] for e in items], list(range(len(items))), held)


def noto(workdir: Path) -> EvalSet:
    from training.datasets import decode, load_karpathy
    from training.emoji import write_cross_style

    path = workdir / "emoji" / "noto.json"
    if not path.is_file():
        write_cross_style(workdir / "emoji")
    records = load_karpathy(path)
    decoded = decode(records)
    texts = [r.captions[0] for r in decoded.kept(records)]
    return EvalSet(f"Twemoji -> Noto ({len(texts)} Noto Color Emoji renders)", decoded.images, texts,
                   list(range(len(texts))), HeldOut("the Noto style", styles=frozenset({"noto"})))


def compositional(scenes: int = 300, seed: int = 1) -> EvalSet:
    from training.compositional import compositional_scenes, render_scene

    test = list(compositional_scenes(scenes, seed, split="test"))
    texts, owner = [], []
    for i, s in enumerate(test):
        texts += s.captions
        owner += [i] * len(s.captions)
    for s in test:  # distractors: in the caption gallery, never queries
        texts += s.hard_negatives()
        owner += [-1] * len(s.hard_negatives())
    return EvalSet(f"compositional test split ({scenes} scenes, seed {seed}; each caption's "
                   "attribute/relation swaps in the caption gallery)",
                   [render_scene(s, 128) for s in test], texts, owner, COMPOSITIONAL)


def photos() -> EvalSet:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    files = [*PHOTO_QUERIES, *PHOTO_DISTRACTORS]
    return EvalSet(f"scikit-image sample photos ({len(files)} photos, {len(PHOTO_QUERIES)} queries)",
                   [folder / f for f in files], list(PHOTO_QUERIES.values()),
                   list(range(len(PHOTO_QUERIES))), HeldOut("photos", styles=frozenset({"photo"})))
