"""The resize + centre crop: bounded by the output size, and the pixels the engines were
trained on.

Engine bundles were trained with the whole image resized by the spec, then cropped
(`_whole_then_crop` below, the implementation this module had until an extreme aspect ratio
made it cost gigabytes). Images up to an aspect ratio of 4 still take that path, bit for
bit; wider or taller ones resample only the crop box, and must stay within the rounding
between the whole resize's two passes: on photo-like images 2/255 at most.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image, ImageFilter

from encoders import preprocess as pp
from encoders.preprocess import ImagePreprocess, preprocess

SPECS = [ImagePreprocess(size=size, resize=rule, long_side=side, interpolation=interp,
                         resize_to=None if margin is None else size + size // 7)
         for size, rule, side, interp, margin in itertools.product(
             (32, 64), ("shortest", "stretch"), ("round", "floor"),
             ("bicubic", "bilinear", "nearest"), (None, "margin"))
         if not (rule == "stretch" and side == "floor")]


def _whole_then_crop(image: Image.Image, spec: ImagePreprocess) -> Image.Image:
    """The reference: resize the whole image by the spec, then cut out the centre."""
    target = spec.resize_to or spec.size
    width, height = image.size
    if spec.resize == "stretch":
        new_w = new_h = target
    elif spec.long_side == "floor":
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(target * long / short)
        new_w, new_h = (target, new_long) if width <= height else (new_long, target)
    else:
        scale = target / min(width, height)
        new_w, new_h = max(target, round(width * scale)), max(target, round(height * scale))
    image = image.resize((new_w, new_h), pp._INTERPOLATION[spec.interpolation])
    left, top = (new_w - spec.size) // 2, (new_h - spec.size) // 2
    return image.crop((left, top, left + spec.size, top + spec.size))


def _images(sizes: list[tuple[int, int]], seed: int = 0) -> list[Image.Image]:
    """Noise (the worst case for rounding) and a blurred copy (closer to a photo)."""
    rng = np.random.default_rng(seed)
    out = []
    for width, height in sizes:
        noise = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        out += [noise, noise.filter(ImageFilter.GaussianBlur(2))]
    return out


def _diff(image: Image.Image, spec: ImagePreprocess) -> np.ndarray:
    ours = np.asarray(pp._resize(image, spec), dtype=np.int16)
    reference = np.asarray(_whole_then_crop(image, spec), dtype=np.int16)
    assert ours.shape == reference.shape == (spec.size, spec.size, 3)
    return np.abs(ours - reference)


def test_aspect_ratios_up_to_4_are_resized_bit_for_bit_as_before() -> None:
    sizes = [(1, 1), (3, 5), (50, 40), (127, 96), (96, 127), (300, 100), (100, 390), (257, 256)]
    for image, spec in itertools.product(_images(sizes), SPECS):
        assert _diff(image, spec).max() == 0, (image.size, spec)


# wide, tall, up- and downscaled, and odd sizes whose crop box has no round coordinates
CROP_PATH_SIZES = [(500, 3), (3, 500), (123, 569), (41, 600), (300, 2000), (2000, 300),
                   (97, 701), (1000, 7)]


def _close(diffs: list[np.ndarray], photo_like: bool, interpolation: str) -> None:
    """Measured over these sizes and SPECS: blurred noise at most 2/255 apart (bicubic and
    bilinear); raw noise, where bicubic overshoots and clips between the passes, up to 20/255
    at a few pixels and 0.05-0.33/255 on average; nearest picks a neighbouring source pixel at
    1-2.3% of the positions."""
    if interpolation == "nearest":
        moved = float(np.mean([(d.max(axis=2) > 0).mean() for d in diffs]))
        assert moved < 0.05, moved
        return
    mean = float(np.mean([d.mean() for d in diffs]))
    assert mean < 0.5, (interpolation, mean)
    if photo_like:
        assert max(int(d.max()) for d in diffs) <= 2, interpolation


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_the_crop_path_stays_within_the_whole_resizes_rounding(monkeypatch, interpolation) -> None:
    monkeypatch.setattr(pp, "_WHOLE_RESIZE_MAX", 0)  # every image takes the crop path
    images = _images(CROP_PATH_SIZES, seed=1)
    for photo_like, kind in ((False, images[0::2]), (True, images[1::2])):
        _close([_diff(image, spec) for image, spec in itertools.product(kind, SPECS)
                if spec.interpolation == interpolation], photo_like, interpolation)


def test_extreme_aspect_ratios_cost_the_output_size_not_the_input_shape(monkeypatch) -> None:
    """A 100000x1 image used to be resized to 6.4 M x 64 pixels (2 GB, 4 s) for a 64x64 crop."""
    resize = Image.Image.resize

    def bounded(self: Image.Image, size: tuple[int, int], *args: object, **kw: object):
        assert size[0] * size[1] <= 4 * 64 * 64, f"{self.size} resized to {size}"
        return resize(self, size, *args, **kw)

    monkeypatch.setattr(Image.Image, "resize", bounded)
    spec = ImagePreprocess(size=64)
    for size in [(100_000, 1), (1, 100_000), (1_000_000, 1), (40, 1_000_000), (30_000, 2)]:
        out = preprocess([Image.new("RGB", size, (0, 200, 0))], spec)
        assert out.shape == (1, 3, 64, 64) and np.allclose(out[0, 1], 200 / 255 * 2 - 1)


@pytest.mark.parametrize("size", [(5000, 2), (2, 5000), (3000, 40)])
def test_extreme_aspect_ratios_keep_the_middle(size: tuple[int, int]) -> None:
    """Within the rounding of the whole resize, where that is still affordable to compute."""
    noise, blurred = _images([size], seed=2)
    for interpolation in ("bicubic", "bilinear", "nearest"):
        for photo_like, image in ((False, noise), (True, blurred)):
            _close([_diff(image, spec) for spec in SPECS if spec.interpolation == interpolation],
                   photo_like, interpolation)
