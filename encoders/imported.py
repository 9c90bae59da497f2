"""Which kind of model folder a path is, and its import: `xmodal export --model FOLDER`.

Three kinds are read: xmodal's own training checkpoints, Hugging Face `save_pretrained`
folders (`encoders.hf`) and OpenCLIP folders (`encoders.openclip`). The kind is told by the
files, never by the folder's name.
"""

from __future__ import annotations

import json
from pathlib import Path

from encoders.errors import BundleError
from encoders.roles import Exportable
from encoders.source import Imported

CHECKPOINT, HUGGINGFACE, OPEN_CLIP = "checkpoint", "huggingface", "open_clip"
KINDS = (CHECKPOINT, HUGGINGFACE, OPEN_CLIP)
_NAMES = {CHECKPOINT: "an xmodal checkpoint", HUGGINGFACE: "a Hugging Face model",
          OPEN_CLIP: "an OpenCLIP model"}


def folder_kind(folder: str | Path) -> str:
    """CHECKPOINT, HUGGINGFACE or OPEN_CLIP, or a BundleError saying what was looked for."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"no model folder at {folder}")
    if (folder / "open_clip_config.json").is_file():
        return OPEN_CLIP
    config = folder / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except json.JSONDecodeError as exc:
            raise BundleError(f"{config} is not valid JSON: {exc}") from exc
        if isinstance(data, dict) and ("architectures" in data or "model_type" in data):
            return HUGGINGFACE
        if isinstance(data, dict) and {"model", "preprocess"} <= data.keys():
            return CHECKPOINT
        raise BundleError(f"{config} is neither a Hugging Face config (no architectures or "
                          "model_type) nor an xmodal checkpoint's (no model and preprocess)")
    raise BundleError(f"{folder} is not a model folder: expected config.json (a Hugging Face "
                      "save_pretrained folder or an xmodal checkpoint) or open_clip_config.json "
                      "(an OpenCLIP folder)")


def _kind(folder: str | Path, kind: str | None) -> str:
    found = folder_kind(folder)
    if kind is not None and found != kind:
        raise BundleError(f"{folder} holds {_NAMES[found]}, not {_NAMES[kind]}")
    return found


def import_folder(folder: str | Path, kind: str | None = None) -> Imported:
    """A Hugging Face or OpenCLIP folder as an `Imported` (what fine-tuning starts from)."""
    found = _kind(folder, kind)
    if found == HUGGINGFACE:
        from encoders.hf import import_hf

        return import_hf(folder)
    if found == OPEN_CLIP:
        from encoders.openclip import import_open_clip_folder

        return import_open_clip_folder(folder)
    raise BundleError(f"{folder} holds an xmodal checkpoint, which is exported as it is "
                      "(--checkpoint); only Hugging Face and OpenCLIP folders are imported")


def load_exportable(folder: str | Path, kind: str | None = None) -> Exportable:
    """Any readable model folder, ready for `export_bundle`; `kind` insists on one kind."""
    found = _kind(folder, kind)
    if found == CHECKPOINT:
        from encoders.checkpoint import load_checkpoint

        return load_checkpoint(folder).exportable()
    return import_folder(folder, found).exportable
