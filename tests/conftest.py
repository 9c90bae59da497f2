"""Shared fixtures: a demo pipeline trained once per session, and a second, different engine
(as a bundle, and loaded once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from encoders.engine import OnnxEngine
from tests.disk import tmpfs
from xmodal import cli
from xmodal.demo import DemoPaths


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPaths:
    """gallery (held out) + checkpoint trained 300 steps + engine bundle + published index."""
    root = tmp_path_factory.mktemp("demo")
    assert cli.main(["demo", "--workdir", str(root), "--no-serve", "--model", "shapes"]) == 0
    return DemoPaths(root)


@pytest.fixture(scope="session")
def other_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An engine bundle with other weights (2 steps, another seed): a different engine_id."""
    root = tmp_path_factory.mktemp("other")
    argv = ["train", "--out", str(root / "ckpt"), "--steps", "2", "--train-size", "64",
            "--batch-size", "16", "--seed", "1"]
    assert cli.main(argv) == 0
    assert cli.main(["export", "--checkpoint", str(root / "ckpt"), "--out", str(root / "engine")]) == 0
    return root / "engine"


@pytest.fixture(scope="session")
def tiny_engine(other_engine: Path) -> OnnxEngine:
    return OnnxEngine(other_engine, threads=1)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs (tests.disk), mounted for the test and unmounted after it."""
    with tmpfs(tmp_path / "disk") as folder:
        yield folder
