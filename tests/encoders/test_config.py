import json
from pathlib import Path

import pytest

from encoders.config import DualEncoderConfig, from_dict, list_models, load_config, to_dict
from encoders.errors import UnknownModelError


def test_registry_lists_and_loads_shipped_configs() -> None:
    assert "tiny-clip" in list_models()
    cfg = load_config("tiny-clip")
    assert cfg.family == "clip" and cfg.vision.image_size % cfg.vision.patch_size == 0


def test_unknown_name_raises_listing_known_ones() -> None:
    with pytest.raises(UnknownModelError, match="tiny-clip"):
        load_config("no-such-model")


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    data = to_dict(DualEncoderConfig())
    data["vision"]["patch_sise"] = 8
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="patch_sise"):
        load_config(path)


def test_inconsistent_geometry_is_refused() -> None:
    data = to_dict(DualEncoderConfig())
    data["vision"]["patch_size"] = 7
    with pytest.raises(ValueError, match="multiple"):
        from_dict(data)


def test_unknown_family_is_refused() -> None:
    with pytest.raises(UnknownModelError, match="family"):
        from_dict({"family": "resnet-lstm"})
