"""Resumable training state in one safetensors file: model, optimizer, momentum teacher and
random-generator tensors, with the JSON parts (step, optimizer settings, Python RNG) in the
file's metadata. Written to `name.tmp` and published by `os.replace`, so a kill at any moment
leaves either the previous state or the new one, never half of each. Nothing is unpickled."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

STATE_FILE = "train_state.safetensors"


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # every random draw of the loop comes from it
    teacher: nn.Module | None = None
    scaler: torch.amp.GradScaler | None = None


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors = {}
    for index, slots in sd["state"].items():
        for name, value in slots.items():
            tensors[f"optimizer.{index}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def save_state(folder: Path, step: int, state: TrainState) -> Path:
    """Everything needed to continue after `step` completed steps."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in state.model.state_dict().items()}
    if state.teacher is not None:
        tensors |= {f"teacher.{k}": v.detach().contiguous() for k, v in state.teacher.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_tensors(state.optimizer)
    tensors |= opt_tensors
    tensors["rng.generator"] = state.generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": step, "optimizer": opt_meta,
            "scaler": state.scaler.state_dict() if state.scaler is not None else None}
    path = Path(folder) / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})
    os.replace(tmp, path)
    return path


def load_state(folder: Path, state: TrainState) -> int:
    """Restore `state` in place from `folder`; returns the number of completed steps (0 if none)."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return 0
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["state"])
    tensors = load_file(str(path))
    state.model.load_state_dict(_prefixed(tensors, "model."))
    if state.teacher is not None:
        state.teacher.load_state_dict(_prefixed(tensors, "teacher."))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in _prefixed(tensors, "optimizer.").items():
        index, name = key.split(".", 1)
        opt_state.setdefault(int(index), {})[name] = value
    state.optimizer.load_state_dict({"state": opt_state, "param_groups": meta["optimizer"]["param_groups"]})
    state.generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    if state.scaler is not None and meta["scaler"]:
        state.scaler.load_state_dict(meta["scaler"])
    return int(meta["step"])


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
