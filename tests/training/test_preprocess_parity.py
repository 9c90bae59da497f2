"""Training and the engine turn the same files into the same bytes: no train/serve skew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from encoders.engine import OnnxEngine
from encoders.preprocess import load_image
from training.data import load_pixels
from xmodal.demo import DemoPaths


def _files(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (90, 130, 3), dtype=np.uint8))
    made = {
        "rgba.png": base.convert("RGBA"),
        "palette.gif": base.convert("P"),
        "cmyk.jpg": base.convert("CMYK"),
        "grey16.png": base.convert("I;16"),
        "tall.webp": base.resize((40, 200)),
    }
    for name, image in made.items():
        image.save(folder / name)
    rotated = folder / "exif.jpg"
    exif = base.getexif()
    exif[0x0112] = 8
    base.save(rotated, exif=exif)
    return sorted(folder.iterdir())


def test_engine_and_training_preprocess_files_identically(demo: DemoPaths, tmp_path: Path) -> None:
    engine = OnnxEngine(demo.engine)
    files = _files(tmp_path) + sorted(demo.gallery.glob("*.png"))[:3]
    served = engine.pixels([load_image(f) for f in files])
    trained = load_pixels(files, engine.manifest.image_preprocess)
    assert served.dtype == trained.dtype == np.float32
    assert served.shape == trained.shape == (len(files), 3, 64, 64)
    assert served.tobytes() == trained.tobytes()
