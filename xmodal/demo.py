"""The embedded default: a demo gallery, a tiny model trained on synthetic scenes, its engine
bundle and an index, prepared once under a work folder and reused after."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GALLERY_SIZE = 200
GALLERY_SEED = 7  # the training scenes use seed 0, so the gallery is held out


@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def gallery(self) -> Path:
        return self.root / "gallery"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"

    @property
    def engine(self) -> Path:
        return self.root / "engine"

    @property
    def index(self) -> Path:
        return self.root / "index"


def prepare(root: str | Path, steps: int = 300) -> DemoPaths:
    """Make whatever of gallery, checkpoint, engine and index is missing under `root`."""
    from encoders.checkpoint import WEIGHTS, load_checkpoint
    from encoders.engine import OnnxEngine
    from encoders.export import export_bundle
    from index.build import build_index
    from index.bundle import CURRENT
    from training.synthetic import write_gallery
    from training.train import TrainConfig, train

    paths = DemoPaths(Path(root))
    if not (paths.gallery / "captions.jsonl").is_file():
        log.info("rendering %d demo images into %s", GALLERY_SIZE, paths.gallery)
        write_gallery(paths.gallery, GALLERY_SIZE, GALLERY_SEED)
    if not (paths.checkpoint / WEIGHTS).is_file():
        log.info("training the demo model (%d steps)", steps)
        train(TrainConfig(out=paths.checkpoint, steps=steps))
    if not paths.engine.is_dir():
        export_bundle(load_checkpoint(paths.checkpoint).exportable(), paths.engine)
    if not (paths.index / CURRENT).is_file():
        build_index(OnnxEngine(paths.engine), paths.gallery, paths.index)
    return paths
