"""Index-test fixtures: small galleries with a broken file, and a second tiny engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from encoders.engine import OnnxEngine
from training.synthetic import write_gallery
from xmodal import cli


@pytest.fixture(scope="session")
def second_engine(tmp_path_factory: pytest.TempPathFactory) -> OnnxEngine:
    """Another tiny engine (other seed): a model change to re-index for."""
    root = tmp_path_factory.mktemp("second")
    argv = ["train", "--out", str(root / "ckpt"), "--steps", "1", "--train-size", "16",
            "--batch-size", "16", "--seed", "2"]
    assert cli.main(argv) == 0
    assert cli.main(["export", "--checkpoint", str(root / "ckpt"), "--out", str(root / "engine")]) == 0
    return OnnxEngine(root / "engine", threads=1)


@pytest.fixture(scope="session")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 captioned scenes and one unreadable PNG (shared: tests must not modify it)."""
    folder = write_gallery(tmp_path_factory.mktemp("gallery") / "images", 30, seed=5)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder
