"""`xmodal export --variants int8 --calibration` then `xmodal index build --precision int8`:
the build encodes at the precision the bundle's measured bounds allow, keeping its engine_id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from encoders.engine import OnnxEngine
from encoders.preprocess import load_image
from encoders.variants import build_precision
from index.bundle import read_manifest, resolve
from xmodal import cli


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory, gallery: Path) -> Path:
    root = tmp_path_factory.mktemp("precision")
    argv = ["train", "--out", str(root / "ckpt"), "--steps", "1", "--train-size", "16",
            "--batch-size", "16"]
    assert cli.main(argv) == 0
    assert cli.main(["export", "--checkpoint", str(root / "ckpt"), "--out", str(root / "plain")]) == 0
    assert cli.main(["export", "--checkpoint", str(root / "ckpt"), "--out", str(root / "engine"),
                     "--variants", "int8", "--calibration", str(gallery)]) == 0
    return root


def test_build_at_int8_encodes_with_the_chosen_variant(engines: Path, gallery: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = engines / "index"
    assert cli.main(["index", "build", "--engine", str(engines / "engine"), "--images",
                     str(gallery), "--out", str(out), "--precision", "int8", "--workers", "0"]) == 0
    chosen = build_precision(OnnxEngine(engines / "engine").manifest, "int8")
    assert f"encoding at {chosen}" in capsys.readouterr().err
    engine = OnnxEngine(engines / "engine", precision=chosen)
    assert read_manifest(resolve(out)).engine_id == engine.engine_id
    stored = np.load(next(out.rglob("embeddings.npy")))
    readable = sorted(p for p in gallery.iterdir() if p.suffix == ".png" and p.name != "broken.png")
    # one batch, as the build encoded them: dynamic int8 scales activations per batch
    expected = engine.encode_images([load_image(p) for p in readable])
    np.testing.assert_allclose(stored, expected, atol=1e-5)


def test_build_at_int8_without_a_variant_names_the_export_flag(engines: Path, gallery: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["index", "build", "--engine", str(engines / "plain"), "--images", str(gallery),
            "--out", str(engines / "none"), "--precision", "int8"]
    assert cli.main(argv) == 1
    assert "--variants int8" in capsys.readouterr().err
    assert json.loads((engines / "plain" / "manifest.json").read_text())["variants"] == {}
