"""Symbola renders and image augmentations for emoji style diversity, on the real font and the
real Twemoji files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from encoders.preprocess import load_image
from training.emoji import IMAGE_SIZE, fit_glyph, ink_box, twemoji
from training.lit_data import source_items
from training.styles import AUGMENTATIONS, augment, symbola_items

RANDOM_KINDS = ("jitter", "offset")


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int32)


def _twemoji(stem: str) -> Image.Image:
    return load_image(next(e.png for e in twemoji() if e.png.stem == stem))


def _sample() -> list[tuple[str, Image.Image]]:
    items = symbola_items()
    return [(e.png.stem, image) for e, image in items[:: len(items) // 200][:200]]


@pytest.fixture(scope="module", params=["twemoji", "symbola"])
def source(request: pytest.FixtureRequest) -> Image.Image:
    """A colour Twemoji and a black-on-white Symbola glyph, the two styles augmented."""
    if request.param == "twemoji":
        return _twemoji("1f600")  # grinning face: colours, eyes and mouth inside the face
    return next(image for e, image in symbola_items() if e.png.stem == "1f600")


def test_symbola_draws_a_thousand_single_codepoint_emoji_in_black_and_white() -> None:
    items = symbola_items()
    assert len(items) > 900
    assert all(len(e.char.removesuffix("\ufe0f")) == 1 for e, _ in items)
    stems = {e.png.stem for e, _ in items}
    assert "1f600" in stems and "1f6d5" not in stems  # Symbola (Unicode 9) has no hindu temple
    for _, image in _sample():
        array = _pixels(image)
        assert image.mode == "RGB" and image.size == (IMAGE_SIZE, IMAGE_SIZE)
        assert array.min() < 128  # drawn, not blank
        assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()


def test_symbola_glyphs_fill_the_square_with_twemojis_margin() -> None:
    for _, image in _sample():
        left, top, right, bottom = ink_box(image)
        assert min(left, top) >= 2 and max(right, bottom) <= IMAGE_SIZE - 2
        assert max(right - left, bottom - top) >= IMAGE_SIZE - 6  # scaled up to the margin


def test_a_glyph_at_the_canvas_edge_is_centred_on_white_not_black() -> None:
    canvas = Image.new("L", (100, 20), "white")
    ImageDraw.Draw(canvas).rectangle((0, 10, 99, 19), fill="black")  # wide, on the bottom edge
    array = _pixels(fit_glyph(canvas, ink_box(canvas)))
    # the square around the bar reaches past the canvas; those rows must stay white
    assert array[:28].min() == 255 and array[44:].min() == 255 and array[36, 36] == 0


def test_symbola_glyphs_are_distinct_and_another_drawing_than_twemoji() -> None:
    sample = _sample()
    # a missing glyph drawn as .notdef would be the same box every time
    assert len({image.tobytes() for _, image in sample}) == len(sample)
    by_stem = {e.png.stem: e for e in twemoji()}
    for stem, image in sample:
        tw = load_image(by_stem[stem].png)
        assert np.abs(_pixels(image) - _pixels(tw)).mean() > 5


def test_symbola_items_returns_a_fresh_list_over_the_cache() -> None:
    first = symbola_items()
    first.clear()
    assert len(symbola_items()) > 900


def test_missing_symbola_font_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fonts-symbola"):
        symbola_items(tmp_path / "Symbola_hint.ttf")


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_every_augmentation_is_a_new_same_size_rgb_image_reproducible_by_rng(
        source: Image.Image, kind: str) -> None:
    before = source.tobytes()
    out = augment(source, kind, random.Random(1))
    assert out is not source and out.mode == "RGB" and out.size == source.size
    assert source.tobytes() == before  # the input is left alone
    array = _pixels(source)
    already_grey = (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()
    # grey has nothing to do on a Symbola glyph; every other kind re-draws it
    assert (out.tobytes() == source.tobytes()) == (kind == "grey" and already_grey)
    assert augment(source, kind, random.Random(1)).tobytes() == out.tobytes()


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_random_augmentations_differ_between_seeds(source: Image.Image, kind: str) -> None:
    copies = {augment(source, kind, random.Random(seed)).tobytes() for seed in range(5)}
    assert len(copies) == 5


def test_grey_is_greyscale_of_a_colour_image() -> None:
    colour = _twemoji("1f600")
    array = _pixels(augment(colour, "grey", random.Random(0)))
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()
    assert not (_pixels(colour)[..., 0] == _pixels(colour)[..., 2]).all()


def test_jitter_changes_the_colours_of_a_colour_image() -> None:
    colour = _twemoji("1f600")
    shift = np.abs(_pixels(augment(colour, "jitter", random.Random(0))) - _pixels(colour))
    assert shift.mean() > 3 and shift.max() < 200  # a different colouring, not a new image


def test_offset_shrinks_and_moves_the_whole_glyph(source: Image.Image) -> None:
    box = ink_box(source)
    width, height = box[2] - box[0], box[3] - box[1]
    for seed in range(10):
        out = augment(source, "offset", random.Random(seed))
        moved = ink_box(out)
        assert moved is not None and moved != box
        new_width, new_height = moved[2] - moved[0], moved[3] - moved[1]
        assert 0.5 * width - 2 <= new_width <= width and 0.5 * height - 2 <= new_height <= height
        # the aspect ratio is kept: a glyph cut off at the canvas edge would lose it
        assert abs(new_width / new_height - width / height) < 0.1


def test_outline_traces_the_silhouette_and_edges_also_the_features() -> None:
    face = _twemoji("1f600")  # a yellow disc with dark eyes and mouth
    outline = _pixels(augment(face, "outline", random.Random(0))).min(axis=2)
    edges = _pixels(augment(face, "edges", random.Random(0))).min(axis=2)
    filled = (_pixels(face).min(axis=2) < 250).sum()
    for drawing in (outline, edges):
        corners = drawing[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert (corners == 255).all() and drawing[36, 36] > 200  # white ground, hollow inside
        assert 0 < (drawing < 128).sum() < filled / 2  # dark lines, sparser than the glyph
    eye = (slice(18, 36), slice(20, 30))  # the left eye, inside the face's silhouette
    assert (edges[eye] < 128).any() and not (outline[eye] < 128).any()


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="grey, jitter, outline, edges, offset"):
        augment(_twemoji("1f600"), "sepia", random.Random(0))


def test_augmented_training_items_are_reproducible_per_emoji_and_seed() -> None:
    items = source_items("emoji-augmented", 0, 3, 64)
    assert len(items) == len(twemoji()) * len(AUGMENTATIONS)
    assert {i.style for i in items} == {f"twemoji-{k}" for k in AUGMENTATIONS}
    again = {(i.style, i.concept): i for i in source_items("emoji-augmented", 0, 3, 64)}
    other = source_items("emoji-augmented", 0, 4, 64)
    for i, o in zip(items[:10], other[:10], strict=True):
        assert i.load().tobytes() == again[(i.style, i.concept)].load().tobytes()
        if i.style in ("twemoji-jitter", "twemoji-offset"):
            assert i.load().tobytes() != o.load().tobytes()
    one = source_items("emoji-augmented-1", 0, 3, 64)
    assert len(one) == len(twemoji()) and len({i.style for i in one}) == len(AUGMENTATIONS)
