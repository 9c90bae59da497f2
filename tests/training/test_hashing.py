"""Hash heads (training.hashing) and their export as a third output of the tower graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from encoders.bundle import read_manifest
from encoders.code_export import add_hash_head
from encoders.codes import pack
from encoders.engine import OnnxEngine
from encoders.errors import BundleError
from tests.codes import code_engine
from training.hashing import HashConfig, HashHeads, code_outputs, hash_loss, train_hash_heads
from training.synthetic import write_gallery


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gallery(tmp_path_factory.mktemp("scenes"), 40, seed=11)


def test_hash_head_export_parity(tiny_engine: OnnxEngine, scenes: Path, tmp_path: Path) -> None:
    coded, heads = code_engine(tiny_engine, scenes, tmp_path / "coded", bits=64)
    manifest = coded.manifest
    assert manifest.code_bits == 64 and manifest.engine_id != tiny_engine.engine_id
    assert manifest.codes["base_engine_id"] == tiny_engine.engine_id
    assert all(p["max_abs"] <= 1e-4 for p in manifest.codes["parity"].values())
    pixels = tiny_engine.pixels([Image.new("RGB", (32, 32), (200, 20, 20))])
    out = coded.encode_pixels(pixels)
    # the towers embed exactly as before, and the codes are the trained head's outputs
    np.testing.assert_allclose(out["image_embeds"], tiny_engine.encode_pixels(pixels)["image_embeds"],
                               atol=1e-5)
    np.testing.assert_allclose(out["image_codes"], code_outputs(heads, image=out["image_embeds"]),
                               atol=1e-4)
    texts = ["a red circle", "two blue squares"]
    got = coded.encode_text_outputs(texts)
    np.testing.assert_allclose(got["text_codes"], code_outputs(heads, text=got["text_embeds"]),
                               atol=1e-4)
    assert got["text_codes"].shape == (2, 64) and pack(got["text_codes"]).shape == (2, 8)
    # the bundle reads back whole (checksums, id) and refuses a second head
    assert read_manifest(tmp_path / "coded").engine_id == manifest.engine_id
    with pytest.raises(BundleError, match="already has 64-bit codes"):
        add_hash_head(tmp_path / "coded", tmp_path / "twice", heads.export())


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_learned_codes_find_pairs_that_sign_codes_miss() -> None:
    """Pairs that agree in 8 of 64 dimensions and carry unrelated noise, as strong, in the
    rest: the head starts as a random rotation, whose signs (LSH) spend most bits on the
    noise; training must move them onto what the pairs share."""
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((300, 8))
    image = _unit(np.hstack([shared, 0.6 * rng.standard_normal((300, 56))]))
    text = _unit(np.hstack([shared, 0.6 * rng.standard_normal((300, 56))]))

    def top1(heads: HashHeads) -> float:
        a, b = np.sign(code_outputs(heads, image=image)), np.sign(code_outputs(heads, text=text))
        return float(((b @ a.T).argmax(axis=1) == np.arange(len(b))).mean())

    cfg = HashConfig(bits=64, steps=300, batch_size=128)
    trained, info = train_hash_heads(image, text, np.arange(300), cfg)
    start = HashHeads(64, 64, cfg.init_scale, cfg.seed)
    assert top1(trained) > top1(start) + 0.15
    assert info["final_quantise"] < 0.5 and info["towers"] == "frozen"


def test_loss_terms() -> None:
    cfg = HashConfig(bits=8)
    codes = torch.tensor([[1.0, -1, 1, -1, 1, -1, 1, -1], [-1.0, 1, -1, 1, -1, 1, -1, 1]])
    parts = hash_loss(codes, codes, torch.tensor(20.0), cfg)
    assert parts["quantise"].item() == 0.0 and parts["balance"].item() == 0.0
    swapped = hash_loss(codes, codes.flip(0), torch.tensor(20.0), cfg)
    assert swapped["itc"].item() > parts["itc"].item() + 10
    half = hash_loss(codes * 0.5, codes * 0.5, torch.tensor(20.0), cfg)
    assert half["quantise"].item() == pytest.approx(0.25)
    same = torch.ones(2, 8)
    assert hash_loss(same, same, torch.tensor(20.0), cfg)["balance"].item() == pytest.approx(2.0)


def test_bad_head_shapes_are_refused(tiny_engine, tmp_path) -> None:
    dim = tiny_engine.dim
    heads = {"image_encoder": (np.zeros((64, dim + 1)), np.zeros(64)),
             "text_encoder": (np.zeros((64, dim)), np.zeros(64))}
    with pytest.raises(ValueError, match="hash head must be"):
        add_hash_head(tiny_engine.path, tmp_path / "bad", heads)
    with pytest.raises(ValueError, match="not supported"):
        add_hash_head(tiny_engine.path, tmp_path / "bad2",
                      {r: (np.zeros((48, dim)), np.zeros(48)) for r in heads})
