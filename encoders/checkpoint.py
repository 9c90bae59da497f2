"""Training checkpoints: safetensors weights plus the JSON needed to rebuild the model.

Loading never unpickles: weights come from safetensors, settings from JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from encoders.config import from_dict, to_dict
from encoders.errors import BundleError
from encoders.models import build_model
from encoders.preprocess import ImagePreprocess
from encoders.roles import Exportable
from encoders.tokenizer import TextTokenizer

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"


@dataclass
class Checkpoint:
    model: nn.Module  # any registered family; `model.cfg` is its config
    tokenizer: TextTokenizer
    preprocess: ImagePreprocess
    info: dict[str, Any]  # training settings and metrics, carried into the engine manifest
    folder: Path | None = None  # where it was loaded from

    def exportable(self) -> Exportable:
        cfg = self.model.cfg
        # the record of what it trained on travels into the bundle, so evaluations can check
        # that a held-out split is held out (training.leaks)
        record = self.info.get("provenance")
        files = {record: self.folder / record} if record and self.folder else {}
        return Exportable(
            family=cfg.family, embed_dim=cfg.embed_dim, roles=self.model.graph_modules(),
            tokenizer=self.tokenizer, preprocess=self.preprocess,
            vocab_size=self.tokenizer.vocab_size, info=self.info, files=files,
        )


def save_checkpoint(folder: str | Path, ckpt: Checkpoint) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in ckpt.model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    ckpt.tokenizer.save(folder / TOKENIZER)
    meta = {
        "model": to_dict(ckpt.model.cfg),
        "preprocess": ckpt.preprocess.to_dict(),
        "max_length": ckpt.tokenizer.max_length,
        "pad_token": ckpt.tokenizer.pad_token,
        "info": ckpt.info,
    }
    (folder / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")


def load_checkpoint(folder: str | Path) -> Checkpoint:
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if not (folder / name).is_file():
            raise BundleError(f"checkpoint {folder} is missing {name}")
    meta = json.loads((folder / CONFIG).read_text())
    model = build_model(from_dict(meta["model"]))
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return Checkpoint(
        model=model.eval(),
        tokenizer=TextTokenizer.from_file(folder / TOKENIZER, meta["max_length"],
                                          meta.get("pad_token", "[PAD]")),
        preprocess=ImagePreprocess.from_dict(meta["preprocess"]),
        info=meta.get("info", {}),
        folder=folder,
    )
