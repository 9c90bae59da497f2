"""An add writes each encode batch's image tokens as they come (float16) and builds the new
segment from the files it wrote: it never holds the added images' tokens in memory, and the
segment holds exactly the tokens the engine gave."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from encoders.preprocess import ImagePreprocess
from index.build import BuildOptions, build_index
from index.search import Searcher
from index.tokens import TOKENS_FILE
from index.update import add_images

DIM, TOKENS, WIDTH = 16, 49, 256  # 25 KB of float16 tokens an image


class TokenEngine:
    """An engine whose image tokens are large and recognisable: every value of image i's
    tokens is the image's red channel / 255 (so the store can be checked row by row)."""

    engine_id = "token-engine"
    path = None

    def __init__(self) -> None:
        self.manifest = SimpleNamespace(embed_dim=DIM, image_preprocess=ImagePreprocess(size=4),
                                        precision="fp32")

    def encode_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        red = (pixels[:, 0, 0, 0] + 1) / 2  # preprocessing maps 0..255 to -1..1
        embeds = np.zeros((len(pixels), DIM), np.float32)
        embeds[:, 0] = 1
        tokens = np.broadcast_to(red[:, None, None], (len(pixels), TOKENS, WIDTH))
        return {"image_embeds": embeds, "image_tokens": tokens.astype(np.float32)}

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), DIM), np.float32) / DIM**0.5


def _pngs(folder: Path, reds: list[int]) -> Path:
    folder.mkdir(parents=True)
    for i, red in enumerate(reds):
        Image.new("RGB", (4, 4), (red, 0, 0)).save(folder / f"{i:04d}.png")
    return folder


def test_an_add_streams_its_tokens_to_the_segment(tmp_path: Path) -> None:
    engine, root = TokenEngine(), tmp_path / "index"
    build_index(engine, _pngs(tmp_path / "base", [0, 255]), root, workers=0)
    reds = [i % 256 for i in range(200)]
    folder = _pngs(tmp_path / "new", reds)
    tracemalloc.start()
    try:
        add_images(engine, root, folder, BuildOptions(workers=0, batch_size=8, shard_size=64))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    added = len(reds) * TOKENS * WIDTH * 2  # the added images' float16 tokens, 4.8 MB
    assert peak < added / 4, f"the add held {peak / 2**20:.2f} MB, tokens are {added / 2**20:.2f}"
    searcher = Searcher(root, engine.engine_id)
    tokens = searcher.tokens([2, 3, 101, 201])
    assert tokens.shape == (4, TOKENS, WIDTH)
    stores = [np.load(p, mmap_mode="r") for p in root.glob(f"segments/*/{TOKENS_FILE}")]
    assert sorted(len(s) for s in stores) == [2, 200] and {s.dtype for s in stores} == {np.dtype(np.float16)}
    expected = np.asarray([reds[0], reds[1], reds[99], reds[199]], np.float32) / 255
    np.testing.assert_allclose(tokens[:, 5, 7].astype(np.float32), expected, atol=1e-3)
    assert np.ptp(tokens.reshape(4, -1), axis=1).max() == 0  # whole rows
