"""A real tiny training through `main(argv)`: logs, curves, checkpoint, and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from encoders.checkpoint import WEIGHTS, load_checkpoint
from training.train import TrainingInterrupted, main

TINY = ["--model", "tiny-albef", "--data", "compositional", "--train-size", "48", "--render-size", "32",
        "--batch-size", "8", "--accum-steps", "2", "--steps", "6", "--warmup-steps", "2",
        "--save-every", "2", "--distill", "--queue-size", "16", "--patch-keep", "0.5", "--seed", "3"]


def _weights(folder: Path) -> dict:
    return load_file(str(folder / WEIGHTS))


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path / "clean"), *TINY]) == 0
    with pytest.raises(TrainingInterrupted):
        main(["--out", str(tmp_path / "killed"), *TINY, "--crash-at", "2"])  # the last save was after step 2
    assert not (tmp_path / "killed" / WEIGHTS).exists()
    assert main(["--out", str(tmp_path / "killed"), *TINY]) == 0
    clean, resumed = _weights(tmp_path / "clean"), _weights(tmp_path / "killed")
    assert clean.keys() == resumed.keys()
    for name in clean:
        assert clean[name].equal(resumed[name]), name
    log = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(6))
    assert log == [json.loads(line) for line in (tmp_path / "clean" / "log.jsonl").read_text().splitlines()]


def test_training_writes_log_curves_and_a_loadable_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["--out", str(out), "--model", "tiny-clip", "--train-size", "64", "--batch-size", "16",
            "--steps", "4", "--eval-every", "2", "--warmup-steps", "1"]
    assert main(argv) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    assert "recall" in log[1] and "R@10" in log[3]["recall"]["text_to_image"]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    ckpt = load_checkpoint(out)
    assert ckpt.info["steps"] == 4 and ckpt.info["val_recall"] == log[3]["recall"]


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path), "--train-size", "32", "--batch-size", "8", "--steps", "1"]
    assert main(argv) == 0
    with pytest.raises(ValueError, match="lr"):
        main([*argv, "--lr", "0.1"])
