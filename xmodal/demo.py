"""The embedded default: a gallery, a trained model, its engine bundle and an index, prepared
once under a work folder and reused after (so a restart only loads them).

Two kinds:
- "default" (what `make run` serves): the `--preset default` model (pretrained EfficientNet-Lite0
  and MiniLM towers with trained heads, a ConSE prior and an ITM reranker; training.lit_train)
  over the Twemoji gallery.
- "shapes": 200 rendered scenes of coloured shapes (held out from training) and a tiny dual
  encoder trained for `steps` steps on other scenes -- quick, used by the tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GALLERY_SIZE = 200
GALLERY_SEED = 7  # the training scenes use seed 0, so the gallery is held out
KINDS = ("shapes", "default")
KIND_FILE = "KIND"
CHECKPOINT_WEIGHTS = "model.safetensors"  # encoders.checkpoint.WEIGHTS, named here to skip torch
# what a work folder's marker says of each kind: a folder prepared for an earlier default model
# says otherwise and is refused instead of served
MARKERS = {"shapes": "shapes", "default": "default lit-lite0"}


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


def _claim(paths: DemoPaths, kind: str) -> None:
    """A work folder holds one kind; mixing a shapes gallery with the emoji model would serve nonsense."""
    marker = paths.root / KIND_FILE
    if marker.is_file() and marker.read_text().strip() != MARKERS[kind]:
        raise SystemExit(f"{paths.root} holds the {marker.read_text().strip()!r} demo, not "
                         f"{MARKERS[kind]!r}: remove it (make clean) or use another --workdir")
    if not marker.is_file() and paths.checkpoint.exists() and kind != "shapes":
        raise SystemExit(f"{paths.root} holds an older demo: remove it (make clean) first")
    if not marker.is_file():  # written once: a reused folder is left untouched
        paths.root.mkdir(parents=True, exist_ok=True)
        marker.write_text(MARKERS[kind] + "\n")


def _gallery(paths: DemoPaths, kind: str) -> None:
    if (paths.gallery / "captions.jsonl").is_file():
        return
    if kind == "default":
        from training.emoji import write_twemoji_gallery

        log.info("copying the Twemoji gallery into %s", paths.gallery)
        write_twemoji_gallery(paths.gallery)
    else:
        from training.synthetic import write_gallery

        log.info("rendering %d demo images into %s", GALLERY_SIZE, paths.gallery)
        write_gallery(paths.gallery, GALLERY_SIZE, GALLERY_SEED)


def _train(paths: DemoPaths, kind: str, steps: int) -> None:
    from training.options import PRESETS
    from training.train import TrainConfig, train

    if kind == "default":
        log.info("training the default model (--preset default); progress in %s/log.jsonl", paths.checkpoint)
        train(TrainConfig(out=paths.checkpoint, **PRESETS["default"]))
    else:
        log.info("training the demo model (%d steps)", steps)
        train(TrainConfig(out=paths.checkpoint, steps=steps))


def prepare(root: str | Path, steps: int = 300, kind: str = "shapes") -> DemoPaths:
    """Make whatever of gallery, checkpoint, engine and index is missing under `root`.

    An interrupted training resumes from its last saved state on the next call."""
    from encoders.engine import OnnxEngine
    from index.build import build_index
    from index.bundle import CURRENT

    if kind not in KINDS:
        raise SystemExit(f"unknown demo model {kind!r}; known: {', '.join(KINDS)}")
    paths = DemoPaths(Path(root))
    _claim(paths, kind)
    _gallery(paths, kind)
    # torch is imported only when something is left to train or export: a restart that finds
    # everything in place starts serving without it
    if not (paths.checkpoint / CHECKPOINT_WEIGHTS).is_file():
        _train(paths, kind, steps)
    if not paths.engine.is_dir():
        from encoders.checkpoint import load_checkpoint
        from encoders.export import export_bundle

        export_bundle(load_checkpoint(paths.checkpoint).exportable(), paths.engine)
    if not (paths.index / CURRENT).is_file():
        build_index(OnnxEngine(paths.engine), paths.gallery, paths.index)
    return paths
