"""Service fixtures: an engine with a fusion reranker and an index that stores image tokens."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from playwright.sync_api import Browser, sync_playwright

from bench.screenshot import CHROMIUM_FLAGS
from encoders.checkpoint import Checkpoint
from encoders.config import load_config
from encoders.engine import OnnxEngine
from encoders.export import export_bundle
from encoders.models import build_model
from encoders.preprocess import ImagePreprocess
from encoders.tokenizer import train_word_tokenizer
from index.build import build_index
from training import synthetic
from xmodal.demo import DemoPaths


@dataclasses.dataclass(frozen=True)
class RerankSetup:
    engine: Path
    index: Path
    gallery: Path


@pytest.fixture(scope="session")
def rerank_setup(demo: DemoPaths, tmp_path_factory: pytest.TempPathFactory) -> RerankSetup:
    """An untrained tiny ALBEF-style engine (the mechanics, not the quality) over the demo gallery."""
    root = tmp_path_factory.mktemp("albef")
    cfg = load_config("tiny-albef")
    captions = [s.caption for s in synthetic.scenes(500, seed=0)]
    tokenizer = train_word_tokenizer(captions, cfg.text.context_length)
    cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, vocab_size=tokenizer.vocab_size))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # spread the ITM head so probabilities differ visibly between pairs
        model.itm_head.weight.mul_(50.0)
    ckpt = Checkpoint(model, tokenizer, ImagePreprocess(size=cfg.vision.image_size), {})
    export_bundle(ckpt.exportable(), root / "engine")
    build_index(OnnxEngine(root / "engine"), demo.gallery, root / "index")
    return RerankSetup(root / "engine", root / "index", demo.gallery)




@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium for one test module. Not for the session: sync Playwright keeps
    an event loop running in this thread while it is open, and later tests call asyncio.run."""
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is installed by `make test`"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
