"""Training data from named sources, as pixels plus captions and hard negatives per image.

A source is "shapes" (the simple scenes of `training.synthetic`), "compositional"
(`training.compositional`, with per-caption hard negatives), "emoji" (Twemoji, see
`training.emoji`) or a dataset file read by `training.datasets.load_dataset`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from encoders.preprocess import ImagePreprocess, load_image, preprocess
from training import synthetic
from training.compositional import compositional_scenes, render_scene, training_negatives
from training.datasets import decode, load_dataset, split_of
from training.emoji import twemoji

log = logging.getLogger(__name__)

VAL_SEED_OFFSET = 1000  # held-out synthetic scenes for curves come from another seed


@dataclass
class PairData:
    pixels: np.ndarray  # (images, 3, size, size) float32, the engine's preprocessing
    captions: list[list[str]]  # true captions per image
    negatives: list[list[str]] = field(default_factory=list)  # hard-negative captions per image
    names: list[str] = field(default_factory=list)  # where each source's images came from

    def __post_init__(self) -> None:
        if not self.negatives:
            self.negatives = [[] for _ in self.captions]

    def extend(self, other: PairData) -> PairData:
        return PairData(np.concatenate([self.pixels, other.pixels]), self.captions + other.captions,
                        self.negatives + other.negatives, self.names + other.names)


def _shapes(count: int, seed: int, size: int, spec: ImagePreprocess) -> PairData:
    scenes = list(synthetic.scenes(count, seed=seed))
    pixels = preprocess([synthetic.render(s, size) for s in scenes], spec)
    return PairData(pixels, [[s.caption] for s in scenes], names=[f"shapes: {count} scenes, seed {seed}"])


def _compositional(count: int, seed: int, size: int, spec: ImagePreprocess, split: str) -> PairData:
    scenes = list(compositional_scenes(count, seed, split))
    pixels = preprocess([render_scene(s, size) for s in scenes], spec)
    negatives = [training_negatives(s) if split == "train" else s.hard_negatives() for s in scenes]
    return PairData(pixels, [s.captions for s in scenes], negatives,
                    [f"compositional {split}: {count} scenes, seed {seed}"])


def _twemoji(spec: ImagePreprocess) -> PairData:
    items = twemoji()
    pixels = preprocess([load_image(e.png) for e in items], spec)
    return PairData(pixels, [list(e.names) for e in items], names=[f"twemoji: {len(items)} emoji"])


def _file(path: str, spec: ImagePreprocess, split: str) -> PairData:
    records = split_of(load_dataset(path), split)
    decoded = decode(records)
    if not decoded.rows:
        raise ValueError(f"{path} has no readable {split!r} images")
    return PairData(preprocess(decoded.images, spec), [list(r.captions) for r in decoded.kept(records)],
                    names=[(f"{path} ({split}): {len(decoded.rows)} images, "
                           f"{decoded.skipped} unreadable skipped")])


def load_source(name: str, count: int, seed: int, size: int, spec: ImagePreprocess,
                split: str = "train") -> PairData:
    """One source's pairs. Synthetic sources make `count` images; files give their `split`."""
    if name == "shapes":
        return _shapes(count, seed + (VAL_SEED_OFFSET if split != "train" else 0), size, spec)
    if name == "compositional":
        return _compositional(count, seed, size, spec, "train" if split == "train" else "test")
    if name == "emoji":
        return _twemoji(spec)
    return _file(name, spec, split)


def load_sources(spec_list: str, count: int, seed: int, size: int, spec: ImagePreprocess,
                 split: str = "train") -> PairData:
    names = [s.strip() for s in spec_list.split(",") if s.strip()]
    if not names:
        raise ValueError("no data source given")
    data = None
    for name in names:
        part = load_source(name, count, seed, size, spec, split)
        log.info("%s", "; ".join(part.names))
        data = part if data is None else data.extend(part)
    return data
