"""The `lit` family end to end on a small run: cached features, heads, reranker, calibration,
export with parity, and the bundle's provenance record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch

from encoders.checkpoint import load_checkpoint
from encoders.engine import OnnxEngine
from encoders.export import export_bundle
from encoders.preprocess import load_image
from training.leaks import COMPOSITIONAL, check_held_out, read_provenance
from training.options import TrainConfig
from training.train import train

PHOTOS = Path(skimage.__file__).parent / "data"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lit")
    cfg = TrainConfig(out=out / "ckpt", model="lit-lite0", data="compositional", train_size=64,
                      render_size=64, steps=4, batch_size=16, warmup_steps=2, rerank_steps=2,
                      rerank_batch=8, threads=2, cache=str(out / "cache"))
    train(cfg)
    return out


def test_the_conse_prior_finds_photos_of_imagenet_concepts_untrained(trained: Path) -> None:
    ckpt = load_checkpoint(trained / "ckpt")
    model = ckpt.model
    pixels = torch.from_numpy(np.concatenate([
        _pixels(ckpt, "chelsea.png"), _pixels(ckpt, "coffee.png")]))
    ids, mask = (torch.from_numpy(a) for a in ckpt.tokenizer.encode(["a cat", "a cup of coffee"]))
    with torch.no_grad():
        prior, confidence = model.conse(model.backbone.pooled(model.backbone.features(pixels)))
        texts = model.encode_text(ids, mask)
    sims = (prior @ texts.t()).numpy()
    assert sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0]
    assert (confidence > 0.5).all()


def _pixels(ckpt, name: str) -> np.ndarray:
    from encoders.preprocess import preprocess

    return preprocess([load_image(PHOTOS / name)], ckpt.preprocess)


def test_a_small_run_exports_an_engine_with_reranker_calibration_and_provenance(trained: Path) -> None:
    ckpt = load_checkpoint(trained / "ckpt")
    info = ckpt.info
    assert info["calibration"]["temperature"] == pytest.approx(float(ckpt.model.itm_temperature), abs=1e-4)
    assert 0 <= info["calibration"]["ece"] <= 1
    assert (trained / "ckpt" / "reliability.png").is_file()
    manifest = export_bundle(ckpt.exportable(), trained / "engine")
    assert all(p["max_abs"] <= 1e-4 for p in manifest.parity.values())
    engine = OnnxEngine(trained / "engine", threads=2)
    out = engine.encode_pixels(engine.pixels([load_image(PHOTOS / "chelsea.png")] * 2))
    assert out["image_embeds"].shape == (2, 256) and out["image_tokens"].shape == (2, 49, 128)
    assert np.allclose(np.linalg.norm(out["image_embeds"], axis=1), 1, atol=1e-5)
    probs = engine.score(out["image_tokens"], ["a cat", "a small red circle left of a large blue square"])
    assert probs.shape == (2,) and ((probs > 0) & (probs < 1)).all()
    provenance = read_provenance(trained / "engine")
    assert provenance.styles == {"compositional"} and len(provenance.captions) > 64
    check_held_out(provenance, COMPOSITIONAL)
    assert json.loads((trained / "engine" / "manifest.json").read_text())["family"] == "lit"


def test_features_are_cached_and_reused(trained: Path) -> None:
    chunks = sorted((trained / "cache").rglob("chunk_*.npz"))
    assert chunks and not list((trained / "cache").rglob("*.tmp.npz"))
    before = {p: p.stat().st_mtime_ns for p in chunks}
    cfg = TrainConfig(out=trained / "again", model="lit-lite0", data="compositional", train_size=64,
                      render_size=64, steps=1, batch_size=16, warmup_steps=1, threads=2,
                      cache=str(trained / "cache"))
    train(cfg)
    assert {p: p.stat().st_mtime_ns for p in chunks} == before
