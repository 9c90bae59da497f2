"""Model architecture configs: small JSON files validated into dataclasses, and their registry.

Architecture is data (as in open_clip's `model_configs/`): each JSON file in
`encoders/model_configs/` names its `family`, which selects the dataclass it maps onto
one-to-one. Unknown names, families and fields raise, so a typo never becomes a default.
"""

from __future__ import annotations

import dataclasses
import json
import typing
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

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError("vision.image_size must be a multiple of vision.patch_size")
        _check_heads("vision", self.width, self.heads)


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 512  # set from the tokenizer when training starts
    context_length: int = 24  # longest token sequence, [CLS] included
    width: int = 64
    layers: int = 2
    heads: int = 4
    # A BERT-family checkpoint folder (save_pretrained layout) to initialise the tower from;
    # its own width, depth, vocabulary and tokenizer then replace the fields above.
    pretrained: str | None = None

    def __post_init__(self) -> None:
        _check_heads("text", self.width, self.heads)


@dataclass(frozen=True)
class DualEncoderConfig:
    """CLIP-style two towers."""

    family: str = "clip"
    embed_dim: int = 64  # shared embedding space both towers project into
    init_temperature: float = 0.07  # CLIP's initial softmax temperature
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)


@dataclass(frozen=True)
class VLMoConfig:
    """Mixture-of-modality-experts transformer (VLMo): one stack, three feed-forward experts."""

    family: str = "vlmo"
    embed_dim: int = 64
    init_temperature: float = 0.07
    image_size: int = 64
    patch_size: int = 8
    vocab_size: int = 512
    context_length: int = 24
    width: int = 64
    layers: int = 4  # total blocks; each has V-FFN and L-FFN experts
    fusion_layers: int = 2  # top blocks that, in fusion mode, run joint tokens through the VL-FFN
    heads: int = 4

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if not 0 < self.fusion_layers < self.layers:
            raise ValueError("fusion_layers must be between 1 and layers - 1")
        _check_heads("vlmo", self.width, self.heads)


@dataclass(frozen=True)
class FusionConfig:
    """ALBEF/BLIP style: ViT + text encoder for ITC, then cross-attention layers and an ITM head."""

    family: str = "albef"
    embed_dim: int = 64
    init_temperature: float = 0.07
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)  # the unimodal (ITC) text layers
    fusion_layers: int = 2  # multimodal blocks: self-attention, cross-attention to image, FFN

    def __post_init__(self) -> None:
        if self.fusion_layers < 1:
            raise ValueError("fusion_layers must be at least 1")


@dataclass(frozen=True)
class LiTConfig:
    """Pretrained towers from packages aligned by trained heads (LiT, BLIP-2), with a ConSE prior
    from the backbone's ImageNet classifier and an ITM reranker on MiniLM's upper layers."""

    family: str = "lit"
    embed_dim: int = 256  # shared space
    init_temperature: float = 0.07
    backbone: str = "efficientnet-lite0"  # encoders.efficientnet.VARIANTS
    image_size: int = 224  # the backbone's own resolution
    text: str = "all-minilm-l6-v2"  # packaged text encoder (encoders.packaged)
    context_length: int = 32  # longest token sequence, [CLS] and [SEP] included
    head_hidden: int = 512  # image head: Linear(1280, hidden) - GELU - Dropout - Linear(hidden, d)
    dropout: float = 0.5
    # "linear": a trained text head; "frozen": the text encoder's own space (embed_dim must be
    # its width), which the image head learns to map into (DeViSE, Frome et al. 2013)
    text_head: str = "linear"
    conse_top: int = 5  # ImageNet classes whose name embeddings make the ConSE prior (0: none)
    token_dim: int = 128  # width of the image tokens the index stores for the reranker
    fusion_layers: int = 2  # top text layers copied into the reranker, each given cross-attention

    def __post_init__(self) -> None:
        if self.fusion_layers < 1:
            raise ValueError("fusion_layers must be at least 1")
        if self.text_head not in ("linear", "frozen"):
            raise ValueError(f"text_head must be 'linear' or 'frozen', got {self.text_head!r}")


ModelConfig = DualEncoderConfig | VLMoConfig | FusionConfig | LiTConfig

FAMILIES: dict[str, type] = {
    "clip": DualEncoderConfig,
    "align": DualEncoderConfig,
    "vlmo": VLMoConfig,
    "albef": FusionConfig,
    "blip": FusionConfig,
    "lit": LiTConfig,
}


def _check_heads(where: str, width: int, heads: int) -> None:
    if width % heads:
        raise ValueError(f"{where}.width must be a multiple of {where}.heads")


def to_dict(cfg: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any]) -> ModelConfig:
    """Build the family's config dataclass from a dict, refusing unknown fields at any depth."""
    family = data.get("family", "clip")
    if family not in FAMILIES:
        raise UnknownModelError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return _build(FAMILIES[family], data, "config")


def _build(kind: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object")  # noqa: TRY004 - a config error
    hints = typing.get_type_hints(kind)
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown field(s) in {where}: {', '.join(unknown)}")
    values = {
        name: _build(hints[name], value, f"{where}.{name}")
        if dataclasses.is_dataclass(hints[name]) else value
        for name, value in data.items()
    }
    return kind(**values)


def list_models() -> list[str]:
    """Names of the model configs shipped in `encoders/model_configs/`."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str | Path) -> ModelConfig:
    """Load a config by registry name or from a JSON file path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise UnknownModelError(
            f"unknown model config {str(name_or_path)!r}; known: {', '.join(list_models())}"
        )
    return from_dict(json.loads(path.read_text()))
