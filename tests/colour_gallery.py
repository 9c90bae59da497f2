"""A gallery of plain-colour squares with captions and user fields, for the numpy engine
(tests.numpy_engine): small enough to build in a second, with words a keyword search can find."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from tests.numpy_engine import COLOURS

SHADES = (255, 200, 150)  # of each colour, so each has several images
# a literal tag on some images, in a word the numpy engine's colour vectors know nothing of
TAGGED = {"red-150.png": "zanzibar", "blue-200.png": "zanzibar", "cyan-255.png": "kilimanjaro"}


def png(rgb: tuple[int, ...]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), rgb).save(out, "PNG")
    return out.getvalue()


def write_colour_gallery(folder: Path, colours: dict = COLOURS, shades: tuple = SHADES) -> Path:
    """Squares named `colour-shade.png`, captioned "a colour square", fields `tag` (TAGGED or
    "plain") and `shade`; returns the dataset file (a folder source would read captions only)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, signs in colours.items():
        for shade in shades:
            file = f"{name}-{shade}.png"
            (folder / file).write_bytes(png(tuple(shade if s > 0 else 0 for s in signs)))
            rows.append(json.dumps({"file": file, "caption": f"a {name} square",
                                    "tag": TAGGED.get(file, "plain"), "shade": shade}))
    (folder / "captions.jsonl").write_text("\n".join(rows) + "\n")
    return folder / "captions.jsonl"
