"""Model registry: a config's family picks the PyTorch class that builds it."""

from __future__ import annotations

from torch import nn

from encoders.config import DualEncoderConfig, FusionConfig, LiTConfig, ModelConfig, VLMoConfig


def build_model(cfg: ModelConfig) -> nn.Module:
    """A freshly initialised model for `cfg`; every class exposes `graph_modules()`."""
    if isinstance(cfg, DualEncoderConfig):
        from encoders.clip import DualEncoder

        return DualEncoder(cfg)
    if isinstance(cfg, VLMoConfig):
        from encoders.vlmo import VLMo

        return VLMo(cfg)
    if isinstance(cfg, FusionConfig):
        from encoders.fusion import FusionModel

        return FusionModel(cfg)
    if isinstance(cfg, LiTConfig):
        from encoders.lit import LiTModel

        return LiTModel(cfg)
    raise TypeError(f"no model class for config {type(cfg).__name__}")
