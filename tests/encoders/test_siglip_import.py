"""Hugging Face SiglipModel import: a tiny random checkpoint exported to ONNX and compared with
transformers' own outputs, its sigmoid scores with SiglipModel's; folders that cannot be read
are refused naming what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers as tf
from PIL import Image

from encoders.bundle import read_manifest
from encoders.engine import OnnxEngine
from encoders.errors import BundleError
from encoders.export import export_bundle
from encoders.hf import load_hf
from encoders.imported import folder_kind
from encoders.preprocess import preprocess
from tests.encoders.tiny_models import SHAPE_WORDS, clip_folder, siglip_folder

TEXTS = ["a red circle", "a blue square and a green triangle", "purple",
         "a red circle and a red circle and a red circle and a red circle", "zebra"]


@pytest.fixture(scope="module")
def siglip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("siglip")
    torch.manual_seed(0)
    siglip_folder(root / "hf", SHAPE_WORDS)
    export_bundle(load_hf(root / "hf"), root / "engine")
    return root / "hf", root / "engine"


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(n)
    return [Image.fromarray(np.clip(rng.integers(0, 256, 3) + rng.normal(0, 40, (40, 50, 3)),
                                    0, 255).astype(np.uint8)) for _ in range(n)]


def _pooled(out) -> torch.Tensor:  # transformers 5 returns an output object, 4.x a tensor
    return F.normalize(getattr(out, "pooler_output", out), dim=-1)


def test_engine_matches_siglip_and_its_sigmoid_scores(siglip) -> None:
    folder, bundle = siglip
    engine = OnnxEngine(bundle)
    model = tf.SiglipModel.from_pretrained(folder).eval()
    hf_tok = tf.AutoTokenizer.from_pretrained(folder)
    images = _images(len(TEXTS))
    pixels = preprocess(images, engine.manifest.image_preprocess)
    np.testing.assert_allclose(
        pixels, tf.AutoImageProcessor.from_pretrained(folder)(images, return_tensors="np")
        ["pixel_values"], atol=1e-5)
    # as SigLIP was trained and transformers' docs say: padded to the full context, no mask
    ids = hf_tok(TEXTS, padding="max_length", max_length=16, truncation=True,
                 return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=torch.from_numpy(pixels))
        image_ref = _pooled(model.get_image_features(pixel_values=torch.from_numpy(pixels)))
        text_ref = _pooled(model.get_text_features(input_ids=ids))
    image, text = engine.encode_images(images), engine.encode_texts(TEXTS)
    np.testing.assert_allclose(image, image_ref.numpy(), atol=1e-4)
    np.testing.assert_allclose(text, text_ref.numpy(), atol=1e-4)
    # the manifest says how scores are made, and following it gives SiglipModel's probabilities
    manifest = read_manifest(bundle)
    assert manifest.similarity == "sigmoid" and manifest.score["search"] == "cosine"
    logits = manifest.score["logit_scale"] * text @ image.T + manifest.score["logit_bias"]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), out.logits_per_text.sigmoid().numpy(),
                               atol=1e-4)


def test_text_graph_pads_itself_so_batch_padding_changes_nothing(siglip) -> None:
    engine = OnnxEngine(siglip[1])
    together = engine.encode_texts(TEXTS)  # padded to the longest of them
    alone = np.concatenate([engine.encode_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert engine.tokenizer.max_length == 16  # the context, which the tokenizer also limits to


def test_clip_bundles_say_softmax_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    folder = clip_folder(tmp_path / "hf", SHAPE_WORDS)
    src = load_hf(folder)
    assert src.similarity == "cosine"
    assert set(src.score) == {"search", "logits", "logit_scale"}
    model = tf.CLIPModel.from_pretrained(folder)
    scale = float(model.logit_scale.detach().exp())
    assert src.score["logit_scale"] == pytest.approx(scale, rel=1e-5)


def test_a_folder_with_a_sentencepiece_tokenizer_only_is_refused_naming_it(siglip,
                                                                         tmp_path: Path) -> None:
    folder = tmp_path / "sp"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_text((siglip[0] / name).read_text())
    (folder / "spiece.model").write_bytes(b"not read")
    with pytest.raises(BundleError, match=r"no tokenizer\.json.*spiece\.model"):
        load_hf(folder)


def test_missing_weights_and_unknown_folders_are_named(siglip, tmp_path: Path) -> None:
    folder = tmp_path / "noweights"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json", "tokenizer.json"):
        (folder / name).write_text((siglip[0] / name).read_text())
    with pytest.raises(BundleError, match="cannot load the SiglipModel weights"):
        load_hf(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="config.json.*open_clip_config.json"):
        folder_kind(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"hidden": 3}))
    with pytest.raises(BundleError, match="neither a Hugging Face config"):
        folder_kind(tmp_path / "other")
