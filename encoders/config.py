"""Model architecture configs: small JSON files validated into dataclasses, and their registry.

Architecture is data (as in open_clip's `model_configs/`): each JSON file in
`encoders/model_configs/` maps one-to-one onto `DualEncoderConfig`. Unknown names and
unknown fields raise, so a typo never silently becomes a default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoders.errors import UnknownModelError

CONFIG_DIR = Path(__file__).parent / "model_configs"


@dataclass(frozen=True)
class VisionConfig:
    image_size: int = 64  # square input side, pixels
    patch_size: int = 8  # ViT patch side; image_size must be a multiple
    width: int = 64  # token width inside the tower
    layers: int = 2  # transformer blocks
    heads: int = 4  # attention heads; width must be a multiple


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 512  # set from the tokenizer when training starts
    context_length: int = 24  # longest token sequence, [CLS] included
    width: int = 64
    layers: int = 2
    heads: int = 4


@dataclass(frozen=True)
class DualEncoderConfig:
    family: str = "clip"  # model family written to the engine manifest
    embed_dim: int = 64  # shared embedding space both towers project into
    init_temperature: float = 0.07  # CLIP's initial softmax temperature
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)

    def __post_init__(self) -> None:
        if self.vision.image_size % self.vision.patch_size:
            raise ValueError("vision.image_size must be a multiple of vision.patch_size")
        for name, tower in (("vision", self.vision), ("text", self.text)):
            if tower.width % tower.heads:
                raise ValueError(f"{name}.width must be a multiple of {name}.heads")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DualEncoderConfig:
        data = dict(data)
        vision = _strict(VisionConfig, data.pop("vision", {}), "vision")
        text = _strict(TextConfig, data.pop("text", {}), "text")
        top = _strict(cls, data, "config", build=False)
        return cls(vision=vision, text=text, **top)


def _strict(kind: type, data: dict[str, Any], where: str, build: bool = True) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown field(s) in {where}: {', '.join(unknown)}")
    return kind(**data) if build else data


def list_models() -> list[str]:
    """Names of the model configs shipped in `encoders/model_configs/`."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str | Path) -> DualEncoderConfig:
    """Load a config by registry name or from a JSON file path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise UnknownModelError(
            f"unknown model config {str(name_or_path)!r}; known: {', '.join(list_models())}"
        )
    return DualEncoderConfig.from_dict(json.loads(path.read_text()))
