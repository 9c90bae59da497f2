"""A user's own model from its folder to a served index, with the README's three commands:
a tiny random SigLIP (sigmoid scores) exported, indexed and served; the service's ranking is
the order of SiglipModel's own match probabilities, and its scores are the cosines from which
the manifest's rule gives those probabilities."""

from __future__ import annotations

import numpy as np
import torch
import transformers as tf
from fastapi.testclient import TestClient

from encoders.bundle import read_manifest
from encoders.preprocess import load_image, preprocess
from service.config import Settings
from service.main import create_app
from tests.encoders.tiny_models import SHAPE_WORDS, siglip_folder
from training.synthetic import write_gallery
from xmodal.cli import main as xmodal

QUERIES = ["a red circle", "a blue square and a green triangle", "yellow"]


def test_siglip_folder_to_served_index_ranks_by_its_probabilities(tmp_path) -> None:
    torch.manual_seed(0)
    folder = siglip_folder(tmp_path / "hf", SHAPE_WORDS)
    gallery = write_gallery(tmp_path / "gallery", 40, seed=3, size=64)
    engine, index = tmp_path / "engine", tmp_path / "index"
    assert xmodal(["export", "--model", str(folder), "--out", str(engine)]) == 0
    assert xmodal(["index", "build", "--engine", str(engine), "--images", str(gallery),
                   "--out", str(index), "--workers", "0"]) == 0
    score = read_manifest(engine).score
    files = sorted(p.name for p in gallery.glob("*.png"))
    model = tf.SiglipModel.from_pretrained(folder).eval()
    tokenizer = tf.AutoTokenizer.from_pretrained(folder)
    pixels = preprocess([load_image(gallery / f) for f in files],
                        read_manifest(engine).image_preprocess)
    ids = tokenizer(QUERIES, padding="max_length", max_length=16, return_tensors="pt")["input_ids"]
    with torch.no_grad():  # (queries, images): what SigLIP itself says about each pair
        probability = model(input_ids=ids, pixel_values=torch.from_numpy(pixels)) \
            .logits_per_text.sigmoid().numpy()
    with TestClient(create_app(Settings(engine_dir=engine, index_dir=index))) as client:
        for query, expected in zip(QUERIES, probability, strict=True):
            results = client.post("/v1/search/text", json={"text": query, "k": 10}).json()["results"]
            assert [r["path"] for r in results] == [files[i] for i in np.argsort(-expected)[:10]]
            cosine = np.array([r["score"] for r in results])
            from_rule = 1 / (1 + np.exp(-(score["logit_scale"] * cosine + score["logit_bias"])))
            np.testing.assert_allclose(from_rule, np.sort(expected)[::-1][:10], atol=1e-4)
