"""`xmodal train --init FOLDER` on each imported format: a tiny random model, exported before
and after a few fine-tuning steps, is no worse on held-out pairs.

The task is built to be learnable by a tiny model in tens of steps: rendered scenes of one
coloured shape each (6 colours x 4 shapes), captioned "a red circle"; training and held-out
scenes come from different seeds, as a JSONL dataset file with `split` (the format a user's
pairs come in). Held-out score: mean of text->image and image->text R@5 over 48 scenes,
through the exported engine, as the service would compute it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from encoders.bundle import read_manifest
from encoders.engine import OnnxEngine
from encoders.preprocess import load_image
from tests.encoders.tiny_models import (
    SHAPE_WORDS,
    align_folder,
    blip_folder,
    clip_folder,
    open_clip_folder,
    siglip_folder,
)
from training.evaluate import evaluate
from training.synthetic import random_scene, render
from training.train import TrainingInterrupted, main
from xmodal.cli import main as xmodal

TRAIN, HELD_OUT = 256, 48
BUILDERS = {
    "clip": lambda root: clip_folder(root, SHAPE_WORDS),
    "siglip": lambda root: siglip_folder(root, SHAPE_WORDS),
    "blip": lambda root: blip_folder(root, SHAPE_WORDS),
    "align": lambda root: align_folder(root, SHAPE_WORDS),
    "open_clip": lambda root: open_clip_folder(root),
}
# Tiny random SigLIP sits on a plateau of its sigmoid loss for ~100 steps (its random towers
# give every pair about the same cosine, and the bias moves ~lr per step toward the value a
# batch of 32 wants), then learns: held-out 10.4 at step 40, 19.8 at 120, 49.0 at 200.
STEPS = {"siglip": 200}
COMMON = ["--batch-size", "32", "--lr", "1e-3", "--warmup-steps", "5", "--save-every", "0",
          "--seed", "1"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL dataset: `TRAIN` training scenes, then `HELD_OUT` test scenes of another seed."""
    root = tmp_path_factory.mktemp("pairs")
    rows = []
    for split, count, seed in (("train", TRAIN, 1), ("test", HELD_OUT, 2)):
        rng = random.Random(seed)
        for i in range(count):
            scene = random_scene(rng, max_objects=1)
            name = f"{split}-{i:03d}.png"
            render(scene, 64).save(root / name)
            rows.append({"image": name, "caption": scene.caption, "split": split})
    path = root / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def held_out_score(engine_dir: Path, pairs: Path) -> float:
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    test = [r for r in rows if r["split"] == "test"]
    engine = OnnxEngine(engine_dir)
    images = engine.encode_images([load_image(pairs.parent / r["image"]) for r in test])
    texts = engine.encode_texts([r["caption"] for r in test])
    result = evaluate(images, texts, list(range(len(test))))
    return (result["text_to_image"]["R@5"] + result["image_to_text"]["R@5"]) / 2


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_fine_tuning_is_no_worse_on_held_out_pairs(kind: str, pairs: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = BUILDERS[kind](tmp_path / "source")
    assert xmodal(["export", "--model", str(source), "--out", str(tmp_path / "before")]) == 0
    steps = STEPS.get(kind, 40)
    argv = ["--init", str(source), "--data", str(pairs), "--out", str(tmp_path / "tuned"),
            "--steps", str(steps), *COMMON]
    assert main(argv) == 0
    assert xmodal(["export", "--model", str(tmp_path / "tuned"), "--out", str(tmp_path / "after")]) == 0
    before = held_out_score(tmp_path / "before", pairs)
    after = held_out_score(tmp_path / "after", pairs)
    print(f"{kind}: held-out mean R@5 {before:.1f} -> {after:.1f}")
    assert after >= before
    record = read_manifest(tmp_path / "after").training["fine_tuned"]
    assert record["steps"] == steps and record["init"] == str(source)
    log = [json.loads(line) for line in (tmp_path / "tuned" / "log.jsonl").read_text().splitlines()]
    expected = {"siglip": "sigmoid"}.get(kind, "itc")
    assert expected in log[0] and expected in record["objectives"]
    assert ("itm" in log[0]) == (kind == "blip")


def test_frozen_image_tower_is_left_as_it_was_and_text_still_learns(pairs: Path,
                                                                     tmp_path: Path) -> None:
    """LiT: only the text side trains, against the random ViT's features as they are."""
    torch.manual_seed(0)
    source = clip_folder(tmp_path / "source", SHAPE_WORDS)
    assert main(["--init", str(source), "--data", str(pairs), "--out", str(tmp_path / "tuned"),
                 "--steps", "40", *COMMON, "--freeze-image"]) == 0
    old = load_file(str(source / "model.safetensors"))
    new = load_file(str(tmp_path / "tuned" / "model.safetensors"))
    changed = {k for k in old if not old[k].equal(new[k])}
    assert changed and all(k.startswith(("text_model.", "text_projection", "logit_scale"))
                           for k in changed), sorted(changed)
    for name, folder in (("before", source), ("after", tmp_path / "tuned")):
        assert xmodal(["export", "--model", str(folder), "--out", str(tmp_path / name)]) == 0
    before = held_out_score(tmp_path / "before", pairs)
    after = held_out_score(tmp_path / "after", pairs)
    print(f"clip, frozen image tower: held-out mean R@5 {before:.1f} -> {after:.1f}")
    assert after >= before


def test_killed_fine_tuning_resumes_to_the_same_weights(pairs: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = open_clip_folder(tmp_path / "source")
    argv = ["--init", str(source), "--data", str(pairs), "--steps", "4", "--batch-size", "8",
            "--lr", "1e-3", "--save-every", "2"]
    assert main([*argv, "--out", str(tmp_path / "clean")]) == 0
    with pytest.raises(TrainingInterrupted):
        main([*argv, "--out", str(tmp_path / "killed"), "--crash-at", "2"])
    assert main([*argv, "--out", str(tmp_path / "killed")]) == 0
    clean = load_file(str(tmp_path / "clean" / "open_clip_model.safetensors"))
    resumed = load_file(str(tmp_path / "killed" / "open_clip_model.safetensors"))
    assert all(clean[k].equal(resumed[k]) for k in clean)


def test_settings_that_do_not_apply_are_refused(pairs: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = siglip_folder(tmp_path / "source", SHAPE_WORDS)
    with pytest.raises(ValueError, match="sigmoid loss"):
        main(["--init", str(source), "--data", str(pairs), "--out", str(tmp_path / "a"),
              "--distill"])
    with pytest.raises(ValueError, match="patch-keep"):
        main(["--init", str(source), "--data", str(pairs), "--out", str(tmp_path / "b"),
              "--patch-keep", "0.5"])
    assert not (tmp_path / "a" / "log.jsonl").exists()  # refused before any training step
