"""Twemoji pairs from the installed packages, and the Noto cross-style set in Karpathy format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.datasets import decode, load_karpathy
from training.emoji import IMAGE_SIZE, twemoji, write_cross_style, write_twemoji_gallery


def test_twemoji_ships_thousands_of_named_pngs() -> None:
    items = twemoji()
    assert len(items) > 3900
    grinning = next(e for e in items if e.png.stem == "1f600")
    assert grinning.names[0] == "grinning face" and "grinning" in grinning.names
    assert all(e.names and all(n == n.lower() and "_" not in n for n in e.names) for e in items[:200])


def test_cross_style_set_is_karpathy_with_the_same_texts_in_another_style(tmp_path: Path) -> None:
    noto_json, twemoji_json = write_cross_style(tmp_path, limit=40)
    noto, tw = load_karpathy(noto_json), load_karpathy(twemoji_json)
    assert len(noto) == len(tw) >= 30 and [r.captions for r in noto] == [r.captions for r in tw]
    a, b = decode(noto), decode(tw)
    assert a.skipped == b.skipped == 0
    assert a.images[0].size == (IMAGE_SIZE, IMAGE_SIZE)
    diff = np.abs(np.asarray(a.images[0], float) - np.asarray(b.images[0], float)).mean()
    assert diff > 5  # a different drawing of the same emoji, not a copy
    assert np.asarray(a.images[0]).min() < 128  # something was drawn


def test_twemoji_gallery_has_captions_for_the_index(tmp_path: Path) -> None:
    folder = write_twemoji_gallery(tmp_path / "g")
    lines = (folder / "captions.jsonl").read_text().splitlines()
    assert len(lines) == len(twemoji()) == len(list(folder.glob("*.png")))
