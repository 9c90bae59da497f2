"""Export parity and the engine bundle contract, on an untrained tiny model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from encoders.bundle import read_manifest
from encoders.checkpoint import Checkpoint
from encoders.clip import DualEncoder
from encoders.config import load_config
from encoders.engine import OnnxEngine
from encoders.errors import BundleError, InputError, ParityError
from encoders.export import export_bundle
from encoders.preprocess import ImagePreprocess, preprocess
from encoders.tokenizer import train_word_tokenizer

CAPTIONS = ["a red circle", "a blue square and a green triangle", "a purple diamond"]


@pytest.fixture(scope="module")
def model_and_tokenizer() -> tuple[DualEncoder, object]:
    torch.manual_seed(0)
    tokenizer = train_word_tokenizer(CAPTIONS, max_length=24)
    cfg = load_config("tiny-clip")
    cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, vocab_size=tokenizer.vocab_size))
    return DualEncoder(cfg).eval(), tokenizer


@pytest.fixture(scope="module")
def bundle(model_and_tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "engine"
    export_bundle(_exportable(model_and_tokenizer), out)
    return out


def _exportable(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    return Checkpoint(model, tokenizer, ImagePreprocess(size=64), {"note": "untrained"}).exportable()


def test_manifest_records_parity_within_tolerance(bundle: Path) -> None:
    manifest = read_manifest(bundle)
    assert set(manifest.parity) == {"image_encoder", "text_encoder"}
    for figures in manifest.parity.values():
        assert figures["max_abs"] <= 1e-4 and figures["batch_sizes"] == [1, 7]
    assert manifest.engine_id.startswith("clip-") and manifest.training == {"note": "untrained"}


def test_engine_matches_pytorch_at_batch_1_and_7(bundle: Path, model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    engine = OnnxEngine(bundle)
    rng = np.random.default_rng(1)
    for batch in (1, 7):
        images = [Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8))
                  for _ in range(batch)]
        pixels = preprocess(images, engine.manifest.image_preprocess)
        with torch.no_grad():
            expected = model.encode_image(torch.from_numpy(pixels)).numpy()
        np.testing.assert_allclose(engine.encode_images(images), expected, atol=1e-4)
        texts = (CAPTIONS * 3)[:batch]
        ids, mask = tokenizer.encode(texts)
        with torch.no_grad():
            expected = model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        np.testing.assert_allclose(engine.encode_texts(texts), expected, atol=1e-4)


def test_export_fails_loudly_above_tolerance(model_and_tokenizer, tmp_path: Path) -> None:
    with pytest.raises(ParityError, match="differs from PyTorch"):
        export_bundle(_exportable(model_and_tokenizer), tmp_path / "e", atol=0.0)
    assert not (tmp_path / "e").exists()  # nothing half-written is left behind


def test_tampered_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in bundle.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    data = json.loads((copy / "manifest.json").read_text())
    data["image_preprocess"]["mean"] = [0.0, 0.0, 0.0]
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="corrupt"):
        OnnxEngine(copy)
    (copy / "text_encoder.onnx").unlink()
    with pytest.raises(BundleError, match="text_encoder.onnx"):
        OnnxEngine(copy)


def test_engine_rejects_wrong_pixel_shape(bundle: Path) -> None:
    engine = OnnxEngine(bundle)
    with pytest.raises(InputError, match="shape"):
        engine.encode_pixels(np.zeros((2, 3, 32, 32), dtype=np.float32))
    with pytest.raises(InputError):
        engine.encode_texts([])


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_bundles_record_their_parity(
    model_and_tokenizer, precision: str, tmp_path: Path
) -> None:
    manifest = export_bundle(_exportable(model_and_tokenizer), tmp_path / precision, precision)
    assert manifest.precision == precision
    reread = read_manifest(tmp_path / precision)  # re-read: the id verifies against the files
    assert reread.engine_id == manifest.engine_id
    for figures in manifest.parity.values():
        assert 0 < figures["max_abs"] <= figures["atol"]
    engine = OnnxEngine(tmp_path / precision)
    model, tokenizer = model_and_tokenizer
    ids, mask = tokenizer.encode(CAPTIONS)
    with torch.no_grad():
        expected = model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    cosine = (engine.encode_texts(CAPTIONS) * expected).sum(axis=1)
    assert cosine.min() > 0.95


def test_dual_encoder_bundle_has_no_reranker(bundle: Path) -> None:
    engine = OnnxEngine(bundle)
    assert not engine.has_reranker
    with pytest.raises(InputError, match="no reranker"):
        engine.score(np.zeros((1, 65, 96), dtype=np.float32), ["a red circle"])


@pytest.mark.parametrize("name", ["image_encoder.onnx", "text_encoder.onnx", "tokenizer.json"])
def test_truncated_engine_file_is_refused_naming_it(bundle: Path, tmp_path: Path, name: str) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in bundle.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=f"{name} fails its checksum"):
        OnnxEngine(copy)
