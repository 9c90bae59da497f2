"""OpenCLIP folder import: tiny random models saved as OpenCLIP publishes them, exported to
ONNX and compared with open_clip's own `encode_image` / `encode_text` and its tokenizer; the
torchvision stand-in leaves no trace; unreadable folders are refused naming the problem."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from encoders.bundle import read_manifest
from encoders.engine import OnnxEngine
from encoders.errors import BundleError
from encoders.export import export_bundle
from encoders.imported import folder_kind, load_exportable
from encoders.open_clip_import import import_open_clip
from encoders.preprocess import ImagePreprocess, preprocess
from tests.encoders.tiny_models import open_clip_config, open_clip_folder

TEXTS = ["a photo of a dog", "Red cube, left of   the blue ball!", "it's 3 o'clock",
         "naïve café, 12 €", "two", "a big green tree and a small house on the left of the car " * 2]


@pytest.fixture(scope="module")
def open_clip():
    return import_open_clip()


def _resnet_config() -> dict:
    cfg = open_clip_config()
    cfg["vision_cfg"] = {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 8}
    return cfg


VARIANTS = {"safetensors": None, "bin": None, "resnet": _resnet_config,
            "no causal mask": lambda: open_clip_config(no_causal_mask=True, pool_type="last")}


@pytest.fixture(scope="module", params=list(VARIANTS))
def exported(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("open_clip")
    torch.manual_seed(0)
    make = VARIANTS[request.param]
    cfg = make() if make else None
    weights = "bin" if request.param == "bin" else "safetensors"
    folder = open_clip_folder(root / "oc", cfg, weights)
    assert folder_kind(folder) == "open_clip"
    export_bundle(load_exportable(folder), root / "engine")
    return folder, root / "engine"


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(n)
    sizes = [(50, 37), (37, 50), (64, 64), (81, 45), (45, 120), (33, 90)]
    return [Image.fromarray(np.clip(rng.integers(0, 256, 3) + rng.normal(0, 40, (h, w, 3)),
                                    0, 255).astype(np.uint8)) for w, h in sizes[:n]]


def test_engine_matches_open_clip(open_clip, exported) -> None:
    folder, bundle = exported
    engine = OnnxEngine(bundle)
    model = open_clip.create_model(f"local-dir:{folder}").eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    images = _images(len(TEXTS))
    pixels = torch.from_numpy(preprocess(images, engine.manifest.image_preprocess))
    with torch.no_grad():
        image_ref = model.encode_image(pixels, normalize=True).numpy()
        text_ref = model.encode_text(tokenizer(TEXTS), normalize=True).numpy()
    np.testing.assert_allclose(engine.encode_pixels(pixels.numpy())["image_embeds"], image_ref,
                               atol=1e-4)
    np.testing.assert_allclose(engine.encode_texts(TEXTS), text_ref, atol=1e-4)
    manifest = read_manifest(bundle)
    assert manifest.family == "open_clip" and manifest.similarity == "cosine"
    assert manifest.score["logit_scale"] == pytest.approx(float(model.logit_scale.detach().exp()),
                                                        rel=1e-5)


def test_training_mode_runs_causal_text_at_its_own_length_with_the_same_result(exported) -> None:
    src = load_exportable(exported[0])
    text = src.roles["text_encoder"]
    ids, mask = (torch.from_numpy(a) for a in src.tokenizer.encode(TEXTS))
    with torch.no_grad():
        full = text(ids, mask)
        text.train()
        try:
            own = text(ids, mask)
        finally:
            text.eval()
    torch.testing.assert_close(own, full, atol=1e-5, rtol=0)


def test_tokenizer_gives_open_clips_ids(open_clip, exported) -> None:
    folder, bundle = exported
    theirs = open_clip.get_tokenizer(f"local-dir:{folder}")(TEXTS).numpy()  # padded with 0 to 16
    ids, mask = OnnxEngine(bundle).tokenizer.encode(TEXTS)
    width = ids.shape[1]
    np.testing.assert_array_equal(np.where(mask == 1, ids, 0), theirs[:, :width])
    assert not theirs[:, width:].any()
    assert (ids[:, -1][mask[:, -1] == 1] == 49407).all()  # a truncated text keeps its end token


def test_preprocessing_centres_the_crop_as_torchvision_does() -> None:
    """torchvision's CenterCrop starts at int(round(margin / 2)), round-half-even: a 3-pixel
    margin starts at 2, where a floor would start at 1. The resize (int() of the long side)
    is Hugging Face's, tested in test_hf_import."""
    image = Image.fromarray(np.arange(35 * 32 * 3, dtype=np.uint8).reshape(35, 32, 3) % 251)
    spec = ImagePreprocess(size=32, long_side="floor", crop_offset="round", mean=(0, 0, 0),
                           std=(1, 1, 1))
    ours = preprocess([image], spec)[0].transpose(1, 2, 0)
    expected = np.asarray(image, dtype=np.float32)[2:34] / 255.0  # no resize: short side is 32
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_the_torchvision_stand_in_is_gone_after_import(open_clip) -> None:
    assert "torchvision" not in sys.modules or hasattr(sys.modules["torchvision"], "__file__")
    import transformers as tf

    assert tf.CLIPImageProcessorPil() is not None  # transformers' image processors still load


def test_unreadable_folders_are_refused_naming_the_problem(tmp_path: Path) -> None:
    folder = tmp_path / "oc"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": open_clip_config()}))
    with pytest.raises(BundleError, match="no weights: expected one of open_clip_model.safetensors"):
        load_exportable(folder)
    borrowed = open_clip_config()
    borrowed["vision_cfg"]["timm_model_name"] = "convnext_base"
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": borrowed}))
    with pytest.raises(BundleError, match="vision_cfg.timm_model_name 'convnext_base'"):
        load_exportable(folder)
    (folder / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": {}}))
    with pytest.raises(BundleError, match="no model_cfg"):
        load_exportable(folder)
    with pytest.raises(BundleError, match="holds an OpenCLIP model, not a Hugging Face model"):
        load_exportable(folder, "huggingface")


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path) -> None:
    folder = open_clip_folder(tmp_path / "oc")
    wider = open_clip_config()
    wider["embed_dim"] = 32
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": wider}))
    with pytest.raises(BundleError, match="cannot build .* from open_clip_config.json"):
        load_exportable(folder)
