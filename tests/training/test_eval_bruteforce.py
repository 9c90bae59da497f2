"""`xmodal eval` recall equals a brute-force computation written here, independently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from encoders.checkpoint import load_checkpoint
from encoders.engine import OnnxEngine
from encoders.export import export_bundle
from encoders.preprocess import load_image
from training.compositional import compositional_scenes, render_scene
from training.datasets import Record, write_karpathy
from training.train import main as train_main
from xmodal import cli

K = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evalbf")
    train_main(["--out", str(root / "ckpt"), "--model", "tiny-albef", "--data", "compositional",
                "--train-size", "32", "--render-size", "32", "--batch-size", "8", "--steps", "3"])
    export_bundle(load_checkpoint(root / "ckpt").exportable(), root / "engine")
    records = []
    for n, scene in enumerate(compositional_scenes(7, seed=11, split="test")):
        render_scene(scene, 48).save(root / f"{n}.png")
        # 1 to 3 captions per image: a caption and its restatements, plus a near-duplicate
        captions = (scene.captions + [scene.caption + " here"])[: 1 + n % 3]
        records.append(Record(str(root / f"{n}.png"), tuple(captions), "test"))
    records.append(Record(str(root / "train.png"), ("unused",), "train"))
    return write_karpathy(records, root / "data.json"), root / "engine"


def _brute_force(engine: OnnxEngine, data: Path, rule: str | None) -> dict:
    items = [i for i in json.loads(data.read_text())["images"] if i["split"] == "test"]
    images = [load_image(data.parent / i["filename"]) for i in items]
    texts = [s["raw"] for i in items for s in i["sentences"]]
    owner = [n for n, i in enumerate(items) for _ in i["sentences"]]
    pixels = engine.encode_pixels(engine.pixels(images))
    img, tokens = pixels["image_embeds"], pixels["image_tokens"]
    txt = engine.encode_texts(texts)

    def final(t: int, i: int, reranked: bool) -> float:
        itc = float(np.dot(txt[t], img[i]))
        if rule is None:
            return itc
        if not reranked:
            return itc - 1000.0  # below every reranked candidate, in ITC order
        itm = float(engine.score(tokens[i:i + 1], [texts[t]])[0])
        return itm if rule == "itm" else itm + itc

    def top(scores: dict[int, float], n: int) -> list[int]:
        return sorted(scores, key=lambda x: -scores[x])[:n]

    out = {"text_to_image": {}, "image_to_text": {}}
    for k in (1, 5, 10):
        hits = 0
        for t in range(len(texts)):
            cands = top({i: float(np.dot(txt[t], img[i])) for i in range(len(images))}, K)
            hits += owner[t] in top({i: final(t, i, i in cands) for i in range(len(images))}, k)
        out["text_to_image"][f"R@{k}"] = round(100 * hits / len(texts), 2)
        hits = 0
        for i in range(len(images)):
            cands = top({t: float(np.dot(txt[t], img[i])) for t in range(len(texts))}, K)
            ranked = top({t: final(t, i, t in cands) for t in range(len(texts))}, k)
            hits += any(owner[t] == i for t in ranked)
        out["image_to_text"][f"R@{k}"] = round(100 * hits / len(images), 2)
    return out


def test_eval_matches_brute_force(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, engine_dir = setup
    assert cli.main(["eval", "--engine", str(engine_dir), "--data", str(data), "--k", str(K),
                     "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "recall.json").read_text())
    engine = OnnxEngine(engine_dir)
    for key, rule in (("dual", None), ("itm", "itm"), ("itm+itc", "itm+itc")):
        assert result[key] == _brute_force(engine, data, rule), key
    assert "| rerank ITM (top-3) |" in (tmp_path / "recall.md").read_text()
    assert (tmp_path / "recall_vs_k.png").read_bytes()[:4] == b"\x89PNG"
